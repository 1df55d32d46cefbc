"""A leaderboard table as LaTeX, ready for a paper: booktabs rules (pandas' Styler writes the
tabular), one ``table`` float per task family, the best of each dataset in bold."""

from __future__ import annotations

import re

import pandas as pd

from medbench.leaderboard.table import FamilyPart, LeaderboardTable, missing, si

# LaTeX's special characters; pandas' escaping is private API (Styler.format(escape="latex")
# covers cells, not the caption), so the ten replacements are spelled out here
_SPECIAL = {"\\": r"\textbackslash{}", "&": r"\&", "%": r"\%", "$": r"\$", "#": r"\#",
            "_": r"\_", "{": r"\{", "}": r"\}", "~": r"\textasciitilde{}",
            "^": r"\textasciicircum{}"}
_SPECIAL_RE = re.compile("|".join(re.escape(c) for c in _SPECIAL))
_SYMBOLS = {"±": r"$\pm$", "≈": r"$\approx$", "↓": r"$\downarrow$", "κ": r"$\kappa$",
            "–": "--", "`": ""}


def escape(text: object) -> str:
    """``text`` as LaTeX source: special characters escaped, the tables' symbols in math."""
    out = _SPECIAL_RE.sub(lambda m: _SPECIAL[m.group()], str(text))
    for symbol, latex in _SYMBOLS.items():
        out = out.replace(symbol, latex)
    return out


def to_latex(table: LeaderboardTable, note: str) -> str:
    """The table's family parts as booktabs tables (``\\usepackage{booktabs}``), captioned
    with the table's title and how it was built; labels ``tab:<key>[-<family>]``."""
    parts = table.family_parts()
    floats = []
    for part, frame in parts:
        title = table.title + (f" ({part.family})" if len(parts) > 1 and part.family else "")
        label = f"tab:{table.key}" + (f"-{part.family}" if len(parts) > 1 else "")
        floats.append(_part_float(part, frame, f"{escape(title)}. {escape(note)}", label))
    return "\n".join(floats)


def _part_float(part: FamilyPart, frame: pd.DataFrame, caption: str, label: str) -> str:
    columns = {"rank": "rank", "method": "method", "dataset": "dataset", "data": "data",
               "reported": "reported", "runs": "runs"}
    cells = pd.DataFrame({title: [escape(v) for v in frame[key]]
                          for key, title in columns.items()}, index=range(len(frame)))
    rows = frame.to_dict("records")
    for metric in part.metrics:
        arrow = r" $\downarrow$" if metric in part.lower_is_better else ""
        cells[f"{escape(metric.upper())}{arrow}"] = [_metric(row, metric) for row in rows]
    cells["params"] = [escape(si(row["params"])) for row in rows]
    if not len(cells):
        cells.loc[0] = ["--"] * len(cells.columns)
    styler = cells.style.hide(axis="index")
    return styler.to_latex(hrules=True, caption=caption, label=label, position="htbp",
                           position_float="centering", column_format="l" * len(cells.columns))


def _metric(row: dict, metric: str) -> str:
    """mean $\\pm$ std [95% CI]; bold the best of its dataset, $\\approx$ one tied with it."""
    mean = row[f"{metric}_mean"]
    if missing(mean):
        return "--"
    text = f"{mean:.3f}"
    if not missing(row[f"{metric}_std"]):
        text += rf" $\pm$ {row[f'{metric}_std']:.3f}"
    if row.get("runs", 0) > 1:
        text += f" [{row[f'{metric}_ci_low']:.3f}, {row[f'{metric}_ci_high']:.3f}]"
    if row[f"{metric}_best"]:
        return rf"\textbf{{{text}}}"
    return rf"$\approx$ {text}" if row[f"{metric}_tied"] else text
