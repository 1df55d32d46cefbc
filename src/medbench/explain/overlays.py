"""Overlays of a saliency map on what it explains, by the input's dimensionality: a 2D image
under its heat map (``grad-cam``'s), a signal's plot over a colour band of its map
(matplotlib), a volume's middle slice under the slice of its map."""

from __future__ import annotations

import numpy as np
import torch
from pytorch_grad_cam.utils.image import show_cam_on_image

SIGNAL_INCHES = (8.0, 3.0)  # a signal's figure: width, height
SIGNAL_DPI = 100


def display_image(image: torch.Tensor) -> np.ndarray:
    """A normalised input (C, H, W) as an RGB float image in [0, 1] (H, W, 3): min-max scaled,
    one channel repeated, more than three reduced to the first three."""
    pixels = image.detach().float().cpu().numpy()
    pixels = pixels[:3] if pixels.shape[0] >= 3 else np.repeat(pixels[:1], 3, axis=0)
    low, high = pixels.min(), pixels.max()
    pixels = (pixels - low) / (high - low) if high > low else np.zeros_like(pixels)
    return np.ascontiguousarray(pixels.transpose(1, 2, 0), dtype=np.float32)


def image_overlay(image: torch.Tensor, saliency: np.ndarray,
                  image_weight: float = 0.5) -> np.ndarray:
    """The heat map over the image, uint8 RGB of the input's size (H, W, 3)."""
    return show_cam_on_image(display_image(image), saliency, use_rgb=True,
                             image_weight=image_weight)


def signal_overlay(signal: torch.Tensor, saliency: np.ndarray) -> np.ndarray:
    """A signal (C, L) plotted, channel by channel, over a colour band of its map (L,) on the
    same sample axis (jet, as the image heat maps); uint8 RGB."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg  # files only, no window
    from matplotlib.figure import Figure

    values = signal.detach().float().cpu().numpy()
    length = values.shape[-1]
    figure = Figure(figsize=SIGNAL_INCHES, dpi=SIGNAL_DPI)
    canvas = FigureCanvasAgg(figure)
    plot, band = figure.subplots(2, 1, sharex=True, height_ratios=(4, 1))
    for channel, line in enumerate(values):
        plot.plot(np.arange(length), line, linewidth=0.8, label=f"channel {channel}")
    plot.set_xlim(-0.5, length - 0.5)
    plot.set_ylabel("input")
    if len(values) > 1:
        plot.legend(loc="upper right", fontsize="small")
    band.imshow(saliency[None, :], aspect="auto", cmap="jet", vmin=0.0, vmax=1.0,
                extent=(-0.5, length - 0.5, 0, 1), interpolation="nearest")
    band.set_yticks([])
    band.set_xlabel(f"sample (of {length})")
    figure.tight_layout()
    canvas.draw()
    return np.asarray(canvas.buffer_rgba())[..., :3].copy()


def overlay(item: torch.Tensor, saliency: np.ndarray) -> np.ndarray:
    """The overlay of one input (C, *S) and its map (*S) as uint8 RGB: a 2D image's size for
    images, a plot for signals, the middle slice (of the first spatial axis) for volumes."""
    if item.dim() == 2:
        return signal_overlay(item, saliency)
    if item.dim() == 4:
        middle = item.shape[1] // 2
        return image_overlay(item[:, middle], saliency[middle])
    return image_overlay(item, saliency)
