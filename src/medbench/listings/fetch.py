"""Where the datasets `medbench datasets` finds missing come from, one line each.

The data root's layout (``<root>/medmnist/``, ``drive/DRIVE/``, ``bccd/BCCD/``,
``mitbih_arrhythmia/``) is the one the data configs read; the notes say how to fill it.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any, Protocol

MEDMNIST = ("medmnist", "medmnist3d")
MITBIH = ("mitbih", "mitbih_binary")
NOTES = {
    "drive": "DRIVE (drive): register and download it at https://drive.grand-challenge.org/ "
             "(research use only, no open licence) and unpack it as {root}/drive/DRIVE/ in its "
             "original layout (training/ and test/, each with images/, 1st_manual/, mask/; "
             "test/2nd_manual/).",
    "bccd": "BCCD ({names}): git clone https://github.com/Shenggan/BCCD_Dataset (MIT licence) "
            "and copy its BCCD/ folder (Annotations/, JPEGImages/, ImageSets/) to "
            "{root}/bccd/BCCD.",
    "mitbih": "MIT-BIH Arrhythmia ({names}): the 48 records of "
              "https://physionet.org/content/mitdb/1.0.0/ (open, ODC-By), e.g. python -c "
              "\"import wfdb; wfdb.dl_database('mitdb', 'mitdb')\", packed as one archive: "
              "mkdir -p {root}/mitbih_arrhythmia && tar -cJf "
              "{root}/mitbih_arrhythmia/mitdb_48records_rewritten.tar.xz -C mitdb . (or "
              "data.archive=<a "
              "tar of the .hea/.dat/.atr files>); it is unpacked into the cache on first use.",
}


class Missing(Protocol):
    """What a note needs of a dataset row (``datasets.DatasetRow``)."""

    name: str
    source: str
    looked_for: str
    flag: str
    size: int


def _medmnist(rows: Sequence[Missing], root: Path, index: dict[str, Any]) -> str:
    classes = index.get("medmnist", {})
    first = rows[0]
    cls = classes.get(first.flag, {}).get("python_class", "<Class>")
    names = ", ".join(row.name if row.size == 28 else f"{row.name} ({row.size} px)"
                      for row in rows)
    return (f"MedMNIST ({names}): a run downloads its file into {root}/medmnist/ on first use "
            "when online (data.download=true, the default; MEDBENCH_OFFLINE=1 forbids it). "
            f"Ahead of time, one per dataset and size, e.g. python -c \"import medmnist; "
            f"medmnist.{cls}(split='train', size={first.size}, download=True, "
            f"root='{root}/medmnist')\"")


def _kind(row: Missing) -> str:
    if row.source in MEDMNIST:
        return "medmnist"
    if row.source in MITBIH:
        return "mitbih"
    top = Path(row.looked_for).parts[:1]
    return top[0] if top and top[0] in NOTES else f"other:{row.name}"


def how_to_get(rows: Sequence[Missing], root: Path, index: dict[str, Any]) -> list[str]:
    """One note per kind of missing dataset (MedMNIST, DRIVE, BCCD, MIT-BIH, a plugin's)."""
    kinds: dict[str, list[Missing]] = {}
    for row in rows:
        kinds.setdefault(_kind(row), []).append(row)
    notes = []
    for kind, group in kinds.items():
        names = ", ".join(row.name for row in group)
        if kind == "medmnist":
            notes.append(_medmnist(group, root, index))
        elif kind in NOTES:
            notes.append(NOTES[kind].format(root=root, names=names))
        else:
            notes.append(f"{names}: put its files at {root / group[0].looked_for} (where its "
                         f"data config, data/{group[0].name}.yaml, reads them).")
    return notes
