"""MIT-BIH Arrhythmia heartbeats (1D signals) for beat classification in the AAMI classes.

Beats, AAMI mapping and the cache: ``data/ecg_prepare.py``. Two protocols (``data.protocol``):

- ``inter_patient`` (de Chazal et al. 2004): train on DS1, test on DS2, the paced records
  102, 104, 107 and 217 in neither. Validation records are carved from DS1 by patient
  (``val_records``, or a stratified group fold of ``val_fraction`` of DS1's records), so no
  record is in two splits (asserted). Records 201 (DS1) and 202 (DS2) come from one subject:
  de Chazal's split keeps them apart as records, and so does this one.
- ``patient_specific`` (Kiranyaz, Ince and Gabbouj 2016, after Hu et al. 1997): common
  training beats drawn from records 100-124 (``common_beats`` per class: 75 N, 75 S, 75 V and
  every F and Q beat; null takes all), plus the first ``train_minutes`` (5) of each test
  record; the test is the rest of those records (200-234 by default). A test record's beats
  are split in time and never overlap (asserted); common records are never test records.
  Kiranyaz trains one network per patient: ``data.test_records=[<record>]`` does that; the
  default pools the 24 patients in one run. Validation: ``val_fraction`` of the training
  beats, stratified (the protocol has no validation set of its own).

``data.classes`` keeps some AAMI classes only (the beats of the others are dropped), e.g.
``[N, S, V, F]`` as Mondejar-Guerra et al. (2019) evaluate: Q has 8 beats in DS1 and 7 in DS2.

Items are ``(window, leads)`` float arrays (channels last, like every source); the pipeline
serves ``(leads, window)`` tensors. ``patient_groups`` gives each beat's record.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from medbench.data import ecg_prepare as prep
from medbench.data.base import DatasetInfo, SplitDataModule
from medbench.data.medmnist import default_data_root
from medbench.data.registry import register_datamodule
from medbench.data.sources import ImageSource
from medbench.data.splits import cross_validation_fold
from medbench.errors import ConfigError, DataError

PROTOCOLS = ("inter_patient", "patient_specific")
ARCHIVE = "mitbih_arrhythmia/mitdb_48records_rewritten.tar.xz"
COMMON_RECORDS = tuple(r for r in prep.ALL_RECORDS if r <= 124 and r not in prep.PACED)
PATIENT_TEST_RECORDS = tuple(r for r in prep.ALL_RECORDS if r >= 200 and r not in prep.PACED)
KIRANYAZ_COMMON = {"N": 75, "S": 75, "V": 75, "F": None, "Q": None}


class BeatSource(ImageSource):
    """Beats held in one (N, window, leads) array."""

    def __init__(self, beats: np.ndarray) -> None:
        self.beats = beats

    def __len__(self) -> int:
        return len(self.beats)

    def __getitem__(self, index: int) -> np.ndarray:
        return self.beats[index]


@register_datamodule("mitbih")
class MITBIHDataModule(SplitDataModule):
    """MIT-BIH beats under the inter-patient or the patient-specific protocol."""

    def __init__(self, protocol: str = "inter_patient", root: str | None = None,
                 archive: str | None = None, name: str = "mitbih", lead: Any = "MLII",
                 window: int = 256, bandpass: Mapping[str, float] | None = None,
                 normalize_beats: str = "zscore", train_records: Sequence[int] | None = None,
                 val_records: Sequence[int] | None = None,
                 test_records: Sequence[int] | None = None,
                 exclude_records: Sequence[int] = prep.PACED, val_fraction: float = 0.1,
                 split_seed: int = 0, common_records: Sequence[int] | None = None,
                 common_beats: Mapping[str, int | None] | None = None,
                 train_minutes: float = 5.0, classes: Sequence[str] = prep.AAMI_CLASSES,
                 rank_metric: str | None = None, extra_metrics: Sequence[str] = (),
                 **kwargs) -> None:
        super().__init__(**kwargs)
        if protocol not in PROTOCOLS:
            raise ConfigError(f"data.protocol: expected one of {PROTOCOLS}, got '{protocol}'")
        if self.resize:
            raise ConfigError("data.resize: beats are 1D; set data.window instead")
        self.protocol = protocol
        self.archive = Path(archive) if archive else (
            Path(root) if root else default_data_root()) / ARCHIVE
        self.settings = prep.check_settings(lead, window, bandpass, normalize_beats)
        self.exclude = {int(r) for r in exclude_records}
        inter = protocol == "inter_patient"
        self.train_records = _records("train_records", train_records or (
            prep.DS1 if inter else ()), self.exclude)
        self.val_records = _records("val_records", val_records or (), self.exclude)
        self.test_records = _records("test_records", test_records or (
            prep.DS2 if inter else PATIENT_TEST_RECORDS), self.exclude)
        self.common_records = _records("common_records", common_records or COMMON_RECORDS,
                                       self.exclude)
        self.common_beats = dict(KIRANYAZ_COMMON if common_beats is None else common_beats)
        unknown = set(self.common_beats) - set(prep.AAMI_CLASSES)
        if unknown:
            raise ConfigError(f"data.common_beats: unknown class(es) {sorted(unknown)}; "
                              f"expected keys among {prep.AAMI_CLASSES}")
        if not 0 < val_fraction < 1:
            raise ConfigError(f"data.val_fraction: expected a fraction in (0, 1), got "
                              f"{val_fraction}")
        self.val_fraction, self.split_seed = val_fraction, split_seed
        self.train_minutes = float(train_minutes)
        self.classes = [str(c) for c in classes]
        if not self.classes or not set(self.classes) <= set(prep.AAMI_CLASSES) or len(
                set(self.classes)) != len(self.classes):
            raise ConfigError(f"data.classes: expected distinct AAMI classes among "
                              f"{prep.AAMI_CLASSES}, got {list(classes)}")
        self.groups: dict[str, np.ndarray] = {}  # each beat's record, per split
        self.beat_samples: dict[str, np.ndarray] = {}  # each beat's R-peak sample, per split
        self.info = DatasetInfo(
            name=name, family="classification", num_classes=len(self.classes),
            in_chans=len(self.settings["leads"]), label_type="multiclass",
            label_names=list(self.classes), spatial_dims=1,
            rank_metric=rank_metric, extra_metrics=tuple(extra_metrics))

    def patient_groups(self, split: str) -> np.ndarray | None:
        if split not in self.groups:  # setup asks for them (cv.folds) once load_splits filled them
            self.setup()
        return self.groups[split]

    def load_splits(self) -> dict[str, tuple[BeatSource, np.ndarray]]:
        if self.protocol == "inter_patient":
            parts = self._inter_patient()
        else:
            parts = self._patient_specific()
        splits = {}
        # AAMI class index -> label among data.classes (-1: a class left out, its beats dropped)
        relabel = np.array([self.classes.index(c) if c in self.classes else -1
                            for c in prep.AAMI_CLASSES])
        for split, part in parts.items():
            kept = relabel[part[1]] >= 0
            beats, labels, records, samples = (a[kept] for a in part)
            labels = relabel[labels]
            if not len(labels):
                raise DataError(f"{self.info.name} {split} split has no beat (records "
                                f"{sorted(set(records.tolist()))})")
            splits[split] = (BeatSource(beats), labels)
            self.groups[split], self.beat_samples[split] = records, samples
        return splits

    def _beats(self, records: Sequence[int]) -> dict[int, dict[str, np.ndarray]]:
        return prep.prepare(self.archive, records, self.settings)

    def _inter_patient(self) -> dict[str, tuple[np.ndarray, ...]]:
        if self.val_records:
            train = [r for r in self.train_records if r not in self.val_records]
            val = list(self.val_records)
        else:
            train, val = self._carve_val_records()
        by_record = self._beats(sorted({*train, *val, *self.test_records}))
        parts = {split: _stack([by_record[r] for r in records], records)
                 for split, records in (("train", train), ("val", val),
                                        ("test", self.test_records))}
        seen = {split: set(part[2].tolist()) for split, part in parts.items()}
        for a, b in (("train", "val"), ("train", "test"), ("val", "test")):
            assert not seen[a] & seen[b], f"records {seen[a] & seen[b]} in both {a} and {b}"
        assert not (set().union(*seen.values()) & self.exclude), "an excluded record is used"
        return parts

    def _carve_val_records(self) -> tuple[list[int], list[int]]:
        """Validation records: one stratified group fold (grouped by record) of the training
        records' beats, about ``val_fraction`` of them."""
        by_record = self._beats(self.train_records)
        labels = np.concatenate([by_record[r]["labels"] for r in self.train_records])
        groups = np.concatenate([np.full(len(by_record[r]["labels"]), r)
                                 for r in self.train_records])
        folds = max(2, round(1 / self.val_fraction))
        if len(self.train_records) < folds:
            raise ConfigError(f"data.val_fraction={self.val_fraction} needs at least {folds} "
                              f"training records, got {len(self.train_records)}: set "
                              "data.val_records")
        held = cross_validation_fold(labels, groups, folds, 0, self.split_seed)
        val = sorted(set(groups[held].tolist()))
        return [r for r in self.train_records if r not in val], val

    def _patient_specific(self) -> dict[str, tuple[np.ndarray, ...]]:
        overlap = set(self.common_records) & set(self.test_records)
        if overlap:
            raise ConfigError(f"data.common_records and data.test_records share {sorted(overlap)}")
        by_record = self._beats(sorted({*self.common_records, *self.test_records}))
        rng = np.random.default_rng(self.split_seed)
        common = _stack([by_record[r] for r in self.common_records], self.common_records)
        picked = []
        for name, cap in self.common_beats.items():
            index = np.flatnonzero(common[1] == prep.AAMI_CLASSES.index(name))
            picked.append(index if cap is None or cap >= len(index)
                          else np.sort(rng.choice(index, int(cap), replace=False)))
        keep = np.sort(np.concatenate(picked))
        early, late = [], []
        for record in self.test_records:
            beats = by_record[record]
            first = beats["samples"] < self.train_minutes * 60 * float(beats["fs"])
            early.append({k: v[first] if np.ndim(v) else v for k, v in beats.items()})
            late.append({k: v[~first] if np.ndim(v) else v for k, v in beats.items()})
            assert not (first.any() and (~first).any()) or (
                beats["samples"][first].max() < beats["samples"][~first].min())
        early_part = _stack(early, self.test_records)
        pool = tuple(np.concatenate([c[keep], e]) for c, e in zip(common, early_part,
                                                                  strict=True))
        folds = max(2, round(1 / self.val_fraction))
        held = cross_validation_fold(pool[1], None, folds, 0, self.split_seed)
        return {"train": tuple(a[~held] for a in pool), "val": tuple(a[held] for a in pool),
                "test": _stack(late, self.test_records)}


def _records(key: str, records: Sequence[int], exclude: set[int]) -> list[int]:
    """Record numbers, checked against the 48 of MIT-BIH; excluded ones removed."""
    out = []
    for record in records:
        if int(record) not in prep.ALL_RECORDS:
            raise ConfigError(f"data.{key}: {record} is not a MIT-BIH record (expected one of "
                              f"100..234 as in the database)")
        if int(record) not in exclude:
            out.append(int(record))
    return out


def _stack(parts: Sequence[Mapping[str, np.ndarray]], records: Sequence[int]
           ) -> tuple[np.ndarray, ...]:
    """(beats, labels, record of each beat, R-peak sample of each beat) of several records."""
    if not parts:
        empty = np.zeros(0, np.int64)
        return np.zeros((0, 1, 1), np.float32), empty, empty, empty
    owner = np.concatenate([np.full(len(p["labels"]), r) for p, r in zip(parts, records,
                                                                           strict=True)])
    return (*(np.concatenate([p[key] for p in parts]) for key in ("beats", "labels")), owner,
            np.concatenate([p["samples"] for p in parts]))
