"""Model size and cost: parameter count and multiply-accumulates for one input."""

from __future__ import annotations

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def count_macs(model: nn.Module, in_chans: int, size: int) -> int:
    """MACs of one forward pass on a (1, in_chans, size, size) input (convs and matmuls)."""
    was_training = model.training
    model.eval()
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        model(torch.zeros(1, in_chans, size, size))
    model.train(was_training)
    return counter.get_total_flops() // 2  # torch counts a multiply-add as 2 FLOPs
