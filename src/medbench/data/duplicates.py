"""One image under two names: files of identical bytes (a copy ``a.png`` / ``a_copy.png``, a
hard link) found by content, so that a copy in another split is leakage like the same path.

Cheap on large folders: sizes first (one ``stat`` per file), then a 4 KiB sample from the
middle of the files whose size collides, then the whole file (blake2b) for those whose sample
collides too; a folder of distinct images reads few bytes. Only bytes are compared: a copy
re-saved (other compression, metadata, format) is not found, as that would decode every image.
"""

from __future__ import annotations

import hashlib
import os
import warnings
from collections import defaultdict
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from medbench.data.label_checks import LabelWarning
from medbench.errors import ConfigError, DataError

# data.duplicates: copies across splits are an error (error), a warning (warn), or not looked
# for (off: no file is read)
MODES = ("error", "warn", "off")
SAMPLE = 4096  # bytes read from the middle of a file whose size another file has
CHUNK = 1 << 20


def checked_mode(mode: str) -> str:
    """``data.duplicates`` validated."""
    if mode not in MODES:
        raise ConfigError(f"data.duplicates: expected one of {', '.join(MODES)}, got {mode!r}")
    return mode


def _sample(path: Path, size: int) -> bytes:
    with path.open("rb") as handle:
        if size <= 2 * SAMPLE:
            return handle.read()
        handle.seek(size // 2)
        return handle.read(SAMPLE)


def _digest(path: Path) -> bytes:
    digest = hashlib.blake2b(digest_size=16)
    with path.open("rb") as handle:
        while chunk := handle.read(CHUNK):
            digest.update(chunk)
    return digest.digest()


def _regroup(groups: list[list[int]], key) -> list[list[int]]:
    """Each group split by ``key(index)``; only parts of two or more kept."""
    out = []
    for group in groups:
        parts: dict[object, list[int]] = defaultdict(list)
        for index in group:
            parts[key(index)].append(index)
        out += [part for part in parts.values() if len(part) > 1]
    return out


def same_content(paths: Sequence[Path]) -> list[list[int]]:
    """Indices of files with identical bytes, in groups of two or more (ordered by their
    first index); files are read only where their sizes, then their samples, collide."""
    try:
        sizes = [os.stat(path).st_size for path in paths]
        groups = _regroup([list(range(len(paths)))], sizes.__getitem__)
        groups = _regroup(groups, lambda i: _sample(paths[i], sizes[i]))
        groups = _regroup(groups, lambda i: sizes[i] <= 2 * SAMPLE or _digest(paths[i]))
    except OSError as err:
        raise DataError(f"cannot read image {err.filename}: {err.strerror}") from None
    return sorted(groups)


def _named(record: dict[str, str], split: str) -> str:
    """``train (m.csv:3)``, or ``train`` where the file is its own place (image folders)."""
    return split if record["where"] == record["path"] else f"{split} ({record['where']})"


def check_no_copies(records: list[dict[str, str]], split_of: np.ndarray, name: str,
                    mode: str = "error", drawn: bool = False) -> None:
    """Files of one content under two names: in two splits an error (``mode='warn'``: a
    warning), in one split a warning (a copy weighs its image twice, it does not leak)."""
    if checked_mode(mode) == "off":
        return
    groups = same_content([Path(r["path"]) for r in records])
    apart = [len({split_of[i] for i in g}) > 1 for g in groups]
    across = [g for g, a in zip(groups, apart, strict=True) if a]
    within = [g for g, a in zip(groups, apart, strict=True) if not a]
    if across:
        i, j = across[0][0], next(k for k in across[0] if split_of[k] != split_of[across[0][0]])
        a, b = records[i], records[j]
        labels = "" if a["label"] == b["label"] else (
            f", labelled '{a['label']}' and '{b['label']}'")
        how = " (drawn at random: data.split_seed)" if drawn else ""
        message = (f"{a['path']} and {b['path']} are one image (identical bytes{labels}), in "
                   f"two splits, {_named(a, split_of[i])} and {_named(b, split_of[j])}{how}: "
                   "an image seen in training leaks into the scores; keep one copy "
                   f"({len(across)} such image(s) in all; data.duplicates=warn accepts them)")
        if mode == "error":
            raise DataError(message)
        warnings.warn(message, LabelWarning, stacklevel=2)
    if within:
        a, b = records[within[0][0]], records[within[0][1]]
        copies = sum(len(g) - 1 for g in within)
        warnings.warn(f"{name}: {copies} file(s) are copies of another file of their split "
                      f"(identical bytes; first: {a['path']} and {b['path']}, "
                      f"{split_of[within[0][0]]}): a copy weighs its image twice; keep one",
                      LabelWarning, stacklevel=2)
