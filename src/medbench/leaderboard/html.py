"""The leaderboard as one self-contained HTML page: sortable tables, bar and Pareto plots (SVG)."""

from __future__ import annotations

import math
from collections.abc import Callable
from functools import partial
from html import escape

import pandas as pd

from medbench.leaderboard.table import FamilyPart, LeaderboardTable

PALETTE = ("#4e79a7", "#f28e2b", "#59a14f", "#e15759", "#76b7b2", "#b07aa1", "#9c755f")
DASH = "–"
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
.point.pareto-optimal{fill-opacity:1;stroke:#1d2433}"""
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


def _num(value: object) -> float | None:
    """The value as a finite float, or None (NaN, None, text)."""
    x = pd.to_numeric(value, errors="coerce") if not isinstance(value, str) else math.nan
    return float(x) if pd.notna(x) and math.isfinite(x) else None


def _text(value: object) -> str:
    return DASH if pd.isna(value) else str(value)


def _scaled(x: float, units: tuple[tuple[float, str], ...]) -> str:
    """x in the largest unit it reaches, 3 significant digits: 11.2e6 -> '11.2 M'."""
    scale, unit = next(((s, u) for s, u in units if abs(x) >= s), units[-1])
    return f"{x / scale:.3g} {unit}".strip()


_si = partial(_scaled, units=((1e12, "T"), (1e9, "G"), (1e6, "M"), (1e3, "k"), (1, "")))
_NUMERIC: dict[str, Callable[[float], str]] = {
    "rank": "{:.0f}".format, "runs": "{:.0f}".format, "params": _si, "macs": _si,
    "train_s": partial(_scaled, units=((3600, "h"), (60, "min"), (1, "s"))),
    "infer_ms": partial(_scaled, units=((1000, "s"), (1, "ms"), (1e-3, "µs")))}
_LABELS = {"rank": "#", "macs": "MACs<small>per image</small>", "train_s": "train<small>median "
           "fit</small>", "infer_ms": "inference<small>per image</small>"}


def _td(x: float | None, html: str, cls: str = "num") -> str:
    """A numeric cell: data-value holds the raw number (NaN when missing, sorted last)."""
    return f'<td class="{cls}" data-value="{"NaN" if x is None else repr(x)}">{html}</td>'


def _metric_cell(row: dict, m: str) -> str:
    """mean ± std [ci_low, ci_high] with data-value = mean, marked best or tied with the best."""
    mean, std = _num(row.get(f"{m}_mean")), _num(row.get(f"{m}_std"))
    lo, hi = _num(row.get(f"{m}_ci_low")), _num(row.get(f"{m}_ci_high"))
    text = DASH if mean is None else f"{mean:.3f}" + ("" if std is None else f" ± {std:.3f}")
    if mean is not None and lo is not None and hi is not None:
        text += f' <span class="ci">[{lo:.3f}, {hi:.3f}]</span>'
    cls, mark, p = "num", "", _num(row.get(f"{m}_p"))
    if _num(row.get(f"{m}_best")) == 1:  # True; NaN, NA and False are not
        cls, mark = "num best", '<span class="mark" title="best of its dataset">★</span> '
    elif _num(row.get(f"{m}_tied")) == 1:
        tip = "not significantly different from the best" + ("" if p is None else f" (p={p:.2g})")
        cls, mark = "num tied", f'<span class="mark" title="{escape(tip)}">≈</span> '
    return _td(mean, mark + text, cls)


def _cell(row: dict, col: str, metrics: list[str]) -> str:
    if col in metrics:
        return _metric_cell(row, col)
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


def _ticks(lo: float, hi: float, n: int = 5) -> list[float]:
    """Round tick values covering [lo, hi]."""
    if hi <= lo:  # a single value: pad it
        lo, hi = lo - (abs(lo) * 0.05 or 1.0), hi + (abs(hi) * 0.05 or 1.0)
    step = 10 ** math.floor(math.log10((hi - lo) / n))
    step *= next(m for m in (1, 2, 5, 10) if (hi - lo) / (step * m) <= n)
    start = math.floor(lo / step + 1e-9) * step
    return [round(start + i * step, 12) for i in range(math.ceil((hi - start) / step - 1e-9) + 1)]


def _decimal(ticks: list[float]) -> Callable[[float], str]:
    return f"{{:.{max(0, -math.floor(math.log10(ticks[1] - ticks[0])))}f}}".format


def _axis(ticks: list[float], fmt: Callable[[float], str], pos: Callable[[float], float],
          at: float, title: str, vertical: bool = False, grid: float = 0.0) -> str:
    """Axis line, ticks, labels, title, grid lines: an x axis at y=at or a y axis at x=at."""
    out = ['<g class="axis">']
    for t in ticks:
        p = pos(t)
        out.append(f'<path class="grid" d="M{at},{p:.1f}h{grid}"/><line x1="{at - 5}" x2="{at}" '
                   f'y1="{p:.1f}" y2="{p:.1f}"/><text x="{at - 8}" y="{p + 4:.1f}" '
                   f'text-anchor="end">{escape(fmt(t))}</text>' if vertical else
                   f'<path class="grid" d="M{p:.1f},{at}v{-grid}"/><line x1="{p:.1f}" x2="{p:.1f}" '
                   f'y1="{at}" y2="{at + 5}"/><text x="{p:.1f}" y="{at + 17}" '
                   f'text-anchor="middle">{escape(fmt(t))}</text>')
    a, b = pos(ticks[0]), pos(ticks[-1])
    out.append(f'<line x1="{at}" x2="{at}" y1="{a:.1f}" y2="{b:.1f}"/><text transform="translate('
               f'{at - 46},{(a + b) / 2:.1f}) rotate(-90)"' if vertical else
               f'<line x1="{a:.1f}" x2="{b:.1f}" y1="{at}" y2="{at}"/><text x="{(a + b) / 2:.1f}" '
               f'y="{at + 34}"')
    out.append(f' text-anchor="middle">{escape(title)}</text>')
    return "".join(out) + "</g>"


def _bars(rows: list[dict], m: str, colors: dict[str, str]) -> str:
    """Horizontal bars of metric m's mean per row with 95% CI whiskers."""
    rows = [r for r in rows if _num(r.get(f"{m}_mean")) is not None]
    vals = [v for r in rows for s in ("mean", "ci_low", "ci_high")
            if (v := _num(r.get(f"{m}_{s}"))) is not None]
    if not rows:
        return ""
    ticks, left, width, step, top = _ticks(min(vals), max(vals)), 250, 340, 24, 8
    x = lambda v: left + (v - ticks[0]) / (ticks[-1] - ticks[0]) * width  # noqa: E731
    bottom, fmt = top + step * len(rows), _decimal(ticks)
    start = f", axis from {fmt(ticks[0])}" if ticks[0] > 0 else ""
    out = [f'<svg class="bars" width="{left + width + 24}" height="{bottom + 44}">',
           _axis(ticks, fmt, x, bottom, f"{m}: mean and 95% CI{start}", grid=bottom - top)]
    for i, r in enumerate(rows):
        mean, y, mid = float(r[f"{m}_mean"]), top + i * step, top + i * step + step / 2
        lo, hi = _num(r.get(f"{m}_ci_low")), _num(r.get(f"{m}_ci_high"))
        label = f"{_text(r.get('method'))} · {_text(r.get('dataset'))}"
        ci = "" if lo is None or hi is None else f" [{lo:.3f}, {hi:.3f}]"
        out.append(f"<g><title>{escape(label)}: {escape(m)} {mean:.3f}{ci}</title><text x="
                   f'"{left - 6}" y="{mid + 4}" text-anchor="end">{escape(label[:38])}</text>'
                   f'<rect class="bar" x="{left}" y="{y + 4}" height="{step - 8}" width="'
                   f'{max(x(mean) - left, 0):.1f}" fill="{colors[_text(r.get("dataset"))]}"/>')
        if lo is not None and hi is not None:  # a line from ci_low to ci_high, and two caps
            out.append('<g class="whisker">' + "".join(
                f'<line x1="{x(a):.1f}" x2="{x(b):.1f}" y1="{mid - d}" y2="{mid + d}"/>'
                for a, b, d in ((lo, hi, 0), (lo, lo, 5), (hi, hi, 5))) + "</g>")
        out.append("</g>")
    return "".join(out) + "</svg>"


def pareto_optimal(points: list[tuple[str, float, float]], lower: bool = False) -> list[bool]:
    """(dataset, macs, mean) points: True where no point of the same dataset has fewer-or-equal
    MACs and a better-or-equal mean (higher; lower when ``lower``), one of them strictly."""
    sign = -1.0 if lower else 1.0
    return [not any(d == e and m2 <= m1 and sign * v2 >= sign * v1
                    and (m2 < m1 or sign * v2 > sign * v1)
                    for e, m2, v2 in points) for d, m1, v1 in points]


def _pareto(rows: list[dict], m: str, colors: dict[str, str], lower: bool = False) -> str:
    """Primary metric mean against MACs (log scale over > 10x), a Pareto front per dataset."""
    rows = [r for r in rows
            if (_num(r.get("macs")) or 0) > 0 and _num(r.get(f"{m}_mean")) is not None]
    if not rows:
        return ""
    pts = [(_text(r.get("dataset")), float(r["macs"]), float(r[f"{m}_mean"])) for r in rows]
    macs, means, optimal = [p[1] for p in pts], [p[2] for p in pts], pareto_optimal(pts, lower)
    log = max(macs) / min(macs) > 10
    lo, hi = math.floor(math.log10(min(macs))), math.ceil(math.log10(max(macs)))
    xt = [10.0**k for k in range(lo, max(hi, lo + 1) + 1)] if log else _ticks(min(macs), max(macs))
    tx: Callable[[float], float] = math.log10 if log else float
    yt, left, top, w, h = _ticks(min(means), max(means)), 64, 10, 380, 240
    x = lambda v: left + (tx(v) - tx(xt[0])) / (tx(xt[-1]) - tx(xt[0])) * w  # noqa: E731
    y = lambda v: top + h - (v - yt[0]) / (yt[-1] - yt[0]) * h  # noqa: E731
    out = [f'<svg class="pareto" width="{left + w + 110}" height="{top + h + 48}">',
           _axis(xt, _si, x, top + h, "MACs per image" + " (log scale)" * log),
           _axis(yt, _decimal(yt), y, left, f"{m} (mean)", vertical=True, grid=w)]
    for d in dict.fromkeys(p[0] for p in pts):  # datasets with points
        front = sorted((mc, v) for (e, mc, v), o in zip(pts, optimal, strict=True) if o and e == d)
        out.append(f'<path class="front" stroke="{colors[d]}" d="M{x(front[0][0]):.1f},'
                   f'{y(front[0][1]):.1f}' + "".join(f"H{x(mc):.1f}V{y(v):.1f}"
                                                     for mc, v in front[1:]) + '"/>')
    for r, (d, mc, v), o in zip(rows, pts, optimal, strict=True):
        method = escape(_text(r.get("method")))
        out.append(f'<circle class="point{" pareto-optimal" * o}" cx="{x(mc):.1f}" cy="'
                   f'{y(v):.1f}" r="5" fill="{colors[d]}" stroke="{colors[d]}"><title>{method} · '
                   f'{escape(d)}: MACs {_si(mc)}, {escape(m)} {v:.3f}{" (Pareto-optimal)" * o}'
                   f"</title></circle>"
                   + (f'<text x="{x(mc) + 7:.1f}" y="{y(v) - 6:.1f}">{method}</text>' if o else ""))
    return "".join(out) + "</svg>"


def pareto_metric(metrics: list[str]) -> str:
    """The Pareto plot's y axis: accuracy where the table has it, else its primary metric."""
    return "acc" if "acc" in metrics else metrics[0]


def _section(t: LeaderboardTable) -> str:
    """A table's heading and notes, then per family part its table, bar chart and Pareto plot."""
    notes = "".join(f"<li>{escape(n)}</li>" for n in t.notes)
    parts = t.family_parts()
    body = "".join(_part(f"{t.key}-{part.family}" if len(parts) > 1 else t.key, part, frame,
                         len(parts) > 1) for part, frame in parts)
    return (f'<section><h2>{escape(t.title)}</h2>{f"<ul class=notes>{notes}</ul>" * bool(notes)}'
            f"{body}</section>")


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
            f"<figure>{_bars(rows, m, colors)}<figcaption>{escape(m)} per method and dataset; "
            f"whiskers: 95% bootstrap CI of the mean.</figcaption></figure><figure>"
            f"{_pareto(rows, accuracy, colors, lower)}<figcaption>{escape(accuracy)} against "
            f"compute ({'lower' if lower else 'higher'} is better); filled points, "
            "joined by the dashed step line, are Pareto-optimal within their dataset"
            f"{f'; {missing} row(s) without MACs not shown' * bool(missing)}.</figcaption>"
            "</figure></div>")


def render_html(tables: list[LeaderboardTable], title: str, caption: str) -> str:
    """The whole leaderboard page, one section per table; it loads nothing from elsewhere."""
    nav = " · ".join(f'<a href="#{escape(t.key)}">{escape(t.title)}</a>' for t in tables)
    return (f'<!DOCTYPE html><html lang="en"><head><meta charset="utf-8"><meta name="viewport" '
            f'content="width=device-width,initial-scale=1"><link rel="icon" href="data:,"><title>'
            f"{escape(title)}</title><style>{_CSS}</style></head><body><h1>{escape(title)}</h1>"
            f'<p class="caption">{escape(caption)}</p><nav>{nav}</nav>'
            f'{"".join(_section(t) for t in tables)}<script>{_JS}</script></body></html>\n')
