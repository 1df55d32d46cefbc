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


def _transform_class(name: str) -> type:
    cls = getattr(A, name, None)
    if not (isinstance(cls, type) and issubclass(cls, A.BasicTransform)):
        known = [n for n in dir(A) if isinstance(getattr(A, n), type)]
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
    except (TypeError, ValueError) as err:
        raise ConfigError(f"augment: bad arguments for {name} {kwargs}: {err}") from None


class ViewStack:
    """One shared (random) augmentation, then a finishing pipeline per view, stacked as channels.

    Two-stream designs (survey 4.5.2) read the views as separate inputs; the shared draw keeps
    the views of one sample aligned.
    """

    def __init__(self, shared: A.Compose, views: Sequence[A.Compose]) -> None:
        self.shared, self.views = shared, list(views)

    def __call__(self, image):
        augmented = self.shared(image=image)["image"]
        return {"image": torch.cat([view(image=augmented)["image"] for view in self.views])}


def _finish(normalize: Mapping[str, Sequence[float]]) -> list[A.BasicTransform]:
    return [A.Normalize(mean=list(normalize["mean"]), std=list(normalize["std"]),
                        max_pixel_value=255.0), ToTensorV2()]


def build_pipeline(
    steps: Sequence[str | Mapping[str, Any]],
    normalize: Mapping[str, Sequence[float]],
    resize: int | None = None,
    views: Sequence[Sequence[str | Mapping[str, Any]]] | None = None,
) -> A.Compose | ViewStack:
    """Resize (optional) -> configured steps -> Normalize -> tensor (C, H, W).

    With ``views`` (a list of step lists), each view's steps follow the shared ones and the
    views are concatenated along channels.
    """
    chain: list[A.BasicTransform] = [A.Resize(resize, resize)] if resize else []
    chain += [build_step(s) for s in steps]
    if not views:
        return A.Compose(chain + _finish(normalize))
    return ViewStack(A.Compose(chain),
                     [A.Compose([build_step(s) for s in view] + _finish(normalize))
                      for view in views])
