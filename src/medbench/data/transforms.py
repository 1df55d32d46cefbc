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


def build_pipeline(
    steps: Sequence[str | Mapping[str, Any]],
    normalize: Mapping[str, Sequence[float]],
    resize: int | None = None,
) -> A.Compose:
    """Resize (optional) -> configured steps -> Normalize -> tensor (C, H, W)."""
    chain: list[A.BasicTransform] = []
    if resize:
        chain.append(A.Resize(resize, resize))
    chain += [build_step(s) for s in steps]
    chain.append(A.Normalize(mean=list(normalize["mean"]), std=list(normalize["std"]),
                             max_pixel_value=255.0))
    chain.append(ToTensorV2())
    return A.Compose(chain)
