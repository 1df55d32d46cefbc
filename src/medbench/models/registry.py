"""Model registry and the one factory every caller uses."""

from __future__ import annotations

import inspect
from pathlib import Path
from typing import Any

import torch
from torch import nn

from medbench.errors import ConfigError, first_line
from medbench.registry import Registry

MODELS = Registry("model")
register_model = MODELS.register
INITS = ("library", "pytorch", "gaussian")
GAUSSIAN_STD = 0.01  # model.init=gaussian without model.kwargs.init_std (chosen; no paper value)


def create_model(
    name: str,
    in_chans: int,
    num_classes: int,
    pretrained_path: str | None = None,
    input_size: int | None = None,
    keep_output_neurons: bool = False,
    init: str = "library",
    **kwargs: Any,
) -> nn.Module:
    """Build a registered model; optionally load weights from a local file (never downloads).

    ``keep_output_neurons`` (twice-transfer learning, survey 4.2.5): when the class count
    differs from the source's, the classifier rows of the classes both share (the first ones)
    keep their trained weights instead of being re-initialised.
    ``init``: ``library`` keeps the builder's initialisation (timm's ResNets: Kaiming fan-out,
    last BN of each block zeroed); ``pytorch`` resets every layer to PyTorch's defaults, as
    reference code built from plain ``nn`` modules has (MedMNIST v2's ResNets); ``gaussian``
    draws every convolution and linear weight from N(0, ``init_std``) with zero biases
    (Pratt et al. 2016, survey 4.6.1; ``model.kwargs.init_std``, default 0.01: the survey gives
    no value).
    """
    entry = MODELS.get(name)
    if init not in INITS:
        raise ConfigError(f"model.init={init!r} is not one of: {', '.join(INITS)}")
    init_std = kwargs.pop("init_std", None)
    if init_std is not None and init != "gaussian":
        raise ConfigError(f"model.kwargs.init_std={init_std} is for model.init=gaussian, "
                          f"not model.init={init}")
    std = GAUSSIAN_STD if init_std is None else float(init_std)
    if not std > 0:
        raise ConfigError(f"model.kwargs.init_std={init_std}: expected a positive std")
    if input_size is not None:
        check_input_size(name, input_size)
    model = entry.builder(in_chans=in_chans, num_classes=num_classes, **kwargs)
    if init == "pytorch":
        for module in model.modules():
            if hasattr(module, "reset_parameters"):
                module.reset_parameters()
    if init == "gaussian":
        gaussian_init(model, std)
    if pretrained_path:
        load_pretrained(model, pretrained_path, keep_output_neurons=keep_output_neurons)
    return model


def gaussian_init(model: nn.Module, std: float) -> None:
    """Weights of every convolution and linear layer ~ N(0, std), their biases 0; other
    layers (normalisation, embeddings) keep theirs."""
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, (nn.Linear, nn.modules.conv._ConvNd)):
                module.weight.normal_(0.0, std)
                if module.bias is not None:
                    module.bias.zero_()


def check_input_size(name: str, input_size: int) -> None:
    """Fail with the minimum size and the option to fix it when the input is too small."""
    minimum = MODELS.get(name).meta.get("min_input_size", 1)
    if input_size < minimum:
        raise ConfigError(
            f"model '{name}' needs inputs of at least {minimum} px, got {input_size} px: "
            f"set data.resize={minimum} (or larger) or pick a larger data.size"
        )


def check_spatial_dims(name: str, spatial_dims: int, dataset: str = "the data") -> None:
    """Refuse a model whose inputs have other spatial dims than the data's (registry meta
    ``spatial_dims``, default 2; builders taking a ``spatial_dims`` argument and composites
    are built for the data's)."""
    entry = MODELS.get(name)
    declared = entry.meta.get("spatial_dims")
    if declared is None:
        if entry.meta.get("composite") or "spatial_dims" in inspect.signature(
                entry.builder).parameters:
            return
        declared = 2
    if declared != spatial_dims:
        raise ConfigError(f"model '{name}' takes {declared}D inputs but {dataset} is "
                          f"{spatial_dims}D: pick a {spatial_dims}D model (`medbench models` "
                          "lists each model's inputs)")


def load_pretrained(model: nn.Module, path: str | Path, strict: bool = False,
                    keep_output_neurons: bool = False,
                    key: str = "model.pretrained_path") -> None:
    """Load a local state dict (or medbench/Lightning checkpoint) with weights_only=True.

    The input layer's tensors and the head's (those after the last one that fits) may differ
    in shape (other input channels, a new class count: fine-tuning) and are then skipped;
    another tensor of another shape (a checkpoint of another architecture), or nothing loaded
    at all, is an error. With ``strict`` every tensor of the model must be matched (ensemble
    members, evaluation).
    """
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"{key}: file not found: {path}")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # unpickling refused, truncated, or not a torch file
        reason = first_line(err).split(". ")[0]
        raise ConfigError(f"{key}: {path} is truncated or not a loadable weights file "
                          f"({reason})") from None
    if isinstance(state, dict) and isinstance(state.get("state_dict"), dict):
        state = state["state_dict"]
        # a family module's checkpoint: its network's tensors (``net.``), not the module's
        # own buffers (thresholds its validation chose)
        ours = any(k.startswith("net.") for k in state)
        state = {k.removeprefix("net."): v for k, v in state.items()
                 if not ours or k.startswith("net.")}
    if not isinstance(state, dict) or not all(torch.is_tensor(v) for v in state.values()):
        raise ConfigError(f"{key}: {path} holds no state dict of tensors")
    own = model.state_dict()
    matched = {k: v for k, v in state.items() if k in own and own[k].shape == v.shape}
    if keep_output_neurons:
        matched.update(_shared_output_rows(model, state))
    if not matched:
        reshaped = [k for k in own if k in state]
        first = f"'{reshaped[0]}' {_shapes(state, own, reshaped[0])}" if reshaped else (
            f"its first key '{next(iter(state), '')}', the model's '{next(iter(own), '')}'")
        raise ConfigError(f"{key}: no tensor of {path} matches the model ({first}): a "
                          "checkpoint of another architecture?")
    if not strict:
        _check_body(model, state, own, matched, f"{key}: {path}")
    missing = [k for k in own if k not in matched]
    if strict and missing:
        why = _shapes(state, own, missing[0]) if missing[0] in state else "missing in the file"
        raise ConfigError(f"{path} does not fit the model: {len(missing)} tensor(s) missing or "
                          f"of another shape, e.g. '{missing[0]}' ({why})")
    model.load_state_dict(matched, strict=False)


def _check_body(model: nn.Module, state: dict[str, torch.Tensor], own: dict[str, torch.Tensor],
                matched: dict[str, torch.Tensor], where: str) -> None:
    """Refuses a file whose tensors differ from the model's before the head (the tensors after
    the last that fits: a new classifier) other than in the input layer: one of another
    architecture. The file may hold more after its last fitting tensor (a classifier whose
    encoder alone is loaded)."""
    in_model = list(own)
    head = max(in_model.index(k) for k in matched)
    first = _input_layer(model)
    odd = [k for k in in_model[:head] if k not in matched and k.rsplit(".", 1)[0] != first]
    in_file = list(state)
    extra = [k for k in in_file[:max(in_file.index(k) for k in matched)] if k not in own]
    if odd:
        why = _shapes(state, own, odd[0]) if odd[0] in state else "is missing in the file"
        raise ConfigError(f"{where} does not fit the model: '{odd[0]}' {why} ({len(odd)} "
                          "tensor(s) missing or of another shape before the head): a "
                          "checkpoint of another architecture?")
    if extra:
        raise ConfigError(f"{where} does not fit the model: its '{extra[0]}' is not in the model "
                          f"({len(extra)} such tensor(s) before the head): a checkpoint of "
                          "another architecture?")


def _shapes(state: dict[str, torch.Tensor], own: dict[str, torch.Tensor], name: str) -> str:
    return f"is {list(state[name].shape)} in the file, {list(own[name].shape)} in the model"


def _input_layer(model: nn.Module) -> str | None:
    """The first module with a weight matrix or kernel (its shape follows the input channels)."""
    return next((n for n, m in model.named_modules()
                 if isinstance(getattr(m, "weight", None), torch.Tensor) and m.weight.dim() > 1),
                None)


def _shared_output_rows(model: nn.Module, state: dict[str, torch.Tensor]) -> dict:
    """The last Linear layer's weight and bias, its first rows taken from ``state``."""
    name = [n for n, m in model.named_modules() if isinstance(m, nn.Linear)][-1]
    own = model.state_dict()
    merged = {}
    for key in (f"{name}.weight", f"{name}.bias"):
        if key in state and key in own and state[key].shape[1:] == own[key].shape[1:]:
            rows = min(len(state[key]), len(own[key]))
            merged[key] = own[key].clone()
            merged[key][:rows] = state[key][:rows]
    return merged
