"""Straightforward implementations the tests use as oracles (and the benchmarks as the
naive peers). Not part of the package."""

from __future__ import annotations

import torch

from torch_artic import SoftArgmax2dResult, pixel_grid


def soft_argmax2d_dense(
    heatmaps: torch.Tensor,
    temperature: float | torch.Tensor = 1.0,
    *,
    normalized: bool = True,
    return_covariance: bool = False,
):
    """Textbook soft-argmax: flattened softmax times a materialised ``[H, W, 2]`` grid
    (the oracle of :func:`torch_artic.soft_argmax2d`; no checks)."""
    height, width = heatmaps.shape[-2:]
    if isinstance(temperature, torch.Tensor):
        temperature = temperature[..., None]
    p = torch.softmax(heatmaps.flatten(-2) / temperature, dim=-1).view(heatmaps.shape)
    grid = pixel_grid(
        (height, width), normalized=normalized, device=heatmaps.device, dtype=heatmaps.dtype
    )
    mean = (p[..., None] * grid).sum(dim=(-3, -2))
    if not return_covariance:
        return mean
    d = grid - mean[..., None, None, :]  # [..., H, W, 2]
    cov = (p[..., None, None] * d[..., :, None] * d[..., None, :]).sum(dim=(-4, -3))
    return SoftArgmax2dResult(mean, cov)
