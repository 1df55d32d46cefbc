from pathlib import Path

import pytest
import timm
import torch
from omegaconf import OmegaConf

from medbench.errors import ConfigError
from medbench.models import MODELS, create_model
from medbench.models.registry import load_pretrained

CONF = Path(__file__).resolve().parents[1] / "conf" / "model"


# detectors take lists of images and targets (tests/test_detection.py builds and trains them);
# localizers output boxes and classes (tests/test_localization.py)
STANDALONE = [n for n in MODELS.names() if not MODELS.get(n).meta.get("composite")
              and MODELS.get(n).meta.get("family") not in ("detection", "localization")]


def _minimum(name: str) -> int:
    return MODELS.get(name).meta.get("min_input_size", 1)


def _chans(name: str, per_view: int) -> int:
    """Multi-view models (two-stream) take one channel group per view."""
    return per_view * MODELS.get(name).meta.get("views", 1)


def _size(name: str) -> int:
    # 3D models cost up to 24 GMACs a 28^3 volume: 4^3 here (tests/test_volumes.py: 28^3, 64^3)
    side = 4 if MODELS.get(name).meta.get("spatial_dims", 2) == 3 else 28
    return max(side, _minimum(name))


def _input(name: str, batch: int, chans: int, side: int) -> torch.Tensor:
    """A batch of ``side``-sized inputs in the model's spatial dims (1D signals, 2D images)."""
    return torch.randn(batch, chans, *(side,) * MODELS.get(name).meta.get("spatial_dims", 2))


@pytest.mark.parametrize("name", STANDALONE)
@pytest.mark.parametrize("in_chans", [1, 3])
def test_forward_backward_any_channels_and_classes(name, in_chans):
    chans = _chans(name, in_chans)
    model = create_model(name, in_chans=chans, num_classes=3)
    size = _size(name)
    out = model(_input(name, 2, chans, size))
    dense = MODELS.get(name).meta.get("family") == "segmentation"  # a class map per pixel
    assert out.shape == ((2, 3, *_input(name, 1, 1, size).shape[2:]) if dense else (2, 3))
    out.sum().backward()
    assert all(p.grad is not None for p in model.parameters() if p.requires_grad)


@pytest.mark.parametrize("name", [n for n in MODELS.names() if _minimum(n) > 28])
def test_too_small_input_names_minimum_and_option(name):
    with pytest.raises(ConfigError, match=r"at least \d+ px, got 28 px: set data.resize="):
        create_model(name, in_chans=1, num_classes=2, input_size=28)


@pytest.mark.parametrize("name", STANDALONE)
def test_declared_minimum_input_size_is_exact(name):
    """The declared minimum runs in training mode; one pixel less really fails."""
    chans = _chans(name, 1)
    model = create_model(name, chans, 2).train()
    side = _minimum(name)
    model(_input(name, 2, chans, side))
    if side > 1:
        with pytest.raises((RuntimeError, ValueError)):
            model(_input(name, 2, chans, side - 1))


@pytest.mark.parametrize("name", STANDALONE)
def test_every_model_has_a_config_that_builds(name):
    cfg = OmegaConf.load(CONF / f"{name}.yaml")
    assert cfg.name == name and cfg.in_chans is None and cfg.pretrained_path is None
    create_model(name, _chans(name, 1), 2, **OmegaConf.to_container(cfg.kwargs))


def test_composites_have_configs_too():
    for name in set(MODELS.names()) - set(STANDALONE):
        assert OmegaConf.load(CONF / f"{name}.yaml").name == name


@pytest.mark.parametrize("name,arch", [
    ("resnet18", "resnet18"), ("resnet34", "resnet34"), ("resnet50", "resnet50"),
    ("densenet121", "densenet121"), ("densenet201", "densenet201"),
    ("inception_v3", "inception_v3"), ("inception_v4", "inception_v4"),
    ("xception", "legacy_xception")])
def test_parameter_counts_match_timm(name, arch):
    ours = sum(p.numel() for p in create_model(name, 3, 1000).parameters())
    theirs = sum(p.numel() for p in timm.create_model(arch, pretrained=False).parameters())
    assert ours == theirs


def test_resnet18_28_is_the_medmnist_variant():
    model = create_model("resnet18_28", 1, 2)
    assert model.conv1.kernel_size == (3, 3) and model.conv1.stride == (1, 1)
    assert isinstance(model.maxpool, torch.nn.Identity)
    assert model(torch.randn(1, 1, 28, 28)).shape == (1, 2)


def test_init_pytorch_resets_every_layer_to_torch_defaults():
    """MedMNIST's reference ResNets are plain nn modules: no zeroed last BN, default conv init."""
    library = create_model("resnet18_28", 1, 2)
    torch.manual_seed(0)
    reset = create_model("resnet18_28", 1, 2, init="pytorch")
    assert torch.all(library.layer1[0].bn2.weight == 0)  # timm zero-inits each block's last BN
    assert torch.all(reset.layer1[0].bn2.weight == 1)
    conv = reset.layer2[0].conv1.weight  # kaiming_uniform(a=sqrt(5)): bound 1/sqrt(fan_in)
    assert conv.abs().max() <= 1 / (64 * 9) ** 0.5
    torch.manual_seed(0)
    again = create_model("resnet18_28", 1, 2, init="pytorch")
    assert all(torch.equal(a, b) for a, b in zip(reset.state_dict().values(),
                                                  again.state_dict().values(), strict=True))
    with pytest.raises(ConfigError, match="model.init='xavier' is not one of: library, pytorch"):
        create_model("resnet18_28", 1, 2, init="xavier")


def test_pretrained_from_local_file_keeps_backbone_drops_new_head(tmp_path):
    source = create_model("resnet18_28", 1, 5)
    path = tmp_path / "weights.pt"
    torch.save(source.state_dict(), path)
    target = create_model("resnet18_28", 1, 2, pretrained_path=str(path))
    assert torch.equal(target.conv1.weight, source.conv1.weight)
    assert target.fc.out_features == 2


def test_a_family_module_checkpoint_loads_its_network_not_the_module_buffers(tmp_path):
    """A segmentation or detection run's checkpoint also holds the module's thresholds
    (``thresholds``, ``score_threshold``): the network's tensors load, strictly, the rest is
    not an architecture mismatch (``medbench evaluate`` of a segmentation run refused it)."""
    source = create_model("lenet5", 1, 2)
    path = tmp_path / "best.ckpt"
    torch.save({"state_dict": {**{f"net.{k}": v for k, v in source.state_dict().items()},
                               "thresholds": torch.tensor([0.4], dtype=torch.float64)}}, path)
    target = create_model("lenet5", 1, 2)
    load_pretrained(target, path, strict=True)
    assert all(torch.equal(a, b) for a, b in zip(source.state_dict().values(),
                                                  target.state_dict().values(), strict=True))


def test_pretrained_file_must_be_plain_weights(tmp_path):
    path = tmp_path / "evil.pt"
    torch.save({"obj": object()}, path)
    with pytest.raises(ConfigError, match="not a loadable weights file"):
        create_model("lenet5", 1, 2, pretrained_path=str(path))
    with pytest.raises(ConfigError, match="file not found"):
        create_model("lenet5", 1, 2, pretrained_path=str(tmp_path / "missing.pt"))


@pytest.mark.parametrize("name,builder", [("alexnet", "alexnet"), ("vgg11", "vgg11"),
                                          ("vgg16", "vgg16"), ("vgg16_bn", "vgg16_bn"),
                                          ("googlenet", "googlenet")])
def test_parameter_counts_match_torchvision(name, builder):
    from torchvision import models as tvm

    kwargs = {"aux_logits": False, "init_weights": True} if name == "googlenet" else {}
    theirs = getattr(tvm, builder)(weights=None, **kwargs)
    ours = create_model(name, 3, 1000)
    assert sum(p.numel() for p in ours.parameters()) == sum(
        p.numel() for p in theirs.parameters())


def test_ensemble_output_is_the_mean_of_its_members(tmp_path):
    torch.manual_seed(0)
    members = [create_model("lenet5", 1, 3), create_model("resnet18_28", 1, 3)]
    specs = []
    for i, member in enumerate(members):
        torch.save(member.state_dict(), tmp_path / f"m{i}.pt")
        specs.append({"name": ["lenet5", "resnet18_28"][i], "checkpoint": tmp_path / f"m{i}.pt"})
    ensemble = create_model("ensemble", 1, 3, members=specs).eval()
    x = torch.randn(4, 1, 28, 28)
    with torch.no_grad():
        expected = torch.stack([m.eval()(x).softmax(1) for m in members]).mean(0)
        assert torch.allclose(ensemble(x).softmax(1), expected, atol=1e-6)
    with pytest.raises(ConfigError, match="does not fit the model"):
        create_model("ensemble", 1, 2, members=[{"name": "lenet5",
                                                 "checkpoint": tmp_path / "m0.pt"}])


def test_keep_output_neurons_transfers_the_shared_classes(tmp_path):
    source = create_model("lenet5", 1, 2)
    torch.save(source.state_dict(), tmp_path / "source.pt")
    kept = create_model("lenet5", 1, 3, pretrained_path=str(tmp_path / "source.pt"),
                        keep_output_neurons=True)
    fresh = create_model("lenet5", 1, 3, pretrained_path=str(tmp_path / "source.pt"))
    head = source[-1]
    assert torch.equal(kept[-1].weight[:2], head.weight) and torch.equal(kept[-1].bias[:2],
                                                                         head.bias)
    assert not torch.equal(fresh[-1].weight[:2], head.weight)
    assert torch.equal(kept[0].weight, source[0].weight)
