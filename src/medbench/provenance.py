"""Where a result came from: the code's commit (kept free of heavy imports: the leaderboard,
which needs no torch or Lightning, stamps its tables with it)."""

from __future__ import annotations

import subprocess
from pathlib import Path


def git_commit(repo: Path) -> str:
    """HEAD commit, suffixed '-dirty' when tracked files changed; 'unknown' outside git."""
    try:
        run = dict(cwd=repo, capture_output=True, text=True, timeout=10)
        sha = subprocess.run(["git", "rev-parse", "HEAD"], check=True, **run).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "-uno"], **run).stdout.strip()
        return f"{sha}-dirty" if dirty else sha
    except (OSError, subprocess.SubprocessError):
        return "unknown"
