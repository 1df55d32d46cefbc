"""Leaderboard files: a Markdown, a CSV and a LaTeX file per table, one self-contained HTML
page."""

from __future__ import annotations

import os
import platform
import sys
from datetime import datetime, timezone
from pathlib import Path

from medbench import atomic
from medbench.config import REPO_ROOT
from medbench.leaderboard.html import render_html
from medbench.leaderboard.latex import to_latex
from medbench.leaderboard.table import FamilyPart, LeaderboardTable, missing, si
from medbench.provenance import git_commit
from medbench.uris import redact


def caption(uri: str) -> str:
    """Where and how the tables were made (the store's URI without any credentials)."""
    store = redact(uri)  # the command's --uri too: the caption is committed with the tables
    command = redact(" ".join(["medbench", *sys.argv[1:]])) if sys.argv[0].endswith(
        "medbench") else "medbench leaderboard"
    return (f"Built {datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC by `{command}` from {store}; "
            f"git {git_commit(REPO_ROOT)[:12]}; machine: {platform.machine()}, "
            f"{os.cpu_count()} CPUs.")


def to_markdown(table: LeaderboardTable, note: str) -> str:
    parts = table.family_parts()
    tests = [(part.family, part.test_note) for part, _ in parts if part.test_note]
    ties = "".join(f"; {t}" if len(tests) == 1 else f"; {f}: {t}" for f, t in tests)
    lower = any(part.lower_is_better for part, _ in parts)
    lines = [f"# {table.title}", "", note, "",
             "Our figures are test metrics over seeds/folds (mean ± std, 95% bootstrap CI of "
             f"the mean{'; ↓: lower is better' * lower}). **Bold**: best of its dataset; ≈: not "
             f"significantly different from it on the same test set (p ≥ 0.05{ties}). "
             "Reported figures are the papers' own, on "
             "their own data; a proxy row is not the paper's dataset. Train s: median wall "
             "seconds of training (a two-stage method's source runs included); infer ms/img: "
             "median time of the network's forward passes per test image (older runs: of the "
             "whole test loop, incl. loading); both on the machine named above; "
             "MACs: one forward pass on one image.", ""]
    for part, frame in parts:
        if len(parts) > 1:
            lines += [f"## {part.family}", ""]
        lines += _markdown_rows(part, frame) + [""]
    if table.notes:
        lines += ["Notes:", *[f"- {n}" for n in table.notes]]
    return "\n".join(lines).rstrip("\n") + "\n"


def _markdown_rows(part: FamilyPart, frame) -> list[str]:
    """One family's rows as a Markdown table, with that family's metric columns."""
    head = ["rank", "method", "section", "model", "dataset", "data", "reported", "runs"]
    head += [f"test {m.upper()}{' ↓' * (m in part.lower_is_better)} mean ± std [95% CI]"
             for m in part.metrics]
    head += ["params", "MACs", "train s", "infer ms/img", "tuning"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for row in frame.to_dict("records"):
        cells = [str(row["rank"]), row["method"], row["section"], row["model"], row["dataset"],
                 row["data"], row["reported"], str(row["runs"])]
        cells += [_metric_cell(row, m) for m in part.metrics]
        cells += [si(row["params"]), si(row["macs"]), _num(row["train_s"], 1),
                  _infer(row), row["tuning"]]
        lines.append("| " + " | ".join(str(c).replace("|", "/") for c in cells) + " |")
    if not len(frame):
        lines.append("| " + " | ".join(["–"] * len(head)) + " |")
    return lines


def _metric_cell(row: dict, metric: str) -> str:
    mean = row[f"{metric}_mean"]
    if missing(mean):
        return "–"
    text = f"{mean:.3f}"
    if not missing(row[f"{metric}_std"]):
        text += f" ± {row[f'{metric}_std']:.3f}"
    if row.get("runs") == 1:  # one run has no interval
        text += " [n/a]"
    else:
        text += f" [{row[f'{metric}_ci_low']:.3f}, {row[f'{metric}_ci_high']:.3f}]"
    if row[f"{metric}_best"]:
        return f"**{text}**"
    return f"≈ {text} (p={row[f'{metric}_p']:.2f})" if row[f"{metric}_tied"] else text


def _infer(row: dict) -> str:
    """The network's forward passes per image; runs before that was timed: the whole test
    loop's, which includes loading the images."""
    if not missing(row.get("infer_model_ms")):
        return f"{row['infer_model_ms']:.2f}"
    return "–" if missing(row["infer_ms"]) else f"{row['infer_ms']:.2f} (incl. loading)"


def _num(value, digits: int) -> str:
    return "–" if missing(value) else f"{value:.{digits}f}"


def write_all(tables: list[LeaderboardTable], out: Path, uri: str) -> list[Path]:
    """Each file whole or not at all: a killed command leaves the previous tables."""
    out.mkdir(parents=True, exist_ok=True)
    note = caption(uri)
    written = []
    for table in tables:
        md, csv, tex = (out / f"{table.key}{suffix}" for suffix in (".md", ".csv", ".tex"))
        atomic.write_text(md, to_markdown(table, note))
        atomic.write_text(tex, to_latex(table, note))
        with atomic.atomic_path(csv) as temp:
            table.frame.to_csv(temp, index=False, float_format="%.6g")
        written += [md, csv, tex]
    page = out / "leaderboards.html"
    atomic.write_text(page, render_html(tables, "medbench leaderboards", note))
    return [*written, page]
