"""The library's one coordinate convention.

Keypoints are ``(x, y)``: ``x`` indexes width (columns), ``y`` indexes height (rows).
By default they are **normalised to [-1, 1] with pixel centres at the ends**: pixel
column ``i`` of a width-``W`` image sits at ``x = -1 + 2 i / (W - 1)`` (the convention of
``torch.nn.functional.grid_sample(..., align_corners=True)``). With
``normalized=False`` coordinates are in pixels: the centre of pixel ``i`` is at ``i``.

Every op that maps between images and points (``soft_argmax2d``,
``gaussian_heatmaps``, ``sketch_render``, ``tps_warp``) builds its grid with
:func:`pixel_grid` / :func:`pixel_coordinates` and converts with
:func:`normalize_points` / :func:`denormalize_points`, so a point found by one op is
drawn in the same place by another.
"""

from __future__ import annotations

import torch

from ._checks import check_points, check_size

__all__ = [
    "denormalize_points",
    "normalize_points",
    "pixel_coordinates",
    "pixel_grid",
]


def pixel_coordinates(
    size: int | tuple[int, int],
    *,
    normalized: bool = True,
    device: torch.device | str | None = None,
    dtype: torch.dtype | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Coordinates of the pixel centres along each axis.

    Args:
        size: image size ``(H, W)``, or an int for a square image (each >= 2).
        normalized: ``[-1, 1]`` coordinates (default) or pixel units.

    Returns:
        ``(xs [W], ys [H])``: ``xs[i]`` is the x of column ``i``, ``ys[j]`` the y of row ``j``.

    Example:
        >>> xs, ys = pixel_coordinates((3, 5))
        >>> xs.tolist()
        [-1.0, -0.5, 0.0, 0.5, 1.0]
    """
    height, width = check_size(size)
    dtype = dtype or torch.get_default_dtype()
    xs = torch.arange(width, device=device, dtype=dtype)
    ys = torch.arange(height, device=device, dtype=dtype)
    if normalized:
        xs = xs * (2.0 / (width - 1)) - 1.0
        ys = ys * (2.0 / (height - 1)) - 1.0
    return xs, ys


def pixel_grid(
    size: int | tuple[int, int],
    *,
    normalized: bool = True,
    device: torch.device | str | None = None,
    dtype: torch.dtype | None = None,
) -> torch.Tensor:
    """The ``[H, W, 2]`` grid of pixel-centre coordinates ``(x, y)``.

    ``grid[r, c] == (x of column c, y of row r)``, so ``grid`` is directly usable as
    ``grid_sample``'s sampling grid with ``align_corners=True`` when normalised.

    Args:
        size: image size ``(H, W)``, or an int for a square image (each >= 2).
        normalized: ``[-1, 1]`` coordinates (default) or pixel units.
        device, dtype: of the result (default: CPU, the default dtype).

    Returns:
        ``[H, W, 2]`` grid.

    Example:
        >>> pixel_grid((2, 3))[1, 2].tolist()
        [1.0, 1.0]
    """
    xs, ys = pixel_coordinates(size, normalized=normalized, device=device, dtype=dtype)
    gy, gx = torch.meshgrid(ys, xs, indexing="ij")
    return torch.stack((gx, gy), dim=-1)


def _scale(size: tuple[int, int], like: torch.Tensor) -> torch.Tensor:
    h, w = size
    return torch.tensor([(w - 1) / 2.0, (h - 1) / 2.0], device=like.device, dtype=like.dtype)


def denormalize_points(points: torch.Tensor, size) -> torch.Tensor:
    """Normalised ``[..., 2]`` ``(x, y)`` in ``[-1, 1]`` -> pixel units, for an image of ``size``.

    ``x_px = (x + 1) (W - 1) / 2``, ``y_px = (y + 1) (H - 1) / 2``.

    Args:
        points: ``[..., 2]`` floating tensor.
        size: ``(H, W)`` or an int for a square image.

    Returns:
        ``[..., 2]`` pixel coordinates, in the dtype of ``points``.

    Example:
        >>> denormalize_points(torch.tensor([[-1.0, 1.0]]), (5, 9)).tolist()
        [[0.0, 4.0]]
    """
    check_points(points, "points")
    size = check_size(size)
    return (points + 1.0) * _scale(size, points)


def normalize_points(points: torch.Tensor, size) -> torch.Tensor:
    """Pixel ``[..., 2]`` ``(x, y)`` -> normalised ``[-1, 1]``; the inverse of
    :func:`denormalize_points`.

    Args:
        points: ``[..., 2]`` floating tensor, in pixels.
        size: ``(H, W)`` or an int for a square image.

    Returns:
        ``[..., 2]`` normalised coordinates in ``[-1, 1]`` (inside the image).

    Example:
        >>> normalize_points(torch.tensor([[0.0, 4.0]]), (5, 9)).tolist()
        [[-1.0, 1.0]]
    """
    check_points(points, "points")
    size = check_size(size)
    return points / _scale(size, points) - 1.0
