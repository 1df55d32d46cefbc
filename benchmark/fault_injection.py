"""Fault injection: kill -9 or SIGTERM at a random moment of `medbench train`, `tune` and
`leaderboard`, then `medbench runs cleanup` and the command again (a training with
``resume=<run id>`` when it left a checkpoint), as a user would.

Each trial checks: no run left RUNNING once cleaned up, no truncated file (every checkpoint
loads, every table is whole, no temp file left), and final metrics identical to an
uninterrupted run of the same command (a study: the same value for every trial).

    python benchmark/fault_injection.py [--trials 10] [--seed 0] [--out results/fault_injection]

writes ``<out>.md`` (the figures) and ``<out>.json`` (every trial); tests/test_fault_injection.py
runs it with 10 trials per command. The commands run in processes forked from one that has
imported torch, Lightning, MLflow and Optuna once (multiprocessing's forkserver): a fresh
interpreter per command would spend most of each trial importing.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import random
import re
import shutil
import signal
import sqlite3
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

TRAIN = ["model=lenet5", "data.batch_size=16", "trainer.max_epochs=4", "seed=5",
         "+trainer.limit_train_batches=6", "+trainer.limit_val_batches=4",
         "trainer.enable_progress_bar=false", "runner.optimizer.lr=0.003"]
# a two-point grid: the study's trials are the same whoever samples them, before or after a crash
TUNE = [*(a for a in TRAIN if "max_epochs" not in a and "optimizer.lr" not in a),
        "trainer.max_epochs=1", "search=optimizer", "~search.params.lr",
        "~search.params.weight_decay", "~search.params.batch_size",
        "+search.params.rate={key:runner.optimizer.lr,type:categorical,choices:[0.003,0.01]}",
        "study/sampler=grid", "study/pruner=none", "study.n_trials=2", "study.name=faults",
        "study.heartbeat_interval=1", "study.grace_period=2"]
PRELOAD = ["torch", "lightning.pytorch", "mlflow", "mlflow.store.tracking.sqlalchemy_store",
           "alembic.command", "optuna", "optuna.visualization.matplotlib", "optuna.importance",
           "sklearn.ensemble", "sklearn.linear_model", "medmnist", "medbench.cli",
           "medbench.train", "medbench.tuning.driver", "medbench.leaderboard.command",
           *(f"medbench.tasks.{family}.family"
             for family in ("classification", "segmentation", "detection", "localization"))]
CAPTION = re.compile(r"Built \d{4}-\d\d-\d\d \d\d:\d\d UTC")
SIGNALS = (signal.SIGKILL, signal.SIGTERM)


def _child(argv: list[str], log: str) -> None:
    """A forked medbench command, its output appended to ``log``; exits with its status."""
    fd = os.open(log, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    os.dup2(fd, 1)
    os.dup2(fd, 2)
    from medbench.cli import main

    code = main(argv)
    sys.stdout.flush()
    sys.stderr.flush()
    sys.exit(code)


class Commands:
    """Starts medbench commands in children of one preloaded forkserver."""

    def __init__(self, log: Path) -> None:
        self.ctx = multiprocessing.get_context("forkserver")
        self.ctx.set_forkserver_preload(PRELOAD)
        self.log = log

    def start(self, argv: list[str]) -> multiprocessing.Process:
        with self.log.open("a") as handle:
            handle.write(f"\n$ medbench {' '.join(argv)}\n")
        process = self.ctx.Process(target=_child, args=(argv, str(self.log)))
        process.start()
        return process

    def run(self, argv: list[str]) -> int:
        process = self.start(argv)
        process.join()
        return process.exitcode

    def timed(self, argv: list[str]) -> float:
        """Runs ``argv`` uninterrupted (it must succeed); its wall seconds."""
        start = time.perf_counter()
        assert self.run(argv) == 0, f"medbench {' '.join(argv)} failed, see {self.log}"
        return time.perf_counter() - start

    def killed(self, argv: list[str], delay: float, sig: int) -> int:
        """Starts ``argv``, sends ``sig`` after ``delay`` s unless it ended; its exit status."""
        process = self.start(argv)
        process.join(delay)
        if process.is_alive():
            os.kill(process.pid, sig)
        process.join()
        return process.exitcode


def _rows(store: Path, query: str, *args: Any) -> list[tuple]:
    if not store.is_file():
        return []
    with sqlite3.connect(f"file:{store}?mode=ro", uri=True, timeout=30) as db:
        try:
            return db.execute(query, args).fetchall()
        except sqlite3.OperationalError:  # no schema yet
            return []


def runs(results: Path) -> dict[str, str]:
    """run id -> status, for the MLflow store of ``results``."""
    return dict(_rows(results / "mlflow.db", "SELECT run_uuid, status FROM runs"))


def test_metrics(results: Path, run_id: str) -> dict[str, float]:
    rows = _rows(results / "mlflow.db", "SELECT key, value FROM latest_metrics WHERE "
                 "run_uuid = ? AND key LIKE 'test/%'", run_id)
    return dict(rows)


def torn_files(results: Path) -> list[str]:
    """Files a kill must never leave half-written: checkpoints that do not load, stores that
    fail SQLite's integrity check."""
    import torch

    torn = []
    for path in results.rglob("*.ckpt"):
        try:
            torch.load(path, map_location="cpu", weights_only=True)
        except Exception as err:  # noqa: BLE001  (any failure to load is the finding)
            torn.append(f"{path.name} ({type(err).__name__})")
    for store in (results / "mlflow.db", results / "optuna.db"):
        if store.is_file() and _rows(store, "PRAGMA quick_check") != [("ok",)]:
            torn.append(store.name)
    return torn


def temp_files(folder: Path) -> list[str]:
    """Temp files of writes that never finished (a kill -9 leaves them; the next write of the
    same file, or `runs cleanup`, removes them)."""
    from medbench.atomic import TEMP_MARK

    return sorted(p.name for p in folder.rglob(f"*{TEMP_MARK}*"))


def _fresh(base: Path, name: str, template: Path | None) -> Path:
    results = base / name
    results.mkdir(parents=True)
    if template is not None:
        shutil.copyfile(template, results / "mlflow.db")
    return results


def _record(command: str, number: int, sig: int, delay: float, code: int, phase: str,
            **checks: Any) -> dict[str, Any]:
    return {"command": command, "trial": number, "signal": signal.Signals(sig).name,
            "delay_s": round(delay, 2), "exit": code, "phase": phase, **checks}


def train_trials(cmd: Commands, base: Path, trials: int, rng: random.Random,
                 template: Path | None) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    ref_dir = _fresh(base, "train-reference", template)
    seconds = cmd.timed(["train", *TRAIN, f"paths.results_dir={ref_dir}"])
    [ref_id] = runs(ref_dir)
    reference = test_metrics(ref_dir, ref_id)
    records = []
    for number in range(trials):
        results = _fresh(base, f"train-{number}", template)
        argv = ["train", *TRAIN, f"paths.results_dir={results}"]
        sig, delay = SIGNALS[number % 2], rng.uniform(0.0, 1.1 * seconds)
        code = cmd.killed(argv, delay, sig)
        at_kill, torn, temps = runs(results), torn_files(results), temp_files(results)
        phase = _train_phase(results, at_kill)
        cmd.run(["runs", "cleanup", f"paths.results_dir={results}"])
        running = sum(s == "RUNNING" for s in runs(results).values())
        action = "none"
        if "FINISHED" not in at_kill.values():
            resumable = [r for r in at_kill
                         if (results / "runs" / r / "checkpoints" / "last.ckpt").is_file()]
            action = "resume" if resumable else "restart"
            extra = [f"resume={resumable[0]}"] if resumable else []
            action += f" (exit {cmd.run(argv + extra)})"
        final = runs(results)
        finished = [r for r, s in final.items() if s == "FINISHED"]
        records.append(_record(
            "train", number, sig, delay, code, phase, action=action, torn=torn,
            temp_after_kill=len(temps), running_after_cleanup=running,
            running_at_end=sum(s == "RUNNING" for s in final.values()),
            left_at_end=torn_files(results) + temp_files(results),
            same_metrics=len(finished) == 1 and test_metrics(results, finished[0]) == reference))
    return {"seconds": round(seconds, 2), "metrics": reference}, records


def _train_phase(results: Path, at_kill: dict[str, str]) -> str:
    if not at_kill:
        return "set-up (no run yet)"
    [(run_id, status)] = at_kill.items()
    if status == "FINISHED":
        return "after the run ended"
    epochs = _rows(results / "mlflow.db", "SELECT COUNT(DISTINCT step) FROM metrics WHERE "
                   "run_uuid = ? AND key = 'epoch'", run_id)[0][0]
    return f"run open, {epochs} epoch(s) logged"


def _study(results: Path) -> tuple[dict[str, float], list[str]]:
    """Completed trials' parameter -> value, and the states of all trials."""
    store = results / "optuna.db"
    states = [s for (s,) in _rows(store, "SELECT state FROM trials")]
    values = _rows(store, "SELECT p.param_value, v.value FROM trials t JOIN trial_params p ON "
                   "p.trial_id = t.trial_id JOIN trial_values v ON v.trial_id = t.trial_id "
                   "WHERE t.state = 'COMPLETE'")
    return {str(p): v for p, v in values}, states


def tune_trials(cmd: Commands, base: Path, trials: int, rng: random.Random,
                template: Path | None) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    ref_dir = _fresh(base, "tune-reference", template)
    seconds = cmd.timed(["tune", *TUNE, f"paths.results_dir={ref_dir}"])
    reference, _ = _study(ref_dir)
    records = []
    for number in range(trials):
        results = _fresh(base, f"tune-{number}", template)
        argv = ["tune", *TUNE, f"paths.results_dir={results}"]
        sig, delay = SIGNALS[number % 2], rng.uniform(0.0, 1.1 * seconds)
        code = cmd.killed(argv, delay, sig)
        done, _ = _study(results)
        phase = f"{len(done)} of 2 trials complete" if runs(results) else "set-up (no run yet)"
        torn, temps = torn_files(results), temp_files(results)
        cmd.run(["runs", "cleanup", f"paths.results_dir={results}"])
        running = sum(s == "RUNNING" for s in runs(results).values())
        again = cmd.run(argv)
        values, states = _study(results)
        final = runs(results)
        parent = _rows(results / "mlflow.db", "SELECT r.status FROM runs r JOIN tags t ON "
                       "t.run_uuid = r.run_uuid WHERE t.key = 'medbench.kind' AND "
                       "t.value = 'study'")
        records.append(_record(
            "tune", number, sig, delay, code, phase, action=f"tune again (exit {again})",
            torn=torn, temp_after_kill=len(temps), running_after_cleanup=running,
            running_at_end=sum(s == "RUNNING" for s in final.values())
            + sum(s == "RUNNING" for s in states),
            left_at_end=torn_files(results) + temp_files(results),
            same_metrics=values == reference and parent == [("FINISHED",)]))
    return {"seconds": round(seconds, 2), "metrics": reference}, records


def _tables(folder: Path) -> dict[str, str]:
    from medbench.atomic import TEMP_MARK

    return {p.name: CAPTION.sub("Built <time> UTC", p.read_text(encoding="utf-8"))
            for p in sorted(folder.iterdir()) if p.is_file() and TEMP_MARK not in p.name}


def leaderboard_trials(cmd: Commands, base: Path, trials: int, rng: random.Random,
                       store: Path) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """Tables of the reference training's store, rewritten over the previous ones: after a
    kill each file is whole, the old tables or the new."""
    uri, ref_out = f"sqlite:///{store}", base / "tables-reference"
    seconds = cmd.timed(["leaderboard", "--uri", uri, "--out", str(ref_out)])
    reference = _tables(ref_out)
    records = []
    for number in range(trials):
        out = base / f"tables-{number}"
        shutil.copytree(ref_out, out)
        argv = ["leaderboard", "--uri", uri, "--out", str(out)]
        sig, delay = SIGNALS[number % 2], rng.uniform(0.0, 1.1 * seconds)
        before = {p.name: p.stat().st_mtime_ns for p in out.iterdir()}
        code = cmd.killed(argv, delay, sig)
        written = sum(p.stat().st_mtime_ns != before.get(p.name) for p in out.iterdir()
                      if p.name in before)
        now = _tables(out)
        torn = sorted(k for k in reference if now.get(k) != reference[k])
        temps = temp_files(out)
        again = cmd.run(argv)
        records.append(_record(
            "leaderboard", number, sig, delay, code,
            f"{written} of {len(reference)} files rewritten",
            action=f"leaderboard again (exit {again})", torn=torn,
            temp_after_kill=len(temps), running_after_cleanup=0, running_at_end=0,
            left_at_end=temp_files(out), same_metrics=_tables(out) == reference))
    return {"seconds": round(seconds, 2), "files": len(reference)}, records


def machine() -> str:
    from medbench.provenance import cpu_model

    flags = Path("/proc/cpuinfo").read_text() if Path("/proc/cpuinfo").is_file() else ""
    return (f"{cpu_model()}, {os.cpu_count()} cores, "
            f"{'AVX-512 BF16' if 'avx512_bf16' in flags else 'no AVX-512 BF16'}")


def ok(record: dict[str, Any]) -> bool:
    recovered = record["action"] == "none" or "(exit 0)" in record["action"]
    return (recovered and not record["torn"] and record["running_after_cleanup"] == 0
            and record["running_at_end"] == 0 and not record["left_at_end"]
            and record["same_metrics"])


def report(summary: dict[str, Any], records: list[dict[str, Any]], seconds: float) -> str:
    lines = ["# Fault injection: kill -9 / SIGTERM at random moments, then cleanup and resume", "",
             f"`{summary['command']}` on {summary['machine']}; {seconds:.0f} s in all "
             "(train and tune trials side by side). Each trial: the command killed after a "
             "random delay (uniform over 0 to 1.1x its uninterrupted time), "
             "`medbench runs cleanup`, then the command again (`resume=<run id>` for a "
             "training that left a checkpoint). Torn: a checkpoint that does not load, a store "
             "failing SQLite's integrity check, a table neither the old nor the new one. Temp "
             "files: what a kill -9 mid-write leaves beside the target, removed by the next "
             "write or the cleanup.", "",
             "| command | trials | all checks pass | torn files after the kill | temp files "
             "after the kill | RUNNING after cleanup | left at the end | same final metrics | "
             "uninterrupted s |", "|---|---|---|---|---|---|---|---|---|"]
    for name in ("train", "tune", "leaderboard"):
        mine = [r for r in records if r["command"] == name]
        lines.append(
            f"| {name} | {len(mine)} | {sum(map(ok, mine))} | "
            f"{sum(len(r['torn']) for r in mine)} | {sum(r['temp_after_kill'] for r in mine)} | "
            f"{sum(r['running_after_cleanup'] for r in mine)} | "
            f"{sum(len(r['left_at_end']) for r in mine)} | "
            f"{sum(r['same_metrics'] for r in mine)} | {summary[name]['seconds']} |")
    lines += ["", "| command | trial | signal | after s | exit | killed at | then | checks |",
              "|---|---|---|---|---|---|---|---|"]
    for r in records:
        lines.append(f"| {r['command']} | {r['trial']} | {r['signal']} | {r['delay_s']} | "
                     f"{r['exit']} | {r['phase']} | {r['action']} | "
                     f"{'pass' if ok(r) else 'FAIL: ' + json.dumps(r)} |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=10, help="per command")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=Path("results/fault_injection"))
    parser.add_argument("--template-store", type=Path, help="an empty MLflow SQLite store to "
                        "copy into each results folder (saves creating one per trial)")
    parser.add_argument("--work", type=Path, help="where the trials run (default: a temp dir)")
    options = parser.parse_args(argv)
    start = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="medbench-faults-") as tmp:
        base = options.work or Path(tmp)
        cmd = Commands(base / "commands.log")
        base.mkdir(parents=True, exist_ok=True)
        cmd.run(["--help"])  # starts the forkserver: the timings below are the commands'
        summary: dict[str, Any] = {
            "command": f"python benchmark/fault_injection.py --trials {options.trials} "
                       f"--seed {options.seed}" + (" --template-store <an empty store>"
                                                   if options.template_store else ""),
            "machine": machine()}
        with ThreadPoolExecutor(2) as pool:  # the two longest side by side, on 2+ cores
            trains = pool.submit(train_trials, cmd, base, options.trials,
                                 random.Random(options.seed), options.template_store)
            tunes = pool.submit(tune_trials, cmd, base, options.trials,
                                random.Random(options.seed + 1), options.template_store)
            summary["train"], records = trains.result()
            summary["tune"], more = tunes.result()
        records += more
        summary["leaderboard"], more = leaderboard_trials(
            cmd, base, options.trials, random.Random(options.seed + 2),
            base / "train-reference" / "mlflow.db")
        records += more
        seconds = time.perf_counter() - start
        options.out.parent.mkdir(parents=True, exist_ok=True)
        options.out.with_suffix(".json").write_text(json.dumps(
            {"summary": summary, "records": records, "seconds": seconds}, indent=1))
        options.out.with_suffix(".md").write_text(report(summary, records, seconds))
    print(options.out.with_suffix(".md").read_text())
    return 0 if all(map(ok, records)) else 1


if __name__ == "__main__":
    sys.exit(main())
