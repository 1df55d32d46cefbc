"""Values of the wrong type or range are one line before anything runs (issue 23): they used
to be tracebacks (an epoch count that is not a whole number, batch size 0) or silent wrong
results (`max_epochs=-1` trained nothing and ended FINISHED; `seeds=[0,0]` reported a zero
standard deviation; `study.n_trials=0`)."""

from __future__ import annotations

import pytest

from medbench.cli import main


@pytest.mark.parametrize("override, message", [
    ("trainer.max_epochs=abc", "trainer.max_epochs: expected a whole number of epochs >= 0 "
                               "(0: test without training), got 'abc'"),
    ("trainer.max_epochs=-1", "trainer.max_epochs: expected a whole number of epochs >= 0"),
    ("trainer.max_epochs=2.5", "got 2.5"),
    ("seeds=[0,0]", "seeds: expected null or a list of distinct whole numbers"),
    ("seed=-3", "seed: expected a whole number >= 0, got -3"),
    ("data.batch_size=0", "data.batch_size: expected a whole number >= 1, got 0"),
    ("data.eval_batch_size=x", "data.eval_batch_size: expected null or a whole number >= 1"),
    ("runner.optimizer.lr=-0.1", "runner.optimizer.lr: expected a number >= 0, got -0.1"),
])
def test_a_wrong_value_is_one_line_before_any_run(override, message, results_dir, capsys,
                                                  store_untouched):
    assert main(["train", "model=lenet5", f"paths.results_dir={results_dir}", override]) == 1
    err = capsys.readouterr().err.strip()
    assert message in err and len(err.splitlines()) == 1 and err.startswith("error: ")
    assert store_untouched()


def test_a_study_without_trials_is_one_line(results_dir, capsys):
    assert main(["tune", "search=small_cnn", "study.n_trials=0",
                 f"paths.results_dir={results_dir}"]) == 1
    assert "study.n_trials: expected a whole number of trials >= 1, got 0" in (
        capsys.readouterr().err)


def test_a_yaml_syntax_error_is_one_line_naming_file_and_line(tmp_path, monkeypatch, capsys):
    """A config file being edited with a syntax error (was a 100-line traceback): the file,
    its line and column, and what the parser expected."""
    import shutil

    from medbench.config import REPO_ROOT, ExperimentsConfigSource
    from medbench.errors import ConfigError

    conf = tmp_path / "conf"
    shutil.copytree(REPO_ROOT / "conf", conf)
    (conf / "data" / "broken.yaml").write_text("source: [x\n")
    monkeypatch.setenv("MEDBENCH_CONFIG_DIR", str(conf))
    assert main(["train", "data=broken"]) == 2
    err = capsys.readouterr().err.strip()
    assert err == (f"error: {conf / 'data' / 'broken.yaml'} (line 2, column 1): not valid YAML: "
                   "expected ',' or ']', but got '<stream end>'")
    (tmp_path / "presets").mkdir()
    (tmp_path / "presets" / "bad.yaml").write_text("model:\n  name: [lenet5\n")
    source = ExperimentsConfigSource("test", f"medbench-experiments://{tmp_path / 'presets'}")
    with pytest.raises(ConfigError, match=r"bad.yaml \(line 3, column 1\): not valid YAML"):
        source.load_config("experiment/bad")
