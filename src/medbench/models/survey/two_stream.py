"""Two-stream fused CNN (survey section 4.5.2; Gao et al., 2017).

From the survey: two CNN paths run separately on two inputs (there: normalised echo frames and
acceleration images along time) and are fused after their final classification scores, then a
softmax. Here the two inputs arrive stacked along channels (``augment.views``, e.g. the image
and its CLAHE-enhanced copy) and are split evenly; each stream is any registered model
(default ``lenet5``); fusion averages the streams' scores ("scores") or probabilities
("probs", returned as log-probabilities).
"""

import torch
from torch import nn

from medbench.errors import ConfigError
from medbench.models.registry import create_model, register_model


class TwoStreamFused(nn.Module):
    def __init__(self, in_chans: int, num_classes: int, stream: str = "lenet5",
                 streams: int = 2, fusion: str = "scores") -> None:
        super().__init__()
        if in_chans % streams:
            raise ConfigError(f"two_stream_fused: {in_chans} input channels do not split into "
                              f"{streams} streams (set augment.views to {streams} views)")
        if fusion not in ("scores", "probs"):
            raise ConfigError(f"model.kwargs.fusion: expected 'scores' or 'probs', got '{fusion}'")
        self.split, self.fusion = in_chans // streams, fusion
        self.streams = nn.ModuleList(create_model(stream, self.split, num_classes)
                                     for _ in range(streams))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        inputs = torch.split(x, self.split, dim=1)
        scores = torch.stack([net(part) for net, part in zip(self.streams, inputs, strict=True)])
        if self.fusion == "scores":
            return scores.mean(0)
        return scores.softmax(-1).mean(0).clamp_min(1e-12).log()


@register_model(architecture="two_stream", source="paper", min_input_size=12, views=2)
def two_stream_fused(in_chans: int = 2, num_classes: int = 2, stream: str = "lenet5",
                     streams: int = 2, fusion: str = "scores") -> nn.Module:
    return TwoStreamFused(in_chans, num_classes, stream, streams, fusion)
