"""Files written for each run: per-sample test predictions, confusion matrix and ROC plots."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import torch  # noqa: E402
from sklearn.metrics import roc_curve  # noqa: E402


def write_predictions(predictions: dict[str, torch.Tensor], path: Path) -> Path:
    """CSV with one row per test sample: index, label(s), one probability per class, with
    ``runner.uncertainty`` the predictive entropy and mutual information (nats), and the
    sample's id (its file path, or its index in an array)."""
    probs = predictions["probs"].numpy()
    labels = predictions["label"].numpy()
    frame = pd.DataFrame({"index": predictions["index"].numpy()})
    if labels.ndim == 2:  # multi-label
        for i in range(labels.shape[1]):
            frame[f"label_{i}"] = labels[:, i].astype(int)
    else:
        frame["label"] = labels
    for i in range(probs.shape[1]):
        frame[f"prob_{i}"] = probs[:, i]
    for key in ("entropy", "mutual_info"):  # runner.uncertainty: several passes per item
        if key in predictions:
            frame[key] = predictions[key].numpy()
    if "sample_id" in predictions:  # last: the numeric columns before it parse in one call
        frame["sample_id"] = predictions["sample_id"]
    frame.to_csv(path, index=False, float_format="%.6g")
    return path


def plot_confusion_matrix(matrix: np.ndarray, class_names: list[str], path: Path) -> Path:
    """Counts per (true, predicted) pair; multi-label matrices are drawn one per label."""
    matrices = matrix if matrix.ndim == 3 else matrix[None]
    names = class_names if matrix.ndim == 3 else [""]
    fig, axes = plt.subplots(1, len(matrices), figsize=(3.2 * len(matrices) + 1, 3.4),
                             squeeze=False)
    for ax, cm, title in zip(axes[0], matrices, names, strict=False):
        ax.imshow(cm, cmap="Blues")
        ticks = range(cm.shape[0])
        labels = ["neg", "pos"] if matrix.ndim == 3 else class_names
        ax.set_xticks(ticks, labels, rotation=45, ha="right", fontsize=7)
        ax.set_yticks(ticks, labels, fontsize=7)
        ax.set_xlabel("predicted")
        ax.set_ylabel("true")
        ax.set_title(title, fontsize=8)
        for (i, j), count in np.ndenumerate(cm):
            ax.text(j, i, int(count), ha="center", va="center", fontsize=8,
                    color="white" if count > cm.max() / 2 else "black")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def plot_roc(labels: np.ndarray, probs: np.ndarray, class_names: list[str], path: Path,
             positive_class: int = 1) -> Path:
    """ROC curves: the positive class for binary, one-vs-rest per class otherwise."""
    fig, ax = plt.subplots(figsize=(4.5, 4.5))
    if probs.shape[1] == 2 and labels.ndim == 1:
        name = class_names[positive_class] if len(class_names) > 1 else "positive"
        curves = [(name, labels == positive_class, probs[:, positive_class])]
    else:
        onehot = labels if labels.ndim == 2 else np.eye(probs.shape[1])[labels]
        curves = [(name, onehot[:, i], probs[:, i]) for i, name in enumerate(class_names)]
    for name, truth, score in curves:
        if truth.min() == truth.max():
            continue  # a class absent from the test set has no ROC curve
        fpr, tpr, _ = roc_curve(truth, score)
        ax.plot(fpr, tpr, label=str(name)[:30])
    ax.plot([0, 1], [0, 1], "k--", linewidth=0.8)
    ax.set_xlabel("1 - specificity")
    ax.set_ylabel("sensitivity")
    ax.legend(fontsize=7, loc="lower right")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def write_test_outputs(predictions: dict[str, torch.Tensor], label_type: str,
                       label_names: list[str], folder: Path,
                       positive_class: int = 1) -> list[Path]:
    """The per-sample predictions the leaderboard reads, the confusion matrix, ROC curves, the
    reliability diagram and the selective-prediction curve."""
    from medbench.metrics.classification import confusion_matrix
    from medbench.tasks.classification.calibration_plots import write_trust_outputs

    probs, labels = predictions["probs"], predictions["label"]
    names = label_names or [str(i) for i in range(probs.shape[1])]
    scores = probs[:, 1] if label_type == "binary" else probs
    confusion = confusion_matrix(label_type, probs.shape[1])(scores, labels.long())
    return [write_predictions(predictions, folder / "predictions_test.csv"),
            plot_confusion_matrix(confusion.numpy(), names, folder / "confusion_matrix.png"),
            plot_roc(labels.numpy(), probs.numpy(), names, folder / "roc.png", positive_class),
            *write_trust_outputs(probs, labels, label_type, folder, positive_class)]
