"""Where a result came from: the code's commit and the machine it ran on (kept free of heavy
imports at module level: the leaderboard, which needs no torch or Lightning, stamps its tables
with the commit)."""

from __future__ import annotations

import os
import platform
import subprocess
from collections.abc import Mapping
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


def cpu_model() -> str:
    """The CPU's marketing name (Linux's /proc/cpuinfo, else ``platform``) and architecture."""
    name = platform.processor() or "unknown CPU"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                name = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return f"{name} ({platform.machine()})"


def machine_tags(accelerator: str = "cpu") -> dict[str, str]:
    """The hardware and torch build a run uses, as ``machine.*`` tags (benchmark tables and
    timings cite them). ``accelerator`` is the trainer's; 'auto' counts as a GPU when one is
    visible, as Lightning picks it."""
    import torch  # lazy: see the module docstring

    if accelerator in ("gpu", "cuda", "auto") and torch.cuda.is_available():
        device = f"{torch.cuda.get_device_name(0)} ({torch.cuda.device_count()} visible)"
    elif accelerator in ("mps", "auto") and torch.backends.mps.is_available():
        device = "Apple MPS"
    else:
        device = "cpu" if accelerator == "auto" else accelerator
    return {
        "machine.cpu": cpu_model(),
        "machine.cores": str(os.cpu_count()),
        "machine.threads": str(torch.get_num_threads()),
        "machine.torch": torch.__version__,
        "machine.accelerator": device,
    }


def describe_machine(tags: Mapping[str, str]) -> str:
    """One line from :func:`machine_tags`; 'not recorded' for runs logged before them."""
    if "machine.cpu" not in tags:
        return "not recorded"
    device = tags["machine.accelerator"]
    return (f"{'CPU only' if device == 'cpu' else device}; {tags['machine.cpu']}, "
            f"{tags['machine.cores']} cores, torch {tags['machine.torch']} "
            f"({tags['machine.threads']} threads)")
