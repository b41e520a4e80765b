"""``shapes10``: the embedded, procedurally generated default data set.

Ten classes of colour images, each a geometric figure drawn on a cluttered background:

====  ===============  =====================================================
 id   class            figure
====  ===============  =====================================================
  0   disk             filled circle
  1   ring             annulus (inner radius 0.55 r)
  2   square           filled square, any rotation
  3   frame            square outline, any rotation
  4   triangle         filled equilateral triangle, any rotation
  5   plus             upright cross (+), rotation within +-15 degrees
  6   saltire          diagonal cross (x), rotation within +-15 degrees
  7   hstripes         disk filled with horizontal stripes, +-15 degrees
  8   vstripes         disk filled with vertical stripes, +-15 degrees
  9   checker          square filled with a checkerboard, +-15 degrees
====  ===============  =====================================================

Every image draws its own figure size, position, rotation, foreground and background colour
(colour carries no class information), a background colour gradient, a random
distractor blob in 40% of images, a random occluding bar in 15% and Gaussian pixel noise.
Generation is pure NumPy from a fixed PCG64 seed, so the data set is bit-identical on every
machine; training and validation images come from disjoint seeds. The default preset's
images take 1-2.5 s on one core; :func:`shapes10` keeps each split in the on-disk data cache
(:mod:`.cache`), so a study generates them once, not once per job.
"""

from __future__ import annotations

import numpy as np
import torch

from .cache import cached_tensors

CLASS_NAMES = (
    "disk",
    "ring",
    "square",
    "frame",
    "triangle",
    "plus",
    "saltire",
    "hstripes",
    "vstripes",
    "checker",
)
TRAIN_SEED = 2012
VAL_SEED = 2013
GENERATOR_VERSION = 1  # bump whenever generate_shapes changes its output (it keys the cache)
_SMALL_ROTATION = np.deg2rad(15.0)
_SMALL_ROTATION_CLASSES = (5, 6, 7, 8, 9)


def _figure_masks(label: np.ndarray, u: np.ndarray, v: np.ndarray, r: np.ndarray) -> np.ndarray:
    """Boolean masks (N, S, S) of each image's figure in its rotated coordinates (u, v)."""
    rr = r[:, None, None]
    dist = np.sqrt(u**2 + v**2)
    box = np.maximum(np.abs(u), np.abs(v))
    stripe_period = rr / 2.2
    masks = np.zeros(u.shape, dtype=bool)
    shapes = {
        0: dist < rr,
        1: (dist < rr) & (dist > 0.55 * rr),
        2: box < 0.8 * rr,
        3: (box < 0.8 * rr) & (box > 0.5 * rr),
        4: (v > -0.5 * rr) & (v < rr - np.sqrt(3.0) * np.abs(u)),
        5: ((np.abs(u) < 0.22 * rr) & (np.abs(v) < rr))
        | ((np.abs(v) < 0.22 * rr) & (np.abs(u) < rr)),
        6: ((np.abs(u + v) < 0.31 * rr) | (np.abs(u - v) < 0.31 * rr)) & (box < 0.75 * rr),
        7: (dist < rr) & (np.sin(2 * np.pi * v / stripe_period) > 0),
        8: (dist < rr) & (np.sin(2 * np.pi * u / stripe_period) > 0),
        9: (box < 0.8 * rr) & (np.sin(np.pi * u / (0.4 * rr)) * np.sin(np.pi * v / (0.4 * rr)) > 0),
    }
    for cls, mask in shapes.items():
        chosen = label == cls
        masks[chosen] = mask[chosen]
    return masks


def generate_shapes(
    num_images: int, size: int, seed: int, num_classes: int = 10
) -> tuple[torch.Tensor, torch.Tensor]:
    """Generate ``num_images`` images (uint8, N x 3 x size x size) and balanced labels (int64)."""
    if not 2 <= num_classes <= len(CLASS_NAMES):
        raise ValueError(f"num_classes must be in [2, {len(CLASS_NAMES)}], got {num_classes}")
    rng = np.random.Generator(np.random.PCG64(seed))
    n, s = num_images, size
    label = rng.permutation(np.arange(n) % num_classes)

    r = rng.uniform(0.28, 0.45, n) * s
    cx = rng.uniform(0.3, 0.7, n) * s
    cy = rng.uniform(0.3, 0.7, n) * s
    theta = rng.uniform(-np.pi, np.pi, n)
    small = np.isin(label, _SMALL_ROTATION_CLASSES)
    theta[small] = rng.uniform(-_SMALL_ROTATION, _SMALL_ROTATION, int(small.sum()))

    grid = np.arange(s, dtype=np.float64) + 0.5
    dx = grid[None, None, :] - cx[:, None, None]
    dy = grid[None, :, None] - cy[:, None, None]
    cos, sin = np.cos(theta)[:, None, None], np.sin(theta)[:, None, None]
    u = cos * dx + sin * dy
    v = -sin * dx + cos * dy
    figure = _figure_masks(label, u, v, r)

    background = rng.uniform(0.0, 1.0, (n, 3))
    foreground = rng.uniform(0.0, 1.0, (n, 3))
    low_contrast = np.abs(foreground - background).mean(axis=1) < 0.25
    foreground[low_contrast] = 1.0 - background[low_contrast]

    gradient_dir = rng.uniform(-np.pi, np.pi, n)
    gradient = (
        np.cos(gradient_dir)[:, None, None] * dx + np.sin(gradient_dir)[:, None, None] * dy
    ) / s
    gradient_colour = rng.uniform(-0.35, 0.35, (n, 3))
    img = background[:, :, None, None] + gradient_colour[:, :, None, None] * gradient[:, None]

    img = np.where(figure[:, None], foreground[:, :, None, None], img)

    blob = rng.random(n) < 0.4
    bx, by = rng.uniform(0, s, n), rng.uniform(0, s, n)
    br = rng.uniform(0.06, 0.14, n) * s
    blob_mask = (
        (grid[None, None, :] - bx[:, None, None]) ** 2
        + (grid[None, :, None] - by[:, None, None]) ** 2
    ) < br[:, None, None] ** 2
    blob_mask &= blob[:, None, None]
    blob_colour = rng.uniform(0.0, 1.0, (n, 3))
    img = np.where(blob_mask[:, None], blob_colour[:, :, None, None], img)

    bar = rng.random(n) < 0.15
    bar_pos = rng.uniform(0.2, 0.8, n) * s
    bar_width = rng.uniform(0.06, 0.12, n) * s
    vertical = rng.random(n) < 0.5
    coord = np.where(
        vertical[:, None, None],
        np.broadcast_to(grid[None, None, :], dx.shape),
        np.broadcast_to(grid[None, :, None], dy.shape),
    )
    bar_mask = (np.abs(coord - bar_pos[:, None, None]) < bar_width[:, None, None] / 2) & bar[
        :, None, None
    ]
    bar_colour = rng.uniform(0.0, 1.0, (n, 3))
    img = np.where(bar_mask[:, None], bar_colour[:, :, None, None], img)

    img = img + rng.normal(0.0, 0.04, img.shape)
    images = np.clip(np.rint(img * 255.0), 0, 255).astype(np.uint8)
    return torch.from_numpy(images), torch.from_numpy(label.astype(np.int64))


def shapes10(
    num_train: int, num_val: int, size: int, num_classes: int = 10
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """The default train/val split: ``(train_x, train_y, val_x, val_y)``, disjoint seeds."""
    train_x, train_y = _cached_split(num_train, size, TRAIN_SEED, num_classes)
    val_x, val_y = _cached_split(num_val, size, VAL_SEED, num_classes)
    return train_x, train_y, val_x, val_y


def _cached_split(
    num_images: int, size: int, seed: int, num_classes: int
) -> tuple[torch.Tensor, torch.Tensor]:
    key = f"shapes10-v{GENERATOR_VERSION}-n{num_images}-s{size}-seed{seed}-c{num_classes}"
    images, labels = cached_tensors(
        key, lambda: generate_shapes(num_images, size, seed, num_classes)
    )
    return images, labels
