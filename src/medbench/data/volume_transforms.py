"""Augmentation of 3D volumes with MONAI array transforms (albumentations is 2D only).

A volume pipeline is a list of steps like the 2D one, each ``{name: <MONAI array transform>,
**kwargs}``, e.g. ``[{name: RandFlip, prob: 0.5, spatial_axis: 0}, {name: RandRotate90, prob:
0.5, spatial_axes: [1, 2]}, {name: RandScaleIntensity, factors: 0.1, prob: 0.5}]``. Steps see
the volume channel-first (C, D, H, W), scaled to [0, 1] by the dtype's largest value; the
``data.normalize`` mean and std close the chain. It is registered for 3D data, so any source
whose ``DatasetInfo.spatial_dims`` is 3 gets it from ``SplitDataModule.build_transform``.

Each random step gets its own seed from the item's generator (the item dataset derives it
from (seed, epoch, index)), so an augmented run repeats exactly.

With targets (a label volume ``mask`` and its ``fov``, as segmentation items carry), each step
runs as its MONAI dictionary transform instead (``RandFlip`` -> ``RandFlipd``): one random
draw moves the volume and its labels together, labels are resampled with ``nearest``, and
intensity steps touch the volume only (MONAI's own one-draw mechanism, nothing re-written).
"""

from __future__ import annotations

import difflib
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import torch

from medbench.data.transforms import register_pipeline
from medbench.errors import ConfigError

IMAGE = "image"


def build_volume_step(step: str | Mapping[str, Any]):
    """One MONAI array transform from a name or a ``{name: ..., **kwargs}`` mapping."""
    import monai.transforms as T

    kwargs = {"name": step} if isinstance(step, str) else dict(step)
    name = kwargs.pop("name", None)
    if not name:
        raise ConfigError(f"augment: step {step} has no 'name'")
    cls = getattr(T, name, None)
    if isinstance(cls, type) and issubclass(cls, T.MapTransform):
        raise ConfigError(f"augment: '{name}' is a MONAI dictionary transform; name its array "
                          f"transform (e.g. '{name.rstrip('d')}')")
    if not (isinstance(cls, type) and issubclass(cls, T.Transform)):
        known = [n for n in dir(T) if isinstance(getattr(T, n), type) and n[:1].isupper()]
        close = difflib.get_close_matches(name, known, n=3)
        hint = f"; did you mean {', '.join(close)}?" if close else ""
        raise ConfigError(f"augment: unknown MONAI array transform '{name}'{hint}")
    try:
        return cls(**kwargs)
    except (TypeError, ValueError) as err:
        raise ConfigError(f"augment: bad arguments for {name} {kwargs}: {err}") from None


def keyed_step(step: Any, kwargs: Mapping[str, Any], target_keys: Sequence[str]):
    """The MONAI dictionary transform of the array transform ``step``, over the volume and the
    label volumes ``target_keys`` (intensity transforms: the volume only; resampling
    transforms: ``nearest`` for labels, the step's own mode for the volume)."""
    import inspect

    import monai.transforms as T

    name = type(step).__name__
    cls = getattr(T, f"{name}d", None)
    if cls is None:
        raise ConfigError(f"augment: '{name}' has no MONAI dictionary form, so it cannot move "
                          f"a label volume with its image; drop it for 3D segmentation")
    kwargs = dict(kwargs)
    if ".intensity." in type(step).__module__:
        return cls(keys=[IMAGE], **kwargs)
    keys = [IMAGE, *target_keys]
    parameters = inspect.signature(cls.__init__).parameters
    if "mode" in parameters:
        mode = kwargs.pop("mode", parameters["mode"].default)
        kwargs["mode"] = [mode, *["nearest"] * len(target_keys)]
    return cls(keys=keys, **kwargs)


@register_pipeline(3)
class VolumePipeline:
    """(D, H, W, C) array -> [0, 1] -> resize (optional) -> steps -> normalise -> (C, D, H, W)
    float tensor. Same constructor as ``transforms.ArrayPipeline``."""

    def __init__(self, steps: Sequence[str | Mapping[str, Any]],
                 normalize: Mapping[str, Sequence[float]], resize: Any = None,
                 views: Any = None, max_pixel_value: float = 1.0, what: str = "3D data") -> None:
        if views:
            raise ConfigError(f"augment.views={views!r}: views are stacked 2D images; {what} "
                              "takes none (use a volume augment such as augment=volume)")
        self.steps = [build_volume_step(step) for step in steps]
        self.step_kwargs = [{} if isinstance(step, str) else
                            {k: v for k, v in dict(step).items() if k != "name"} for step in steps]
        self.keyed: dict[tuple[str, ...], list[Any]] = {}  # target keys -> dictionary steps
        self.seeds: list[int] = []
        self.resize = None
        if resize:
            from monai.transforms import Resize

            size = [int(resize)] * 3 if isinstance(resize, int) else [int(s) for s in resize]
            if len(size) != 3:
                raise ConfigError(f"data.resize={resize!r}: expected a side or [D, H, W]")
            self.resize = Resize(size, mode="trilinear")
        self.mean = torch.tensor(list(normalize["mean"]), dtype=torch.float32).view(-1, 1, 1, 1)
        self.std = torch.tensor(list(normalize["std"]), dtype=torch.float32).view(-1, 1, 1, 1)
        self.max_pixel_value = float(max_pixel_value)

    def set_random_state(self, generator: np.random.Generator, py_random: Any = None) -> None:
        """One seed per random step, drawn in order from the item's generator."""
        from monai.transforms import Randomizable

        seeds = generator.integers(0, 2**32, size=max(1, len(self.steps)))
        self.seeds = [int(seed) for seed in seeds]
        for step, seed in zip(self.steps, self.seeds, strict=False):
            if isinstance(step, Randomizable):
                step.set_random_state(seed=seed)

    def __call__(self, image: np.ndarray, **targets: Any) -> dict[str, Any]:
        volume = torch.as_tensor(np.moveaxis(np.asarray(image), -1, 0), dtype=torch.float32)
        volume = volume / self.max_pixel_value
        if targets:
            return self._with_targets(volume, targets)
        if self.resize is not None:
            volume = self.resize(volume)
        for step in self.steps:
            volume = step(volume)
        return {IMAGE: self._normalised(volume)}

    def _with_targets(self, volume: torch.Tensor, targets: Mapping[str, Any]) -> dict[str, Any]:
        """Volume and label volumes (each (D, H, W)) through the dictionary steps."""
        from monai.transforms import Randomizable, Resized

        keys = tuple(targets)
        if keys not in self.keyed:
            self.keyed[keys] = [keyed_step(step, kwargs, keys)
                                for step, kwargs in zip(self.steps, self.step_kwargs, strict=True)]
        # labels as float channels (resampling needs floats), rounded back afterwards
        item = {IMAGE: volume, **{k: torch.as_tensor(np.asarray(v), dtype=torch.float32)[None]
                                  for k, v in targets.items()}}
        if self.resize is not None:
            item = Resized([IMAGE, *keys], self.resize.spatial_size,
                           mode=["trilinear", *["nearest"] * len(keys)])(item)
        seeds = (self.seeds or [0] * len(self.steps))[:len(self.steps)]
        for step, seed in zip(self.keyed[keys], seeds, strict=True):
            if isinstance(step, Randomizable):
                step.set_random_state(seed=seed)
            item = step(item)
        labels = {k: _plain(item[k])[0].round().to(torch.int64).numpy() for k in keys}
        return {**labels, IMAGE: self._normalised(item[IMAGE])}

    def _normalised(self, volume: Any) -> torch.Tensor:
        return ((_plain(volume) - self.mean) / self.std).contiguous()


def _plain(volume: Any) -> torch.Tensor:
    """A plain float tensor (MONAI returns MetaTensors, which collate slowly)."""
    from monai.data import MetaTensor

    if isinstance(volume, MetaTensor):
        volume = volume.as_tensor()
    return torch.as_tensor(volume, dtype=torch.float32)
