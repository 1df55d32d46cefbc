import pytest
import timm
import torch

from medbench.errors import ConfigError
from medbench.models import MODELS, create_model


def _size(name: str) -> int:
    return max(28, MODELS.get(name).meta["min_input_size"])


@pytest.mark.parametrize("name", MODELS.names())
@pytest.mark.parametrize("in_chans", [1, 3])
def test_forward_backward_any_channels_and_classes(name, in_chans):
    model = create_model(name, in_chans=in_chans, num_classes=3)
    size = _size(name)
    out = model(torch.randn(2, in_chans, size, size))
    assert out.shape == (2, 3)
    out.sum().backward()
    assert all(p.grad is not None for p in model.parameters() if p.requires_grad)


@pytest.mark.parametrize("name", [n for n in MODELS.names()
                                  if MODELS.get(n).meta["min_input_size"] > 28])
def test_too_small_input_names_minimum_and_option(name):
    with pytest.raises(ConfigError, match=r"at least \d+ px, got 28 px: set data.resize="):
        create_model(name, in_chans=1, num_classes=2, input_size=28)


def test_minimum_sizes_are_real():
    """Declared minimum works; for the timm DenseNet the size below it really fails."""
    with pytest.raises(RuntimeError):
        create_model("densenet121", 1, 2)(torch.randn(2, 1, 28, 28))
    with pytest.raises(RuntimeError):
        create_model("alexnet", 1, 2)(torch.randn(2, 1, 62, 62))
    create_model("alexnet", 1, 2)(torch.randn(2, 1, 63, 63))
    create_model("densenet121", 1, 2)(torch.randn(2, 1, 32, 32))


@pytest.mark.parametrize("name,arch", [("resnet18", "resnet18"), ("resnet50", "resnet50"),
                                       ("densenet121", "densenet121")])
def test_parameter_counts_match_timm(name, arch):
    ours = sum(p.numel() for p in create_model(name, 3, 1000).parameters())
    theirs = sum(p.numel() for p in timm.create_model(arch, pretrained=False).parameters())
    assert ours == theirs


def test_resnet18_28_is_the_medmnist_variant():
    model = create_model("resnet18_28", 1, 2)
    assert model.conv1.kernel_size == (3, 3) and model.conv1.stride == (1, 1)
    assert isinstance(model.maxpool, torch.nn.Identity)
    assert model(torch.randn(1, 1, 28, 28)).shape == (1, 2)


def test_pretrained_from_local_file_keeps_backbone_drops_new_head(tmp_path):
    source = create_model("resnet18_28", 1, 5)
    path = tmp_path / "weights.pt"
    torch.save(source.state_dict(), path)
    target = create_model("resnet18_28", 1, 2, pretrained_path=str(path))
    assert torch.equal(target.conv1.weight, source.conv1.weight)
    assert target.fc.out_features == 2


def test_pretrained_file_must_be_plain_weights(tmp_path):
    path = tmp_path / "evil.pt"
    torch.save({"obj": object()}, path)
    with pytest.raises(ConfigError, match="not a loadable weights file"):
        create_model("lenet5", 1, 2, pretrained_path=str(path))
    with pytest.raises(ConfigError, match="file not found"):
        create_model("lenet5", 1, 2, pretrained_path=str(tmp_path / "missing.pt"))
