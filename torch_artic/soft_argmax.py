"""Spatial soft-argmax: heatmaps -> expected keypoint coordinates (thesis eq. 4.1, §4.5.2).

Each ``[H, W]`` heatmap ``h`` defines a distribution over its ``H * W`` pixel centres,

.. math::

    p_{rc} = \\frac{\\exp(h_{rc} / T)}{\\sum_{r'c'} \\exp(h_{r'c'} / T)},

and the keypoint is the mean of the pixel-centre coordinates ``u_{rc} = (x_c, y_r)`` under
``p``. Because the grid is separable, the mean only needs the two marginals
``p_x(c) = sum_r p_{rc}`` and ``p_y(r) = sum_c p_{rc}``; no ``[..., H, W, 2]`` grid is built.
"""

from __future__ import annotations

from typing import NamedTuple

import torch

from ._checks import check_positive, check_shape, check_tensor, check_values, shape_str
from .coords import pixel_coordinates

__all__ = ["SoftArgmax2dResult", "soft_argmax2d"]

_LOW_PRECISION = (torch.float16, torch.bfloat16)


class SoftArgmax2dResult(NamedTuple):
    """``(mean, covariance)`` returned by ``soft_argmax2d(..., return_covariance=True)``.

    Attributes:
        mean: ``[..., 2]`` expected ``(x, y)``.
        covariance: ``[..., 2, 2]`` covariance of ``(x, y)``; index 0 is x, index 1 is y.

    Example:
        >>> mean, covariance = soft_argmax2d(torch.zeros(2, 5, 5), return_covariance=True)
        >>> mean.shape, covariance.shape
        (torch.Size([2, 2]), torch.Size([2, 2, 2]))
    """

    mean: torch.Tensor
    covariance: torch.Tensor


def _check_heatmaps(heatmaps, name: str = "heatmaps") -> torch.Tensor:
    check_tensor(heatmaps, name)
    check_shape(heatmaps, name, "[..., H, W]", heatmaps.dim() >= 2)
    h, w = heatmaps.shape[-2:]
    if h < 2 or w < 2:
        raise ValueError(
            f"`{name}` must have shape [..., H, W] with H >= 2 and W >= 2, "
            f"got {shape_str(heatmaps.shape)}"
        )
    return heatmaps


def _check_scale(value, name: str, lead: torch.Size, like: torch.Tensor, what: str):
    """A positive float, or a floating tensor broadcastable to ``lead``, floored at the
    smallest normal number of ``like``'s compute dtype (so that a tiny scale gives the
    limit, not an underflow to 0 and NaN).

    Tensor values are checked (> 0 and finite) by :func:`~torch_artic._checks.check_values`:
    a ValueError on CPU (RuntimeError under torch.compile); on CUDA bad entries become NaN.
    """
    tiny = torch.finfo(torch.promote_types(like.dtype, torch.float32)).tiny
    if not isinstance(value, torch.Tensor):
        return max(check_positive(value, name), tiny)
    check_tensor(value, name)
    if value.device != like.device and not (value.dim() == 0 and value.device.type == "cpu"):
        raise ValueError(
            f"`{name}` must be on the same device as `{what}` ({like.device}), got {value.device}"
        )
    try:
        ok = torch.broadcast_shapes(value.shape, lead) == lead
    except RuntimeError:
        ok = False
    if not ok:
        raise ValueError(
            f"`{name}` must be a positive float or a tensor broadcastable to "
            f"{shape_str(lead)} (the leading shape of `{what}`), got {shape_str(value.shape)}"
        )
    good = (value > 0) & torch.isfinite(value)
    if not check_values(good, f"`{name}` must be finite and > 0 everywhere"):
        value = torch.where(good, value, torch.nan)  # (CUDA) NaN results for bad entries
    return value.clamp_min(tiny)


def _probabilities(h: torch.Tensor, temperature) -> torch.Tensor:
    """``softmax(h / T)`` over the last two dims, without overflow for tiny ``T``."""
    if isinstance(temperature, torch.Tensor):
        t = temperature.to(device=h.device, dtype=h.dtype)[..., None, None]
        # Shifting by the (constant, hence detached) max is exact: softmax is shift-invariant.
        a = h - h.detach().amax(dim=(-2, -1), keepdim=True)
        if t.requires_grad:
            # d(a / t)/dt = -a / t^2 is -inf where a = -inf, and 0 * inf = NaN would poison
            # the temperature's gradient although those pixels have probability 0.
            masked = a == -torch.inf
            s = torch.where(masked, -torch.inf, torch.where(masked, 0.0, a) / t)
        else:
            s = a.div_(t)
    elif temperature == 1.0:
        s = h
    elif temperature > 1.0:  # |h / T| <= |h|: cannot overflow
        s = h / temperature
    else:  # in place on the fresh difference: one [..., H, W] temporary, not two
        s = (h - h.detach().amax(dim=(-2, -1), keepdim=True)).div_(temperature)
    return torch.softmax(s.flatten(-2), dim=-1).view(s.shape)


def soft_argmax2d(
    heatmaps: torch.Tensor,
    *,
    temperature: float | torch.Tensor = 1.0,
    normalized: bool = True,
    return_covariance: bool = False,
) -> torch.Tensor | SoftArgmax2dResult:
    r"""Spatial soft-argmax: the expected pixel-centre ``(x, y)`` under ``softmax(h / T)``.

    Thesis eq. 4.1 (§4.5.2). For each ``[H, W]`` heatmap ``h``

    .. math::

        p_{rc} = \frac{e^{h_{rc}/T}}{\sum_{r'c'} e^{h_{r'c'}/T}}, \qquad
        \mu = \sum_{rc} p_{rc}\, (x_c, y_r),

    with ``x_c`` the coordinate of column ``c`` and ``y_r`` that of row ``r`` (the library's
    convention, see :mod:`torch_artic.coords`). The temperature *divides*: small ``T`` gives a
    sharper distribution and ``T -> 0`` gives the arg-max pixel (the thesis writes
    :math:`e^{\beta h}`, i.e. :math:`\beta = 1/T`). A flat heatmap gives the image centre,
    ``(0, 0)`` when normalised. The mean is computed from the marginals
    :math:`p_x(c) = \sum_r p_{rc}` and :math:`p_y(r) = \sum_c p_{rc}`, so the cost is one softmax
    over ``H * W`` plus ``O(H + W)`` per heatmap; no coordinate grid is materialised.

    With ``return_covariance=True`` it also returns the covariance of that distribution,
    computed as the expectation of centred outer products (no ``E[uu^T] - \mu\mu^T``
    cancellation):

    .. math::

        \Sigma = \sum_{rc} p_{rc}\, (u_{rc} - \mu)(u_{rc} - \mu)^\top,
        \qquad u_{rc} = (x_c, y_r).

    Its eigenvalues measure how concentrated (confident) a heatmap is (thesis §4.6.6).

    Non-finite input: ``-inf`` entries get probability 0 (a partially ``-inf`` heatmap is fine
    and has finite gradients). A heatmap that is entirely ``-inf``, or that contains ``+inf`` or
    NaN, gives NaN for that heatmap only (other heatmaps are unaffected). Float16 and bfloat16
    inputs are computed in float32 and the result cast back.

    Args:
        heatmaps: ``[..., H, W]`` floating tensor (any number of leading dims, ``H, W >= 2``),
            e.g. ``[B, K, H, W]``.
        temperature: ``T > 0``, a float or a floating tensor broadcastable to the leading
            shape ``[...]`` of ``heatmaps`` (one temperature per heatmap, differentiable).
            Tensor values are only checked on CPU (checking on CUDA would need a host sync).
        normalized: coordinates in ``[-1, 1]`` with pixel centres at the ends (default), or
            in pixels (centre of pixel ``i`` at ``i``).
        return_covariance: also return the ``[..., 2, 2]`` covariance.

    Returns:
        ``[..., 2]`` tensor of ``(x, y)``; or, with ``return_covariance=True``, a
        :class:`SoftArgmax2dResult` ``(mean [..., 2], covariance [..., 2, 2])`` (covariance in
        the units of the coordinates squared).

    Raises:
        TypeError: ``heatmaps`` is not a floating tensor; ``temperature`` is not a number or a
            floating tensor.
        ValueError: ``heatmaps`` has fewer than 2 dims or ``H < 2`` or ``W < 2``;
            ``temperature`` is not finite and positive, or does not broadcast.

    Example:
        >>> h = torch.full((1, 3, 5, 7), -1e4)
        >>> h[0, 0, 2, 6] = 0.0          # row 2, column 6
        >>> soft_argmax2d(h, normalized=False)[0, 0].tolist()
        [6.0, 2.0]
        >>> mean, cov = soft_argmax2d(torch.zeros(5, 7), return_covariance=True)  # flat map
        >>> bool(mean.abs().max() < 1e-6), cov.shape  # the image centre
        (True, torch.Size([2, 2]))
    """
    _check_heatmaps(heatmaps)
    temperature = _check_scale(
        temperature, "temperature", heatmaps.shape[:-2], heatmaps, "heatmaps"
    )
    out_dtype = heatmaps.dtype
    h = heatmaps.float() if out_dtype in _LOW_PRECISION else heatmaps
    height, width = h.shape[-2:]
    p = _probabilities(h, temperature)
    xs, ys = pixel_coordinates(
        (height, width), normalized=normalized, device=h.device, dtype=h.dtype
    )
    px = p.sum(dim=-2)  # [..., W]
    py = p.sum(dim=-1)  # [..., H]
    mx = px @ xs
    my = py @ ys
    mean = torch.stack((mx, my), dim=-1)
    if not return_covariance:
        return mean.to(out_dtype)
    dx = xs - mx.unsqueeze(-1)  # [..., W]
    dy = ys - my.unsqueeze(-1)  # [..., H]
    vxx = (px * dx * dx).sum(dim=-1)
    vyy = (py * dy * dy).sum(dim=-1)
    rx = (p @ dx.unsqueeze(-1)).squeeze(-1)  # [..., H]: sum_c p_rc (x_c - mx)
    vxy = (rx * dy).sum(dim=-1)
    cov = torch.stack((torch.stack((vxx, vxy), -1), torch.stack((vxy, vyy), -1)), -2)
    return SoftArgmax2dResult(mean.to(out_dtype), cov.to(out_dtype))
