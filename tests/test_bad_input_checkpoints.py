"""Bad checkpoints and faults while writing them: a full disk, a truncated or foreign file, a
read-only results folder. Each is one line naming the file; what was on disk stays intact."""

from __future__ import annotations

import errno
import os
import stat
from pathlib import Path

import lightning.pytorch as pl
import pytest
import torch
from hydra.utils import instantiate

from medbench.atomic import TEMP_MARK
from medbench.cli import main
from medbench.config import compose_config
from medbench.errors import ConfigError, DataError, TrainingError
from medbench.models import create_model
from medbench.tasks.checkpoint_io import AtomicCheckpointIO
from medbench.train import train_run

# a tiny real run: 2 epochs of 2 batches on BreastMNIST 28 px
ARGS = ["model=lenet5", "data.batch_size=16", "trainer.max_epochs=2", "seed=3",
        "+trainer.limit_train_batches=2", "+trainer.limit_val_batches=2",
        "+trainer.limit_test_batches=2", "trainer.enable_progress_bar=false"]


def _cli(results_dir: Path, capsys, *extra: str) -> tuple[int, str]:
    """``medbench train`` in-process: its exit code and its one ``error:`` line, if any."""
    code = main(["train", f"paths.results_dir={results_dir}", *ARGS, *extra])
    err = capsys.readouterr().err
    errors = [line for line in err.splitlines() if line.startswith("error:")]
    assert "Traceback" not in err and len(errors) == (code != 0), err
    return code, (errors or [""])[0]


def _only_run(mlflow_client):
    [run] = mlflow_client.search_runs([e.experiment_id for e in
                                       mlflow_client.search_experiments()])
    return run


def _failed_with(mlflow_client, line: str):
    """The single run, checked FAILED with the printed line as its error tag."""
    run = _only_run(mlflow_client)
    assert run.info.status == "FAILED"
    assert run.data.tags["error"].split(": ", 1)[1] == line.removeprefix("error: ")
    return run


def _disk_full_on(monkeypatch, name: str, after: int) -> None:
    """``torch.save`` into ``name``'s temp file writes a few bytes, then the disk is full
    (after ``after`` writes of it succeeded)."""
    real, writes = torch.save, []

    def save(obj, f, *args, **kwargs):
        if isinstance(f, (str, os.PathLike)) and Path(f).name.startswith(name + TEMP_MARK):
            writes.append(f)
            if len(writes) > after:
                Path(f).write_bytes(b"PK\x03\x04 half a checkpoint")
                raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return real(obj, f, *args, **kwargs)

    monkeypatch.setattr(torch, "save", save)


def _leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.rglob(f"*{TEMP_MARK}*"))


def test_the_atomic_writer_is_the_trainers_checkpoint_io_also_under_ddp():
    cfg = compose_config(["trainer=ddp", "trainer.accelerator=cpu", "trainer.devices=2"])
    plugin = AtomicCheckpointIO()
    trainer: pl.Trainer = instantiate(cfg.trainer, plugins=[plugin], logger=False)
    assert type(trainer.strategy).__name__ == "DDPStrategy"
    assert trainer.strategy.checkpoint_io is plugin


@pytest.mark.parametrize("code,hint", [
    (errno.ENOSPC, "free space, or set paths.results_dir to another disk"),
    (errno.EDQUOT, "free space, or set paths.results_dir to another disk"),
    (errno.EROFS, "make the folder writable, or set paths.results_dir to a writable folder"),
    (errno.EACCES, "make the folder writable, or set paths.results_dir to a writable folder")])
def test_a_failed_write_keeps_the_previous_checkpoint_and_no_temp_file(tmp_path, monkeypatch,
                                                                      code, hint):
    target = tmp_path / "checkpoints" / "last.ckpt"
    AtomicCheckpointIO().save_checkpoint({"epoch": 0}, target)
    before = target.read_bytes()
    real = torch.save

    def save(obj, f, *args, **kwargs):
        real(obj, f, *args, **kwargs)  # the whole file written, then the fault (at fsync)
        raise OSError(code, os.strerror(code))

    monkeypatch.setattr(torch, "save", save)
    with pytest.raises(TrainingError) as caught:
        AtomicCheckpointIO().save_checkpoint({"epoch": 1}, target)
    assert str(caught.value) == f"cannot write checkpoint {target}: {os.strerror(code)} ({hint})"
    assert target.read_bytes() == before and _leftovers(tmp_path) == []
    assert AtomicCheckpointIO().load_checkpoint(target)["epoch"] == 0


def test_a_full_disk_mid_checkpoint_fails_the_run_in_one_line_and_resume_continues(
        results_dir, capsys, monkeypatch, mlflow_client):
    _disk_full_on(monkeypatch, "last.ckpt", after=1)  # epoch 0's is written, epoch 1's is not
    code, line = _cli(results_dir, capsys)
    run = _failed_with(mlflow_client, line)
    folder = results_dir / "runs" / run.info.run_id / "checkpoints"
    last = folder / "last.ckpt"
    assert code == 1 and line == (f"error: cannot write checkpoint {last}: No space left on "
                                  "device (free space, or set paths.results_dir to another disk)")
    assert _leftovers(results_dir) == []
    assert torch.load(last, weights_only=True)["epoch"] == 0  # the previous one, whole

    monkeypatch.undo()  # space freed: the run continues from epoch 0's state
    code, line = _cli(results_dir, capsys, f"resume={run.info.run_id}")
    resumed = _only_run(mlflow_client)
    assert code == 0 and resumed.info.run_id == run.info.run_id
    assert resumed.info.status == "FINISHED" and "test/auc" in resumed.data.metrics
    epochs = {m.value for m in mlflow_client.get_metric_history(run.info.run_id, "epoch")}
    assert epochs == {0, 1}


def test_a_full_disk_while_a_run_writes_its_other_files_is_one_line(results_dir, capsys,
                                                                    monkeypatch, mlflow_client):
    """Not only checkpoints: the per-sample predictions and plots of a run on a full disk (was
    OSError's traceback)."""
    from medbench.tasks.classification import artifacts

    target = results_dir / "runs" / "predictions_test.csv"

    def full(*args, **kwargs):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(target))

    monkeypatch.setattr(artifacts, "write_test_outputs", full)
    code, line = _cli(results_dir, capsys)
    assert code == 1 and line == (f"error: cannot write {target}: No space left on device "
                                  "(free space, or set paths.results_dir to another disk)")
    run = _failed_with(mlflow_client, line)
    trace = mlflow_client.download_artifacts(run.info.run_id, "error.txt")
    assert "write_test_outputs" in Path(trace).read_text()  # the real traceback is kept


@pytest.mark.parametrize("damage", ["truncated", "not a checkpoint"])
def test_resume_from_a_damaged_last_checkpoint_is_one_line_and_leaves_it(
        damage, results_dir, capsys, monkeypatch, mlflow_client):
    _disk_full_on(monkeypatch, "last.ckpt", after=1)
    _cli(results_dir, capsys)
    monkeypatch.undo()
    run_id = _only_run(mlflow_client).info.run_id
    last = results_dir / "runs" / run_id / "checkpoints" / "last.ckpt"
    whole = last.read_bytes()
    last.write_bytes(whole[:len(whole) // 2] if damage == "truncated" else b"epoch: 0\n")
    damaged = last.read_bytes()

    code, line = _cli(results_dir, capsys, f"resume={run_id}")
    assert code == 1 and line.startswith(f"error: truncated or not a checkpoint: {last} (")
    assert line.endswith("): delete it and start again, or resume from an intact copy")
    run = _failed_with(mlflow_client, line)  # not left RUNNING
    assert run.data.tags["resumed"] == "true" and last.read_bytes() == damaged


class _TruncateBest(pl.Callback):
    """Cuts the selected checkpoint to half its bytes once training ends, before its test."""

    def on_train_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        best = Path(trainer.checkpoint_callback.best_model_path)
        best.write_bytes(best.read_bytes()[:best.stat().st_size // 2])


def test_a_truncated_best_checkpoint_reloaded_for_test_fails_the_run(make_cfg, mlflow_client):
    with pytest.raises(DataError, match=r"truncated or not a checkpoint: .*best-epoch\d+\.ckpt "
                                        r"\(.*\): delete it") as caught:
        train_run(make_cfg(*ARGS), callbacks=[_TruncateBest()])
    run = _only_run(mlflow_client)
    assert run.info.status == "FAILED" and run.data.tags["error"] == f"DataError: {caught.value}"


def _lenet_state(**changes: torch.Tensor | None) -> dict[str, torch.Tensor]:
    """LeNet-5's state dict in order, each key of ``changes`` replaced (None: removed)."""
    state = {}
    for key, value in create_model("lenet5", 1, 2).state_dict().items():
        if key in changes and changes[key] is None:
            continue
        state[key] = changes.get(key, value)
    return state


def test_pretrained_weights_of_another_architecture_name_the_first_misfit(tmp_path):
    def load(state: dict) -> str:
        path = tmp_path / "weights.pt"
        torch.save(state, path)
        with pytest.raises(ConfigError) as caught:
            create_model("lenet5", 1, 2, pretrained_path=str(path))
        return str(caught.value)

    own = create_model("lenet5", 1, 2).state_dict()
    middle = list(own)[2]  # the second conv's weight: neither input layer nor head
    shape = list(own[middle].shape)
    wider = torch.zeros(shape[0] + 1, *shape[1:])
    assert f"'{middle}' is {[shape[0] + 1, *shape[1:]]} in the file, {shape} in the model" \
        in load(_lenet_state(**{middle: wider}))
    assert f"'{middle}' is missing in the file" in load(_lenet_state(**{middle: None}))
    extra = {**dict(list(_lenet_state().items())[:2]), "block.9.weight": torch.zeros(3),
             **dict(list(_lenet_state().items())[2:])}
    assert "its 'block.9.weight' is not in the model" in load(extra)
    resnet = create_model("resnet18_28", 1, 2).state_dict()
    assert "no tensor of" in load(resnet) and "its first key 'conv1.weight'" in load(resnet)
    # other input channels and another class count still fine-tune
    torch.save(create_model("lenet5", 3, 5).state_dict(), tmp_path / "other_data.pt")
    create_model("lenet5", 1, 2, pretrained_path=str(tmp_path / "other_data.pt"))
    # an ensemble member must fit whole: its first misfit is named with both shapes
    with pytest.raises(ConfigError, match=r"e\.g\. '0\.weight' \(is \[6, 3, 5, 5\] in the file, "
                                          r"\[6, 1, 5, 5\] in the model\)"):
        create_model("ensemble", 1, 2, members=[{"name": "lenet5",
                                                 "checkpoint": tmp_path / "other_data.pt"}])


def test_truncated_pretrained_file_or_run_checkpoint_is_one_line(results_dir, tmp_path, capsys,
                                                                  mlflow_client):
    weights = tmp_path / "lenet.pt"
    torch.save(create_model("lenet5", 1, 2).state_dict(), weights)
    weights.write_bytes(weights.read_bytes()[:weights.stat().st_size // 2])
    code, line = _cli(results_dir, capsys, f"model.pretrained_path={weights}")
    assert code == 1 and line.startswith(f"error: model.pretrained_path: {weights} is truncated "
                                         "or not a loadable weights file (")
    _failed_with(mlflow_client, line)

    # run:<id>: the checkpoint the source run selected, read in its run folder
    source = mlflow_client.create_run(_only_run(mlflow_client).info.experiment_id,
                                      tags={"best_checkpoint": "best-epoch000.ckpt"})
    ckpt = results_dir / "runs" / source.info.run_id / "checkpoints" / "best-epoch000.ckpt"
    ckpt.parent.mkdir(parents=True)
    ckpt.write_bytes(weights.read_bytes())
    code, line = _cli(results_dir, capsys, f"model.pretrained_path=run:{source.info.run_id}")
    assert code == 1 and f"model.pretrained_path: {ckpt} is truncated" in line


@pytest.fixture
def as_an_ordinary_user(monkeypatch) -> None:
    """Root writes into read-only folders: its ``os.access`` is made to answer as the owner's
    mode bits say, as for an ordinary user (who needs nothing emulated)."""
    if os.geteuid() != 0:
        return
    real = os.access

    def access(path, mode, *args, **kwargs):
        if mode & os.W_OK and not os.stat(path).st_mode & stat.S_IWUSR:
            return False
        return real(path, mode, *args, **kwargs)

    monkeypatch.setattr(os, "access", access)


def _tree(root: Path) -> dict[str, bytes | None]:
    return {str(p): p.read_bytes() if p.is_file() else None for p in root.rglob("*")}


@pytest.mark.parametrize("case", ["results folder", "its parent", "store file"])
def test_a_read_only_results_folder_is_one_line_before_any_run(
        case, results_dir, tmp_path, capsys, as_an_ordinary_user):
    store = results_dir / "mlflow.db"
    if case == "results folder":
        locked, target = results_dir, results_dir
        said = f"paths.results_dir: the folder {results_dir} is read-only"
    elif case == "its parent":
        locked, target = tmp_path / "locked", tmp_path / "locked" / "results"
        locked.mkdir()
        said = f"paths.results_dir: cannot create {target}: the folder {locked} is read-only"
    else:
        locked, target = store, results_dir
        said = f"tracking.uri: the SQLite store {store} is read-only"
    before = _tree(tmp_path)
    mode = locked.stat().st_mode
    locked.chmod(0o444 if locked.is_file() else 0o555)
    try:
        code, line = _cli(target, capsys)
    finally:
        locked.chmod(mode)
    assert code == 1 and line.startswith(f"error: {said}")
    assert "set paths.results_dir to a writable folder" in line
    assert _tree(tmp_path) == before  # nothing created, the store untouched
