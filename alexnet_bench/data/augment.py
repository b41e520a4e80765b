"""Batched, on-device augmentation and normalisation of uint8 image batches (paper Sec. 4.1).

The whole batch is augmented at once on the training device, so the input pipeline costs a few
kernel launches per step instead of per-sample Python work.
"""

from __future__ import annotations

import torch
from torch import nn


def rgb_pca(
    images: torch.Tensor, max_pixels: int = 200_000, seed: int = 0
) -> tuple[torch.Tensor, torch.Tensor]:
    """Eigen-decomposition of the RGB covariance of ``images`` (uint8, N x 3 x H x W) in [0, 1].

    Returns ``(eigenvalues[3], eigenvectors[3, 3])`` with eigenvectors in columns, as used by
    the paper's PCA lighting. At most ``max_pixels`` pixels are sampled (deterministically).
    """
    pixels = images.permute(0, 2, 3, 1).reshape(-1, 3)
    if pixels.shape[0] > max_pixels:
        gen = torch.Generator().manual_seed(seed)
        pixels = pixels[torch.randint(pixels.shape[0], (max_pixels,), generator=gen)]
    x = pixels.double() / 255.0
    cov = torch.cov(x.T)
    eigval, eigvec = torch.linalg.eigh(cov)
    return eigval.float().clamp_min(0), eigvec.float()


def channel_stats(
    images: torch.Tensor, max_images: int = 10_000
) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-channel mean and std of ``images`` (uint8) in [0, 1]."""
    x = images[:max_images].double() / 255.0
    mean = x.mean(dim=(0, 2, 3))
    std = x.std(dim=(0, 2, 3)).clamp_min(1e-3)
    return mean.float(), std.float()


class BatchAugment(nn.Module):
    """uint8 batch (N, 3, S, S) -> normalised float batch (N, 3, C, C).

    Training: random ``crop`` x ``crop`` crops and horizontal flips (``crop_flip``) and PCA colour
    lighting (``pca_lighting``): every pixel of an image gets the same RGB shift
    ``eigvec @ (alpha * sqrt(eigval))`` with ``alpha ~ N(0, lighting_std)`` drawn per image.
    The paper writes ``alpha * lambda``; its eigenvalues carry squared pixel units, so we scale by
    the standard deviation along each principal component instead, which makes the shift's
    covariance exactly ``lighting_std**2`` times the data's RGB covariance, whatever the pixel
    scale. Evaluation, or training with ``crop_flip`` off: the centre crop.
    """

    def __init__(
        self,
        crop: int,
        mean: torch.Tensor,
        std: torch.Tensor,
        *,
        crop_flip: bool = True,
        pca: tuple[torch.Tensor, torch.Tensor] | None = None,
        lighting_std: float = 0.1,
    ) -> None:
        super().__init__()
        self.crop = crop
        self.crop_flip = crop_flip
        self.lighting_std = lighting_std
        self.register_buffer("mean", mean.view(1, 3, 1, 1).float())
        self.register_buffer("std", std.view(1, 3, 1, 1).float())
        self.use_pca = pca is not None
        eigval, eigvec = pca if pca is not None else (torch.zeros(3), torch.eye(3))
        self.register_buffer("eigval", eigval.float())
        self.register_buffer("eigvec", eigvec.float())

    def _centre(self, x: torch.Tensor) -> torch.Tensor:
        top = (x.shape[-2] - self.crop) // 2
        left = (x.shape[-1] - self.crop) // 2
        return x[..., top : top + self.crop, left : left + self.crop]

    def _random_crop_flip(self, x: torch.Tensor, gen: torch.Generator | None) -> torch.Tensor:
        n, _, h, w = x.shape
        dev = x.device
        top = torch.randint(0, h - self.crop + 1, (n,), generator=gen, device=dev)
        left = torch.randint(0, w - self.crop + 1, (n,), generator=gen, device=dev)
        flip = torch.rand(n, generator=gen, device=dev) < 0.5
        offs = torch.arange(self.crop, device=dev)
        rows = (top[:, None] + offs[None, :])[:, None, :, None]  # n,1,C,1
        cols = left[:, None] + offs[None, :]
        cols = torch.where(flip[:, None], cols.flip(1), cols)[:, None, None, :]  # n,1,1,C
        batch = torch.arange(n, device=dev)[:, None, None, None]
        chans = torch.arange(x.shape[1], device=dev)[None, :, None, None]
        return x[batch, chans, rows, cols]

    def forward(
        self, x: torch.Tensor, train: bool = False, generator: torch.Generator | None = None
    ) -> torch.Tensor:
        """Augment (``train=True``) or centre-crop a uint8 batch; ``generator`` lives on x's device."""
        crop_flip = train and self.crop_flip
        x = self._random_crop_flip(x, generator) if crop_flip else self._centre(x)
        x = x.float().div_(255.0)
        if train and self.use_pca and self.lighting_std > 0:
            alpha = torch.randn(x.shape[0], 3, generator=generator, device=x.device)
            shift = (alpha * self.lighting_std * self.eigval.sqrt()) @ self.eigvec.T  # (n, 3)
            x = x + shift[:, :, None, None]
        return (x - self.mean) / self.std

    def ten_crop(self, x: torch.Tensor) -> torch.Tensor:
        """The paper's test-time 10 crops: 4 corners + centre and their flips -> (10, N, 3, C, C)."""
        h, w, c = x.shape[-2], x.shape[-1], self.crop
        corners = [(0, 0), (0, w - c), (h - c, 0), (h - c, w - c), ((h - c) // 2, (w - c) // 2)]
        crops = [x[..., top : top + c, left : left + c] for top, left in corners]
        crops += [crop.flip(-1) for crop in crops]
        return torch.stack([(crop.float() / 255.0 - self.mean) / self.std for crop in crops])
