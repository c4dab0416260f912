"""Thin-plate-spline warps of images and points: one spline, both directions consistent.

A warp is given by control points ``src [B, N, 2]`` and ``dst [B, N, 2]``: content at
``src`` moves to ``dst``. One spline ``g`` defines it, fitted from ``dst`` to ``src``
(``g(dst_i) = src_i``):

- an image is resampled through ``g``: ``out(x) = image(g(x))``, so the content at
  ``src_i`` lands at ``dst_i``;
- a point ``p`` moves to ``g^{-1}(p)``, found by Newton steps on ``g(q) = p`` safeguarded
  by a trust region (Powell's dogleg on ``|g(q) - p|``) from the estimate of the
  forward-fitted spline ``f`` (``f(src_i) = dst_i``): per point in a native CPU kernel
  (the ``tps_inverse`` op), batched and branch-free in its torch reference (CUDA).

Images and points therefore agree to the accuracy of the image resampling itself,
which fitting a second spline ``src -> dst`` for the points (the usual shortcut) does not
give: ``f`` and ``g^{-1}`` agree at the control points only.

The spline (Duchon 1977, Bookstein 1989), in whatever coordinates the caller uses::

    s(x) = a_0 + a_x x + a_y y + sum_i w_i U(|x - c_i|),   U(r) = r^2 log r,  U(0) = 0,

with ``sum_i w_i = 0``, ``sum_i w_i c_i = 0``; ``(w, a)`` solve the ``(N + 3)``-square
system ``[[K + lambda I, P], [P^T, 0]] [w; a] = [v; 0]`` with ``K_ij = U(|c_i - c_j|)``,
``P_i = (1, c_i)``.
"""

from __future__ import annotations

import math
import warnings
from typing import NamedTuple

import torch
import torch.nn.functional as F

from ._checks import check_int, check_same, check_shape, check_tensor, shape_str
from ._native import NativeOp
from .coords import normalize_points, pixel_grid

__all__ = [
    "RandomTPSResult",
    "ScaleTPSResult",
    "TPSWarpResult",
    "random_tps",
    "scale_tps",
    "tps_warp",
]

_INTERPOLATIONS = ("bilinear", "nearest", "bicubic")
_PADDINGS = ("zeros", "border", "reflection")
_INVERSES = ("newton", "fit")


class TPSWarpResult(NamedTuple):
    """What :func:`tps_warp` returns: the warped ``image`` and ``points`` (``None`` when not
    given).

    Attributes:
        image: ``[B, C, H, W]`` the warped image, or ``None``.
        points: ``[B, M, 2]`` the warped points, or ``None``.

    Example:
        >>> src, dst = random_tps(2, generator=torch.Generator().manual_seed(0))
        >>> image, points = tps_warp(src, dst, points=torch.zeros(2, 3, 2))
        >>> image is None, points.shape
        (True, torch.Size([2, 3, 2]))
    """

    image: torch.Tensor | None
    points: torch.Tensor | None


class RandomTPSResult(NamedTuple):
    """What :func:`random_tps` returns: control points ``src`` and ``dst``, each
    ``[B, N, 2]``.

    Attributes:
        src: ``[B, N, 2]`` the regular grid of control points.
        dst: ``[B, N, 2]`` the grid moved by Gaussian noise.

    Example:
        >>> src, dst = random_tps(4, grid=3, generator=torch.Generator().manual_seed(0))
        >>> src.shape, dst.shape
        (torch.Size([4, 9, 2]), torch.Size([4, 9, 2]))
    """

    src: torch.Tensor
    dst: torch.Tensor


class ScaleTPSResult(NamedTuple):
    """What :func:`scale_tps` returns: control points ``src`` (unchanged) and the scaled
    ``dst``, each ``[B, N, 2]``.

    Attributes:
        src: ``[B, N, 2]`` the control points, unchanged.
        dst: ``[B, N, 2]`` ``src + factor * (dst - src)``.

    Example:
        >>> src, dst = random_tps(2, generator=torch.Generator().manual_seed(0))
        >>> half = scale_tps(src, dst, 0.5)
        >>> torch.allclose(half.dst - half.src, 0.5 * (dst - src), atol=1e-6)
        True
    """

    src: torch.Tensor
    dst: torch.Tensor


# --------------------------------------------------------------------------- checks


class _Degeneracy(NamedTuple):
    """Per-sample flags ``[B]`` of a control-point set, and its closest pair ``[B, 2]``."""

    nonfinite: torch.Tensor
    collinear: torch.Tensor
    duplicate: torch.Tensor
    pair: torch.Tensor


def _degeneracy(c: torch.Tensor, regularization: float) -> _Degeneracy:
    """Which samples of ``c [B, N, 2]`` make the spline system singular, without host sync.

    In ``c``'s dtype, scale-free (``c`` is centred and divided by its largest coordinate):

    - non-finite: any NaN or inf;
    - collinear: ``det(S) <= eps tr(S)^2`` for the second-moment matrix ``S`` of the centred
      points, i.e. their spread across the best line is below ``~sqrt(eps)`` of the spread
      along it (``det`` by Cauchy-Binet, ``sum_{i<j} (x_i y_j - x_j y_i)^2 / N^2``, without
      cancellation). The affine part is then undetermined, whatever the regularisation;
    - duplicate (only without regularisation): two points closer than ``sqrt(eps)`` times
      the points' RMS radius: two equal rows in the kernel block.

    Cost ``O(B N^2)``, like building the system itself.
    """
    b, n, _ = c.shape
    eps = torch.finfo(c.dtype).eps
    nonfinite = ~torch.isfinite(c).flatten(1).all(1)
    x = torch.where(nonfinite[:, None, None], 0.0, c)
    x = x - x.mean(1, keepdim=True)
    x = x / x.abs().amax((1, 2), keepdim=True).clamp_min(torch.finfo(c.dtype).tiny)
    spread2 = (x * x).sum((1, 2)) / n  # mean squared radius, <= 2
    cross = x[:, :, None, 0] * x[:, None, :, 1] - x[:, None, :, 0] * x[:, :, None, 1]
    det = (cross * cross).sum((1, 2)) / (2 * n * n)
    collinear = ~nonfinite & (det <= eps * spread2 * spread2)
    diff = x[:, :, None, :] - x[:, None, :, :]
    d2 = (diff * diff).sum(-1) + torch.diag(
        torch.full((n,), math.inf, dtype=c.dtype, device=c.device)
    )
    d2min, flat = d2.flatten(1).min(1)
    pair = torch.stack((flat // n, flat % n), -1)
    duplicate = ~nonfinite & ~collinear & (d2min <= eps * spread2)
    if regularization > 0.0:
        duplicate = torch.zeros_like(duplicate)
    return _Degeneracy(nonfinite, collinear, duplicate, pair)


def _samples(mask: torch.Tensor) -> str:
    """``"sample 3"`` / ``"samples 3, 7 (2 of 16)"`` from a ``[B]`` mask (host sync)."""
    idx = mask.nonzero().flatten().tolist()
    if len(idx) == 1:
        return f"sample {idx[0]}"
    shown = ", ".join(str(i) for i in idx[:8]) + (", ..." if len(idx) > 8 else "")
    return f"samples {shown} ({len(idx)} of {mask.numel()})"


def _raise_degenerate(name: str, deg: _Degeneracy, structural: bool) -> None:
    """The ValueError for the first degeneracy found in ``deg`` (CPU, outside compile)."""
    if bool(deg.nonfinite.any()):
        raise ValueError(
            f"`{name}` has non-finite values (NaN or inf) in {_samples(deg.nonfinite)}"
        )
    if not structural:
        return
    if bool(deg.collinear.any()):
        raise ValueError(
            f"`{name}`: the control points are collinear in {_samples(deg.collinear)} (their "
            "spread across a line is below sqrt(eps) of their spread along it): a thin-plate "
            "spline needs at least 3 control points that are not collinear"
        )
    if bool(deg.duplicate.any()):
        first = int(deg.duplicate.nonzero()[0, 0])
        i, j = sorted(deg.pair[first].tolist())
        raise ValueError(
            f"`{name}`: control points {i} and {j} coincide (closer than sqrt(eps) of the "
            f"points' spread) in {_samples(deg.duplicate)}: without regularization the spline "
            "system is singular; remove the duplicates or pass regularization > 0"
        )


def _safe_controls(n: int, dtype: torch.dtype, device) -> torch.Tensor:
    """``n >= 3`` distinct, non-collinear points (on the unit circle), ``[n, 2]``: what a
    degenerate sample's controls are replaced by on the no-check path, so that its (NaN)
    outputs come from finite computations and its gradients are zero, not NaN."""
    angle = torch.arange(n, dtype=dtype, device=device) * (2.0 * math.pi / n)
    return torch.stack((torch.cos(angle), torch.sin(angle)), -1)


# --------------------------------------------------------------------------- maths


def _radial(r2: torch.Tensor) -> torch.Tensor:
    """``U = r^2 log r = 0.5 r^2 log r^2`` from squared distances, ``U(0) = 0``.

    ``r2`` is clamped to the smallest normal number first: the value there is ``~1e-36``
    (float32) instead of ``0``, the gradient is exactly ``0`` (the true gradient of ``U`` at
    ``r = 0``), never NaN.
    """
    r2 = r2.clamp_min(torch.finfo(r2.dtype).tiny)
    return 0.5 * r2 * torch.log(r2)


def _sq_dist(x: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
    """``[B, M, 2] x [B, N, 2] -> [B, M, N]`` squared distances, by exact differences."""
    d = x[:, :, None, :] - c[:, None, :, :]
    return (d * d).sum(-1)


def _sq_dist_mm(x: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
    """Same as :func:`_sq_dist` from ``|x|^2 + |c|^2 - 2 x.c`` (one batched matmul; much
    faster for many points, absolute round-off ``~eps |x|^2``, may be slightly negative)."""
    x2 = (x * x).sum(-1)
    c2 = (c * c).sum(-1)
    return torch.baddbmm(x2[..., None] + c2[:, None, :], x, c.transpose(1, 2), alpha=-2.0)


def _fit_ex(
    centers: torch.Tensor, values: torch.Tensor, regularization: float
) -> tuple[torch.Tensor, torch.Tensor]:
    """Spline parameters ``[B, N + 3, 2]`` (``w`` then ``a_0, a_x, a_y``) with
    ``s(centers) = values`` (up to the regularisation), and ``solve_ex``'s ``info [B]``
    (non-zero: exactly singular). No host sync."""
    b, n, _ = centers.shape
    k = _radial(_sq_dist(centers, centers))
    if regularization > 0.0:
        k = k + regularization * torch.eye(n, dtype=k.dtype, device=k.device)
    p = torch.cat((torch.ones_like(centers[..., :1]), centers), dim=-1)  # [B, N, 3]
    zeros = centers.new_zeros(b, 3, 3)
    lhs = torch.cat((torch.cat((k, p), dim=-1), torch.cat((p.transpose(1, 2), zeros), dim=-1)), 1)
    rhs = torch.cat((values, values.new_zeros(b, 3, 2)), dim=1)
    params, info = torch.linalg.solve_ex(lhs, rhs)  # singular -> non-finite, info != 0
    return params, info


def _fit(centers: torch.Tensor, values: torch.Tensor, regularization: float) -> torch.Tensor:
    """Spline parameters ``[B, N + 3, 2]`` with ``s(centers) = values`` (see :func:`_fit_ex`)."""
    return _fit_ex(centers, values, regularization)[0]


def _apply(params: torch.Tensor, centers: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """Evaluate the spline at ``x [B, M, 2]`` -> ``[B, M, 2]``."""
    n = centers.shape[1]
    u = _radial(_sq_dist_mm(x, centers))
    return torch.baddbmm(
        torch.baddbmm(params[:, n : n + 1], x, params[:, n + 1 :]), u, params[:, :n]
    )


class _PlanarSpline(NamedTuple):
    """A spline prepared for :func:`_eval_planar`: ``ca [B, N, 4] = (-2 c, 1, |c|^2)``,
    ``w8 [B, 8, N]`` (rows ``w_o``, ``w_o c_x``, ``w_o c_y``, ``w_o |c|^2`` for ``o = x, y``)
    and the affine part ``a [B, 3, 2]``."""

    ca: torch.Tensor
    w8: torch.Tensor
    a: torch.Tensor
    work: torch.Tensor | None = None  # a reusable buffer for the [B, N, M] matrix (CPU)


def _center_rows(centers: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``(ca [B, N, 4] = (-2 c, 1, |c|^2), |c|^2 [B, N, 1])`` of centres ``[B, N, 2]``:
    ``ca @ _point_rows(q)`` is ``r^2`` ``[B, N, M]`` in one batched matmul."""
    c2 = (centers * centers).sum(-1, keepdim=True)
    return torch.cat((-2.0 * centers, torch.ones_like(c2), c2), -1), c2


def _point_rows(q: torch.Tensor) -> torch.Tensor:
    """``[B, 4, M] = (x, y, |x|^2, 1)`` of planar points ``q [B, 2, M]``."""
    q2 = q[:, 0] * q[:, 0] + q[:, 1] * q[:, 1]
    return torch.stack((q[:, 0], q[:, 1], q2, torch.ones_like(q2)), 1)


def _det(jx: torch.Tensor, jy: torch.Tensor) -> torch.Tensor:
    """``det J`` ``[B, M]`` from the Jacobian's columns ``jx, jy [B, 2, M]``."""
    return (jx[:, 0] * jy[:, 1]).sub_(jy[:, 0] * jx[:, 1])


def _planar_spline(params: torch.Tensor, centers: torch.Tensor) -> _PlanarSpline:
    n = centers.shape[1]
    w = params[:, :n]
    ca, c2 = _center_rows(centers)
    w8 = torch.cat((w, w * centers[..., :1], w * centers[..., 1:], w * c2), -1)
    return _PlanarSpline(ca, w8.transpose(1, 2).contiguous(), params[:, n:].contiguous())


def _eval_planar(spl: _PlanarSpline, q: torch.Tensor, jacobian: bool = True):
    """Spline value ``[B, 2, M]`` (and Jacobian columns ``jx, jy [B, 2, M]``,
    ``jx[:, o] = d g_o / d x``) at points ``q [B, 2, M]`` (coordinate-major, "planar").

    One ``[B, N, M]`` pass: ``r^2`` by one batched matmul of ``(-2 c, 1, |c|^2)`` with
    ``(x, y, |x|^2, 1)``, clamped and ``log`` in place (``L``), and one batched matmul
    ``M = w8 L`` ``[B, 8, M]``. Then, with ``r_i^2 = |x|^2 - 2 x.c_i + |c_i|^2``, per point:

        sum_i w_i U_i      = (|x|^2 (L w) + L (w |c|^2)) / 2 - x (L (w c_x)) - y (L (w c_y))
        d/dx sum_i w_i U_i = x (L w) - L (w c_x)      (the "+1" of dU = (L + 1)(x - c) dx
                                                       vanishes: sum w = 0, sum w c = 0)

    Round-off: ``~eps |x|^2 |L| |w|`` absolute (callers centre the coordinates). With
    ``spl.work`` (a flat buffer of at least ``B N M`` elements) the ``[B, N, M]`` matrix is
    written there: on CPU each fresh buffer of that size costs page faults.
    """
    ca, w8, a, work = spl
    qa = _point_rows(q)  # [B, 4, M]
    if work is None:
        log_r2 = torch.bmm(ca, qa)
    else:
        shape = (ca.shape[0], ca.shape[1], qa.shape[2])
        log_r2 = torch.bmm(ca, qa, out=work[: math.prod(shape)].view(shape))
    log_r2 = log_r2.clamp_min_(torch.finfo(q.dtype).tiny).log_()  # [B, N, M]
    m = torch.bmm(w8, log_r2)  # [B, 8, M]
    lw, lwc = m[:, 0:2], m[:, 6:8]
    cx = m[:, 2:4].sub_(a[:, 1, :, None])  # L (w c_x) - a_x: minus the x-column of J, but x L w
    cy = m[:, 4:6].sub_(a[:, 2, :, None])
    qx, qy, q2 = qa[:, 0:1], qa[:, 1:2], qa[:, 2:3]
    value = torch.addcmul(lwc, q2, lw).mul_(0.5).add_(a[:, 0, :, None])
    value = value.sub_(qx * cx).sub_(qy * cy)
    if not jacobian:
        return value
    return value, torch.addcmul(-cx, qx, lw), torch.addcmul(-cy, qy, lw)


def _apply_with_jacobian(
    params: torch.Tensor, centers: torch.Tensor, x: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """Spline values ``[B, M, 2]`` and Jacobians ``[B, M, 2, 2]`` (``J[..., out, in]``) at ``x``
    (see :func:`_eval_planar`)."""
    value, jx, jy = _eval_planar(_planar_spline(params, centers), x.transpose(1, 2))
    return value.transpose(1, 2), torch.stack((jx, jy), -1).permute(0, 2, 1, 3)


class _RadialGrid(torch.autograd.Function):
    """``sum_i w_i U(|x_p - c_i|)`` for a grid ``x [P, 2]`` shared by the batch -> ``[B, P, 2]``.

    Forward: ``r^2 = |x|^2 + |c|^2 - 2 x.c`` (one batched matmul), ``U``, one batched matmul
    with ``w``. Backward in closed form, from the saved ``U`` and ``log r^2``:
    ``dL/dw = U^T G``, ``dL/dr^2 = (G w^T) (log r^2 + 1) / 2``,
    ``dL/dc_i = 2 sum_p dL/dr^2_pi (c_i - x_p)``: two batched matmuls and two elementwise
    passes over the ``[B, P, N]`` matrix instead of autograd's chain of elementwise nodes.
    First derivatives only (``once_differentiable``).
    """

    @staticmethod
    def forward(ctx, w: torch.Tensor, centers: torch.Tensor, grid: torch.Tensor) -> torch.Tensor:
        # r^2 = [x, y, |x|^2, 1] . [-2 c_x, -2 c_y, 1, |c|^2]: one matmul, no broadcast add
        grid_aug = torch.cat(
            (grid, (grid * grid).sum(-1, keepdim=True), torch.ones_like(grid[:, :1])), -1
        )
        c_aug = torch.cat(
            (
                -2.0 * centers,
                torch.ones_like(centers[..., :1]),
                (centers * centers).sum(-1, keepdim=True),
            ),
            -1,
        )
        r2 = torch.matmul(grid_aug, c_aug.transpose(1, 2))  # [B, P, N]
        r2.clamp_min_(torch.finfo(r2.dtype).tiny)  # also absorbs negative round-off
        log_r2 = torch.log(r2)
        u = r2.mul_(log_r2).mul_(0.5)  # in place: r2 is not needed any more
        if ctx.needs_input_grad[0] or ctx.needs_input_grad[1]:
            ctx.save_for_backward(u, log_r2, w, centers, grid)
        return torch.bmm(u, w)

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad: torch.Tensor):
        u, log_r2, w, centers, grid = ctx.saved_tensors
        grad_w = grad_c = None
        if ctx.needs_input_grad[0]:
            grad_w = torch.bmm(u.transpose(1, 2), grad)
        if ctx.needs_input_grad[1]:
            g_u = torch.bmm(grad, w.transpose(1, 2))  # dL/dU  [B, P, N]
            g_r2 = torch.addcmul(g_u, g_u, log_r2).mul_(0.5)  # dL/dU (log r^2 + 1) / 2
            # [sum_p g_pi x_p, sum_p g_pi] in one matmul
            m = torch.matmul(
                g_r2.transpose(1, 2), torch.cat((grid, torch.ones_like(grid[:, :1])), -1)
            )
            grad_c = 2.0 * (centers * m[..., 2:] - m[..., :2])
        return grad_w, grad_c, None


def _apply_grid(params: torch.Tensor, centers: torch.Tensor, grid: torch.Tensor) -> torch.Tensor:
    """Evaluate the spline on a grid ``[P, 2]`` shared by the batch -> ``[B, P, 2]``.

    The radial part through :class:`_RadialGrid` (one ``[B, P, N]`` kernel matrix, batched
    matmuls), plus the affine part.
    """
    n = centers.shape[1]
    b = centers.shape[0]
    affine = torch.baddbmm(params[:, n : n + 1], grid.expand(b, -1, -1), params[:, n + 1 :])
    return affine + _RadialGrid.apply(params[:, :n], centers, grid)


def _compute_dtype(dtype: torch.dtype) -> torch.dtype:
    return torch.promote_types(dtype, torch.float32)


# --------------------------------------------------------------------------- the inverse

_ACCEPT = 1e-4  # a step is taken if |r|^2 drops by this fraction of the model's prediction
_RADIUS = 0.25  # initial trust radius, times max(RMS radius of the controls, |q - centroid|)
# (kRadius in csrc/tps/tps.h: the same rule in the kernel)
_FOLD_PATIENCE = 3  # then, in a warp seen to fold, only accepted Newton steps go on

# rows of the packed state [B, 11, M] of the iteration (one tensor: one where/gather/scatter):
# q (0:2), r = g(q) - p (2:4), J_g(q) columns jx (4:6) and jy (6:8), |r|, the trust radius
# (0: given up), det J_g(q)
_Q, _NR, _RAD, _DET = slice(0, 2), 8, 9, 10


def _tolerance(points: torch.Tensor, tol: float | None) -> torch.Tensor:
    """Per-point convergence threshold ``[B, M]`` on ``|g(q) - p|``, in the coordinates'
    units: ``tol`` (default ``sqrt(eps) max(1, |p|_inf)``), at least ``64 eps max(1,
    |p|_inf)`` (below that, round-off decides)."""
    eps = torch.finfo(points.dtype).eps
    scale = points.detach().abs().amax(-1).clamp_min(1.0)
    if tol is None:
        return math.sqrt(eps) * scale
    return (64.0 * eps * scale).clamp_min(tol)


def _tiny(x: torch.Tensor) -> float:
    return torch.finfo(x.dtype).tiny


def _newton_step(
    spl: _PlanarSpline,
    pt: torch.Tensor,
    s: torch.Tensor,
    folds: torch.Tensor,
    it: int,
    check: bool = False,
) -> tuple[torch.Tensor, torch.Tensor]:
    """One branch-free iteration of Powell's dogleg trust-region method on ``g(q) = p``.

    ``pt [B, 3, M]``: ``p`` and the tolerance; ``s [B, 11, M]``: the state, rows ``q``,
    ``r = g(q) - p``, ``J = J_g(q)`` (columns ``jx``, ``jy``), ``|r|``, the trust radius
    ``D`` (``0``: given up) and ``det J``; ``folds [B, 1]``: ``det J_g <= 0`` was seen.

    A point is running while ``|r| > tol`` and ``D > 0``. Its step: the Newton step
    ``-J^{-1} r`` if it is no longer than ``D``; otherwise the point at distance ``D`` on
    the dogleg path from the Cauchy point ``-(|G|^2 / |J G|^2) G`` (the minimiser of the
    linear model ``|r + J d|`` along the steepest descent ``-G = -J^T r``) to the Newton
    point, or along ``-G`` when the Cauchy point is already beyond ``D`` (or ``J`` is
    singular). The step is taken if the actual decrease of ``|r|^2`` is at least ``1e-4``
    of the model's; the radius shrinks to ``|d| / 4`` when the model was poor (ratio below
    ``1/4``) and doubles when it was good (above ``3/4``) and the step hit the boundary.
    Near a root the Newton step is inside the region: quadratic convergence. Far from it,
    in the near-singular valleys of an almost-folding warp, the dogleg keeps reducing
    ``|r|`` where damped Newton steps crawl. One evaluation (value and Jacobian together)
    per iteration; finished points are left exactly as they are. A warp with
    ``det J_g <= 0`` at a running point's trial folds over: from iteration
    ``_FOLD_PATIENCE`` on, its points give up unless they take an accepted full Newton step
    (on a fold the iteration can only stall at a local minimum of ``|r|``).

    ``check`` (CPU): the dogleg is computed only for the running points whose Newton step
    leaves the region (gathered; elementwise, so bitwise the same values).
    """
    p, tol = pt[:, :2], pt[:, 2]
    q, r, jx, jy = s[:, 0:2], s[:, 2:4], s[:, 4:6], s[:, 6:8]
    a, c, b, d = s[:, 4], s[:, 5], s[:, 6], s[:, 7]  # J = [[a, b], [c, d]]
    r0, r1 = s[:, 2], s[:, 3]
    nr, rad, det = s[:, _NR], s[:, _RAD], s[:, _DET]
    running = (nr > tol) & (rad > 0)
    newton = torch.stack((b * r1 - d * r0, c * r0 - a * r1), 1) / det[:, None]
    n_len = torch.hypot(newton[:, 0], newton[:, 1])
    outside = ~(n_len <= rad)  # the Newton step leaves the region (or J is singular)
    if not check:
        step = torch.where(outside[:, None], _dogleg(r, jx, jy, newton, n_len, rad), newton)
    else:  # the same, computed only where needed (the common case: nowhere)
        step = newton
        need = (running & outside).nonzero(as_tuple=True)
        if need[0].numel():
            bi, mi = need
            step = newton.clone()
            step[bi, :, mi] = _dogleg(
                r[bi, :, mi],
                jx[bi, :, mi],
                jy[bi, :, mi],
                newton[bi, :, mi],
                n_len[bi, mi],
                rad[bi, mi],
            )
    step = step.nan_to_num(0.0, 0.0, 0.0)
    lin = r + jx * step[:, :1] + jy * step[:, 1:]  # the linear model r + J d
    predicted = nr * nr - (lin * lin).sum(1)
    trial = q + step
    value, jx_t, jy_t = _eval_planar(spl, trial)
    r_t = value - p
    nr_t = torch.hypot(r_t[:, 0], r_t[:, 1])
    actual = nr * nr - nr_t * nr_t
    accept = running & (actual > _ACCEPT * predicted)
    det_t = _det(jx_t, jy_t)[:, None]
    folds = folds | (running[:, None] & (det_t <= 0)).any(2)
    s_len = torch.hypot(step[:, 0], step[:, 1])
    rad_t = torch.where(
        (actual < 0.25 * predicted) | (predicted <= 0),  # a stationary point: give up
        0.25 * s_len,
        torch.where((actual > 0.75 * predicted) & (s_len >= 0.99 * rad), 2.0 * rad, rad),
    )
    if it + 1 >= _FOLD_PATIENCE:  # folding warp: only accepted Newton steps go on
        rad_t = torch.where(folds & ~(accept & ~outside), 0.0, rad_t)
    new = torch.cat((trial, r_t, jx_t, jy_t, nr_t[:, None], rad_t[:, None], det_t), 1)
    s = torch.where(accept[:, None], new, s)  # (a lerp would turn inf into NaN)
    s[:, _RAD] = torch.where(running, rad_t, rad)
    return s, folds


def _dogleg(r, jx, jy, newton, n_len, rad):
    """The dogleg step where the Newton step ``newton`` (length ``n_len``) is longer than
    the radius ``rad``: vectors have their 2 components in dim 1 (``[B, 2, M]`` or
    ``[K, 2]``), scalars not (``[B, M]`` or ``[K]``). Elementwise, so computing it on a
    gathered subset gives bitwise the same values."""
    tiny = _tiny(rad)
    grad = torch.stack(((jx * r).sum(1), (jy * r).sum(1)), 1)  # J^T r
    j_grad = jx * grad[:, :1] + jy * grad[:, 1:]
    g2 = (grad * grad).sum(1)
    cauchy = grad * (g2 / (j_grad * j_grad).sum(1).clamp_min(tiny)).neg_()[:, None]
    c_len = torch.hypot(cauchy[:, 0], cauchy[:, 1])
    e = newton - cauchy
    e2, ce = (e * e).sum(1), (cauchy * e).sum(1)
    disc = (ce * ce - e2 * (c_len * c_len - rad * rad)).clamp_min_(0.0).sqrt_()
    tau = ((disc - ce) / e2.clamp_min(tiny)).clamp_(0.0, 1.0)
    short = (c_len >= rad) | ~torch.isfinite(n_len)  # along -G, shortened to the radius
    return torch.where(
        short[:, None],
        cauchy * (rad / c_len).clamp(max=1.0)[:, None],
        torch.addcmul(cauchy, e, tau[:, None]),
    )


def _newton(spl: _PlanarSpline, pt: torch.Tensor, q: torch.Tensor, rad, max_iter: int, check: bool):
    """Run :func:`_newton_step` up to ``max_iter`` times from ``q`` (planar ``[B, 2, M]``);
    returns the packed state ``[B, 11, M]`` and ``folds [B, 1]``.

    ``check=False``: exactly ``max_iter`` iterations on every point, no host sync (CUDA,
    ``torch.compile``). ``check=True`` (CPU): stop once no point is running, and iterate
    only on the running points (gathered per sample, padded with finished ones, which stay
    as they are): the same iterates, at a fraction of the cost. (On CPU the native kernel
    of :data:`_TPS_INVERSE` runs instead, per point; this is its reference.)
    """
    value, jx, jy = _eval_planar(spl, q)
    r = value - pt[:, :2]
    nr = torch.hypot(r[:, 0], r[:, 1])[:, None]
    det = _det(jx, jy)[:, None]
    s = torch.cat((q, r, jx, jy, nr, rad[:, None], det), 1)
    folds = (det <= 0).any(2)
    if not check:
        for it in range(max_iter):
            s, folds = _newton_step(spl, pt, s, folds, it)
        return s, folds
    # CPU: iterate on a working set of the running points (gathered per sample, padded with
    # finished ones, which stay as they are), shrunk as points finish; finished points are
    # written back into s when they leave it
    cur, cur_pt, idx = s, pt, None
    for it in range(max_iter):
        running = (cur[:, _NR] > cur_pt[:, 2]) & (cur[:, _RAD] > 0)
        k = int(running.sum(1).max()) if running.numel() else 0
        if k == 0:
            break
        if k < cur.shape[-1]:
            if idx is None:
                s = cur
            else:
                s.scatter_(2, idx[:, None].expand_as(cur), cur)
            sel = torch.topk(running.to(s.dtype), k, dim=1, sorted=False).indices
            idx = sel if idx is None else idx.gather(1, sel)
            cur = cur.gather(2, sel[:, None].expand(-1, cur.shape[1], -1))
            cur_pt = cur_pt.gather(2, sel[:, None].expand(-1, 3, -1))
        cur, folds = _newton_step(spl, cur_pt, cur, folds, it, check)
    if idx is None:
        return cur, folds
    return s.scatter_(2, idx[:, None].expand_as(cur), cur), folds


def _can_sync(t: torch.Tensor) -> bool:
    """Whether the iteration may stop early and compact (host syncs): CPU, not compiling."""
    return t.device.type == "cpu" and not torch.compiler.is_compiling()


def _inverse_reference(centers, params, start_centers, start_params, targets, max_iter: int):
    """The ``tps_inverse`` op in torch: :func:`_newton` on the spline ``params [B, N + 3, 2]``
    with centres ``centers [B, N, 2]`` towards ``targets [B, 3, M]`` (planar ``p`` and the
    tolerance), from ``q0 = f(p)`` for the spline ``f`` (``start_params [B, Nf + 3, 2]``,
    ``start_centers [B, Nf, 2]``) with trust radii ``_RADIUS max(RMS |c_i|, |q0|)``.
    Returns the packed state ``[B, 11, M]`` and ``folds [B, 1]``."""
    spl = _planar_spline(params, centers)
    spl_f = _planar_spline(start_params, start_centers)
    check = _can_sync(targets)
    if check:  # one [B, N, M] buffer for every evaluation
        n = max(centers.shape[1], start_centers.shape[1])
        work = targets.new_empty(centers.shape[0] * n * targets.shape[2])
        spl, spl_f = spl._replace(work=work), spl_f._replace(work=work)
    q0 = _eval_planar(spl_f, targets[:, :2], jacobian=False)
    rms = centers.square().sum(-1).mean(1).sqrt()[:, None]
    rad = _RADIUS * torch.maximum(rms, torch.hypot(q0[:, 0], q0[:, 1]))
    return _newton(spl, targets, q0, rad, max_iter, check)


def _inverse_fake(centers, params, start_centers, start_params, targets, max_iter):
    b, m = targets.shape[0], targets.shape[2]
    return targets.new_empty(b, 11, m), targets.new_empty(b, 1, dtype=torch.bool)


def _inverse_samples(device, dtype):
    """Argument tuples of ``tps_inverse`` for the generic native-op tests: smooth warps
    (converging; and stopped after 2 iterations), a target that is not finite (the
    caller's stand-in: ``p = 0``, ``tol = inf``), no points. (NaN outputs, which opcheck
    cannot compare, are tested in ``tests/test_tps.py``.)"""
    g = torch.Generator().manual_seed(3)
    src, dst = random_tps(3, noise_scale=0.06, generator=g, dtype=torch.float64)
    params, f = _fit(dst, src, 0.0), _fit(src, dst, 0.0)
    p = torch.rand(3, 2, 40, generator=g, dtype=torch.float64) * 2.2 - 1.1
    tol = _tolerance(p.to(dtype).transpose(1, 2), None).double()
    pt = torch.cat((p, tol[:, None]), 1)
    odd_pt = pt.clone()
    odd_pt[0, :, 5] = torch.tensor([0.0, 0.0, math.inf])

    def cast(*xs):
        return tuple(x.to(device, dtype).contiguous() for x in xs)

    return [
        (*cast(dst, params, src, f, pt), 30),
        (*cast(dst, params, src, f, pt), 2),
        (*cast(dst, params, src, f, odd_pt), 30),
        (*cast(dst, params, src, f, pt[:, :, :0]), 30),
    ]


_TPS_INVERSE = NativeOp(
    "tps_inverse", reference=_inverse_reference, fake=_inverse_fake, samples=_inverse_samples
)


class _InverseStep(torch.autograd.Function):
    """The final Newton step ``q = q* - J^{-1} (g(q*) - p)`` with its implicit gradient.

    Forward: from the converged (detached) ``q*``, ``r* = g(q*) - p`` and ``J = J_g(q*)``
    of the last iteration: no spline evaluation. Backward (first derivatives only), with
    ``v = J^{-T} dL/dq`` and ``J`` held constant: ``dL/dp = v``, and ``-v`` through
    ``g``'s value at ``q*``: ``dL/da_0 = -sum v``, ``dL/dA = -q* v^T``,
    ``dL/dw = -U^T v``, ``dL/dc_i = 2 sum_m (-v_m . w_i) (log r^2 + 1)/2 (c_i - q*_m)``,
    which recomputes the ``[B, N, M]`` matrix ``log r^2`` once. At a root these are exactly
    the implicit function theorem's ``dq = J^{-1} (dp - dg)``.
    """

    @staticmethod
    def forward(ctx, w, a, centers, p, s):
        jac, det = s[:, 4:8], s[:, _DET]
        r0, r1 = s[:, 2], s[:, 3]
        step = torch.stack((s[:, 7] * r0 - s[:, 6] * r1, s[:, 4] * r1 - s[:, 5] * r0), 1)
        ctx.save_for_backward(w, centers, s[:, _Q], jac, det)
        return s[:, _Q] - step / det[:, None]

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad):
        w, centers, q, jac, det = ctx.saved_tensors
        wt = w.transpose(1, 2).contiguous()  # [B, 2, N]: with a strided w the outer
        # products below are 30x slower
        a_, c_, b_, d_ = jac.unbind(1)
        v = torch.stack((d_ * grad[:, 0] - c_ * grad[:, 1], a_ * grad[:, 1] - b_ * grad[:, 0]), 1)
        v = v / det[:, None]  # J^{-T} grad  [B, 2, M]
        need = ctx.needs_input_grad
        grad_w = grad_a = grad_c = None
        if need[1]:
            grad_a = -torch.cat((v.sum(2)[:, None], torch.bmm(q, v.transpose(1, 2))), 1)
        if need[0] or need[2]:
            ca = _center_rows(centers)[0]
            qa = _point_rows(q)
            # two [B, N, M] buffers, reused in place (each fresh one costs page faults)
            buf = torch.bmm(ca, qa).clamp_min_(_tiny(q))  # r^2
            log_r2 = torch.log(buf)
            if need[0]:  # dL/dw = -U^T v, U = r^2 log r^2 / 2
                grad_w = torch.bmm(buf.mul_(log_r2).mul_(-0.5), v.transpose(1, 2))
            if need[2]:  # dL/dU = -w v, times dU/dr^2 = (log r^2 + 1) / 2
                g_r2 = torch.mul(wt[:, 0, :, None], v[:, None, 0], out=buf)
                g_r2.addcmul_(wt[:, 1, :, None], v[:, None, 1])
                g_r2.addcmul_(g_r2, log_r2).mul_(-0.5)
                mm = torch.bmm(g_r2, torch.cat((q, torch.ones_like(q[:, :1])), 1).transpose(1, 2))
                grad_c = 2.0 * (centers * mm[..., 2:] - mm[..., :2])
        return grad_w, grad_a, grad_c, v if need[3] else None, None


def _min_det_on_box(spl: _PlanarSpline, lo: torch.Tensor, hi: torch.Tensor, k: int = 65):
    """Smallest ``det J_g`` on a ``k x k`` grid over the boxes ``[lo, hi]`` (``[B, 2]``)."""
    u = torch.linspace(0.0, 1.0, k, dtype=lo.dtype, device=lo.device)
    gy, gx = torch.meshgrid(u, u, indexing="ij")
    unit = torch.stack((gx.flatten(), gy.flatten()), 0)  # [2, k^2]
    pts = lo[..., None] + (hi - lo)[..., None] * unit
    _, jx, jy = _eval_planar(spl, pts)
    return _det(jx, jy).amin(-1)


def _report(g, centers, pt, s, folds, ok, finite, max_iter: int) -> None:
    """CPU only: warn about points that did not converge (NaN) and points whose root lies
    where the warp folds over, and say, from ``det J_g``, which warps fold (``g``: the
    spline's parameters ``[B, N + 3, 2]``, ``centers [B, N, 2]``)."""
    det = s[:, _DET]
    failed = finite & ~ok
    folded_root = ok & (det <= 0)
    if not bool(failed.any() | folded_root.any()):
        return
    msg = []
    if bool(failed.any()):
        # fold seen at an iterate, or else on a grid over the region concerned
        fold_mask = folds[:, 0] & failed.any(1)
        rows = (failed.any(1) & ~fold_mask).nonzero().flatten()
        if rows.numel():
            sub = _planar_spline(g[rows], centers[rows])
            pts = torch.cat((s[rows, _Q], pt[rows, :2], centers[rows].transpose(1, 2)), 2)
            fold_mask[rows] = _min_det_on_box(sub, pts.amin(2), pts.amax(2)) <= 0
        flat_mask = failed.any(1) & ~fold_mask
        msg.append(
            f"the inverse did not converge for {int(failed.sum())} of {failed.numel()} points "
            f"(residual up to {float(s[:, _NR][failed].max()):.3g} after at most {max_iter} "
            "iterations); they are NaN."
        )
        if bool(fold_mask.any()):
            msg.append(
                f"The warp folds over (det J_g <= 0 in the box of its control points and "
                f"these points) in {_samples(fold_mask)}: a folding warp has no inverse "
                "there (displacements too large for the control-point spacing)."
            )
        if bool(flat_mask.any()):
            msg.append(
                f"In {_samples(flat_mask)} the warp does not fold over their region "
                "(det J_g > 0 on a 65 x 65 grid): increase max_iter."
            )
    if bool(folded_root.any()):
        msg.append(
            f"{int(folded_root.sum())} points have their preimage where the warp folds over "
            f"(det J_g <= 0) in {_samples(folded_root.any(1))}: one of their several "
            "preimages is returned."
        )
    warnings.warn("tps_warp: " + " ".join(msg), RuntimeWarning, stacklevel=4)


def _inverse_points(
    g: torch.Tensor,
    dst: torch.Tensor,
    f: torch.Tensor,
    src: torch.Tensor,
    points: torch.Tensor,
    tol: torch.Tensor,
    max_iter: int,
    check: bool,
    bad: torch.Tensor | None = None,
) -> torch.Tensor:
    """``q = g^{-1}(points)`` ``[B, M, 2]``, NaN where not converged (or ``bad [B]``).

    ``g`` (centres ``dst``) and ``f`` (centres ``src``) are fitted splines in the same
    (centred) coordinates as ``points``; ``tol [B, M]`` from :func:`_tolerance`. Damped
    Newton (:func:`_newton`) from ``f(points)`` without a graph, then
    :class:`_InverseStep`. Non-finite points and unconverged ones give NaN, with zero
    gradients (their inputs to the final step are replaced by finite ones); with ``check``
    a ``RuntimeWarning`` reports them (:func:`_report`).
    """
    finite = torch.isfinite(points).all(-1)
    if bad is not None:
        finite = finite & ~bad[:, None]
    with torch.no_grad():
        p = torch.where(finite[..., None], points.detach(), 0.0).transpose(1, 2)
        pt = torch.cat((p, torch.where(finite, tol, math.inf)[:, None]), 1)
        g_, dst_ = g.detach().contiguous(), dst.detach().contiguous()
        f_, src_ = f.detach().contiguous(), src.detach().contiguous()
        s, folds = _TPS_INVERSE(dst_, g_, src_, f_, pt, max_iter)
        ok = (s[:, _NR] <= tol) & finite
        if check:
            _report(g_, dst_, pt, s, folds, ok, finite, max_iter)
        fail = ~ok[:, None]
        all_ok = check and not bool(fail.any())
        if not all_ok:  # finite stand-ins (q = 0, r = 0, J = I): zero gradients there
            s = s.masked_fill(fail, 0.0)
            s[:, 4:8:3].masked_fill_(fail, 1.0)
            s[:, _DET].masked_fill_(fail[:, 0], 1.0)
    n = dst.shape[1]
    p_in = torch.where(finite[..., None], points, 0.0).transpose(1, 2)
    out = _InverseStep.apply(g[:, :n], g[:, n:], dst, p_in, s)
    if not all_ok:
        out = out.masked_fill(fail, math.nan)
    return out.transpose(1, 2)


# --------------------------------------------------------------------------- public


def tps_warp(
    src: torch.Tensor,
    dst: torch.Tensor,
    *,
    image: torch.Tensor | None = None,
    points: torch.Tensor | None = None,
    normalized: bool = True,
    regularization: float = 0.0,
    interpolation: str = "bilinear",
    padding: str = "border",
    inverse: str = "newton",
    max_iter: int = 20,
    tol: float | None = None,
) -> TPSWarpResult:
    r"""Warp an image and/or points with the thin-plate spline that carries ``src`` to ``dst``.

    Content at ``src_i`` in the image ends up at ``dst_i``, and a point at ``src_i`` maps to
    ``dst_i``: image and points move together, by the same warp.

    One spline defines the warp, ``g`` with ``g(dst_i) = src_i``:

    .. math::

        g(x) = a_0 + A x + \sum_{i=1}^{N} w_i\, U(\lVert x - \mathrm{dst}_i \rVert),
        \qquad U(r) = r^2 \log r,

    ``(w, a)`` from the linear system of the spline (``+ regularization * I`` on the kernel
    block). The image is resampled through it, ``out(x) = image(g(x))`` (``grid_sample``,
    ``align_corners=True``), and points go through its inverse, ``p -> g^{-1}(p)``: Newton
    steps ``q <- q - J_g(q)^{-1} (g(q) - p)`` inside a trust region (Powell's dogleg on
    ``|g(q) - p|``: where the Newton step is too long, a step between it and the steepest
    descent; the region adapts to how well the linear model predicted the decrease) from
    the estimate of the forward-fitted spline ``f`` (``f(src_i) = dst_i``), until
    ``|g(q) - p| <= tol``, then one more Newton step with the autograd graph attached. It
    converges wherever ``det J_g > 0`` on the region the iteration visits (measured on
    thousands of random warps: every point of every warp that does not fold; see the docs).
    Folding is detected from ``det J_g`` at the iterates, not from non-convergence.

    Gradients flow to ``image``, ``points``, ``src`` and ``dst``. Through the inverse they are
    those of the implicit function theorem, ``dq = J_g(q)^{-1} (dp - dg|_q)``: the Newton
    iterations run without a graph and the final step, taken from the converged (detached)
    ``q`` with ``J`` held constant, has exactly these first derivatives at the root. Cost:
    one ``[B, N, M]`` pass in the backward, whatever the number of iterations. The image
    path has a hand-written backward too (first derivatives only, like the inverse).

    Args:
        src: ``[B, N, 2]`` control points (``N >= 3``, not all collinear) where content is.
        dst: ``[B, N, 2]`` where that content goes.
        image: optional ``[B, C, H, W]`` images (any floating dtype; the spline is evaluated
            in float32 or better, the sampling grid is then cast to the image's dtype, as
            ``grid_sample`` requires: ~1e-3 (normalised) resolution in float16).
        points: optional ``[B, M, 2]`` points ``(x, y)``, same dtype and device as ``src``.
        normalized: ``src``, ``dst``, ``points`` (and the pixel grid) are in ``[-1, 1]`` with
            pixel centres at the ends (default) or in pixels. The spline is fitted in these
            coordinates, so for non-square images the two choices give slightly different
            warps (a thin-plate spline is invariant to similarity transforms only); for
            square images they give the same warp.
        regularization: ``lambda >= 0`` added to the kernel diagonal (smoothing spline: the
            control points are then approximated, not interpolated). In the units of ``U``,
            so it depends on ``normalized``.
        interpolation: ``grid_sample``'s ``mode``: ``"bilinear"``, ``"nearest"`` or
            ``"bicubic"``.
        padding: ``grid_sample``'s ``padding_mode``: ``"border"``, ``"zeros"`` or
            ``"reflection"``.
        inverse: ``"newton"`` (default): the exact inverse of ``g``. ``"fit"``: the forward
            spline ``f`` only, the cheap shortcut of kornia-style code, exact at the control
            points but not elsewhere: on a 64x64 image with a 5x5 grid and displacement std
            0.08 it lands on average 0.5 px (median 0.4 px, 5% of points over 1.5 px) away
            from where the image's content goes (see the docs).
        max_iter: maximal iterations (``>= 1``; one spline evaluation each; 20 suffice on
            every warp that does not fold in the docs' study, which needs at most 11). On
            CPU a native kernel (``tps_inverse``) iterates per point and stops each point
            when it has converged (also under ``torch.compile``); elsewhere, or with
            :func:`~torch_artic.force_reference`, the torch iteration runs (on CUDA and
            under ``torch.compile`` exactly ``max_iter`` iterations on every point, with no
            host synchronisation) and gives the same points. In a warp seen to fold
            (``det J_g <= 0`` at an iterate),
            from the third iteration on, a point stops (NaN) unless it takes an accepted
            full Newton step.
        tol: convergence threshold on ``|g(q) - p|``, in the coordinates' units (pixels with
            ``normalized=False``); default ``sqrt(eps) * max(1, |p|_inf)`` of the computation
            dtype (the final step then squares the error); never below
            ``64 eps max(1, |p|_inf)``.

    Returns:
        :class:`TPSWarpResult` ``(image, points)``: ``[B, C, H, W]`` warped images, ``[B, M, 2]``
        warped points, each ``None`` when not given. Points come back in their dtype.
        **Points whose inverse did not converge within ``max_iter`` iterations are NaN**
        (on every device; on CPU a ``RuntimeWarning`` also says how many, and which warps
        fold over, from ``det J_g``); their gradients are zero. On a warp that does not fold
        this does not happen (see the docs' study). A point whose root lies where the warp
        folds over (``det J_g(q) <= 0``) is returned (it is one of several preimages;
        CPU warns). The residual is ``tps_warp(dst, src, points=q, inverse="fit").points - p``
        (that is ``g(q) - p``).

    Raises:
        TypeError: non-tensor, sparse or non-floating inputs; ``points``/``dst`` dtype unlike
            ``src``.
        ValueError: shapes (naming the argument, expected and received shapes), ``N < 3``,
            different devices, meta tensors, unknown ``interpolation``/``padding``/``inverse``,
            negative ``regularization``, ``max_iter < 1``, neither ``image`` nor ``points``
            given; and, for CPU tensors outside ``torch.compile``, degenerate control points
            (below), naming ``src`` or ``dst`` and the sample.

    Degenerate control points make the spline system singular: non-finite values in ``src``
    or ``dst``; collinear centres (spread across a line below ``sqrt(eps)`` of the spread
    along it); coincident centres (closer than ``sqrt(eps)`` of their spread) without
    regularisation. The centres are ``dst`` for ``g`` (the image and ``inverse="newton"``)
    and ``src`` for ``f`` (whenever ``points`` are given: the inverse's start, or the map
    itself with ``inverse="fit"``). On CPU outside ``torch.compile`` this raises a
    ``ValueError``; where checking would need a host sync (CUDA) or cannot run (under
    ``torch.compile``), that sample's image **and** points are NaN (explicitly: border
    padding would otherwise turn a NaN grid into a plausible image), with zero gradients.
    Other samples are unaffected. NaN points give NaN, without a warning.

    Cost: ``O(B N^3)`` for the ``(N+3)``-square solves (one batched call), ``O(B H W N)`` for
    the image (one ``[B, H W, N]`` radial matrix and two batched matmuls), ``O(B M N)`` per
    Newton iteration (on CPU only for the points still running, in the native kernel;
    elsewhere one ``log`` pass and two batched matmuls for value and Jacobian).

    Example:
        >>> src, dst = random_tps(2, generator=torch.Generator().manual_seed(0))
        >>> image = torch.rand(2, 3, 32, 32)
        >>> out = tps_warp(src, dst, image=image, points=src)
        >>> out.image.shape, torch.allclose(out.points, dst, atol=1e-5)
        (torch.Size([2, 3, 32, 32]), True)
    """
    _check_controls(src, dst)
    b = src.shape[0]
    if image is None and points is None:
        raise ValueError(
            "tps_warp needs `image` [B, C, H, W] and/or `points` [B, M, 2]; got neither"
        )
    if image is not None:
        check_tensor(image, "image", data=True)
        check_shape(
            image,
            "image",
            f"[B, C, H, W] with B = {b} (like `src`)",
            image.dim() == 4 and image.shape[0] == b,
        )
        check_shape(
            image,
            "image",
            "[B, C, H, W] with H, W >= 2",
            image.shape[-1] >= 2 and image.shape[-2] >= 2,
        )
        if image.device != src.device:
            raise ValueError(
                f"`image` must be on the same device as `src` ({src.device}), got {image.device}"
            )
    if points is not None:
        check_tensor(points, "points", data=True)
        check_shape(
            points,
            "points",
            f"[B, M, 2] with B = {b} (like `src`)",
            points.dim() == 3 and points.shape[0] == b and points.shape[-1] == 2,
        )
        check_same("src", src, "points", points)
    if interpolation not in _INTERPOLATIONS:
        raise ValueError(f"`interpolation` must be one of {_INTERPOLATIONS}, got {interpolation!r}")
    if padding not in _PADDINGS:
        raise ValueError(f"`padding` must be one of {_PADDINGS}, got {padding!r}")
    if inverse not in _INVERSES:
        raise ValueError(f"`inverse` must be one of {_INVERSES}, got {inverse!r}")
    if isinstance(regularization, bool) or not isinstance(regularization, (int, float)):
        raise TypeError(
            f"`regularization` must be a float >= 0, got {type(regularization).__name__}"
        )
    if not regularization >= 0.0 or regularization == float("inf"):
        raise ValueError(f"`regularization` must be a finite float >= 0, got {regularization}")
    check_int(max_iter, "max_iter", 1)
    if tol is not None and (
        isinstance(tol, bool) or not isinstance(tol, (int, float)) or not 0.0 < tol < float("inf")
    ):
        raise ValueError(f"`tol` must be a finite float > 0 or None, got {tol!r}")
    check = _can_sync(src)
    return _warp(
        src,
        dst,
        image,
        points,
        normalized=normalized,
        regularization=float(regularization),
        interpolation=interpolation,
        padding=padding,
        inverse=inverse,
        max_iter=max_iter,
        tol=tol,
        check=check,
    )


def _warp(
    src,
    dst,
    image,
    points,
    *,
    normalized,
    regularization,
    interpolation,
    padding,
    inverse,
    max_iter,
    tol,
    check,
) -> TPSWarpResult:
    """:func:`tps_warp` after validation. ``check``: raise on degenerate control points and
    stop the inverse's iteration early (host syncs: CPU outside compile); otherwise mark
    degenerate samples and unconverged points NaN, with no host sync."""
    b, n, _ = src.shape
    ct = _compute_dtype(src.dtype)
    s, d = src.to(ct), dst.to(ct)
    use_g = image is not None or (points is not None and inverse == "newton")
    use_f = points is not None

    # degenerate control sets: raise (check) or replace by a safe set and mark NaN below
    deg = _degeneracy(torch.cat((s, d)).detach(), regularization)  # one call for both
    deg_s, deg_d = _Degeneracy(*(x[:b] for x in deg)), _Degeneracy(*(x[b:] for x in deg))
    bad = None
    if check:
        _raise_degenerate("src", deg_s, structural=use_f)
        _raise_degenerate("dst", deg_d, structural=use_g)
    else:
        bad = deg_s.nonfinite | deg_d.nonfinite
        if use_f:
            bad = bad | deg_s.collinear | deg_s.duplicate
        if use_g:
            bad = bad | deg_d.collinear | deg_d.duplicate
        safe = _safe_controls(n, ct, src.device)
        s = torch.where(bad[:, None, None], safe, s)
        d = torch.where(bad[:, None, None], safe, d)

    # both splines in coordinates centred on dst's centroid (exact: a thin-plate spline
    # commutes with translations), fitted by one batched solve
    o = d.detach().mean(1, keepdim=True)
    sc, dc = s - o, d - o
    centers = ([dc] if use_g else []) + ([sc] if use_f else [])
    values = ([sc] if use_g else []) + ([dc] if use_f else [])
    params, info = _fit_ex(torch.cat(centers), torch.cat(values), regularization)
    failed = (info != 0) | ~torch.isfinite(params.detach()).flatten(1).all(1)
    if check:
        for name, fail in zip(["dst"] * use_g + ["src"] * use_f, failed.view(len(centers), b)):
            if bool(fail.any()):
                raise ValueError(
                    f"`{name}`: the spline system with these control points is singular in "
                    f"{_samples(fail)} (torch.linalg.solve_ex failed)"
                )
    else:
        bad = bad | failed.view(len(centers), b).any(0)
    g = params[:b] if use_g else None
    f = params[b:] if use_g and use_f else (params if use_f else None)

    out_image = None
    if image is not None:
        h, w = image.shape[-2:]
        grid = pixel_grid((h, w), normalized=normalized, device=src.device, dtype=ct).reshape(-1, 2)
        # back to uncentred coordinates: a_0 <- a_0 - o A + o, same w and A, centres dst
        a0 = g[:, n : n + 1] - torch.bmm(o, g[:, n + 1 :]) + o
        where = _apply_grid(torch.cat((g[:, :n], a0, g[:, n + 1 :]), 1), d, grid)  # [B, H W, 2]
        if not normalized:
            where = normalize_points(where, (h, w))
        out_image = F.grid_sample(
            image,
            where.reshape(b, h, w, 2).to(image.dtype),
            mode=interpolation,
            padding_mode=padding,
            align_corners=True,
        )
        if bad is not None:
            out_image = torch.where(bad[:, None, None, None], math.nan, out_image)

    out_points = None
    if points is not None:
        p = points.to(ct)
        if inverse == "fit":
            q = _apply(f, sc, p - o) + o
            if bad is not None:
                q = torch.where(bad[:, None, None], math.nan, q)
        else:
            q = _inverse_points(g, dc, f, sc, p - o, _tolerance(p, tol), max_iter, check, bad) + o
        out_points = q.to(points.dtype)
    return TPSWarpResult(out_image, out_points)


def _check_controls(src, dst) -> None:
    check_tensor(src, "src", data=True)
    check_shape(src, "src", "[B, N, 2]", src.dim() == 3 and src.shape[-1] == 2)
    check_shape(src, "src", "[B, N, 2] with N >= 3 control points", src.shape[1] >= 3)
    check_tensor(dst, "dst", data=True)
    check_shape(
        dst, "dst", f"[B, N, 2] = {shape_str(src.shape)} (like `src`)", dst.shape == src.shape
    )
    check_same("src", src, "dst", dst)


def random_tps(
    batch_size: int,
    *,
    grid: int | tuple[int, int] = 5,
    noise_scale: float = 0.08,
    generator: torch.Generator | None = None,
    device: torch.device | str | None = None,
    dtype: torch.dtype | None = None,
) -> RandomTPSResult:
    r"""The thesis's random warp (§4.3.2.1): a regular grid of control points, each displaced
    by Gaussian noise.

    ``src`` is the ``rows x cols`` grid of ``[-1, 1]^2`` (corners included, normalised
    coordinates), the same for every sample; ``dst = src + noise_scale * n``, ``n ~ N(0, I)``.
    Use with ``tps_warp(src, dst, ...)``; for pixel units convert both with
    :func:`torch_artic.denormalize_points` and pass ``normalized=False``.

    Args:
        batch_size: number of warps ``B >= 1``.
        grid: control points per side (``>= 2``; an int or ``(rows, cols)``, ``rows * cols
            >= 3``).
        noise_scale: standard deviation of the displacements (normalised units, ``>= 0``; 0.08 is
            2.5 px on a 64-pixel image).
        generator: optional ``torch.Generator`` (on ``device``) for reproducibility.
        device, dtype: of the result (default: the generator's device or CPU; the default
            dtype). ``dtype`` must be a floating dtype.

    Returns:
        :class:`RandomTPSResult` ``(src, dst)``, each ``[B, rows * cols, 2]`` ``(x, y)``,
        row-major over the grid.

    Raises:
        TypeError: a non-floating ``dtype``, a non-numeric ``noise_scale``.
        ValueError: ``batch_size < 1``, a bad ``grid``, a negative or infinite
            ``noise_scale``.

    Example:
        >>> src, dst = random_tps(4, generator=torch.Generator().manual_seed(0))
        >>> src.shape, dst.shape
        (torch.Size([4, 25, 2]), torch.Size([4, 25, 2]))
    """
    check_int(batch_size, "batch_size", 1)
    rows, cols = (
        (grid, grid)
        if isinstance(grid, int) and not isinstance(grid, bool)
        else (tuple(grid) if isinstance(grid, (tuple, list)) and len(grid) == 2 else (None, None))
    )
    if not all(isinstance(v, int) and not isinstance(v, bool) for v in (rows, cols)):
        raise TypeError(f"`grid` must be an int >= 2 or a pair (rows, cols) of them, got {grid!r}")
    if rows < 2 or cols < 2:
        raise ValueError(f"`grid` must be an int >= 2 or a pair (rows, cols) of them, got {grid!r}")
    if isinstance(noise_scale, bool) or not isinstance(noise_scale, (int, float)):
        raise TypeError(f"`noise_scale` must be a float >= 0, got {type(noise_scale).__name__}")
    if not 0.0 <= noise_scale < float("inf"):
        raise ValueError(f"`noise_scale` must be a finite float >= 0, got {noise_scale}")
    if dtype is not None and (not isinstance(dtype, torch.dtype) or not dtype.is_floating_point):
        raise TypeError(
            "`dtype` must be a floating torch.dtype (float16, bfloat16, float32, float64), "
            f"got {dtype!r}"
        )
    if device is None and generator is not None:
        device = generator.device
    dtype = dtype or torch.get_default_dtype()
    ys = torch.linspace(-1.0, 1.0, rows, device=device, dtype=dtype)
    xs = torch.linspace(-1.0, 1.0, cols, device=device, dtype=dtype)
    gy, gx = torch.meshgrid(ys, xs, indexing="ij")
    src = torch.stack((gx, gy), dim=-1).reshape(1, rows * cols, 2).expand(batch_size, -1, -1)
    noise = torch.randn(batch_size, rows * cols, 2, generator=generator, device=device, dtype=dtype)
    return RandomTPSResult(src.contiguous(), src + noise_scale * noise)


def scale_tps(src: torch.Tensor, dst: torch.Tensor, factor: float | torch.Tensor) -> ScaleTPSResult:
    r"""Scale a warp's control-point displacements: ``(src, src + factor (dst - src))``.

    ``factor = 0`` is the identity, ``1`` the warp itself, ``0.5`` the "half warp" of the
    thesis's middle-frame task (§4.5.5.3: the first warp's parameters are half of the
    second's). Note that the half warp applied twice is close to, but not exactly, the whole
    warp (splines do not compose linearly).

    Args:
        src, dst: ``[B, N, 2]`` control points.
        factor: a float, or a floating tensor with one factor for the whole batch (one
            element: ``[]``, ``[1]``, ``[1, 1, 1]``) or one per sample (``[B]`` or
            ``[B, 1, 1]``), on ``src``'s device (a 0-dim CPU tensor is also accepted);
            differentiable, cast to ``src``'s dtype.

    Returns:
        :class:`ScaleTPSResult` ``(src, dst')``, ``dst' = src + factor * (dst - src)``,
        each ``[B, N, 2]``.

    Raises:
        TypeError: non-tensor or non-floating ``src``/``dst``/``factor`` (or sparse ones).
        ValueError: shapes (``factor``: expected and received), devices (meta included).

    Example:
        >>> src, dst = random_tps(2)
        >>> s, half = scale_tps(src, dst, 0.5)
        >>> torch.allclose(half - src, 0.5 * (dst - src), atol=1e-6)
        True
        >>> _, per_sample = scale_tps(src, dst, torch.tensor([0.0, 1.0]))  # one per sample
        >>> torch.equal(per_sample[0], src[0]), torch.allclose(per_sample[1], dst[1])
        (True, True)
    """
    _check_controls(src, dst)
    b = src.shape[0]
    if isinstance(factor, torch.Tensor):
        check_tensor(factor, "factor", data=True)
        if factor.device != src.device and not (factor.dim() == 0 and factor.device.type == "cpu"):
            raise ValueError(
                f"`factor` must be on the same device as `src` ({src.device}), got {factor.device}"
            )
        shape = tuple(factor.shape)
        if factor.numel() == 1 and factor.dim() <= 3:
            factor = factor.reshape(())
        elif shape in ((b,), (b, 1, 1)):
            factor = factor.reshape(b, 1, 1)
        else:
            raise ValueError(
                "`factor` must be a float, a one-element tensor or one factor per sample, "
                f"[B] or [B, 1, 1] with B = {b}, got {shape_str(shape)}"
            )
        factor = factor.to(src.dtype)
    elif isinstance(factor, bool) or not isinstance(factor, (int, float)):
        raise TypeError(f"`factor` must be a float or a tensor, got {type(factor).__name__}")
    elif not math.isfinite(factor):
        raise ValueError(f"`factor` must be finite, got {factor}")
    return ScaleTPSResult(src, src + factor * (dst - src))
