"""MIT-BIH Arrhythmia beats: unpack the WFDB archive once, cut beats around annotated R-peaks.

**AAMI classes** (ANSI/AAMI EC57; the grouping of de Chazal, O'Dwyer and Reilly, IEEE Trans
Biomed Eng 51(7):1196-1206, 2004, Table I), from MIT-BIH beat symbols:

- N (normal and bundle branch block beats): ``N`` normal, ``L`` left and ``R`` right bundle
  branch block, ``e`` atrial escape, ``j`` nodal (junctional) escape;
- S (supraventricular ectopic beats, SVEB): ``A`` atrial premature, ``a`` aberrated atrial
  premature, ``J`` nodal (junctional) premature, ``S`` supraventricular premature;
- V (ventricular ectopic beats, VEB): ``V`` premature ventricular contraction, ``E`` ventricular
  escape;
- F (fusion of ventricular and normal): ``F``;
- Q (unknown / unclassifiable): ``/`` paced, ``f`` fusion of paced and normal, ``Q``
  unclassifiable.

Every other annotation (rhythm ``+``, noise ``~``, ``|``, ``!``/``[``/``]`` flutter marks, ``x``
non-conducted P waves, ...) is not a beat class and is skipped. Counts over the 48 records:
N 90,631, S 2,781, V 7,236, F 803, Q 8,043 (the mirror's PROVENANCE.md).

A beat is ``window`` samples of the chosen lead(s) (360 Hz): ``window // 2`` before the
annotated R-peak and the rest from it; beats whose window leaves the record are dropped.
Prepared beats are cached as one ``.npz`` per record under
``cache_dir("mitbih", "beats", <settings key>)``: a change of lead, window, filter or
normalisation is another key, so it prepares again; the same settings never do.
"""

from __future__ import annotations

import hashlib
import json
import tarfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from medbench.data.cache import cache_dir
from medbench.errors import ConfigError, DataError

AAMI_CLASSES = ("N", "S", "V", "F", "Q")
AAMI_GROUPS = {"N": "NLRej", "S": "AaJS", "V": "VE", "F": "F", "Q": "/fQ"}
AAMI_OF_SYMBOL = {symbol: AAMI_CLASSES.index(group)
                  for group, symbols in AAMI_GROUPS.items() for symbol in symbols}
# de Chazal 2004's inter-patient split; the paced records are in neither
DS1 = (101, 106, 108, 109, 112, 114, 115, 116, 118, 119, 122, 124, 201, 203, 205, 207, 208,
       209, 215, 220, 223, 230)
DS2 = (100, 103, 105, 111, 113, 117, 121, 123, 200, 202, 210, 212, 213, 214, 219, 221, 222,
       228, 231, 232, 233, 234)
PACED = (102, 104, 107, 217)
ALL_RECORDS = tuple(sorted((*DS1, *DS2, *PACED)))
NORMALIZATIONS = ("none", "zscore", "minmax")
PREPARE_VERSION = 1  # bump when the preparation itself changes: every cache key changes


def unpack(archive: Path, records: Sequence[int] = ALL_RECORDS) -> Path:
    """The folder of the records' WFDB files, extracted from the archive into the cache once
    (only the files still missing; each written to a temporary name first, so an interrupted
    extraction never leaves a truncated file behind). The tar is sorted by name: the stream
    is read only as far as the last file needed."""
    if not archive.is_file():
        raise DataError(f"MIT-BIH archive not found: {archive} (set MEDBENCH_DATA_DIR to the "
                        "folder holding mitbih_arrhythmia/, or data.archive to the file)")
    folder = cache_dir("mitbih", "records", f"{archive.stat().st_size}")
    wanted = {f"{record}.{ext}" for record in records for ext in ("hea", "dat", "atr")}
    missing = {name for name in wanted if not (folder / name).is_file()}
    if not missing:
        return folder
    try:
        with tarfile.open(archive, "r:*") as tar:
            for member in tar:
                name = Path(member.name).name
                if member.isfile() and name in missing:
                    partial = folder / f".{name}.part"
                    partial.write_bytes(tar.extractfile(member).read())
                    partial.replace(folder / name)
                    missing.discard(name)
                    if not missing:
                        break
    except (tarfile.TarError, OSError, EOFError) as err:
        raise DataError(f"{archive} is not a readable tar archive ({err})") from None
    if missing:
        raise DataError(f"{archive} lacks {sorted(missing)[:3]}: not the MIT-BIH archive")
    return folder


def settings_key(settings: Mapping[str, Any]) -> str:
    """A short hash of the preparation settings (and :data:`PREPARE_VERSION`)."""
    text = json.dumps({"version": PREPARE_VERSION, **settings}, sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()[:12]


def check_settings(lead: str | int | Sequence[str | int], window: int,
                   bandpass: Mapping[str, float] | None, normalize_beats: str) -> dict[str, Any]:
    """The preparation settings, validated (one-line errors naming the key)."""
    leads = [lead] if isinstance(lead, (str, int)) else list(lead)
    if not leads:
        raise ConfigError("data.lead: expected a lead name (MLII, V1, ...), a channel index or "
                          "a list of them, got an empty list")
    if not isinstance(window, int) or window < 8:
        raise ConfigError(f"data.window: expected an integer number of samples >= 8, got "
                          f"{window!r}")
    if normalize_beats not in NORMALIZATIONS:
        raise ConfigError(f"data.normalize_beats: expected one of {NORMALIZATIONS}, got "
                          f"'{normalize_beats}'")
    band = None
    if bandpass:
        band = {"low": float(bandpass["low"]), "high": float(bandpass["high"]),
                "order": int(bandpass.get("order", 2))}
        if not 0 < band["low"] < band["high"]:
            raise ConfigError(f"data.bandpass: expected 0 < low < high in Hz, got {dict(bandpass)}")
    return {"leads": leads, "window": window, "bandpass": band,
            "normalize_beats": normalize_beats}


def _band_passed(signal: np.ndarray, fs: float, band: Mapping[str, float]) -> np.ndarray:
    """Zero-phase Butterworth band-pass (scipy), along time, for every lead."""
    from scipy.signal import butter, sosfiltfilt

    if band["high"] >= fs / 2:
        raise ConfigError(f"data.bandpass.high={band['high']} Hz must be below the Nyquist "
                          f"frequency {fs / 2} Hz")
    sos = butter(band["order"], [band["low"], band["high"]], btype="bandpass", fs=fs,
                 output="sos")
    return sosfiltfilt(sos, signal, axis=0)


def _normalized(beats: np.ndarray, how: str) -> np.ndarray:
    """Per beat and lead: z-score or min-max to [0, 1] over the window (``none``: mV)."""
    if how == "zscore":
        std = beats.std(axis=1, keepdims=True)
        return (beats - beats.mean(axis=1, keepdims=True)) / np.maximum(std, 1e-6)
    if how == "minmax":
        low, high = beats.min(axis=1, keepdims=True), beats.max(axis=1, keepdims=True)
        return (beats - low) / np.maximum(high - low, 1e-6)
    return beats


def read_record(folder: Path, record: int, settings: Mapping[str, Any]) -> dict[str, np.ndarray]:
    """One record's beats: ``beats`` (n, window, leads) float32, ``labels`` (n,) AAMI class
    index, ``samples`` (n,) R-peak sample, ``fs`` the sampling rate."""
    import wfdb

    path = folder / str(record)
    if not path.with_suffix(".hea").is_file():
        raise DataError(f"MIT-BIH record {record} not found in {folder}")
    signal_record = wfdb.rdrecord(str(path))
    names = list(signal_record.sig_name)
    channels = []
    for lead in settings["leads"]:
        if isinstance(lead, int) and 0 <= lead < len(names):
            channels.append(lead)
        elif lead in names:
            channels.append(names.index(lead))
        else:
            raise DataError(f"MIT-BIH record {record} has leads {names}, not '{lead}' "
                            "(data.lead: a lead name or a channel index)")
    signal = signal_record.p_signal[:, channels].astype(np.float64)
    fs = float(signal_record.fs)
    if settings["bandpass"]:
        signal = _band_passed(signal, fs, settings["bandpass"])
    annotation = wfdb.rdann(str(path), "atr")
    symbols = np.asarray(annotation.symbol)
    samples = np.asarray(annotation.sample, dtype=np.int64)
    known = np.isin(symbols, list(AAMI_OF_SYMBOL))
    before = settings["window"] // 2
    after = settings["window"] - before
    inside = (samples - before >= 0) & (samples + after <= len(signal))
    keep = known & inside
    samples, symbols = samples[keep], symbols[keep]
    offsets = np.arange(-before, after)
    beats = signal[samples[:, None] + offsets[None, :]]  # (n, window, leads)
    beats = _normalized(beats, settings["normalize_beats"]).astype(np.float32)
    labels = np.asarray([AAMI_OF_SYMBOL[s] for s in symbols], dtype=np.int64)
    return {"beats": beats, "labels": labels, "samples": samples, "fs": np.float64(fs)}


def prepare(archive: Path, records: Sequence[int],
            settings: Mapping[str, Any]) -> dict[int, dict[str, np.ndarray]]:
    """Beats of ``records`` with ``settings``, read from the cache or prepared into it."""
    folder = None
    out_dir = cache_dir("mitbih", "beats", settings_key(settings))
    (out_dir / "settings.json").write_text(json.dumps(settings, sort_keys=True))
    out = {}
    for record in records:
        path = out_dir / f"{record}.npz"
        if not path.is_file():
            folder = folder or unpack(archive, [r for r in records
                                                if not (out_dir / f"{r}.npz").is_file()])
            arrays = read_record(folder, record, settings)
            partial = path.with_suffix(".tmp.npz")
            np.savez(partial, **arrays)
            partial.replace(path)  # a half-written file is never taken for a prepared one
        with np.load(path) as stored:
            out[record] = {k: stored[k] for k in stored.files}
    return out
