"""The flags a lightning-hydra-template user types: ``--help``, ``--cfg job|all``, ``-m``.

`medbench train` composes with Hydra's compose API (not ``@hydra.main``, whose process-wide
state and output folders fight MLflow's run folders), so Hydra's own command-line flags are
served here: the menu of config groups, the composed config, and the basic sweeper's
expansion of comma-separated overrides into one run per combination.
"""

from __future__ import annotations

from omegaconf import OmegaConf

CFG_PARTS = ("job", "all")


def config_menu(command: str = "train") -> str:
    """``medbench <command> --help``: each config group with its options, as Hydra lists them."""
    from medbench.config import config_groups

    lines = [f"usage: medbench {command} [-m] [--cfg job|all] [group=option ...] "
             f"[key=value ...]",
             "",
             "  -m, --multirun  one run per combination of comma-separated values "
             "(seed=0,1 model=lenet5,resnet18_28)",
             "  --cfg job|all   print the composed config and exit (all: with paths and "
             "tracking resolved)",
             "",
             "config groups (pick one with group=option):"]
    tune_only = {"search", "study"} if command == "train" else set()
    for group, options in sorted(config_groups(command).items()):
        if group in tune_only:
            continue
        lines.append(f"  {group}: {', '.join(options)}")
    lines += ["", "examples:",
              f"  medbench {command} experiment=breastmnist_resnet18 seed=1",
              f"  medbench {command} debug=fast_dev_run",
              f"  medbench {command} -m seed=0,1,2 model=lenet5,resnet18_28"]
    return "\n".join(lines)


def split_flags(args: list[str]) -> tuple[list[str], bool, str | None, bool]:
    """Overrides with ``-m/--multirun``, ``--cfg <part>`` and ``-h/--help`` taken out.

    Raises ``ConfigError`` for ``--cfg`` without ``job`` or ``all`` and for an unknown flag.
    """
    from medbench.errors import ConfigError

    overrides, multirun, cfg_part, wants_help = [], False, None, False
    items = iter(args)
    for arg in items:
        if arg in ("-m", "--multirun"):
            multirun = True
        elif arg in ("-h", "--help"):
            wants_help = True
        elif arg == "--cfg" or arg.startswith("--cfg="):
            cfg_part = arg.partition("=")[2] or next(items, "")
            if cfg_part not in CFG_PARTS:
                raise ConfigError(f"--cfg takes one of {', '.join(CFG_PARTS)}, got "
                                  f"'{cfg_part}'")
        elif arg.startswith("-"):
            raise ConfigError(f"unknown flag '{arg}': expected -m, --cfg job|all or --help "
                              f"(overrides are written key=value)")
        else:
            overrides.append(arg)
    return overrides, multirun, cfg_part, wants_help


def composed_yaml(overrides: list[str], part: str, command: str = "train") -> str:
    """The config a run would use: ``job`` as composed, ``all`` with interpolations resolved."""
    from medbench.config import compose_config

    cfg = compose_config(overrides, config_name=command)
    return OmegaConf.to_yaml(cfg, resolve=part == "all")


def sweep(overrides: list[str]) -> list[list[str]]:
    """Hydra's basic sweeper: one override list per combination of the comma-separated values."""
    from hydra._internal.core_plugins.basic_sweeper import BasicSweeper
    from hydra.core.override_parser.overrides_parser import OverridesParser

    parsed = OverridesParser.create().parse_overrides(overrides)
    return [job for batch in BasicSweeper.split_arguments(parsed, None) for job in batch]

