"""Intensity windows as channels (survey 4.1.3, Gao et al. 2018: lower / normal / higher lung
attenuation ranges fed to AlexNet as its three RGB channels).

:class:`ContrastWindow` clips an image to one ``[low, high]`` range (in the image's own units:
0-255 for 8-bit images, Hounsfield units for raw CT) and stretches it back over the dtype's
full range. Several windows stacked as channels are ``augment.views``, one window per view
(``conf/augment/attenuation_windows.yaml``): the augment chain's :class:`ViewStack` runs the
shared random steps once, each view's window, and concatenates the views along channels, so
the datamodule's ``model_in_chans`` (image channels x views) already gives the model the
window count. albumentations has windowing only for fixed CT presets with no stacking, hence
this hand-written ImageOnlyTransform.
"""

from __future__ import annotations

from typing import Any

import albumentations as A
import numpy as np

from medbench.data.transforms import register_step
from medbench.errors import ConfigError


@register_step
class ContrastWindow(A.ImageOnlyTransform):
    """Clip to ``[low, high]`` and rescale that range to the dtype's (uint8: 0..255, float: 0..1).

    Values below ``low`` become the minimum, above ``high`` the maximum, in between linear.
    """

    def __init__(self, low: float, high: float, p: float = 1.0) -> None:
        super().__init__(p=p)
        if not float(high) > float(low):
            raise ConfigError(f"ContrastWindow: high={high} must exceed low={low}")
        self.low, self.high = float(low), float(high)

    def apply(self, img: np.ndarray, **params: Any) -> np.ndarray:
        scaled = (img.astype(np.float32) - self.low) / (self.high - self.low)
        scaled = np.clip(scaled, 0.0, 1.0)
        if img.dtype == np.uint8:
            return np.round(scaled * 255.0).astype(np.uint8)
        return scaled.astype(img.dtype if np.issubdtype(img.dtype, np.floating) else np.float32)

    def get_transform_init_args_names(self) -> tuple[str, ...]:
        return ("low", "high")


def window_views(windows: list[list[float]]) -> list[list[dict[str, Any]]]:
    """``augment.views`` for ``[[low, high], ...]``: one ContrastWindow per view (channel)."""
    return [[{"name": "ContrastWindow", "low": low, "high": high, "p": 1.0}]
            for low, high in windows]
