"""The project's own cache folder for derived files (unpacked archives, prepared arrays).

The data root (``$MEDBENCH_DATA_DIR``) may be read-only, so nothing is ever written beside the
data: derived files go under ``$MEDBENCH_CACHE_DIR``, else ``$XDG_CACHE_HOME/medbench``, else
``~/.cache/medbench``.
"""

from __future__ import annotations

import os
from pathlib import Path


def cache_dir(*parts: str) -> Path:
    """The cache folder (or a sub-folder of it, created on first use)."""
    base = os.environ.get("MEDBENCH_CACHE_DIR")
    if not base:
        xdg = os.environ.get("XDG_CACHE_HOME")
        base = str(Path(xdg) / "medbench") if xdg else str(Path.home() / ".cache" / "medbench")
    path = Path(base).joinpath(*parts)
    path.mkdir(parents=True, exist_ok=True)
    return path
