"""Selective search region proposals (Uijlings et al., IJCV 2013), written here on top of
scikit-image's graph-based segmentation (Felzenszwalb and Huttenlocher, 2004).

Why not OpenCV's ``cv2.ximgproc.segmentation``: it ships in ``opencv-contrib-python-headless``,
which installs the same ``cv2`` package (the same ``cv2/cv2.abi3.so``) as the
``opencv-python-headless`` that albumentations requires. Both import only while they have the
same version and contrib was installed last: reinstalling or upgrading the plain package
silently drops ``ximgproc``, uninstalling either breaks ``cv2``, and OpenCV's packaging notes
say to install only one of them. So the proposals come from this module.

From the paper: an over-segmentation per strategy (colour space x Felzenszwalb ``k``);
hierarchical grouping that repeatedly merges the two most similar neighbouring regions, the
similarity being the sum of colour (25-bin histograms per channel, intersection), texture
(10-bin histograms of 8 oriented Gaussian derivatives per channel, intersection), size
(small regions merge first) and fill (regions that fit each other's box); the merged
region's histograms are the size-weighted means; every region of every hierarchy gives a box;
boxes are ranked by the paper's pseudo-random order (a region's position in its hierarchy,
counted from the top, times a uniform random number; seeded per image), duplicates removed.
Chosen here: the image is downscaled to ``max_side`` first (boxes mapped back), the derivative
responses are half-rectified first derivatives of a sigma=1 Gaussian along 8 directions,
boxes with a side under ``min_box`` px are dropped, the first ``max_proposals`` are kept.
"""

from __future__ import annotations

import heapq
from collections.abc import Sequence

import numpy as np
from scipy import ndimage
from skimage import color
from skimage.segmentation import felzenszwalb
from skimage.transform import rescale

from medbench.errors import ConfigError

COLOUR_SPACES = ("rgb", "hsv", "lab")
COLOUR_BINS, TEXTURE_BINS, ORIENTATIONS = 25, 10, 8


def _colour_space(image: np.ndarray, name: str) -> np.ndarray:
    """The image (H, W, 3) in [0, 1] in a colour space, each channel scaled to [0, 1]."""
    if name == "rgb":
        return image
    if name == "hsv":
        return color.rgb2hsv(image)
    if name == "lab":
        lab = color.rgb2lab(image)
        return (lab - [0.0, -128.0, -128.0]) / [100.0, 255.0, 255.0]
    raise ConfigError(f"runner.proposals.colour_spaces: '{name}' is not one of "
                      f"{', '.join(COLOUR_SPACES)}")


def _histograms(labels: np.ndarray, values: np.ndarray, bins: int, n: int) -> np.ndarray:
    """(n, channels * bins) per-region histograms of (H, W, channels) values in [0, 1]."""
    binned = np.minimum((values * bins).astype(np.int64), bins - 1)
    flat = labels.ravel()
    out = [np.bincount(flat * bins + binned[..., c].ravel(), minlength=n * bins).reshape(n, bins)
           for c in range(values.shape[-1])]
    hist = np.concatenate(out, axis=1).astype(np.float64)
    return hist / np.maximum(hist.sum(1, keepdims=True), 1e-12)


def _texture(image: np.ndarray) -> np.ndarray:
    """(H, W, 3 * 8) half-rectified oriented Gaussian derivatives, scaled to [0, 1] each."""
    responses = []
    for c in range(image.shape[-1]):
        gy = ndimage.gaussian_filter(image[..., c], 1.0, order=(1, 0))
        gx = ndimage.gaussian_filter(image[..., c], 1.0, order=(0, 1))
        for angle in np.arange(ORIENTATIONS) * 2 * np.pi / ORIENTATIONS:
            r = np.maximum(gx * np.cos(angle) + gy * np.sin(angle), 0.0)
            responses.append(r / max(float(r.max()), 1e-12))
    return np.stack(responses, axis=-1)


def _neighbours(labels: np.ndarray) -> set[tuple[int, int]]:
    pairs = np.concatenate([
        np.stack([labels[:, :-1].ravel(), labels[:, 1:].ravel()], 1),
        np.stack([labels[:-1].ravel(), labels[1:].ravel()], 1)])
    pairs = pairs[pairs[:, 0] != pairs[:, 1]]
    pairs = np.unique(np.sort(pairs, axis=1), axis=0)
    return {(int(a), int(b)) for a, b in pairs}


def hierarchical_grouping(labels: np.ndarray, colour: np.ndarray, texture: np.ndarray,
                          rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Every region's box (x0, y0, x1, y1, exclusive ends) of one over-segmentation's
    hierarchy, and its rank value (position from the top x uniform random)."""
    n = int(labels.max()) + 1
    image_size = float(labels.size)
    size = np.bincount(labels.ravel(), minlength=n).astype(np.float64)
    boxes = np.zeros((n, 4))
    for i, found in enumerate(ndimage.find_objects(labels + 1)):
        boxes[i] = (found[1].start, found[0].start, found[1].stop, found[0].stop)
    col = _histograms(labels, colour, COLOUR_BINS, n)
    tex = _histograms(labels, texture, TEXTURE_BINS, n)
    cap = 2 * n  # regions are appended as they merge
    size, boxes = np.r_[size, np.zeros(cap - n)], np.r_[boxes, np.zeros((cap - n, 4))]
    col = np.r_[col, np.zeros((cap - n, col.shape[1]))]
    tex = np.r_[tex, np.zeros((cap - n, tex.shape[1]))]
    neighbours: dict[int, set[int]] = {i: set() for i in range(n)}
    for a, b in _neighbours(labels):
        neighbours[a].add(b)
        neighbours[b].add(a)

    def similarity(a: int, others: Sequence[int]) -> np.ndarray:
        o = np.asarray(others)
        box = np.c_[np.minimum(boxes[o, :2], boxes[a, :2]), np.maximum(boxes[o, 2:], boxes[a, 2:])]
        area = (box[:, 2] - box[:, 0]) * (box[:, 3] - box[:, 1])
        return (np.minimum(col[o], col[a]).sum(1) + np.minimum(tex[o], tex[a]).sum(1)
                + 1 - (size[o] + size[a]) / image_size
                + 1 - (area - size[o] - size[a]) / image_size)

    heap = []
    for a in range(n):
        later = [b for b in neighbours[a] if b > a]
        if later:
            heap += [(-s, a, b) for s, b in zip(similarity(a, later), later, strict=True)]
    heapq.heapify(heap)
    alive, t = set(range(n)), n
    while heap:
        _, a, b = heapq.heappop(heap)
        if a not in alive or b not in alive:
            continue
        size[t] = size[a] + size[b]
        boxes[t] = np.r_[np.minimum(boxes[a, :2], boxes[b, :2]),
                         np.maximum(boxes[a, 2:], boxes[b, 2:])]
        col[t] = (size[a] * col[a] + size[b] * col[b]) / size[t]
        tex[t] = (size[a] * tex[a] + size[b] * tex[b]) / size[t]
        others = sorted((neighbours.pop(a) | neighbours.pop(b)) - {a, b})
        alive -= {a, b}
        neighbours[t] = set(others)
        for o in others:
            neighbours[o] -= {a, b}
            neighbours[o].add(t)
        if others:
            for s, o in zip(similarity(t, others), others, strict=True):
                heapq.heappush(heap, (-s, o, t))
        alive.add(t)
        t += 1
    # position from the top: the last region formed is 1 (initial regions come last)
    position = np.arange(t, 0, -1, dtype=np.float64)
    return boxes[:t], position * rng.random(t)


def selective_search(image: np.ndarray, scales: Sequence[float] = (100, 300),
                     colour_spaces: Sequence[str] = ("hsv", "lab"), sigma: float = 0.8,
                     min_size: int = 10, max_side: int = 320, min_box: float = 4.0,
                     max_proposals: int = 500, seed: int = 0) -> np.ndarray:
    """(N, 4) float32 xyxy boxes in the input's pixels, best-ranked first, for an (H, W, 3)
    image of values in [0, 1] (a grey image is repeated to 3 channels)."""
    if image.ndim == 2 or image.shape[-1] == 1:
        image = np.repeat(image.reshape(*image.shape[:2], 1), 3, axis=-1)
    factor = min(1.0, max_side / max(image.shape[:2]))
    small = rescale(image, factor, channel_axis=-1, anti_aliasing=True) if factor < 1 else image
    small = np.clip(small, 0.0, 1.0)
    rng = np.random.default_rng(seed)
    boxes, ranks = [], []
    for space in colour_spaces:
        converted = _colour_space(small, space)
        texture = _texture(converted)
        for k in scales:
            labels = felzenszwalb(converted, scale=float(k), sigma=sigma, min_size=int(min_size),
                                  channel_axis=-1)
            b, r = hierarchical_grouping(labels, np.clip(converted, 0, 1), texture, rng)
            boxes.append(b)
            ranks.append(r)
    boxes_all = np.concatenate(boxes) / factor
    order = np.argsort(np.concatenate(ranks), kind="stable")
    boxes_all = np.round(boxes_all[order], 1)
    keep = ((boxes_all[:, 2] - boxes_all[:, 0]) >= min_box) & (
        (boxes_all[:, 3] - boxes_all[:, 1]) >= min_box)
    boxes_all = boxes_all[keep]
    _, first = np.unique(boxes_all, axis=0, return_index=True)  # duplicates: keep the best
    return boxes_all[np.sort(first)][:max_proposals].astype(np.float32)
