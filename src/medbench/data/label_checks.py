"""Class labels at the data boundary, checked in one place (the ``class_labels`` target kind's
inputs; masks and boxes get a module of their own as their families need one).

File sources (CSV manifests, image folders, NIfTI manifests) hand their rows here: label cells
become class names (spellings of one number unified, missing values and fractions refused),
the split and patient columns are read whole or not at all, a file is listed once (never in
two splits), and every class reaches every split. Array sources (MedMNIST ``.npz``) and every
split's targets pass :func:`checked_label_array` (``ClassLabels.validate``). Each problem is a
one-line :class:`DataError` / :class:`ConfigError` naming the file and line (or the split) and
what was expected; each correction is a :class:`LabelWarning` naming what was changed.
"""

from __future__ import annotations

import re
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from medbench.errors import ConfigError, DataError

SPLITS = ("train", "val", "test")
# label cells that mean "no label" (compared lower-case, after stripping spaces)
MISSING = ("", "nan", "na", "n/a", "null", "none")
_NUMBER = re.compile(r"[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?")
_INTEGER = re.compile(r"[+-]?\d+")


class LabelWarning(UserWarning):
    """A label, split or header cell was read in a corrected form (named in the message)."""


def sort_key(name: str) -> tuple[int, int, str]:
    """Class order without ``data.classes``: integers numerically (-1, 2, 10), then names."""
    return (0, int(name), "") if _INTEGER.fullmatch(name) else (1, 0, name)


def _canonical(text: str, keep: set[str]) -> str | None:
    """A stripped label cell as its class name: numbers as their integer (``'1.0'`` -> ``'1'``);
    None for a fraction. ``keep``: names ``data.classes`` declares, taken as they are."""
    if text in keep or not _NUMBER.fullmatch(text):
        return text
    number = float(text)
    return str(int(number)) if number.is_integer() else None


def _warn(message: str) -> None:
    warnings.warn(message, LabelWarning, stacklevel=3)


def class_names_of(records: list[dict[str, str]], name: str, label_type: str,
                   classes: Sequence[Any] | None) -> tuple[list[str], str]:
    """The class names (``data.classes``' order, else :func:`sort_key`) and the label type
    (``auto`` resolved) of ``records``; each record's ``label`` becomes its class name(s)
    (``|``-separated for multi-label): a number keeps its one spelling (``'01'``), or is
    named by its integer when spelled several ways. Records carry ``where`` (file:line)."""
    declared, written = None, [str(c).strip() for c in classes or ()]
    if classes:
        declared = [_canonical(c, set()) or c for c in written]
    keep = set(declared or ())
    per_record: list[list[str]] = []
    spellings: dict[str, dict[str, str]] = {}  # class name -> {spelling: where}
    spaced: list[tuple[str, str]] = []
    for record in records:
        raw, where = record["label"], record["where"]
        if label_type != "multilabel" and "|" in raw and raw.strip() not in keep:
            raise ConfigError(f"{where}: label '{raw}' names several classes (separated by |) "
                              f"but data.label_type is {label_type}: set data.label_type="
                              "multilabel")
        names = []
        for part in raw.split("|") if label_type == "multilabel" else [raw]:
            text = part.strip()
            if text != part:
                spaced.append((part, where))
            if text.lower() in MISSING and text not in keep:
                what = "no label" if not raw.strip() else f"label '{text}' is a missing value"
                raise DataError(f"{where}: {what} for {record['path']} (expected a class name "
                                "or number; drop the row or label it)")
            canonical = _canonical(text, keep)
            if canonical is None:
                raise DataError(f"{where}: label '{text}' of {record['path']} is fractional: "
                                "class labels are whole numbers or names (list it in "
                                "data.classes to read it as a name)")
            spellings.setdefault(canonical, {}).setdefault(text, where)
            names.append(canonical)
        per_record.append(list(dict.fromkeys(names)))
    if spaced:
        _warn(f"{name}: {len(spaced)} label(s) had spaces around them, stripped (first: "
              f"'{spaced[0][0]}' at {spaced[0][1]})")
    for canonical, seen in spellings.items():
        if len(seen) > 1:
            both = " and ".join(f"'{s}' ({w})" for s, w in list(seen.items())[:2])
            _warn(f"{name}: labels {both} spell one number: both read as class {canonical}")
    _refuse_case_variants(spellings, keep, name)
    found = set(spellings)
    names = declared or sorted(found, key=sort_key)
    unknown = sorted(found - set(names), key=sort_key)
    if unknown:
        raise DataError(f"{name}: labels {unknown} are not in data.classes {written}")
    shown = dict(zip(declared, written, strict=True)) if declared else {
        c: next(iter(seen)) if len(seen) == 1 else c for c, seen in spellings.items()}
    for record, parts in zip(records, per_record, strict=True):
        record["label"] = "|".join(shown[c] for c in parts)
    names = [shown[c] for c in names]
    return names, _label_type(label_type, names, declared is not None, name)


def _refuse_case_variants(spellings: dict[str, dict[str, str]], keep: set[str],
                          name: str) -> None:
    by_lower: dict[str, list[str]] = {}
    for canonical in spellings:
        by_lower.setdefault(canonical.lower(), []).append(canonical)
    for variants in by_lower.values():
        if len(variants) > 1 and not set(variants) <= keep:
            a, b = variants[:2]
            raise DataError(
                f"{name}: labels '{a}' ({next(iter(spellings[a].values()))}) and '{b}' "
                f"({next(iter(spellings[b].values()))}) differ only in case: spell them one "
                "way, or list both in data.classes if they are two classes")


def _label_type(label_type: str, names: list[str], declared: bool, name: str) -> str:
    if len(names) < 2:
        raise DataError(f"{name}: every label is '{names[0] if names else ''}': a classifier "
                        "needs at least 2 classes")
    if label_type == "auto":
        return "binary" if len(names) == 2 else "multiclass"
    if label_type == "binary" and len(names) != 2:
        raise ConfigError(f"data.label_type=binary but {name} has {len(names)} classes {names}")
    if label_type == "ordinal" and not declared and not all(map(_INTEGER.fullmatch, names)):
        raise ConfigError(f"data.label_type=ordinal: {name}'s labels {names} are names, whose "
                          "order medbench cannot know: list them in order in data.classes")
    return label_type


def split_column(records: list[dict[str, str]], name: str) -> np.ndarray | None:
    """Each record's split (train / val / test), or None when no row names one. A column
    filled on some rows only is an error (it was never silently dropped for random splits)."""
    cells = [(record.get("split") or "") for record in records]
    if not any(cell.strip() for cell in cells):
        return None
    out, corrected = [], []
    for record, cell in zip(records, cells, strict=True):
        text = cell.strip().lower()
        if not text:
            raise DataError(f"{record['where']}: empty split cell for {record['path']}: the "
                            "split column needs train, val or test on every row (or on none, "
                            "to split by data.val_fraction and data.test_fraction)")
        if text not in SPLITS:
            raise DataError(f"{record['where']}: split '{cell}' is not one of train, val, test")
        if text != cell:
            corrected.append((cell, record["where"]))
        out.append(text)
    if corrected:
        _warn(f"{name}: {len(corrected)} split cell(s) read in lower case without spaces "
              f"(first: '{corrected[0][0]}' at {corrected[0][1]})")
    return np.array(out, dtype=object)


def patient_column(records: list[dict[str, str]]) -> np.ndarray | None:
    """Each record's patient id, or None when no row has one; some rows only: an error."""
    cells = [(record.get("patient_id") or "").strip() for record in records]
    if not any(cells):
        return None
    for record, cell in zip(records, cells, strict=True):
        if not cell:
            raise DataError(f"{record['where']}: empty patient_id for {record['path']}: give "
                            "every row a patient id, or none (a patient's images must stay in "
                            "one split)")
    return np.array(cells, dtype=object)


def check_listed_once(records: list[dict[str, str]], split_of: np.ndarray | None) -> None:
    """A file on two rows: leakage when the rows are in two splits, else a duplicate (which
    weighs the file twice, or may land in train and test when splits are drawn)."""
    first: dict[Path, int] = {}
    for i, record in enumerate(records):
        j = first.setdefault(Path(record["path"]).resolve(), i)
        if j == i:
            continue
        a = records[j]
        if split_of is not None and split_of[i] != split_of[j]:
            raise DataError(f"{record['path']} is in two splits, {split_of[j]} ({a['where']}) "
                            f"and {split_of[i]} ({record['where']}): an image seen in training "
                            "leaks into the scores; list each file once")
        labels = "" if a["label"] == record["label"] else (
            f" with labels '{a['label']}' and '{record['label']}'")
        raise DataError(f"{record['path']} is listed twice ({a['where']} and "
                        f"{record['where']}){labels}: list each file once")


def check_patients_apart(records: list[dict[str, str]], split_of: np.ndarray,
                         groups: np.ndarray) -> None:
    """Fixed splits with patient ids: no patient in two splits."""
    first: dict[str, int] = {}
    for i, patient in enumerate(groups):
        j = first.setdefault(patient, i)
        if split_of[i] != split_of[j]:
            raise DataError(f"patient '{patient}' is in two splits, {split_of[j]} "
                            f"({records[j]['where']}) and {split_of[i]} ({records[i]['where']}):"
                            " a patient's images must stay in one split (fix the split column, "
                            "or drop it to split by patient)")


def check_every_class_in_every_split(labels: np.ndarray, split_of: np.ndarray,
                                     class_names: list[str], label_type: str, name: str,
                                     drawn: bool) -> None:
    """Each class trains (else it is never predicted) and, for single-label data, is in the
    validation and test splits (else its AUC is undefined: scored 0 or NaN). Multi-label
    classes without a positive, or without a negative, in a split are warned about."""
    for split in SPLITS:
        if not (split_of == split).any():
            raise DataError(f"{name} {split} split is empty")
    fix = ("it has too few images to reach every split of data.val_fraction and "
           "data.test_fraction: add images, or drop its rows" if drawn else
           "move some of its images to {split}")
    check_class_coverage({s: labels[split_of == s] for s in SPLITS}, class_names,
                         label_type == "multilabel", name, lambda split, index: fix.format(
                             split=split))


def check_class_coverage(labels: dict[str, np.ndarray], class_names: Sequence[str],
                         multilabel: bool, name: str,
                         fix: Callable[[str, int], str]) -> None:
    """Every class on some training item and (single-label: an error; multi-label: a warning)
    on some item of the other splits; multi-label classes on every item of a split warned
    about (no negative: AUC undefined). ``labels``: each split's class indices (N,) or 0/1
    rows (N, C); ``fix(split, class index)``: the advice that ends the error."""
    count = (lambda y: y.sum(axis=0).astype(np.int64)) if multilabel else (
        lambda y: np.bincount(y, minlength=len(class_names)))
    per_split = {split: count(y) for split, y in labels.items()}
    for split, counts in per_split.items():
        for index in np.flatnonzero(counts == 0):
            shown = ", ".join(f"{s} {per_split[s][index]}" for s in per_split)
            if split == "train":
                raise DataError(f"{name}: class '{class_names[index]}' has no training image "
                                f"({shown}): the model could never predict it; "
                                f"{fix(split, index)}")
            message = (f"{name}: the {split} split has no image of class "
                       f"'{class_names[index]}' ({shown}): its AUC there is undefined")
            if not multilabel:
                raise DataError(f"{message}; {fix(split, index)}")
            _warn(message)
    if not multilabel:
        return
    for split, counts in per_split.items():
        for index in np.flatnonzero(counts == len(labels[split])):
            shown = ", ".join(f"{s} {per_split[s][index]}/{len(labels[s])}" for s in per_split)
            what = ("the model learns nothing of it" if split == "train" else
                    "its AUC there is undefined")
            _warn(f"{name}: every {split} image has class '{class_names[index]}' (images with "
                  f"it: {shown}): {what}; add {split} images without it")


def checked_label_array(targets: Any, label_type: str, num_classes: int,
                        where: str) -> np.ndarray:
    """One split's class targets as int64 indices (N,), or float32 0/1 rows (N, C) for
    multi-label; ``where`` names the file or dataset and the split."""
    labels = np.asarray(targets)
    if labels.dtype.kind not in "biuf":
        raise DataError(f"{where} labels are {labels.dtype} values: expected class indices")
    if labels.dtype.kind == "f" and labels.size:
        bad = np.flatnonzero(~np.isfinite(labels.reshape(len(labels), -1)).all(axis=1))
        if bad.size:
            raise DataError(f"{where} labels include {labels[bad[0]].tolist()} at item "
                            f"{bad[0]} ({bad.size} item(s) in all): expected class indices")
    if label_type == "multilabel":
        if labels.ndim != 2 or labels.shape[1] != num_classes:
            raise DataError(f"{where} labels have shape {labels.shape}, expected "
                            f"(N, {num_classes}) for multi-label")
        if not np.isin(labels, (0, 1)).all():
            raise DataError(f"{where} multi-label targets must be 0 or 1")
        return labels.astype(np.float32)
    if labels.ndim > 1 and labels.size != len(labels):
        raise DataError(f"{where} labels have shape {labels.shape}: expected one class index "
                        f"per item, (N,) or (N, 1), for {label_type} labels")
    labels = labels.reshape(-1)
    fractional = np.flatnonzero(labels != np.round(labels))
    if fractional.size:
        raise DataError(f"{where} labels include the fraction {labels[fractional[0]]:g} at item "
                        f"{fractional[0]} ({fractional.size} in all): expected whole class "
                        "indices")
    if labels.size and (labels.min() < 0 or labels.max() >= num_classes):
        raise DataError(
            f"{where} labels span [{labels.min():g}, {labels.max():g}] but the dataset "
            f"declares {num_classes} classes (expected 0..{num_classes - 1})")
    return labels.astype(np.int64)
