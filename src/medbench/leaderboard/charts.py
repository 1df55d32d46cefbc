"""The leaderboard page's SVG charts (bars from a stated baseline, Pareto fronts) and the number
formats the page's tables share with them."""

from __future__ import annotations

import math
from collections.abc import Callable
from functools import partial
from html import escape

import pandas as pd

DASH = "–"
# the score a metric's coin toss gets: drawn as a dashed line on its bar chart
CHANCE = {"auc": 0.5}


def num(value: object) -> float | None:
    """The value as a finite float, or None (NaN, None, text)."""
    x = pd.to_numeric(value, errors="coerce") if not isinstance(value, str) else math.nan
    return float(x) if pd.notna(x) and math.isfinite(x) else None


def text(value: object) -> str:
    return DASH if pd.isna(value) else str(value)


def scaled(x: float, units: tuple[tuple[float, str], ...]) -> str:
    """x in the largest unit it reaches, 3 significant digits: 11.2e6 -> '11.2 M'."""
    scale, unit = next(((s, u) for s, u in units if abs(x) >= s), units[-1])
    return f"{x / scale:.3g} {unit}".strip()


si = partial(scaled, units=((1e12, "T"), (1e9, "G"), (1e6, "M"), (1e3, "k"), (1, "")))


def ci_of(row: dict, m: str) -> tuple[float, float] | None:
    """Metric m's 95% CI of the row, or None: missing, or a single run (no spread to bound)."""
    lo, hi = num(row.get(f"{m}_ci_low")), num(row.get(f"{m}_ci_high"))
    return None if lo is None or hi is None or num(row.get("runs")) == 1 else (lo, hi)


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


def bar_note(m: str) -> str:
    """How metric m's bars are drawn, as the chart's axis title states it."""
    chance = CHANCE.get(m)
    return "axis from 0" + (f"; dashed: chance {chance:g}" if chance is not None else "")


def bars(rows: list[dict], m: str, colors: dict[str, str]) -> str:
    """Horizontal bars of metric m's mean per row, from 0 (so lengths compare as ratios), with
    95% CI whiskers (none for a single run) and m's chance level, if it has one."""
    rows = [r for r in rows if num(r.get(f"{m}_mean")) is not None]
    if not rows:
        return ""
    vals = [v for r in rows for v in (float(r[f"{m}_mean"]), *(ci_of(r, m) or ()))]
    chance = CHANCE.get(m)
    ticks = _ticks(min(0.0, *vals), max(0.0, *vals, *([chance] if chance is not None else [])))
    left, width, step, top = 250, 340, 24, 8
    x = lambda v: left + (v - ticks[0]) / (ticks[-1] - ticks[0]) * width  # noqa: E731
    bottom, fmt, zero = top + step * len(rows), _decimal(ticks), x(0.0)
    out = [f'<svg class="bars" width="{left + width + 24}" height="{bottom + 44}">',
           _axis(ticks, fmt, x, bottom, f"{m}: mean and 95% CI ({bar_note(m)})",
                 grid=bottom - top)]
    for i, r in enumerate(rows):
        mean, y, mid = float(r[f"{m}_mean"]), top + i * step, top + i * step + step / 2
        ci = ci_of(r, m)
        label = f"{text(r.get('method'))} · {text(r.get('dataset'))}"
        shown = " [CI n/a: 1 run]" if ci is None else f" [{ci[0]:.3f}, {ci[1]:.3f}]"
        out.append(f"<g><title>{escape(label)}: {escape(m)} {mean:.3f}{shown}</title><text x="
                   f'"{left - 6}" y="{mid + 4}" text-anchor="end">{escape(label[:38])}</text>'
                   f'<rect class="bar" x="{min(zero, x(mean)):.1f}" y="{y + 4}" height="'
                   f'{step - 8}" width="{abs(x(mean) - zero):.1f}" fill="'
                   f'{colors[text(r.get("dataset"))]}"/>')
        if ci is not None:  # a line from ci_low to ci_high, and two caps
            out.append('<g class="whisker">' + "".join(
                f'<line x1="{x(a):.1f}" x2="{x(b):.1f}" y1="{mid - d}" y2="{mid + d}"/>'
                for a, b, d in ((ci[0], ci[1], 0), (ci[0], ci[0], 5), (ci[1], ci[1], 5)))
                       + "</g>")
        out.append("</g>")
    if chance is not None:
        out.append(f'<path class="chance" d="M{x(chance):.1f},{top}V{bottom}"><title>chance: '
                   f"{chance:g}</title></path>")
    return "".join(out) + "</svg>"


def pareto_optimal(points: list[tuple[str, float, float]], lower: bool = False) -> list[bool]:
    """(dataset, macs, mean) points: True where no point of the same dataset has fewer-or-equal
    MACs and a better-or-equal mean (higher; lower when ``lower``), one of them strictly."""
    sign = -1.0 if lower else 1.0
    return [not any(d == e and m2 <= m1 and sign * v2 >= sign * v1
                    and (m2 < m1 or sign * v2 > sign * v1)
                    for e, m2, v2 in points) for d, m1, v1 in points]


def pareto(rows: list[dict], m: str, colors: dict[str, str], lower: bool = False) -> str:
    """Primary metric mean against MACs (log scale over > 10x), a Pareto front per dataset."""
    rows = [r for r in rows
            if (num(r.get("macs")) or 0) > 0 and num(r.get(f"{m}_mean")) is not None]
    if not rows:
        return ""
    pts = [(text(r.get("dataset")), float(r["macs"]), float(r[f"{m}_mean"])) for r in rows]
    macs, means, optimal = [p[1] for p in pts], [p[2] for p in pts], pareto_optimal(pts, lower)
    log = max(macs) / min(macs) > 10
    lo, hi = math.floor(math.log10(min(macs))), math.ceil(math.log10(max(macs)))
    xt = [10.0**k for k in range(lo, max(hi, lo + 1) + 1)] if log else _ticks(min(macs), max(macs))
    tx: Callable[[float], float] = math.log10 if log else float
    yt, left, top, w, h = _ticks(min(means), max(means)), 64, 10, 380, 240
    x = lambda v: left + (tx(v) - tx(xt[0])) / (tx(xt[-1]) - tx(xt[0])) * w  # noqa: E731
    y = lambda v: top + h - (v - yt[0]) / (yt[-1] - yt[0]) * h  # noqa: E731
    out = [f'<svg class="pareto" width="{left + w + 110}" height="{top + h + 48}">',
           _axis(xt, si, x, top + h, "MACs per image" + " (log scale)" * log),
           _axis(yt, _decimal(yt), y, left, f"{m} (mean)", vertical=True, grid=w)]
    for d in dict.fromkeys(p[0] for p in pts):  # datasets with points
        front = sorted((mc, v) for (e, mc, v), o in zip(pts, optimal, strict=True) if o and e == d)
        out.append(f'<path class="front" stroke="{colors[d]}" d="M{x(front[0][0]):.1f},'
                   f'{y(front[0][1]):.1f}' + "".join(f"H{x(mc):.1f}V{y(v):.1f}"
                                                     for mc, v in front[1:]) + '"/>')
    for r, (d, mc, v), o in zip(rows, pts, optimal, strict=True):
        method = escape(text(r.get("method")))
        out.append(f'<circle class="point{" pareto-optimal" * o}" cx="{x(mc):.1f}" cy="'
                   f'{y(v):.1f}" r="5" fill="{colors[d]}" stroke="{colors[d]}"><title>{method} · '
                   f'{escape(d)}: MACs {si(mc)}, {escape(m)} {v:.3f}{" (Pareto-optimal)" * o}'
                   f"</title></circle>"
                   + (f'<text x="{x(mc) + 7:.1f}" y="{y(v) - 6:.1f}">{method}</text>' if o else ""))
    return "".join(out) + "</svg>"
