"""The project's own cache folder for derived files (unpacked archives, prepared arrays,
registry snapshots).

The data root (``$MEDBENCH_DATA_DIR``) may be read-only, so nothing is ever written beside the
data: derived files go under ``$MEDBENCH_CACHE_DIR``, else ``$XDG_CACHE_HOME/medbench``, else
``~/.cache/medbench``. Import-light (a listing reads its snapshot without loading torch).
"""

from __future__ import annotations

import os
from pathlib import Path


def cache_root() -> Path:
    """The cache folder (not created here)."""
    base = os.environ.get("MEDBENCH_CACHE_DIR")
    if base:
        return Path(base)
    xdg = os.environ.get("XDG_CACHE_HOME")
    return Path(xdg) / "medbench" if xdg else Path.home() / ".cache" / "medbench"


def cache_dir(*parts: str) -> Path:
    """The cache folder (or a sub-folder of it, created on first use)."""
    path = cache_root().joinpath(*parts)
    path.mkdir(parents=True, exist_ok=True)
    return path
