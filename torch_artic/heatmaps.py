"""Gaussian heatmap rendering ("heatmap cleaning", thesis §4.5.3) and the concentration
constraint (thesis eq. 4.2, §4.4.3, §4.5.6).

Rendering is separable: a 2-D isotropic Gaussian on the pixel grid is the outer product of a
1-D Gaussian over the rows and one over the columns, so a ``[..., H, W]`` map costs one
``[..., H] x [..., W]`` outer product.
"""

from __future__ import annotations

import torch

from ._checks import check_points, check_same, check_size, shape_str
from .coords import denormalize_points, pixel_coordinates
from .soft_argmax import _check_heatmaps, _check_scale, soft_argmax2d

__all__ = ["concentration_loss", "gaussian_heatmaps"]

_REDUCTIONS = ("mean", "sum", "none")


def gaussian_heatmaps(
    points: torch.Tensor,
    size: int | tuple[int, int],
    sigma: float | torch.Tensor,
    *,
    normalized: bool = True,
) -> torch.Tensor:
    r"""Render an unnormalised isotropic Gaussian peak at each point ("heatmap cleaning").

    Thesis §4.5.3: a keypoint is turned back into a heatmap by placing a Gaussian of fixed
    standard deviation at it on a blank map, so that downstream tasks see only the location.
    For a point :math:`p = (p_x, p_y)` in pixel units and the pixel centre
    :math:`u_{rc} = (c, r)`

    .. math::

        g_{rc} = \exp\!\Big(-\frac{\lVert u_{rc} - p\rVert^2}{2\sigma^2}\Big)
               = \exp\!\Big(-\frac{(c - p_x)^2}{2\sigma^2}\Big)\,
                 \exp\!\Big(-\frac{(r - p_y)^2}{2\sigma^2}\Big),

    computed as that outer product of two 1-D Gaussians. The peak value is 1 when ``p`` is on
    a pixel centre (the map is *not* normalised to sum to 1). ``sigma`` is **in pixels** in both
    coordinate modes, so the blob is round in pixel space even when ``H != W``. Points outside
    the image are allowed (their blob is cut off by the border). NaN in ``points`` gives a NaN
    map for that point.

    Args:
        points: ``[..., 2]`` floating ``(x, y)`` (e.g. ``[B, K, 2]``), normalised to
            ``[-1, 1]`` (default) or in pixels with ``normalized=False``.
        size: output ``(H, W)``, or an int for a square map (each >= 2).
        sigma: standard deviation in pixels, ``> 0``: a float, or a floating tensor
            broadcastable to ``points.shape[:-1]`` (one per point, differentiable; values are
            only checked on CPU).
        normalized: how ``points`` are expressed (see :mod:`torch_artic.coords`).

    Returns:
        ``[..., H, W]`` tensor (the leading dims of ``points``), same dtype and device.

    Raises:
        TypeError: ``points`` not a floating tensor, ``size`` not an int or pair of ints,
            ``sigma`` not a number or floating tensor.
        ValueError: ``points`` not ``[..., 2]``, ``size`` below 2, ``sigma`` not finite and
            positive or not broadcastable.

    Example:
        >>> g = gaussian_heatmaps(torch.tensor([[3.0, 2.0]]), (5, 7), 1.0, normalized=False)
        >>> g.shape, g[0, 2, 3].item()
        (torch.Size([1, 5, 7]), 1.0)
        >>> soft_argmax2d(g.log(), normalized=False)  # round trip
        tensor([[3.0000, 2.0000]])
    """
    check_points(points, "points")
    height, width = check_size(size)
    sigma = _check_scale(sigma, "sigma", points.shape[:-1], points, "points")
    pts = denormalize_points(points, (height, width)) if normalized else points
    xs, ys = pixel_coordinates(
        (height, width), normalized=False, device=points.device, dtype=points.dtype
    )
    if isinstance(sigma, torch.Tensor):
        sigma = sigma.to(device=points.device, dtype=points.dtype).unsqueeze(-1)  # [..., 1]
    gx = _gaussian((xs - pts[..., 0:1]) / sigma)  # [..., W]
    gy = _gaussian((ys - pts[..., 1:2]) / sigma)  # [..., H]
    return gy.unsqueeze(-1) * gx.unsqueeze(-2)


def _gaussian(u: torch.Tensor) -> torch.Tensor:
    """``exp(-u^2 / 2)``, with ``|u|`` clamped at 40 (where it is 0 in every dtype anyway),
    so that an infinite offset (a vanishing ``sigma``) has value 0 and gradient 0."""
    u = u.clamp(-40.0, 40.0)
    return torch.exp(-0.5 * u * u)


def concentration_loss(
    heatmaps: torch.Tensor,
    sigma: float | torch.Tensor,
    *,
    points: torch.Tensor | None = None,
    temperature: float | torch.Tensor = 1.0,
    normalized: bool = True,
    detach_target: bool = False,
    reduction: str = "mean",
) -> torch.Tensor:
    r"""Concentration constraint: squared distance of each heatmap to a Gaussian at its keypoint.

    Thesis eq. 4.2 (§4.4.3, §4.5.6): with :math:`h` the heatmap *before* the soft-argmax and
    :math:`g` the cleaned heatmap, a Gaussian of standard deviation ``sigma`` (pixels) rendered
    by :func:`gaussian_heatmaps` at the keypoint derived from :math:`h`,

    .. math::

        \mathcal{L}(h) = \sum_{x, y} \big(h_{x,y} - g_{x,y}\big)^2,
        \qquad g = \mathrm{gaussian\_heatmaps}(\mathrm{soft\_argmax2d}(h, T), \sigma).

    It is zero exactly when every heatmap is a unit-peak Gaussian blob around its own keypoint,
    so it discourages diffuse maps and keypoints found on border pixels or noise. The heatmap is
    compared as is (raw activations, as in the thesis), so the loss also pulls the peak value
    towards 1 and the background towards 0. By default gradients flow into both ``h`` and the
    target ``g`` (through the keypoint); ``detach_target=True`` treats ``g`` as a constant.

    Per heatmap the cost is one soft-argmax and one separable render, ``O(H W)``.

    Args:
        heatmaps: ``[..., H, W]`` floating tensor (e.g. ``[B, K, H, W]``), ``H, W >= 2``.
        sigma: Gaussian standard deviation in pixels (float, or a floating tensor broadcastable
            to ``heatmaps.shape[:-2]``).
        points: optional ``[..., 2]`` keypoints with ``points.shape[:-1] == heatmaps.shape[:-2]``
            (e.g. the soft-argmax you already computed); default: ``soft_argmax2d(heatmaps,
            temperature)``.
        temperature: soft-argmax temperature, used only when ``points`` is ``None``.
        normalized: coordinate convention of ``points`` (used only when given).
        detach_target: stop gradients through the Gaussian target.
        reduction: ``"mean"`` (over heatmaps, default), ``"sum"`` or ``"none"``. The sum over
            pixels is always taken (eq. 4.2); divide by ``H * W`` for a per-pixel mean.

    Returns:
        A scalar, or ``[...]`` (one value per heatmap) with ``reduction="none"``.

    Raises:
        TypeError: non-floating ``heatmaps``/``points``, or a bad ``sigma``/``temperature``
            type, or ``points`` of another dtype than ``heatmaps``.
        ValueError: bad shapes (``heatmaps`` not ``[..., H, W]`` with ``H, W >= 2``, ``points``
            not ``[..., 2]`` matching ``heatmaps``), non-positive ``sigma``/``temperature``,
            unknown ``reduction``, or ``points`` on another device.

    Example:
        >>> pts = torch.tensor([[[0.2, -0.4]]])
        >>> g = gaussian_heatmaps(pts, 16, 1.5)
        >>> concentration_loss(g, 1.5, points=pts).item()
        0.0
        >>> concentration_loss(torch.rand(2, 4, 16, 16), 1.5, reduction="none").shape
        torch.Size([2, 4])
    """
    _check_heatmaps(heatmaps)
    if reduction not in _REDUCTIONS:
        raise ValueError(f"`reduction` must be one of {_REDUCTIONS}, got {reduction!r}")
    lead = heatmaps.shape[:-2]
    sigma = _check_scale(sigma, "sigma", lead, heatmaps, "heatmaps")
    if points is None:
        points = soft_argmax2d(heatmaps, temperature=temperature, normalized=True)
        normalized = True
    else:
        check_points(points, "points")
        if points.shape[:-1] != lead:
            raise ValueError(
                f"`points` must have shape {shape_str((*lead, 2))} to match `heatmaps` "
                f"{shape_str(heatmaps.shape)}, got {shape_str(points.shape)}"
            )
        check_same("heatmaps", heatmaps, "points", points)
    if detach_target:
        points = points.detach()
        if isinstance(sigma, torch.Tensor):
            sigma = sigma.detach()
    target = gaussian_heatmaps(points, tuple(heatmaps.shape[-2:]), sigma, normalized=normalized)
    per_map = (heatmaps - target).square().sum(dim=(-2, -1))
    if reduction == "mean":
        return per_map.mean()
    if reduction == "sum":
        return per_map.sum()
    return per_map
