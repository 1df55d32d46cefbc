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
    ("runner.optimizer.lr=0", "runner.optimizer.lr: expected a number > 0, got 0"),
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
