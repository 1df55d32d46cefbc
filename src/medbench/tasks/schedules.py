"""Learning-rate schedules expressed in fractions of training, so epochs can change freely."""

from torch.optim import Optimizer
from torch.optim.lr_scheduler import MultiStepLR


def multistep_at_fractions(optimizer: Optimizer, max_epochs: int,
                           fractions: tuple[float, ...] = (0.5, 0.75),
                           gamma: float = 0.1) -> MultiStepLR:
    """MultiStepLR whose milestones are fractions of ``max_epochs`` (MedMNIST: 0.5, 0.75)."""
    milestones = sorted({max(1, round(f * max_epochs)) for f in fractions})
    return MultiStepLR(optimizer, milestones=milestones, gamma=gamma)
