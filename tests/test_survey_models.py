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


def test_two_stream_fuses_the_scores_of_its_streams() -> None:
    torch.manual_seed(0)
    model = create_model("two_stream_fused", in_chans=2, num_classes=3).eval()
    x = torch.randn(4, 2, 28, 28)
    with torch.no_grad():
        streams = [net(x[:, i:i + 1]) for i, net in enumerate(model.streams)]
        assert torch.allclose(model(x), (streams[0] + streams[1]) / 2)
        x_other = x.clone()
        x_other[:, 1] = 0  # the second input matters
        assert not torch.allclose(model(x), model(x_other))


def test_views_stack_as_channels_with_one_shared_draw() -> None:
    import numpy as np

    from medbench.data.transforms import build_pipeline

    views = [[], [{"name": "CLAHE", "p": 1.0}]]
    pipeline = build_pipeline([{"name": "HorizontalFlip", "p": 1.0}],
                              {"mean": [0.0], "std": [1.0]}, views=views)
    image = np.tile(np.arange(28, dtype=np.uint8)[None, :, None] * 9, (28, 1, 1))
    out = pipeline(image=image)["image"]
    assert out.shape == (2, 28, 28)
    assert out[0, 0, 0] > out[0, 0, -1]  # the flip reached view 0
    assert out[1, 0, 0] > out[1, 0, -1]  # and, the same draw, view 1
