"""What makes two tracked runs the same leaderboard row: method, data and configuration.

- **data**: a row's ``dataset`` is the dataset's name (``dataset`` tag: the data config's
  ``flag``, ``name`` or source) and the content fingerprint of its test split
  (``data.fingerprint_test``: its items' ids and targets; seeds and folds share it). A name
  whose runs saw one test split shows as the name; a name with several (two CSV manifests,
  both ``csv_manifest``) shows as ``<name> [<8 hex digits>]``, one row each. Runs tracked
  before the fingerprint existed take that of the runs of their configuration, else the only
  one their dataset name has, else none: they keep the key they had (the name).
- **evaluation only**: a run that tested a model without fitting it (Lightning runner,
  ``trainer.max_epochs=0``, no ``time/fit_s``: a given checkpoint or pretrained weights) is
  the method ``<method> (evaluation only)``, apart from the trained row. An ensemble of
  tracked members is a method of its own (its train time is its members'), not marked.
- **variant** (``medbench.variant``, set by a runner: ``25% labelled`` for a semi-supervised
  run): the method ``<method> (<variant>)``, so a row says what its runs were given.
- **configuration** (``medbench.config_hash``): by default the row of a method on a dataset is
  its configuration with the most runs (ties: the latest), the others named in the notes;
  ``all_configs`` shows each as its own row, ``<method> [config <hash>]``.
"""

from __future__ import annotations

import pandas as pd

FINGERPRINT = "data.fingerprint_test"
EVALUATION_ONLY = " (evaluation only)"
VARIANT = "medbench.variant"
NO_MEMBERS = ("", "[]", "None", "null")


def method_of(runs: pd.DataFrame) -> pd.Series:
    """A run's method: its survey entry, else its experiment preset, else its model."""
    experiment = runs["choice.experiment"].replace("None", None)  # runs before 2026-11-26
    return runs["survey.id"].fillna(experiment).fillna(runs["model"])


def keyed(runs: pd.DataFrame, all_configs: bool = False) -> pd.DataFrame:
    """``runs`` (with a ``method`` column) with ``dataset`` and ``method`` as the row key
    (see the module's docstring); the tracked name stays in ``dataset_name``."""
    runs = runs.assign(dataset_name=runs["dataset"], dataset=data_labels(runs))
    if VARIANT in runs:
        variant = runs[VARIANT].notna()
        runs.loc[variant, "method"] = [f"{m} ({v})" for m, v in zip(
            runs.loc[variant, "method"].astype(str), runs.loc[variant, VARIANT], strict=True)]
    # computed on the runs as collected, before a source's train time is added
    evaluated = runs["evaluated"] if "evaluated" in runs else evaluation_only(runs)
    evaluated = evaluated.fillna(False).astype(bool)
    runs.loc[evaluated, "method"] = runs.loc[evaluated, "method"].astype(str) + EVALUATION_ONLY
    if all_configs:
        key = ["family", "method", "dataset"]
        configs = runs.groupby(key)["medbench.config_hash"].transform("nunique")
        several = configs > 1
        runs.loc[several, "method"] = [f"{m} [config {h}]" for m, h in zip(
            runs.loc[several, "method"], runs.loc[several, "medbench.config_hash"], strict=True)]
    return runs


def data_labels(runs: pd.DataFrame) -> pd.Series:
    """Each run's ``dataset`` as a row key: the name, with the test split's fingerprint where
    the name covers several test splits."""
    names = runs["dataset"].astype(object)
    prints = _fingerprints(runs)
    known = pd.DataFrame({"name": names, "print": prints}).dropna()
    many = known.groupby("name")["print"].nunique()
    many = set(many[many > 1].index)
    return pd.Series([f"{n} [{p[:8]}]" if n in many and isinstance(p, str) else n
                      for n, p in zip(names, prints, strict=True)], index=runs.index,
                     dtype=object)


def _fingerprints(runs: pd.DataFrame) -> pd.Series:
    """The test split's fingerprint; for runs tracked before it existed, that of their
    configuration's runs, else the one of their dataset name (when it has exactly one)."""
    prints = runs[FINGERPRINT] if FINGERPRINT in runs else pd.Series(None, index=runs.index)
    prints = prints.astype(object).where(prints.notna(), None)
    if prints.isna().any() and prints.notna().any():
        for columns in (["dataset", "medbench.config_hash"], ["dataset"]):
            frame = runs[columns].assign(print=prints)
            found = frame.dropna(subset=["print"]).groupby(columns)["print"].agg(
                ["nunique", "first"])
            single = found.loc[found["nunique"] == 1, "first"]
            if not len(single):
                continue
            found = frame.join(single.rename("found"), on=columns)["found"]
            prints = prints.where(prints.notna(), found).astype(object)
            prints = prints.where(prints.notna(), None)
    return prints


def evaluation_only(runs: pd.DataFrame) -> pd.Series:
    """Whether each run tested a model it did not fit (see the module's docstring)."""
    def column(name: str) -> pd.Series:
        return runs[name] if name in runs else pd.Series(None, index=runs.index, dtype=object)

    unfitted = column("time/fit_s").isna() & (column("trainer.max_epochs").astype(str) == "0")
    lightning = column("runner").fillna("lightning") == "lightning"
    ensemble = ~column("model.kwargs.members").fillna("").astype(str).isin(NO_MEMBERS)
    return unfitted & lightning & ~ensemble
