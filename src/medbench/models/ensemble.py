"""Ensembles by probability averaging (survey 4.1.1 and 6.2.2): trained members, one vote each."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch
from torch import nn

from medbench.errors import ConfigError
from medbench.models.registry import create_model, load_pretrained, register_model


class ProbabilityEnsemble(nn.Module):
    """Mean of the members' class probabilities, returned as log-probabilities.

    ``softmax`` (or ``sigmoid`` when ``multilabel``) of each member's output is averaged; the
    log of the mean is returned so that the classification module's softmax gives back
    exactly the mean.
    """

    def __init__(self, members: Sequence[nn.Module], multilabel: bool = False) -> None:
        super().__init__()
        if not members:
            raise ConfigError("model.kwargs.members: an ensemble needs at least one member")
        self.members = nn.ModuleList(members)
        self.multilabel = multilabel

    def member_probabilities(self, images: torch.Tensor) -> torch.Tensor:
        squash = torch.sigmoid if self.multilabel else lambda t: t.softmax(dim=1)
        return torch.stack([squash(member(images).float()) for member in self.members])

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        mean = self.member_probabilities(images).mean(dim=0).clamp_min(1e-12)
        return torch.logit(mean.clamp_max(1 - 1e-7)) if self.multilabel else mean.log()


@register_model(architecture="ensemble", source="medbench", composite=True)
def ensemble(in_chans: int, num_classes: int, members: Sequence[Mapping] = (),
             multilabel: bool = False) -> nn.Module:
    """``members``: ``[{name: resnet18_28, checkpoint: path/to/best.ckpt, kwargs: {}}, ...]``.

    Each member is built with the registry and must load its checkpoint completely. Evaluate
    with ``trainer.max_epochs=0`` (test only); training the ensemble fine-tunes every member.
    """
    built = []
    for i, spec in enumerate(members):
        if "name" not in spec or "checkpoint" not in spec:
            raise ConfigError(f"model.kwargs.members[{i}]: needs 'name' and 'checkpoint'")
        member = create_model(spec["name"], in_chans, num_classes, **dict(spec.get("kwargs", {})))
        load_pretrained(member, spec["checkpoint"], strict=True)
        built.append(member)
    return ProbabilityEnsemble(built, multilabel)
