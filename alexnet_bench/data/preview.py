"""A PNG grid of example images of the embedded shapes10 data set (for the README / reports)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

from ..io import atomic_path
from .synthetic import CLASS_NAMES, TRAIN_SEED, generate_shapes


def save_preview(path: Path, size: int = 37, per_class: int = 10, scale: int = 3) -> Path:
    """Write a grid (one row per class) of training images to ``path``."""
    images, labels = generate_shapes(per_class * len(CLASS_NAMES) * 2, size, TRAIN_SEED)
    cell = size + 2
    grid = np.full((len(CLASS_NAMES) * cell, per_class * cell, 3), 255, dtype=np.uint8)
    for row in range(len(CLASS_NAMES)):
        picks = (labels == row).nonzero()[:per_class, 0]
        for col, idx in enumerate(picks.tolist()):
            grid[row * cell : row * cell + size, col * cell : col * cell + size] = (
                images[idx].permute(1, 2, 0).numpy()
            )
    img = Image.fromarray(grid).resize(
        (grid.shape[1] * scale, grid.shape[0] * scale), Image.NEAREST
    )
    with atomic_path(path) as tmp:
        img.save(tmp, format="PNG")
    return path
