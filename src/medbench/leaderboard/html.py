"""The leaderboard as one self-contained HTML page: sortable tables, bar and Pareto plots (SVG)."""

from __future__ import annotations

from collections.abc import Callable
from functools import partial
from html import escape

import pandas as pd

from medbench.leaderboard.charts import DASH, bar_note, bars, ci_of, pareto, scaled
from medbench.leaderboard.charts import num as _num
from medbench.leaderboard.charts import si as _si
from medbench.leaderboard.charts import text as _text
from medbench.leaderboard.table import FamilyPart, LeaderboardTable

PALETTE = ("#4e79a7", "#f28e2b", "#59a14f", "#e15759", "#76b7b2", "#b07aa1", "#9c755f")
EVERY = "all_methods"  # the table of every tracked method: the user's own runs
FOLD_NOTES = 5  # a table with more notes shows them folded
_CSS = """body{font:14px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;color:#1d2433;
margin:0 auto;padding:24px 32px;max-width:1800px}h1{font-size:24px;margin:0 0 4px}h2{font-size:19px;
margin:36px 0 6px;border-bottom:1px solid #dde2ea;padding-bottom:4px}
.caption,.notes,figcaption{color:#4a5468}.notes{margin:4px 0 12px;padding-left:20px}
.scroll{overflow-x:auto}table{border-collapse:collapse;font-variant-numeric:tabular-nums}
th,td{padding:5px 9px;text-align:left;border-bottom:1px solid #e8ebf0;white-space:nowrap}
td.num{text-align:right}td.long{min-width:9em;white-space:normal}th{background:#f4f6f9;
cursor:pointer;user-select:none;vertical-align:bottom;position:relative;padding-right:16px}
th::after{position:absolute;top:5px;right:4px;font-size:10px;color:#1d4f91}th small{display:block;
font-weight:400;color:#6b7487}th:hover{background:#e8ecf3}
th[aria-sort=ascending]::after{content:"▲"}tr:nth-child(even){background:#fafbfc}
th[aria-sort=descending]::after{content:"▼"}tbody tr:hover{background:#eef3fb}
td.best{font-weight:700}.mark{color:#1d4f91;cursor:help}.ci{color:#6b7487;font-size:12px}
.charts{display:flex;flex-wrap:wrap;gap:8px 40px}.legend{font-size:13px;margin:14px 0 6px}
figure{margin:0}figcaption{font-size:13px;max-width:600px}svg{font-size:11px;fill:#1d2433}
.axis line{stroke:#6b7487}.axis .grid{stroke:#eceff4}.whisker line{stroke:#1d2433;stroke-width:1.2}
.front{fill:none;stroke-width:1.4;stroke-dasharray:4 3}.point{fill-opacity:.3;stroke-width:1.3}
.point.pareto-optimal{fill-opacity:1;stroke:#1d2433}.chance{stroke:#e15759;stroke-dasharray:5 3}
details.empty,p.empty{margin:2px 0;color:#4a5468}details.empty summary{cursor:pointer}"""
_JS = """document.querySelectorAll("table.leaderboard th").forEach(th => {
  const sort = () => {  // ascending first, then toggle; numbers by data-value, missing last
    const body = th.closest("table").tBodies[0], col = th.cellIndex, num = th.dataset.type == "num";
    const dir = th.getAttribute("aria-sort") === "ascending" ? -1 : 1;
    th.parentNode.querySelectorAll("th").forEach(h => h.removeAttribute("aria-sort"));
    th.setAttribute("aria-sort", dir > 0 ? "ascending" : "descending");
    const key = r => num ? parseFloat(r.cells[col].dataset.value) : r.cells[col].textContent.trim();
    body.append(...[...body.rows].sort((a, b) => {
      const x = key(a), y = key(b);
      return !num ? dir * x.localeCompare(y, undefined, {sensitivity: "base"})
        : isNaN(x) || isNaN(y) ? isNaN(x) - isNaN(y) : dir * (x - y); }));
  };
  th.addEventListener("click", sort);
  th.addEventListener("keydown", e => e.key === "Enter" && sort());
});"""

_NUMERIC: dict[str, Callable[[float], str]] = {
    "rank": "{:.0f}".format, "runs": "{:.0f}".format, "params": _si, "macs": _si,
    "train_s": partial(scaled, units=((3600, "h"), (60, "min"), (1, "s"))),
    "infer_ms": partial(scaled, units=((1000, "s"), (1, "ms"), (1e-3, "µs")))}
_LABELS = {"rank": "#", "macs": "MACs<small>per image</small>", "train_s": "train<small>median "
           "fit</small>", "infer_ms": "inference<small>per image, model alone</small>"}
# infer_model_ms: median ms per image in the network's forward passes (time/infer_ms_per_image);
# infer_ms: the whole test loop per image, data loading included (time/test_ms_per_image)
_LOADING = ("the whole test loop, data loading included: the run predates the model-only "
            "timing (time/infer_ms_per_image)")


def _td(x: float | None, html: str, cls: str = "num", title: str = "") -> str:
    """A numeric cell: data-value holds the raw number (NaN when missing, sorted last)."""
    tip = f' title="{escape(title)}"' * bool(title)
    return f'<td class="{cls}"{tip} data-value="{"NaN" if x is None else repr(x)}">{html}</td>'


def _metric_cell(row: dict, m: str) -> str:
    """mean ± std [ci_low, ci_high] with data-value = mean, marked best or tied with the best;
    a single run's CI is n/a."""
    mean, std, ci = _num(row.get(f"{m}_mean")), _num(row.get(f"{m}_std")), ci_of(row, m)
    text = DASH if mean is None else f"{mean:.3f}" + ("" if std is None else f" ± {std:.3f}")
    if mean is not None:
        text += (' <span class="ci" title="one run: no confidence interval">[n/a]</span>'
                 if ci is None else f' <span class="ci">[{ci[0]:.3f}, {ci[1]:.3f}]</span>')
    cls, mark, p = "num", "", _num(row.get(f"{m}_p"))
    if _num(row.get(f"{m}_best")) == 1:  # True; NaN, NA and False are not
        cls, mark = "num best", '<span class="mark" title="best of its dataset">★</span> '
    elif _num(row.get(f"{m}_tied")) == 1:
        tip = "not significantly different from the best" + ("" if p is None else f" (p={p:.2g})")
        cls, mark = "num tied", f'<span class="mark" title="{escape(tip)}">≈</span> '
    return _td(mean, mark + text, cls)


def _infer_cell(row: dict) -> str:
    """The model-only inference time where the runs measured it, else the old figure, labelled."""
    model, loop = _num(row.get("infer_model_ms")), _num(row.get("infer_ms"))
    if model is not None:
        return _td(model, _NUMERIC["infer_ms"](model), title="the network's forward passes alone")
    if loop is None:
        return _td(None, DASH)
    return _td(loop, f'{_NUMERIC["infer_ms"](loop)} <span class="ci">incl. loading</span>',
               title=_LOADING)


def _cell(row: dict, col: str, metrics: list[str]) -> str:
    if col in metrics:
        return _metric_cell(row, col)
    if col == "infer_ms":
        return _infer_cell(row)
    if col in _NUMERIC:
        x = _num(row.get(col))
        return _td(x, DASH if x is None else _NUMERIC[col](x))
    section = _text(row.get("section"))
    tip = f' title="section {escape(section)}"' if col == "method" and section != DASH else ""
    tip += ' class="long"' * (col == "reported")
    return f"<td{tip}>{escape(_text(row.get(col)))}</td>"


def _table(key: str, part: FamilyPart, rows: list[dict]) -> str:
    """The sortable table; the model column only where it differs from the method."""
    metrics = list(part.metrics)
    same_model = all(_text(r.get("model")) in (DASH, _text(r.get("method"))) for r in rows)
    cols = ["rank", "method", *(["model"] * (not same_model)), "dataset", "data", *metrics,
            "reported", "runs", "params", "macs", "train_s", "infer_ms", "tuning"]

    def label(c: str) -> str:
        lower = " ↓" * (c in part.lower_is_better)
        return _LABELS.get(c, escape(c)) + lower + (
            f'<small>{"primary · " * (c == metrics[0])}mean ± std [95% CI]</small>'
            if c in metrics else "")

    head = "".join(f'<th data-type="{"num" if c in _NUMERIC or c in metrics else "text"}" '
                   f'tabindex="0">{label(c)}</th>' for c in cols)
    body = "".join("<tr>" + "".join(_cell(r, c, metrics) for c in cols) + "</tr>" for r in rows)
    return (f'<div class="scroll"><table class="leaderboard" id="{escape(key)}"><thead><tr>'
            f'{head}</tr></thead><tbody>{body}</tbody></table></div>')


def pareto_metric(metrics: list[str]) -> str:
    """The Pareto plot's y axis: accuracy where the table has it, else its primary metric."""
    return "acc" if "acc" in metrics else metrics[0]


def _section(t: LeaderboardTable) -> str:
    """A table's heading and notes, then per family part its table, bar chart and Pareto plot
    (the parts without rows: one line)."""
    notes = "".join(f"<li>{escape(n)}</li>" for n in t.notes)
    parts = t.family_parts()
    body = "".join(_part(f"{t.key}-{part.family}" if len(parts) > 1 else t.key, part, frame,
                         len(parts) > 1) for part, frame in parts if len(frame))
    if idle := [part.family for part, frame in parts if not len(frame)]:
        body += f'<p class="empty">{escape(", ".join(idle))}: no rows yet.</p>'
    if len(t.notes) > FOLD_NOTES:  # e.g. every surveyed entry without runs: folded
        notes = f"<details><summary>{len(t.notes)} notes</summary><ul class=notes>{notes}</ul>" + (
            "</details>")
    elif notes:
        notes = f"<ul class=notes>{notes}</ul>"
    return f'<section id="s-{escape(t.key)}"><h2>{escape(t.title)}</h2>{notes}{body}</section>'


def _empty(tables: list[LeaderboardTable]) -> str:
    """The tables without rows, one line each; their notes (why each entry has none) fold out."""
    if not tables:
        return ""
    lines = "".join(
        f'<details class="empty" id="{escape(t.key)}"><summary>{escape(t.title)}: no rows yet'
        f"{f' ({len(t.notes)} note(s))' * bool(t.notes)}</summary><ul class=notes>"
        + "".join(f"<li>{escape(n)}</li>" for n in t.notes) + "</ul></details>"
        for t in tables)
    return (f'<section id="empty-tables"><h2>Tables without rows ({len(tables)})</h2>{lines}'
            "</section>")


def _part(key: str, part: FamilyPart, frame: pd.DataFrame, titled: bool) -> str:
    """One family's table, bar chart of its primary metric and Pareto plot."""
    rows = frame.to_dict("records")
    heading = f"<h3>{escape(part.family)}</h3>" * titled
    if not part.metrics:
        return heading + _table(key, part, rows)
    m, accuracy = part.metrics[0], pareto_metric(list(part.metrics))
    datasets = dict.fromkeys(_text(r.get("dataset")) for r in rows)
    colors = {d: PALETTE[i % len(PALETTE)] for i, d in enumerate(datasets)}
    legend = " ".join(f'<span style="color:{c}">●</span> {escape(d)}' for d, c in colors.items())
    missing = sum(_num(r.get("macs")) is None for r in rows)
    lower = accuracy in part.lower_is_better
    return (f'{heading}{_table(key, part, rows)}<p class="legend">datasets: {legend}</p>'
            f'<div class="charts">'
            f"<figure>{bars(rows, m, colors)}<figcaption>{escape(m)} per method and dataset, "
            f"{escape(bar_note(m))}; whiskers: 95% bootstrap CI of the mean (none for a single "
            "run).</figcaption></figure><figure>"
            f"{pareto(rows, accuracy, colors, lower)}<figcaption>{escape(accuracy)} against "
            f"compute ({'lower' if lower else 'higher'} is better); filled points, "
            "joined by the dashed step line, are Pareto-optimal within their dataset"
            f"{f'; {missing} row(s) without MACs not shown' * bool(missing)}.</figcaption>"
            "</figure></div>")


def page_order(tables: list[LeaderboardTable]) -> tuple[list[LeaderboardTable],
                                                         list[LeaderboardTable]]:
    """(tables with rows: the every-method table, the user's own runs, first; tables without)."""
    full = sorted((t for t in tables if len(t.frame)), key=lambda t: t.key != EVERY)
    return full, [t for t in tables if not len(t.frame)]


def render_html(tables: list[LeaderboardTable], title: str, caption: str) -> str:
    """The whole leaderboard page: the tables with rows (the every-method table first), then
    one line per table without rows; it loads nothing from elsewhere."""
    full, empty = page_order(tables)
    nav = " · ".join(f'<a href="#s-{escape(t.key)}">{escape(t.title)}</a>' for t in full)
    nav += f'{" · " * bool(full)}<a href="#empty-tables">{len(empty)} table(s) without rows</a>' * (
        bool(empty))
    return (f'<!DOCTYPE html><html lang="en"><head><meta charset="utf-8"><meta name="viewport" '
            f'content="width=device-width,initial-scale=1"><link rel="icon" href="data:,"><title>'
            f"{escape(title)}</title><style>{_CSS}</style></head><body><h1>{escape(title)}</h1>"
            f'<p class="caption">{escape(caption)}</p><nav>{nav}</nav>'
            f'{"".join(_section(t) for t in full)}{_empty(empty)}<script>{_JS}</script></body>'
            "</html>\n")
