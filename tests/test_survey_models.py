"""Behaviour specific to the surveyed designs (shape tests are registry-wide in test_models)."""

import torch
from torch import nn

from medbench.models import create_model


def test_bayesian_mc_dropout_variance() -> None:
    torch.manual_seed(0)
    assert create_model("bayesian_cnn", in_chans=1, num_classes=3).mc_samples == 20
    model = create_model("bayesian_cnn", in_chans=1, num_classes=3, dropout=0.5, mc_samples=4)
    assert model.mc_samples == 4
    x = torch.randn(2, 1, 28, 28)
    with torch.no_grad():
        model.eval()
        assert torch.equal(model(x), model(x))
        for m in model.modules():
            if isinstance(m, nn.Dropout):
                m.train()
        probs = torch.stack([model(x).softmax(-1) for _ in range(model.mc_samples)])
    assert not torch.equal(probs[0], probs[1])
    assert probs.var(0).sum() > 0
    mean, var = model.mc_predict(x)
    assert mean.shape == var.shape == (2, 3) and var.sum() > 0
    assert torch.allclose(mean.sum(-1), torch.ones(2))
    assert not model.training  # mc_predict restores the mode it found
