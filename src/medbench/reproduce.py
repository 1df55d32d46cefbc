"""`medbench reproduce`: train catalog entries of experiments/survey/ (then the CLI refreshes
the leaderboards).

Entries not runnable yet are listed and skipped, never faked. Two-stage entries (a
``pretrain:`` list) train their source run first, per seed, and start from its checkpoint
(``model.pretrained_path=run:<id>``); ensemble entries (``ensemble: {count, member}``) train
their members first and evaluate the probability average of their checkpoints.
"""

from __future__ import annotations

from collections.abc import Callable

from omegaconf import DictConfig

from medbench.catalog import CatalogEntry
from medbench.config import compose_config
from medbench.errors import TrainingError
from medbench.family import family_of

# a CPU smoke budget: one short epoch; its runs are tagged medbench.budget=quick and kept off
# the real leaderboards
QUICK = ["budget=quick", "trainer.max_epochs=1", "+trainer.limit_train_batches=2",
         "+trainer.limit_val_batches=2"]


def reproduce(entries: list[CatalogEntry], seeds: list[int], overrides: list[str],
              train: Callable[..., tuple[str | None, dict[str, float]]],
              quick: bool = False, log: Callable[[str], None] = print) -> list[str]:
    """Trains each runnable entry once per seed; returns the MLflow run ids. A run that fails
    (its MLflow run ends FAILED) is reported in one line and the others go on; then it raises
    naming the failures."""
    extra = [*(QUICK if quick else []), *overrides]
    run_ids, failed = [], []
    for entry in entries:
        if not entry.runnable:
            log(f"{entry.section} {entry.id}: not runnable yet ({entry.not_runnable})")
            continue
        for seed in seeds:
            try:
                cfg = _config(entry.id, seed, extra, train)
                columns = family_of(cfg).leaderboard.columns
                run_id, metrics = train(cfg, tags={})
            except Exception as err:  # noqa: BLE001 - one failed run must not stop the sweep
                failed.append(f"{entry.id} seed {seed}")
                log(f"{entry.section} {entry.id} seed {seed}: FAILED "
                    f"({type(err).__name__}: {str(err).splitlines()[0] if str(err) else ''})")
                continue
            run_ids.append(run_id)
            shown = ", ".join(f"{k} {v:.3f}" for k, v in sorted(metrics.items())
                              if k.removeprefix("test/") in columns)
            log(f"{entry.section} {entry.id} seed {seed}: {shown} (run {run_id})")
    if failed:
        raise TrainingError(f"reproduce: {len(failed)} run(s) failed: {', '.join(failed)}")
    return run_ids


def _config(entry_id: str, seed: int, extra: list[str], train: Callable) -> DictConfig:
    overrides = [f"experiment=survey/{entry_id}", f"seed={seed}", *extra]
    cfg = compose_config(overrides)
    if cfg.pretrain and cfg.model.pretrained_path is None:
        source = compose_config([*cfg.pretrain, "name=survey_pretrain", f"seed={seed}", *extra])
        source_id, _ = train(source, tags={"medbench.kind": "pretrain"})
        cfg = compose_config([*overrides, f"model.pretrained_path=run:{source_id}"])
    if cfg.get("ensemble") and not cfg.model.kwargs.get("members"):
        members = []
        shared = [o for o in extra if not o.lstrip("+~").startswith("ensemble")]
        for k in range(int(cfg.ensemble.count)):  # each member a tracked run of its own seed
            member = compose_config([*cfg.ensemble.member, "name=survey_member",
                                     f"seed={seed * 1000 + k}", *shared])
            member_id, _ = train(member, tags={"medbench.kind": "member"})
            members.append(f"{{name: {member.model.name}, checkpoint: 'run:{member_id}'}}")
        cfg = compose_config([*overrides, f"model.kwargs.members=[{', '.join(members)}]"])
    return cfg
