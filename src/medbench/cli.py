"""The `medbench` command: train, tune, explain, models, datasets."""

from __future__ import annotations

import argparse
import signal
import sys
from collections.abc import Callable

from medbench import signals
from medbench.errors import MedbenchError, disk_fault, interruption
from medbench.uris import redact

COMMANDS = {
    "train": "train one model: medbench train [hydra overrides], e.g. experiment=<name> seed=1"
             " (seeds=[0,1,2] and cv.folds=5 train one run per seed and fold)",
    "tune": "search hyperparameters with Optuna: medbench tune experiment=<name> search=<space>"
            " [study/sampler=gp study.n_trials=30 ...]",
    "runs": "tracked runs: medbench runs cleanup [overrides] marks runs whose process died "
            "KILLED",
    "reproduce": "train surveyed methods and refresh the leaderboards: medbench reproduce "
                 "<id|section|table|all> [--seeds 0 1 2] [--quick]",
    "leaderboard": "build the leaderboards from tracked runs: medbench leaderboard [--uri ...] "
                   "[--committed | --out DIR] [--all-configs]",
    "explain": "saliency maps of a run's test images, with a sanity check: medbench explain "
               "<run id> [explain.methods=[gradcam,gradcam_pp,scorecam] "
               "explain.target_layer=<layer> explain.indices=[0,5]]",
    "evaluate": "test a run's selected checkpoint on other data (external validation), as a "
                "new tracked run: medbench evaluate <run id> data=<dataset> [data.<key>=...]",
    "predict": "apply a run's selected checkpoint to new images (class probabilities, masks, "
               "boxes): medbench predict <run id | models:/<name>/<version>> "
               "<folder | image | manifest.csv> [--out file.csv]",
    "export": "a run's network as ONNX + TorchScript, checked against PyTorch: medbench export "
              "<run id> [--format onnx,torchscript] [--out DIR]",
    "register": "a run as a registered pyfunc model: medbench register <run id|study:S> [--name N]",
    "models": "list the model architectures: medbench models [--cost | <name> ...]",
    "datasets": "list the data sources and which data is present under the data root",
}


# internal: one tuning trial in its own process (a DDP launcher restarts it for each rank)
HIDDEN = {"trial": "medbench trial <spec.json> --result <out.json>"}


def _composed(command: Callable[[], int]) -> int:
    """Runs a command that composes a config; Hydra's own errors exit 2 with its message."""
    import yaml
    from hydra.errors import HydraException
    from omegaconf.errors import OmegaConfBaseException

    from medbench.config import yaml_error

    try:
        return command()
    except (HydraException, OmegaConfBaseException, yaml.YAMLError) as err:
        # a stop raised while Hydra composed is the stop, not a config error (fault injection:
        # a SIGTERM 0.08 s into `leaderboard` exited 2, a config error's status): exit 143
        if interruption(err) is not None:
            raise
        signals.check()
        message = yaml_error(err) if isinstance(err, yaml.YAMLError) else redact(str(err))
        print(f"error: {message}", file=sys.stderr)  # yaml: a file of conf/ being edited
        return 2


def _train(overrides: list[str]) -> int:
    from medbench.cluster import submit_jobs
    from medbench.config import compose_config
    from medbench.hydra_habits import composed_yaml, config_menu, split_flags, sweep
    from medbench.repeats import train_repeats
    from medbench.report import print_summary
    from medbench.train import train_run

    def run() -> int:
        flags, multirun, cfg_part, wants_help = split_flags(overrides)
        if wants_help:
            print(config_menu("train"))
            return 0
        if cfg_part:
            print(redact(composed_yaml(flags, cfg_part)))
            return 0
        jobs = sweep(flags) if multirun else [flags]
        if submit_jobs("train", jobs) is not None:
            return 0  # cluster=slurm: submitted, run on the cluster
        for job in jobs:
            if multirun:
                print(redact(f"multirun: {' '.join(job)}"))
            outcomes = train_repeats(compose_config(job), train_run)
            print_summary(outcomes[0][0], [metrics for _, _, metrics in outcomes],
                          [run_id for _, run_id, _ in outcomes])
        return 0

    return _composed(run)


def _tune(overrides: list[str]) -> int:
    from medbench.cluster import submit_jobs
    from medbench.errors import ConfigError
    from medbench.hydra_habits import composed_yaml, config_menu, split_flags
    from medbench.report import print_study
    from medbench.tuning.driver import tune

    def run() -> int:
        flags, multirun, cfg_part, wants_help = split_flags(overrides)
        if wants_help:
            print(config_menu("tune"))
        elif multirun:
            raise ConfigError("medbench tune takes no -m: the study is the sweep (search=<space>,"
                              " study.n_trials=<n>)")
        elif cfg_part:
            print(redact(composed_yaml(flags, cfg_part, command="tune")))
        elif submit_jobs("tune", [flags]) is None:
            print_study(tune(flags))
        return 0

    return _composed(run)


def _runs(args: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="medbench runs")
    parser.add_argument("action", choices=["cleanup"])
    parser.add_argument("overrides", nargs="*", help="Hydra overrides naming the store, e.g. "
                        "tracking.uri=sqlite:///results/mlflow.db")
    options = parser.parse_args(args)

    from pathlib import Path

    from mlflow.tracking import MlflowClient

    from medbench.atomic import remove_strays
    from medbench.config import compose_config
    from medbench.tracking.liveness import mark_killed, orphaned_runs
    from medbench.uris import reach

    def run() -> int:
        cfg = compose_config(options.overrides)
        tracking, results = cfg.tracking, Path(cfg.paths.results_dir)
        # temp files of writes a dead process never finished (kill -9 mid-checkpoint)
        strays = remove_strays(results, recursive=True) if results.is_dir() else []
        if strays:
            print(f"{len(strays)} temp file(s) of unfinished writes removed (first: "
                  f"{strays[0]})")
        reach(tracking.uri, tracking.get("timeout_s", 5), tracking.get("retries", 2),
              create=False)  # cleanup makes no store
        client = MlflowClient(tracking.uri)
        orphans = orphaned_runs(client)
        for orphan in orphans:
            reason = mark_killed(client, orphan)
            print(f"{orphan.info.run_id} ({orphan.info.run_name}): RUNNING -> KILLED, {reason}")
        print(f"{len(orphans)} run(s) marked KILLED (runs of other hosts are left as they are)")
        return 0

    return _composed(run)


def reproduce_parser() -> argparse.ArgumentParser:
    """The flags of ``medbench reproduce`` (the README's examples are checked against it)."""
    parser = argparse.ArgumentParser(prog="medbench reproduce")
    parser.add_argument("selectors", nargs="+", metavar="id|section|table|all")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--quick", action="store_true",
                        help="CPU smoke budget (1 short epoch); runs tagged medbench.budget=quick")
    parser.add_argument("--override", action="append", default=[], metavar="KEY=VALUE",
                        help="Hydra override for every run (repeatable)")
    parser.add_argument("-m", "--multirun", action="store_true", help="each combination of "
                        "the overrides' comma-separated values reproduces the entries once")
    parser.add_argument("--no-leaderboard", action="store_true")
    parser.add_argument("--committed", action="store_true",
                        help="refresh the tables committed to git, <results>/leaderboards "
                             "(default: <results>/leaderboards-local)")
    return parser


def _reproduce(args: list[str]) -> int:
    options = reproduce_parser().parse_args(args)

    from medbench.catalog import catalog, select
    from medbench.config import compose_config
    from medbench.errors import TrainingError
    from medbench.hydra_habits import sweep
    from medbench.reproduce import reproduce
    from medbench.train import train_run

    def run() -> int:
        entries = catalog()
        chosen = {e.id: e for s in options.selectors for e in select(s, entries)}
        failure = None
        for job in sweep(options.override) if options.multirun else [options.override]:
            try:
                reproduce(list(chosen.values()), options.seeds, job, train_run,
                          quick=options.quick)
            except TrainingError as err:  # the runs that finished still refresh the tables
                failure = failure or err
        if not options.no_leaderboard:
            from medbench.leaderboard.command import leaderboard

            cfg = compose_config(options.override)
            leaderboard(cfg.tracking.uri, cfg.paths.results_dir, committed=options.committed,
                        quick=options.quick)
        if failure is not None:
            raise failure
        return 0

    return _composed(run)


def _leaderboard(args: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="medbench leaderboard")
    parser.add_argument("--uri", help="tracking URI (default: tracking.uri of the config, "
                        "or MLFLOW_TRACKING_URI)")
    where = parser.add_mutually_exclusive_group()
    where.add_argument("--out", help="output folder (default: <results>/leaderboards-local, "
                       "your own tables, git-ignored)")
    where.add_argument("--committed", action="store_true", help="rebuild the tables "
                       "committed to git, <results>/leaderboards")
    parser.add_argument("--quick", action="store_true", help="tables of --quick runs only")
    parser.add_argument("--all-configs", action="store_true", help="a row per configuration "
                        "(default: a method's configuration with the most runs per dataset)")
    options = parser.parse_args(args)

    from medbench.config import compose_config
    from medbench.leaderboard.command import leaderboard
    from medbench.uris import reach

    def run() -> int:
        cfg = compose_config([])
        reach(options.uri or cfg.tracking.uri, cfg.tracking.get("timeout_s", 5),
              cfg.tracking.get("retries", 2), "--uri" if options.uri else "tracking.uri")
        leaderboard(options.uri or cfg.tracking.uri, cfg.paths.results_dir, options.out,
                    options.committed, options.quick, options.all_configs)
        return 0

    return _composed(run)


# commands whose module's ``main(args)`` takes the arguments; True: it composes a config (Hydra's
# own errors exit 2 with its message)
MODULE_COMMANDS = {"explain": ("medbench.explain.command", True),
                   "evaluate": ("medbench.evaluate", True),
                   "predict": ("medbench.predict", True),
                   "export": ("medbench.export", True),
                   "register": ("medbench.serving", True),
                   "models": ("medbench.listings.models", False),
                   "datasets": ("medbench.listings.datasets", False),
                   "trial": ("medbench.tuning.trial", False)}


def _module_command(name: str) -> Callable[[list[str]], int]:
    def run(args: list[str]) -> int:
        import importlib

        module, composes = MODULE_COMMANDS[name]
        command = importlib.import_module(module).main
        return _composed(lambda: command(args)) if composes else command(args)

    return run


def main(argv: list[str] | None = None) -> int:
    width = max(map(len, COMMANDS)) + 2
    parser = argparse.ArgumentParser(
        prog="medbench", description="Benchmark CNNs on medical images (Hydra + Lightning + "
        "MLflow).", formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="commands:\n" + "\n".join(f"  {k:<{width}}{v}" for k, v in COMMANDS.items()))
    parser.add_argument("command", choices=[*COMMANDS, *HIDDEN], metavar="command",
                        help=", ".join(COMMANDS))
    parser.add_argument("overrides", nargs=argparse.REMAINDER, help="Hydra overrides")
    args = parser.parse_args(argv)
    handler = {"train": _train, "tune": _tune, "runs": _runs,
               "reproduce": _reproduce, "leaderboard": _leaderboard}.get(
        args.command) or _module_command(args.command)
    signals.install()  # SIGTERM ends a run KILLED, as Ctrl-C does; neither mid-store-write
    try:
        return handler(args.overrides)
    except BaseException as err:
        signals.uninstall()  # the one line below is said whatever signal follows
        return _exit_code(err)
    finally:
        signals.uninstall()


def _exit_code(err: BaseException) -> int:
    """The exit status of a command that raised ``err``, once its one line is said; any other
    error raises on (a bug: its traceback is the report)."""
    stop = interruption(err)
    if stop is not None:
        name = getattr(stop, "signal_name", "SIGINT")
        print(f"error: stopped by {name}: a run in progress ended KILLED (resume=<run id> "
              f"continues it)", file=sys.stderr)
        return 128 + getattr(signal, name)
    # a full or read-only disk outside a run (a run converts its own)
    fault = disk_fault(err) if isinstance(err, OSError) else None
    if not isinstance(err, MedbenchError) and fault is None:
        raise err
    print(f"error: {redact(str(fault or err))}", file=sys.stderr)
    return 1

if __name__ == "__main__":
    sys.exit(main())
