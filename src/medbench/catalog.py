"""The survey's catalog: one experiment per surveyed method in ``experiments/survey/``, and
the survey's comparison tables (its Tables 5 to 15) as selections of it."""

from __future__ import annotations

import difflib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from medbench.config import REPO_ROOT
from medbench.errors import ConfigError

SURVEY_DIR = REPO_ROOT / "experiments" / "survey"
# libyaml's safe loader where PyYAML was built with it (10x faster), else the pure-Python one
SAFE_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


@dataclass(frozen=True)
class CatalogEntry:
    """One surveyed method as ``experiments/survey/<id>.yaml`` describes it."""

    id: str
    section: str
    family: str  # the survey's task: classification, segmentation, detection, localization
    runnable: bool
    not_runnable: str | None
    data_here: str = ""
    reported: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def read(cls, path: Path) -> CatalogEntry:
        text = path.read_text(encoding="utf-8")
        survey = (yaml.load(text, Loader=SAFE_LOADER) or {}).get("survey") or {}
        family = survey.get("family", survey.get("task", ""))  # "task": presets of before
        return cls(path.stem, str(survey.get("section", "")), str(family),
                   survey.get("runnable", True) is not False, survey.get("not_runnable"),
                   str(survey.get("data_here", "")), dict(survey.get("reported") or {}))

    @property
    def proxy(self) -> bool:
        """Whether it runs on a stand-in for the paper's data (else the paper's own)."""
        return self.data_here.startswith("proxy")


@dataclass(frozen=True)
class SurveyTable:
    """A table of the survey: the entries of some sections (prefixes) of one family, or all."""

    key: str  # selector, e.g. "table5"
    stem: str  # output file name, e.g. "table05_lung_classification"
    title: str
    family: str | None  # None: every family
    sections: tuple[str, ...] = ()  # section prefixes; empty: every section of the family

    def includes(self, section: str, family: str) -> bool:
        if self.family is not None and family != self.family:
            return False
        return not self.sections or any(f"{section}.".startswith(f"{prefix}.")
                                        for prefix in self.sections)


SURVEY_TABLES = {table.key: table for table in (
    SurveyTable("table5", "table05_lung_classification", "Table 5: lung classification",
                "classification", ("4.1",)),
    SurveyTable("table6", "table06_hep2_classification", "Table 6: HEp-2 cell classification",
                "classification", ("4.3",)),
    SurveyTable("table7", "table07_breast_classification",
                "Table 7: breast tumour classification", "classification", ("4.4",)),
    SurveyTable("table8", "table08_heart_classification", "Table 8: heart classification",
                "classification", ("4.5",)),
    SurveyTable("table9", "table09_colon_classification", "Table 9: colon cancer classification",
                "classification", ("4.7",)),
    SurveyTable("table10", "table10_classification",
                "Table 10: medical image classification (all organs)", "classification"),
    SurveyTable("table11", "table11_brain_segmentation", "Table 11: brain segmentation",
                "segmentation", ("5.1",)),
    SurveyTable("table12", "table12_segmentation", "Table 12: medical image segmentation",
                "segmentation"),
    SurveyTable("table13", "table13_detection", "Table 13: medical image detection",
                "detection"),
    SurveyTable("table14", "table14_localization", "Table 14: medical image localization",
                "localization"),
    SurveyTable("table15", "table15_overall", "Table 15: every surveyed method", None),
)}


def catalog(folder: Path = SURVEY_DIR) -> list[CatalogEntry]:
    """Every surveyed method, in section order."""
    entries = [CatalogEntry.read(p) for p in folder.glob("*.yaml")]
    return sorted(entries, key=lambda e: ([int(x) for x in e.section.split(".")], e.id))


def select(selector: str, entries: list[CatalogEntry]) -> list[CatalogEntry]:
    """The entries a selector names: a survey id, a section or its prefix (``4.2``, ``4``), a
    table (``table5``) or ``all``; anything else raises, suggesting close names."""
    by_id = {e.id: e for e in entries}
    if selector == "all":
        return entries
    if selector in by_id:
        return [by_id[selector]]
    table = SURVEY_TABLES.get(selector.replace("table0", "table"))
    if table is not None:
        return [e for e in entries if table.includes(e.section, e.family)]
    chosen = [e for e in entries if f"{e.section}.".startswith(f"{selector}.")]
    if chosen:
        return chosen
    close = difflib.get_close_matches(selector, [*by_id, *SURVEY_TABLES], n=3)
    raise ConfigError(f"reproduce: '{selector}' is no survey id, section, table or 'all'"
                      + (f"; did you mean {', '.join(close)}?" if close else ""))
