"""One prepared GPU check, run step by step by ``benchmark/gpu_check.sh``: each step its own
bounded process writing ``<out>/steps/<step>.json`` (its figures, or its error in one line);
``--step report`` merges them into ``<out>/gpu_check.json`` and ``gpu_check.md``.

    python benchmark/gpu_check.py --step amp --device cuda --out results/gpu
    python benchmark/gpu_check.py --step amp --device cpu --tiny      # CPU smoke mode

Steps (``gpu_check_steps.py`` holds amp and loader): ``facts`` (nvidia-smi queries, torch
and CUDA builds, CPU), ``amp`` (training images/s of ResNet-50 at 224 px and medbench's U-Net
at 512 px on synthetic batches: fp32, the plain loop, against bf16 autocast and fp16 autocast
+ GradScaler), ``loader`` (ResNet-18 fed by medbench's real DataLoader while a thread samples
GPU utilisation), ``ddp`` (a short ``medbench train`` with the ddp trainer on one device).
Random init only: nothing is downloaded. No GPU setting is ever changed.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import re
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).parent))
from gpu_check_steps import (  # noqa: E402
    REPO,
    NoGpu,
    amp_step,
    data_root,
    loader_step,
    nvidia_smi,
    one_line,
    plan,
    require_data_root,
)

STEPS = ("facts", "amp", "loader", "ddp")
TIMED_OUT = {124, 137}  # timeout(1)'s TERM, and KILL after the grace period


def facts_step(args: argparse.Namespace) -> dict[str, Any]:
    """Machine facts: nvidia-smi's GPU rows, torch and CUDA builds, CPU model and cores."""
    import torch

    from medbench.provenance import describe_machine, machine_tags

    tags = machine_tags("gpu" if args.device == "cuda" else "cpu")
    root = data_root()
    out: dict[str, Any] = {"machine": describe_machine(tags), "cpu": tags["machine.cpu"],
                           "cores": os.cpu_count(), "torch": torch.__version__,
                           "cuda_build": torch.version.cuda, "python": sys.version.split()[0],
                           "data_root": str(root) if root else None}
    try:
        out["nvidia_smi"] = [dict(zip(("name", "driver", "memory_mib"), row, strict=False))
                             for row in nvidia_smi("name,driver_version,memory.total")]
    except (OSError, subprocess.SubprocessError) as err:
        out["nvidia_smi"] = f"not available ({one_line(err)})"
    if args.device == "cuda":
        if not torch.cuda.is_available():
            raise NoGpu(f"torch {torch.__version__} (CUDA build {torch.version.cuda}) sees no "
                        "CUDA device: torch.cuda.is_available() is False")
        props = torch.cuda.get_device_properties(0)
        out.update(gpu=props.name, capability=f"{props.major}.{props.minor}",
                   gpu_memory_gib=round(props.total_memory / 2**30, 1),
                   visible_gpus=torch.cuda.device_count(), cudnn=torch.backends.cudnn.version(),
                   bf16_supported=torch.cuda.is_bf16_supported(),
                   tf32_matmul=torch.backends.cuda.matmul.allow_tf32,
                   tf32_cudnn=torch.backends.cudnn.allow_tf32)
    return out


def ddp_overrides(device: str, results: Path, batches: int) -> list[str]:
    """A short real `medbench train` with the ddp trainer on one device (BreastMNIST)."""
    accelerator = "gpu" if device == "cuda" else "cpu"
    return ["trainer=ddp", f"trainer.accelerator={accelerator}", "trainer.devices=1",
            "trainer.strategy=ddp", "trainer.max_epochs=1",
            f"+trainer.limit_train_batches={batches}", "+trainer.limit_val_batches=2",
            "trainer.enable_progress_bar=false", f"paths.results_dir={results}",
            "name=gpu_check", "budget=debug", "verbose=true"]


def ddp_step(args: argparse.Namespace) -> dict[str, Any]:
    """Runs ``python -m medbench train`` with :func:`ddp_overrides`; exit code, wall time,
    test/auc (read from the run's SQLite store) and the process group's backend."""
    if args.device == "cpu" and not args.ddp_on_cpu:
        return {"skipped": "a medbench train takes ~35 s on this CPU: --ddp-on-cpu runs it "
                           "(gloo)"}
    root = require_data_root()
    env = {**os.environ, "MEDBENCH_OFFLINE": "1", "MEDBENCH_DATA_DIR": str(root),
           "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO / "src"),
                                                       os.environ.get("PYTHONPATH")]))}
    env.pop("MLFLOW_TRACKING_URI", None)
    with tempfile.TemporaryDirectory() as tmp:
        overrides = ddp_overrides(args.device, Path(tmp), plan(args.tiny)["ddp_batches"])
        start = time.perf_counter()
        try:
            proc = subprocess.run([sys.executable, "-m", "medbench", "train", *overrides],
                                  capture_output=True, text=True, env=env, cwd=REPO,
                                  timeout=args.ddp_timeout)
        except subprocess.TimeoutExpired:
            raise TimeoutError(f"medbench train still running after {args.ddp_timeout:.0f} s: "
                               "stopped") from None
        out = {"exit_code": proc.returncode, "wall_s": round(time.perf_counter() - start, 1),
               "overrides": " ".join(o for o in overrides if "results_dir" not in o)}
        log = proc.stdout + proc.stderr
        (args.out / "steps" / "ddp_train.log").write_text(log[-20000:])
        backend = re.search(r"distributed_backend=(\w+)", log)
        device = re.search(r"GPU available: .*", log)
        out["backend"] = backend.group(1) if backend else None
        out["lightning_device"] = device.group(0).strip() if device else None
        out["test_auc"] = None
        with contextlib.suppress(sqlite3.Error):
            with contextlib.closing(sqlite3.connect(Path(tmp) / "mlflow.db")) as db:
                row = db.execute("SELECT value FROM latest_metrics WHERE key='test/auc'"
                                 ).fetchone()
            out["test_auc"] = round(row[0], 4) if row else None
    if proc.returncode:
        lines = [line for line in proc.stderr.splitlines() if line.strip()]
        out["error"] = (lines[-1] if lines else f"exit {proc.returncode}")[:300]
    return out


def step_result(folder: Path, name: str) -> dict[str, Any]:
    """One step's payload, with the wrapper's exit code and wall time; an error line when the
    process left no result."""
    rc_file, json_file = folder / f"{name}.rc", folder / f"{name}.json"
    rc, wall, limit = (rc_file.read_text().split() + ["", "", ""])[:3] if rc_file.is_file() \
        else ("", "", "")
    try:
        result = json.loads(json_file.read_text())
    except (OSError, ValueError):
        result = {"status": "error"}
        if rc == "skip":
            result = {"status": "skipped", "skipped": "no time left in the overall budget"}
        elif rc.isdigit() and int(rc) in TIMED_OUT:
            result["error"] = f"timed out after its {limit} s limit (stopped)"
        elif rc:
            log = folder / f"{name}.log"
            lines = [ln for ln in log.read_text(errors="replace").splitlines() if ln.strip()] \
                if log.is_file() else []
            result["error"] = f"exited {rc} without a result: {lines[-1] if lines else ''}"[:300]
        else:
            result = {"status": "not run"}
    if rc.isdigit():
        result.update(rc=int(rc), wall_s=int(wall or 0), limit_s=int(limit or 0))
    return result


def _num(value: Any, fmt: str = "{:,.1f}") -> str:
    return fmt.format(value) if isinstance(value, int | float) else "–"


def markdown(data: dict[str, Any]) -> str:
    """The readable summary of :func:`report`'s JSON."""
    steps = data["steps"]
    facts, amp, loader, ddp = (steps[name] for name in STEPS)
    lines = [f"# GPU check ({data['mode']}, {data['generated']})", ""]
    if facts.get("status") == "ok":
        smi = facts.get("nvidia_smi")
        gpus = "; ".join(f"{r.get('name')}, driver {r.get('driver')}, {r.get('memory_mib')} MiB"
                         for r in smi) if isinstance(smi, list) else smi
        lines += [f"- machine: {facts.get('machine')}",
                  f"- nvidia-smi: {gpus}",
                  f"- torch {facts.get('torch')}, CUDA build {facts.get('cuda_build')}, cuDNN "
                  f"{facts.get('cudnn', '–')}, compute capability {facts.get('capability', '–')}"
                  f", bf16 {facts.get('bf16_supported', '–')}, TF32 matmul/cuDNN "
                  f"{facts.get('tf32_matmul', '–')}/{facts.get('tf32_cudnn', '–')}",
                  f"- CPU: {facts.get('cpu')}, {facts.get('cores')} cores; Python "
                  f"{facts.get('python')}; data root {facts.get('data_root')}", ""]
    if amp.get("rows"):
        lines += [f"## Training throughput (synthetic batches, Adam, {amp['memory_format']}, "
                  f"{amp['steps']} timed steps after {amp['warmup']} warm-up; fp32 = the plain "
                  "loop)", "",
                  "| model | input | batch | precision | images/s | vs fp32 | ms/step | peak GiB |"
                  " note |", "|---|---|---|---|---|---|---|---|---|"]
        for r in amp["rows"]:
            lines.append(f"| {r['model']} | {r['size']} px | {r['batch']} | {r['precision']} | "
                         f"{_num(r.get('images_per_s'))} | {_num(r.get('vs_fp32'), '{:.2f}x')} |"
                         f" {_num(r.get('step_ms'))} | {_num(r.get('peak_gib'), '{:.2f}')} | "
                         f"{r.get('error') or r.get('skipped') or ''} |")
        lines.append("")
    if loader.get("rows"):
        lines += [f"## Loader ({loader['model']} {loader['precision']} on {loader['dataset']} "
                  f"resized to {loader['resize']} px, augment={loader['augment']}, batch "
                  f"{loader['batch']}, {loader['batches']} timed batches)", "",
                  "| workers | images/s | util mean % | util median % | samples | loader wait |"
                  " source / note |", "|---|---|---|---|---|---|---|"]
        for r in loader["rows"]:
            lines.append(f"| {r['num_workers']} | {_num(r.get('images_per_s'))} | "
                         f"{_num(r.get('util_mean'))} | {_num(r.get('util_median'))} | "
                         f"{r.get('util_samples', '–')} | "
                         f"{_num(r.get('loader_wait_fraction'), '{:.0%}')} | "
                         f"{r.get('error') or r.get('util_source', '')} |")
        lines.append("")
    if "exit_code" in ddp:
        lines += ["## 1-device DDP run (`medbench train`)", "",
                  f"exit {ddp['exit_code']} in {ddp['wall_s']} s, backend "
                  f"{ddp.get('backend') or 'not seen'}, test/auc "
                  f"{_num(ddp.get('test_auc'), '{:.4f}')}"
                  f"{'; ' + ddp['error'] if ddp.get('error') else ''}",
                  f"overrides: `{ddp['overrides']}`", ""]
    lines += ["## Steps", "", "| step | status | seconds | limit s | note |",
              "|---|---|---|---|---|"]
    for name in STEPS:
        s = steps[name]
        lines.append(f"| {name} | {s.get('status')} | {s.get('wall_s', s.get('seconds', '–'))} |"
                     f" {s.get('limit_s', '–')} | {s.get('error') or s.get('skipped') or ''} |")
    lines += ["", f"exit {data['exit']['code']}: {data['exit']['reason']}"]
    return "\n".join(lines) + "\n"


def outcome(steps: dict[str, dict[str, Any]], mode: str) -> tuple[int, str]:
    """2: no GPU; 1: no step measured anything; 0: the steps ran (their errors recorded)."""
    facts = steps["facts"]
    if facts.get("rc") == 2 or facts.get("status") != "ok":
        return 2 if facts.get("rc") == 2 else 1, f"facts step failed: {facts.get('error')}"
    measured = [name for name in STEPS[1:] if steps[name].get("status") == "ok"]
    if not measured:
        return 1, "no measuring step produced figures (see the steps table)"
    failed = [name for name in STEPS[1:] if steps[name].get("status") == "error"]
    note = f"; failed: {', '.join(failed)}" if failed else ""
    return 0, f"{mode}: measured {', '.join(measured)}{note}"


def report(out: Path, mode: str) -> int:
    """Writes ``out``/gpu_check.json and .md from ``out``/steps, prints the md; the exit code
    of :func:`outcome`."""
    steps = {name: step_result(out / "steps", name) for name in STEPS}
    code, reason = outcome(steps, mode)
    data = {"mode": mode, "generated": time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime()),
            "steps": steps, "exit": {"code": code, "reason": reason}}
    (out / "gpu_check.json").write_text(json.dumps(data, indent=1, default=str) + "\n")
    text = markdown(data)
    (out / "gpu_check.md").write_text(text)
    print(text, end="")
    return code


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--step", choices=[*STEPS, "report"], required=True)
    parser.add_argument("--device", choices=["cuda", "cpu"], default="cuda")
    parser.add_argument("--tiny", action="store_true", help="tiny sizes (CPU smoke mode)")
    parser.add_argument("--out", type=Path, default=Path(os.environ.get("OUT") or
                                                         REPO / "results" / "gpu"))
    parser.add_argument("--steps", type=int, default=None, help="timed steps per precision")
    parser.add_argument("--workers", type=int, nargs="+", default=None,
                        help="loader worker counts (default: 0 8; tiny: 0 2)")
    parser.add_argument("--ddp-on-cpu", action="store_true", help="run the ddp step on CPU")
    parser.add_argument("--ddp-timeout", type=float, default=150.0)
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    """Runs one step into ``<out>/steps/<step>.json``: exit 0 when its figures (or its own
    error) were written, 2 when CUDA was asked for and there is none."""
    args = parse_args(argv)
    if args.step == "report":
        return report(args.out, "cpu-smoke" if args.device == "cpu" else "gpu")
    os.environ["MEDBENCH_OFFLINE"] = "1"  # never download data
    os.environ["NO_ALBUMENTATIONS_UPDATE"] = "1"  # its import would ask PyPI for a version
    (args.out / "steps").mkdir(parents=True, exist_ok=True)
    steps = {"facts": facts_step, "amp": amp_step, "loader": loader_step, "ddp": ddp_step}
    start, code = time.perf_counter(), 0
    try:
        payload = {"status": "ok", **steps[args.step](args)}
        if "skipped" in payload or "error" in payload:  # ddp: its run's exit code and error
            payload["status"] = "skipped" if "skipped" in payload else "error"
    except NoGpu as err:
        payload, code = {"status": "error", "error": str(err)}, 2
        print(f"gpu_check: no GPU: {err}", file=sys.stderr)
    except Exception as err:  # recorded in one line; the other steps still run
        payload, code = {"status": "error", "error": one_line(err)}, 1
        print(f"gpu_check: step {args.step} failed: {payload['error']}", file=sys.stderr)
    payload["seconds"] = round(time.perf_counter() - start, 1)
    path = args.out / "steps" / f"{args.step}.json"
    path.with_suffix(".tmp").write_text(json.dumps(payload, indent=1, default=str))
    path.with_suffix(".tmp").replace(path)
    return code


if __name__ == "__main__":
    sys.exit(main())
