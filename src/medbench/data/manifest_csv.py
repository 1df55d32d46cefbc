"""The text of a CSV manifest, read strictly: UTF-8 (a byte-order mark allowed), one header
whose names are compared without case or surrounding spaces, and rows of exactly the header's
cells. Every problem is a one-line :class:`DataError` naming the file and line."""

from __future__ import annotations

import csv
import io
import warnings
from collections.abc import Sequence
from pathlib import Path

from medbench.data.label_checks import LabelWarning
from medbench.errors import DataError


def read_manifest(path: Path, required: Sequence[str] = ("path", "label"),
                  expected: str = "path,label[,patient_id][,split]") -> list[dict[str, str]]:
    """Rows as dicts of the header's (lower-case) names, plus ``where`` (``<file>:<line>``).
    Rows whose cells are all empty (spreadsheet exports end with some) are skipped."""
    if not path.is_file():
        raise DataError(f"data.manifest: file not found: {path}")
    data = path.read_bytes()
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as err:
        line = data[:err.start].count(b"\n") + 1
        raise DataError(f"{path}:{line}: not UTF-8 text (byte 0x{data[err.start]:02x}; a "
                        "Latin-1 or Windows-1252 file?): save the manifest as UTF-8") from None
    reader = csv.reader(io.StringIO(text, newline=""))
    try:
        header = next(reader, None)
        if header is None:
            raise DataError(f"{path}: empty file; expected a header {expected}")
        names = _header(path, header, required, expected)
        rows, skipped = [], 0
        for cells in reader:
            where = f"{path}:{reader.line_num}"
            if not any(cell.strip() for cell in cells):
                skipped += bool(cells)
                continue
            if len(cells) != len(names):
                hint = " (a comma inside an unquoted cell?)" if len(cells) > len(names) else ""
                raise DataError(f"{where}: {len(cells)} cell(s) but the header has "
                                f"{len(names)} ({','.join(names)}){hint}")
            rows.append({**dict(zip(names, cells, strict=True)), "where": where})
    except csv.Error as err:
        raise DataError(f"{path}:{reader.line_num}: not readable as CSV ({err})") from None
    if skipped:
        warnings.warn(f"{path}: {skipped} row(s) of empty cells skipped", LabelWarning,
                      stacklevel=2)
    if not rows:
        raise DataError(f"{path}: no rows")
    return rows


def _header(path: Path, header: list[str], required: Sequence[str], expected: str) -> list[str]:
    names = [name.strip().lower() for name in header]
    twice = sorted({name for name in names if name and names.count(name) > 1})
    if twice:
        raise DataError(f"{path}: column(s) {twice} appear more than once in the header")
    missing = sorted(set(required) - set(names))
    if missing:
        seps = [sep for sep in (";", "\t") if len(header) == 1 and sep in header[0]]
        hint = (f" (the header looks {seps[0]!r}-separated; medbench reads comma-separated "
                "files)") if seps else ""
        raise DataError(f"{path}: missing column(s) {missing}; expected {expected}{hint}")
    known = {*required, "patient_id", "split"}
    changed = [h for h, name in zip(header, names, strict=True) if h != name and name in known]
    if changed:
        warnings.warn(f"{path}: header name(s) {changed} read as "
                      f"{[h.strip().lower() for h in changed]}", LabelWarning, stacklevel=3)
    return names
