"""Bayesian CNN by Monte-Carlo dropout (survey section 4.2.2; Ghoshal & Tucker, 2020).

From the survey: a ResNet backbone whose softmax layer is preceded by dropweights, kept active
at test time so that repeated stochastic passes approximate a Gaussian-process posterior; the
spread of the passes is the prediction's uncertainty. Chosen here: timm ``resnet18`` with the
MedMNIST 28 px stem (3x3 stride-1, no max-pool) instead of ResNet50v2, and ``nn.Dropout`` on the
pooled features (MC dropout, Gal & Ghahramani 2016) instead of dropping weights. ``mc_samples``
is the number of stochastic passes the classification module averages at test time (see
``mc_predict``).
"""

import timm
import torch
from torch import nn

from medbench.models.registry import register_model
from medbench.models.timm_families import _small_input_stem


class BayesianCNN(nn.Module):
    def __init__(self, in_chans: int, num_classes: int, dropout: float = 0.5,
                 mc_samples: int = 20) -> None:
        super().__init__()
        self.backbone = _small_input_stem(
            timm.create_model("resnet18", pretrained=False, in_chans=in_chans, num_classes=0),
            in_chans)
        self.dropout = nn.Dropout(dropout)
        self.fc = nn.Linear(self.backbone.num_features, num_classes)
        self.mc_samples = int(mc_samples)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.dropout(self.backbone(x)))

    @torch.no_grad()
    def mc_predict(self, x: torch.Tensor, samples: int | None = None
                   ) -> tuple[torch.Tensor, torch.Tensor]:
        """Predictive mean and variance of softmax over passes with only dropout in train mode."""
        was_training = self.training
        self.eval()
        for m in self.modules():
            if isinstance(m, nn.Dropout):
                m.train()
        probs = torch.stack([self(x).softmax(-1) for _ in range(samples or self.mc_samples)])
        self.train(was_training)
        return probs.mean(0), probs.var(0, unbiased=False)


@register_model(architecture="bayesian", source="paper")
def bayesian_cnn(in_chans: int = 3, num_classes: int = 2, dropout: float = 0.5,
                 mc_samples: int = 20) -> nn.Module:
    return BayesianCNN(in_chans, num_classes, dropout, mc_samples)
