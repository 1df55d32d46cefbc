"""Old spellings, in one place: what medbench called things before the task-family contract.

Until then one word, "task", meant three things: the runner (config group ``task``,
``task.name: classification``, the run tag ``task``), the label type (``data.task``,
``DatasetInfo.task``) and the survey's problem (``survey.task``). Now they are the runner
(``runner``), the label type (``data.label_type``) and the family (``data.family``, tag
``family``). This module keeps old commands, presets, config hashes and tracked runs working:

- :func:`rewrite_override` turns an old override (``task.optimizer.lr=0.01``) into the new
  one, so commands, search spaces and scripts written before keep working;
- :func:`rewrite_experiment` does the same for a preset's defaults list and keys;
- :func:`hash_layout` puts a resolved config back into the old layout before hashing, so a
  configuration hashes as it always did and its leaderboard row does not split;
- :data:`RUNNER_OF_OLD_TASK` reads the old run tag ``task``; runs without a ``family`` tag
  were classification runs (the leaderboard's ``collect_runs`` reads them so).
"""

from __future__ import annotations

import re
from typing import Any

# task.name / task=<option> before -> runner.name / runner=<option>
RUNNER_OF_OLD_TASK = {"classification": "lightning", "deep_features": "deep_features",
                      "deep_features_svm": "deep_features_svm"}
OLD_TASK_OF_RUNNER = {"lightning": "classification", "deep_features": "deep_features",
                      "deep_features_svm": "deep_features_svm"}

# the progress bar showing the loss and monitored metric hashes as Lightning's plain one before
METRICS_BAR = "medbench.tasks.progress.MetricsProgressBar"

_GROUP = re.compile(r"^(?P<prefix>[+~]*)task(?P<rest>([./@].*)?)=(?P<value>.*)$")
_LABEL_TYPE = re.compile(r"^(?P<prefix>[+~]*)data\.task=")


def rewrite_override(override: str) -> tuple[str, bool]:
    """The override in today's spelling, and whether it was an old one."""
    if _LABEL_TYPE.match(override):
        return _LABEL_TYPE.sub(lambda m: f"{m['prefix']}data.label_type=", override), True
    match = _GROUP.match(override)
    if not match:
        return override, False
    rest, value = match["rest"], match["value"]
    if rest in ("", "@runner") or rest == ".name":  # the group option or the runner's name
        value = RUNNER_OF_OLD_TASK.get(value, value)
    return f"{match['prefix']}runner{rest}={value}", True


def rewrite_experiment(node: dict[str, Any]) -> dict[str, Any]:
    """A preset (as a plain dict) with ``override /task: <x>`` and a top-level ``task:`` block
    in today's spelling (presets and ``medbench tune`` exports written before)."""
    defaults = node.get("defaults")
    if isinstance(defaults, list):
        for i, entry in enumerate(defaults):
            if isinstance(entry, dict) and "override /task" in entry:
                option = entry.pop("override /task")
                defaults[i] = {"override /runner": RUNNER_OF_OLD_TASK.get(option, option),
                               **entry}
    if isinstance(node.get("task"), dict) and "runner" not in node:
        block = node.pop("task")
        if "name" in block:
            block["name"] = RUNNER_OF_OLD_TASK.get(block["name"], block["name"])
        node["runner"] = block
    if isinstance(node.get("survey"), dict) and "task" in node["survey"]:
        node["survey"]["family"] = node["survey"].pop("task")
    return node


def hash_layout(values: dict[str, Any]) -> dict[str, Any]:
    """A resolved config (plain dict) in the layout config hashes were first computed on."""
    runner = values.pop("runner", None)
    if isinstance(runner, dict):
        if "name" in runner:
            runner["name"] = OLD_TASK_OF_RUNNER.get(runner["name"], runner["name"])
        values["task"] = runner
    data = values.get("data")
    if isinstance(data, dict) and "label_type" in data:
        data["task"] = data.pop("label_type")
    callbacks = values.get("callbacks")
    bar = callbacks.get("progress_bar") if isinstance(callbacks, dict) else None
    if isinstance(bar, dict) and bar.get("_target_") == METRICS_BAR:  # display only
        callbacks["progress_bar"] = {"_target_": "lightning.pytorch.callbacks.RichProgressBar"}
    return values
