"""What a saliency map explains, per family: the output a map is taken for and how sure the
model is of each item. A family plugs in with :func:`register_targets`; shared code never
names one."""

from __future__ import annotations

from collections.abc import Callable

import torch
from pytorch_grad_cam.utils.model_targets import (
    ClassifierOutputSoftmaxTarget,
    ClassifierOutputTarget,
)

from medbench.data.base import DatasetInfo
from medbench.errors import ConfigError
from medbench.registry import Registry


class SaliencyTargets:
    """A family's saliency targets. ``scores(outputs, targets, info)`` returns per item its
    predicted output (``predicted``), the model's confidence in it (``confidence``, higher:
    surer) and its score on the true target (``true_score``, lowest: worst handled)."""

    def scores(self, outputs: torch.Tensor, targets: torch.Tensor,
               info: DatasetInfo) -> dict[str, torch.Tensor]:
        raise NotImplementedError

    def map_targets(self, predicted: torch.Tensor) -> list[Callable]:
        """The package's targets of the maps (gradients or scores of these outputs)."""
        raise NotImplementedError

    def faithfulness_targets(self, predicted: torch.Tensor) -> list[Callable]:
        """The targets whose change the faithfulness score measures (probabilities)."""
        raise NotImplementedError


TARGETS = Registry("saliency target")
register_targets = TARGETS.register


@register_targets("classification")
class ClassTargets(SaliencyTargets):
    """Maps of the predicted class's logit; confidence its probability (sigmoid per label for
    multi-label data, softmax otherwise); the worst items those of lowest true-class
    probability (multi-label: of the mean probability of the true labels)."""

    def scores(self, outputs: torch.Tensor, targets: torch.Tensor,
               info: DatasetInfo) -> dict[str, torch.Tensor]:
        if info.label_type == "multilabel":
            probs = outputs.float().sigmoid()
            true = (probs * targets).sum(1) / targets.sum(1).clamp(min=1)
        else:
            probs = outputs.float().softmax(1)
            true = probs.gather(1, targets.long().view(-1, 1)).squeeze(1)
        confidence, predicted = probs.max(1)
        return {"predicted": predicted, "confidence": confidence, "true_score": true}

    def map_targets(self, predicted: torch.Tensor) -> list[Callable]:
        return [ClassifierOutputTarget(int(c)) for c in predicted]

    def faithfulness_targets(self, predicted: torch.Tensor) -> list[Callable]:
        return [ClassifierOutputSoftmaxTarget(int(c)) for c in predicted]


def targets_for(family: str) -> SaliencyTargets:
    """The saliency targets of ``family``; a one-line error for a family that has none."""
    if family not in TARGETS:
        raise ConfigError(f"medbench explain: no saliency targets for the {family} family yet "
                          f"(available: {', '.join(TARGETS.names())})")
    return TARGETS.get(family).builder()
