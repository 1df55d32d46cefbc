"""Augmentation pipelines from config, built with albumentations.

A pipeline is a list of steps, each ``{name: <albumentations class>, **kwargs}`` (or just the
class name), e.g. ``[{name: CLAHE, p: 1.0}, {name: HorizontalFlip, p: 0.5}]``. The survey's
preprocessing (sections 3.5, 4.x) maps onto albumentations classes: Normalize (mean
subtraction), Equalize (histogram equalisation), CLAHE, HorizontalFlip / VerticalFlip, Rotate,
Affine (scaling), RandomCrop / RandomResizedCrop, ColorJitter, RandomBrightnessContrast and
RandomGamma (intensity variation). Normalisation and tensor conversion always close the chain.
"""

from __future__ import annotations

import difflib
from collections.abc import Mapping, Sequence
from typing import Any

import albumentations as A
import torch
from albumentations.pytorch import ToTensorV2

from medbench.errors import ConfigError

# medbench's own steps (albumentations subclasses for what albumentations lacks), by class name
STEPS: dict[str, type] = {}


def register_step(cls: type) -> type:
    """Class decorator: an augment step usable by its class name beside albumentations'."""
    STEPS[cls.__name__] = cls
    return cls


def _transform_class(name: str) -> type:
    cls = STEPS.get(name) or getattr(A, name, None)
    if not (isinstance(cls, type) and issubclass(cls, A.BasicTransform)):
        known = [*STEPS, *(n for n in dir(A) if isinstance(getattr(A, n), type))]
        close = difflib.get_close_matches(name, known, n=3)
        hint = f"; did you mean {', '.join(close)}?" if close else ""
        raise ConfigError(f"augment: unknown albumentations transform '{name}'{hint}")
    return cls


def build_step(step: str | Mapping[str, Any]) -> A.BasicTransform:
    """One albumentations transform from a name or a ``{name: ..., **kwargs}`` mapping."""
    if isinstance(step, str):
        step = {"name": step}
    kwargs = dict(step)
    name = kwargs.pop("name", None)
    if not name:
        raise ConfigError(f"augment: step {dict(step)} has no 'name'")
    try:
        return _transform_class(name)(**kwargs)
    except (TypeError, ValueError) as err:  # ConfigError of a medbench step passes through
        raise ConfigError(f"augment: bad arguments for {name} {kwargs}: {err}") from None


class ViewStack:
    """One shared (random) augmentation, then a finishing pipeline per view, stacked as channels.

    Two-stream designs (survey 4.5.2) read the views as separate inputs; the shared draw keeps
    the views of one sample aligned.
    """

    def __init__(self, shared: A.Compose, views: Sequence[A.Compose]) -> None:
        self.shared, self.views = shared, list(views)

    def set_random_state(self, generator, py_random) -> None:
        """One random state for the shared draw and every view (albumentations' API)."""
        for compose in (self.shared, *self.views):
            compose.set_random_state(generator, py_random)

    def __call__(self, image, **targets):
        shared = self.shared(image=image, **targets)
        views = [view(image=shared["image"])["image"] for view in self.views]
        return {**shared, "image": torch.cat(views)}


def _finish(normalize: Mapping[str, Sequence[float]],
            max_pixel_value: float) -> list[A.BasicTransform]:
    return [A.Normalize(mean=list(normalize["mean"]), std=list(normalize["std"]),
                        max_pixel_value=max_pixel_value), ToTensorV2()]


def build_pipeline(
    steps: Sequence[str | Mapping[str, Any]],
    normalize: Mapping[str, Sequence[float]],
    resize: int | Sequence[int] | None = None,
    views: Sequence[Sequence[str | Mapping[str, Any]]] | None = None,
    compose_options: Mapping[str, Any] | None = None,
    max_pixel_value: float = 255.0,
) -> A.Compose | ViewStack:
    """Resize (optional) -> configured steps -> Normalize -> tensor (C, H, W).

    Masks and boxes given with the image (``compose_options``: the target kind's, e.g.
    ``bbox_params``) go through the same random draw. With ``views`` (a list of step lists),
    each view's steps follow the shared ones and the views are concatenated along channels.
    ``max_pixel_value``: the image dtype's largest value (uint8: 255; float images: 1).
    """
    height, width = (resize, resize) if isinstance(resize, int) else (resize or (None, None))
    chain: list[A.BasicTransform] = [A.Resize(height, width)] if resize else []
    chain += [build_step(s) for s in steps]
    options = dict(compose_options or {})
    if not views:
        return A.Compose(chain + _finish(normalize, max_pixel_value), **options)
    return ViewStack(A.Compose(chain, **options),
                     [A.Compose([build_step(s) for s in view] + _finish(normalize, max_pixel_value))
                      for view in views])


class ArrayPipeline:
    """Arrays that are not 2D images (1D signals, 3D volumes): ``(*spatial, C)`` ->
    ``(C, *spatial)`` float tensor, ``(x / max_pixel_value - mean) / std`` per channel as
    albumentations' Normalize does. albumentations transforms only 2D images, so augmentation
    steps, resizing and views are refused here (``augment=none``) rather than ignored."""

    def __init__(self, steps: Sequence[Any], normalize: Mapping[str, Sequence[float]],
                 resize: Any = None, views: Any = None, max_pixel_value: float = 1.0,
                 what: str = "this data") -> None:
        for key, value in (("augment.train/eval", steps), ("augment.views", views),
                           ("data.resize", resize)):
            if value:
                raise ConfigError(f"{key}={value!r}: albumentations transforms 2D images; "
                                  f"{what} takes no such step (use augment=none)")
        self.mean = torch.tensor(list(normalize["mean"]), dtype=torch.float32)
        self.std = torch.tensor(list(normalize["std"]), dtype=torch.float32)
        self.max_pixel_value = float(max_pixel_value)

    def set_random_state(self, generator, py_random) -> None:
        """Nothing is random here (the item dataset seeds every pipeline the same way)."""

    def __call__(self, image, **targets) -> dict[str, Any]:
        array = torch.as_tensor(image, dtype=torch.float32) / self.max_pixel_value
        array = (array - self.mean) / self.std  # broadcast over the channel axis (last)
        return {**targets, "image": array.movedim(-1, 0).contiguous()}


# spatial dims -> a pipeline class with augmentation steps of its own, same constructor as
# ArrayPipeline (3D volumes: MONAI, ``data/volume_transforms.py``); others get ArrayPipeline
PIPELINES: dict[int, type] = {}


def register_pipeline(spatial_dims: int):
    """Class decorator: the item pipeline of ``spatial_dims``-D data other than 2D images."""
    def register(cls: type) -> type:
        PIPELINES[spatial_dims] = cls
        return cls
    return register


def array_pipeline(spatial_dims: int) -> type:
    """The pipeline class registered for ``spatial_dims``, else :class:`ArrayPipeline`."""
    return PIPELINES.get(spatial_dims, ArrayPipeline)
