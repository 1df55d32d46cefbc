"""The survey catalog: one ``experiments/survey/<id>.yaml`` per method of the survey's papers.yaml,
each carrying the paper's section, task, organ and reported figures as papers.yaml states them."""

from __future__ import annotations

import pytest
import yaml
from omegaconf import OmegaConf

from medbench.config import REPO_ROOT, compose_config

PAPERS = REPO_ROOT.parent / "shared" / "survey" / "papers.yaml"
SURVEY_DIR = REPO_ROOT / "experiments" / "survey"


def _papers() -> list[dict]:
    if not PAPERS.is_file():
        return []
    return yaml.safe_load(PAPERS.read_text(encoding="utf-8"))["papers"]


def _skip_without_papers() -> None:
    if not PAPERS.is_file():
        pytest.skip(f"survey catalog {PAPERS} not found (the shared survey folder is absent)")


def _same(ours, theirs) -> bool:
    """Numbers compare as floats, anything else as strings."""
    def number(value) -> bool:
        return isinstance(value, (int, float)) and not isinstance(value, bool)

    if number(ours) or number(theirs):
        return number(ours) and number(theirs) and float(ours) == float(theirs)
    return str(ours) == str(theirs)


def test_one_experiment_file_per_paper():
    _skip_without_papers()
    ids = [paper["id"] for paper in _papers()]
    assert len(ids) == len(set(ids)), "papers.yaml repeats an id"
    files = {path.stem for path in SURVEY_DIR.glob("*.yaml")}
    assert not set(ids) - files, f"papers without an experiment file: {sorted(set(ids) - files)}"
    assert not files - set(ids), f"survey files with no paper: {sorted(files - set(ids))}"


@pytest.mark.parametrize("paper", _papers() or [None],
                         ids=lambda paper: paper["id"] if paper else "no-papers")
def test_experiment_matches_paper(paper):
    _skip_without_papers()
    pid = paper["id"]
    assert (SURVEY_DIR / f"{pid}.yaml").is_file(), f"experiments/survey/{pid}.yaml is missing"
    survey = OmegaConf.to_container(compose_config([f"experiment=survey/{pid}"]).survey)
    assert survey["id"] == pid
    assert survey["family"] == paper["task"], f"{pid}: survey.family is the paper's task"
    for key in ("section", "organ"):
        assert _same(survey[key], paper[key]), f"{pid}: survey.{key}"
    ours, theirs = survey.get("reported") or {}, paper.get("reported") or {}
    assert set(ours) == set(theirs), f"{pid}: reported figures differ in their names"
    for name, value in theirs.items():
        assert _same(ours[name], value), f"{pid}: reported {name!r}: {ours[name]!r} != {value!r}"
