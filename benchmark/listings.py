"""How long `medbench models` and `medbench datasets` take, first call and later calls.

    python benchmark/listings.py --reps 3            # -> results/perf/listings.md
    python benchmark/listings.py --reps 3 --cost     # also `medbench models --cost`

Each command runs as the installed `medbench` entry point in a fresh process (imports
included) against an empty cache folder of its own (``$MEDBENCH_CACHE_DIR``, removed after):
the first call builds the registry snapshot (it imports the model zoo, or the data sources),
every later call reads it. 'later' is the median of ``--reps`` calls after the first. Target:
under 3 s for a later call of `models` and `datasets`.
"""

from __future__ import annotations

import argparse
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from medbench.provenance import cpu_model

REPO = Path(__file__).resolve().parents[1]
OUTPUT = REPO / "results" / "perf" / "listings.md"
TARGET_S = 3.0


def once(command: list[str], env: dict[str, str]) -> float:
    """Wall seconds of one `medbench ...` call."""
    start = time.perf_counter()
    subprocess.run([str(Path(sys.executable).with_name("medbench")), *command], env=env,
                   capture_output=True, check=True)
    return time.perf_counter() - start


def measure(command: list[str], reps: int) -> tuple[float, float, float, float]:
    """(first call, median, min, max of the later calls) with a fresh cache."""
    folder = tempfile.mkdtemp(prefix="medbench-listings-")
    env = {**os.environ, "MEDBENCH_CACHE_DIR": folder}
    try:
        first = once(command, env)
        later = [once(command, env) for _ in range(reps)]
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    return first, statistics.median(later), min(later), max(later)


def report(reps: int, cost: bool) -> str:
    commands = [["models"], ["datasets"], *([["models", "--cost"]] if cost else [])]
    rows, verdicts = [], []
    for command in commands:
        first, median, low, high = measure(command, reps)
        rows.append(f"| `medbench {' '.join(command)}` | {first:.1f} | {median:.2f} | "
                    f"{low:.2f} to {high:.2f} |")
        if command in (["models"], ["datasets"]):
            verdicts.append(f"`{' '.join(command)}` {'met' if median < TARGET_S else 'NOT met'}")
    return "\n".join([
        "# `medbench models` and `medbench datasets`: time to answer", "",
        f"Command: `python benchmark/listings.py --reps {reps}{' --cost' if cost else ''}`.",
        f"Machine: {cpu_model()}, {os.cpu_count()} cores; Python {platform.python_version()}; "
        f"OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS', 'unset')}; data root "
        f"{os.environ.get('MEDBENCH_DATA_DIR', '(default)')}.", "",
        "Fresh process per call, empty cache folder per command. 'first' builds the snapshot "
        "(and, for --cost, every network once); 'later' reads the cache.", "",
        "| command | first s | later: median s | later: range s |", "|---|---|---|---|",
        *rows, "", f"Target: under {TARGET_S:.0f} s for a later call: {', '.join(verdicts)}.", ""])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--cost", action="store_true", help="also time `models --cost`")
    args = parser.parse_args()
    text = report(args.reps, args.cost)
    OUTPUT.parent.mkdir(parents=True, exist_ok=True)
    OUTPUT.write_text(text)
    sys.stdout.write(text)


if __name__ == "__main__":
    main()
