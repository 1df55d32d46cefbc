"""What predictive uncertainty (``runner.uncertainty``) adds to a classification test pass.

    python benchmark/uncertainty_overhead.py --reps 5   # -> results/perf/uncertainty_overhead.md

Two networks trained one short epoch (8 steps of 128) on the real PneumoniaMNIST (624 test
images), each tested from its checkpoint by Lightning's test loop, repetitions alternating:
- the small-kernel CNN (survey 4.1.2; it has dropout): a plain test pass, then
  ``runner.uncertainty=mc_dropout`` with ``runner.uncertainty_passes`` of 10 and 20;
- ResNet-18 (28) (no dropout): a plain test pass, then ``runner.uncertainty=tta`` (ttach's D4,
  8 views of each image).
A pass's cost is the forward passes (T of them) plus what does not grow with T (data loading,
metrics, the per-sample outputs), so the ratio to a plain pass is below T where loading weighs.
Load from other processes moves single passes; medians of alternating repetitions are given.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
from pathlib import Path

import lightning.pytorch as pl
from calibration_overhead import test_pass, trained

from medbench.config import REPO_ROOT
from medbench.provenance import describe_machine, machine_tags

OUTPUT = REPO_ROOT / "results" / "perf" / "uncertainty_overhead.md"
# network -> (runner.uncertainty, runner.uncertainty_passes) settings; None: a plain pass
SETTINGS = {"small_kernel_cnn": [(None, 1), ("mc_dropout", 10), ("mc_dropout", 20)],
            "resnet18_28": [(None, 1), ("tta", 8)]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reps", type=int, default=5)
    parser.add_argument("--data", default="pneumoniamnist")
    args = parser.parse_args()
    seconds: dict[tuple[str, str | None, int], list[float]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        for model, settings in SETTINGS.items():
            cfg, checkpoint = trained(Path(tmp) / model, args.data, model)
            test_pass(cfg, checkpoint, True, None)  # warm-up: imports, first allocations
            for _ in range(args.reps):
                for method, passes in settings:
                    took, _ = test_pass(cfg, checkpoint, True, None, method, passes)
                    seconds.setdefault((model, method, passes), []).append(took)
    lines = [
        "# Predictive uncertainty: overhead on a test pass", "",
        f"Machine: {describe_machine(machine_tags())}, Lightning {pl.__version__}. 8 training "
        f"steps on the real {args.data}, each network tested from its checkpoint.",
        f"Command: `python benchmark/uncertainty_overhead.py --reps {args.reps} --data "
        f"{args.data}`; repetitions alternate the settings of a network.", "",
        "| network | runner.uncertainty | passes | seconds per test pass (median, min, max) "
        "| vs the plain pass |", "|---|---|---|---|---|"]
    for model, settings in SETTINGS.items():
        plain = statistics.median(seconds[(model, None, 1)])
        for method, passes in settings:
            values = seconds[(model, method, passes)]
            median = statistics.median(values)
            ratio = "" if method is None else f"x{median / plain:.2f}"
            lines.append(f"| {model} | {method or 'null'} | {passes} | {median:.3f} "
                         f"({min(values):.3f}, {max(values):.3f}) | {ratio} |")
    OUTPUT.parent.mkdir(parents=True, exist_ok=True)
    OUTPUT.write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
