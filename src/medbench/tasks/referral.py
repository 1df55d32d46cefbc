"""Selective prediction for any family whose test outcome has a per-item confidence and a
per-item quality (:meth:`medbench.family.Family.referral`): the least confident items are
referred to a human, and the family's per-item measure is averaged over the retained ones.

Logged per run (``test/``): ``aurc``, the area under the risk-coverage curve with risk
1 - quality (Geifman et al. 2018; the mean over k = 1 .. n retained, lower is better),
``selective_<quality>_at_90`` (the mean quality of the 90% most confident) and
``referral_excluded`` (items whose quality is undefined, NaN: left out, counted). Written:
``selective_prediction.csv`` (coverage, retained, lowest confidence kept, mean quality) and
its plot. Classification computes the same two metrics in its module (``metrics/selective``),
with AUC on the retained items in its curve.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd
import torch

from medbench.metrics.selective import retained, retained_order, selective_accuracy

if TYPE_CHECKING:
    from medbench.family import Referral

COVERAGES = tuple(round(1 - 0.05 * i, 2) for i in range(20))  # 1.00, 0.95, ..., 0.05
CURVE_FILE = "selective_prediction.csv"


def _defined(referral: Referral) -> tuple[torch.Tensor, torch.Tensor, int]:
    confidence = torch.as_tensor(np.asarray(referral.confidence, dtype=np.float64))
    quality = torch.as_tensor(np.asarray(referral.quality, dtype=np.float64))
    kept = torch.isfinite(quality) & torch.isfinite(confidence)
    return confidence[kept], quality[kept], int((~kept).sum())


def referral_metrics(referral: Referral) -> dict[str, float]:
    """``test/aurc``, ``test/selective_<quality>_at_90`` and ``test/referral_excluded``."""
    confidence, quality, excluded = _defined(referral)
    out = {"test/referral_excluded": float(excluded)}
    if not len(quality):
        return {**out, "test/aurc": float("nan"),
                f"test/selective_{referral.quality_name}_at_90": float("nan")}
    curve = selective_accuracy(confidence, quality)
    return {**out, "test/aurc": float((1 - curve).mean()),
            f"test/selective_{referral.quality_name}_at_90":
                float(curve[retained(len(quality), 0.9) - 1])}


def coverage_curve(referral: Referral) -> pd.DataFrame:
    """Coverage, retained items, the lowest confidence kept, the mean quality retained."""
    confidence, quality, _ = _defined(referral)
    order = retained_order(confidence).numpy()
    rows = []
    for coverage in COVERAGES if len(order) else ():
        kept = order[:retained(len(order), coverage)]
        rows.append({"coverage": coverage, "retained": len(kept),
                     "min_confidence": float(confidence[kept[-1]]),
                     referral.quality_name: float(quality.numpy()[kept].mean())})
    return pd.DataFrame(rows, columns=["coverage", "retained", "min_confidence",
                                       referral.quality_name])


def plot_coverage(curve: pd.DataFrame, columns: Sequence[str], path: Path,
                  labels: Mapping[str, str] | None = None) -> Path:
    """The retained items' measures (``columns`` of ``curve``) against coverage."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(4.5, 4))
    for column in columns:
        if curve[column].notna().any():
            ax.plot(curve["coverage"], curve[column], marker=".",
                    label=(labels or {}).get(column, column))
    ax.invert_xaxis()
    ax.set_xlabel("coverage (least confident referred)")
    ax.set_ylabel("on the retained items")
    ax.legend(fontsize=7, loc="lower right")
    fig.subplots_adjust(left=0.15, right=0.97, top=0.97, bottom=0.12)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def write_referral(referral: Referral, folder: Path) -> list[Path]:
    """``selective_prediction.csv`` and ``selective_prediction.png``."""
    curve = coverage_curve(referral)
    csv = folder / CURVE_FILE
    curve.to_csv(csv, index=False, float_format="%.6g")
    label = {referral.quality_name: f"{referral.quality_name} (confidence: "
                                    f"{referral.confidence_name})"}
    return [csv, plot_coverage(curve, [referral.quality_name], csv.with_suffix(".png"), label)]
