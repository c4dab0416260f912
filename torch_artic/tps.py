"""Thin-plate-spline warps of images and points: one spline, both directions consistent.

A warp is given by control points ``src [B, N, 2]`` and ``dst [B, N, 2]``: content at
``src`` moves to ``dst``. One spline ``g`` defines it, fitted from ``dst`` to ``src``
(``g(dst_i) = src_i``):

- an image is resampled through ``g``: ``out(x) = image(g(x))``, so the content at
  ``src_i`` lands at ``dst_i``;
- a point ``p`` moves to ``g^{-1}(p)``, found by batched Newton steps on ``g(q) = p``
  from the estimate of the forward-fitted spline ``f`` (``f(src_i) = dst_i``).

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

from ._checks import check_same, check_shape, check_tensor, shape_str
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
    given)."""

    image: torch.Tensor | None
    points: torch.Tensor | None


class RandomTPSResult(NamedTuple):
    """What :func:`random_tps` returns: control points ``src`` and ``dst``, each
    ``[B, N, 2]``."""

    src: torch.Tensor
    dst: torch.Tensor


class ScaleTPSResult(NamedTuple):
    """What :func:`scale_tps` returns: control points ``src`` (unchanged) and the scaled
    ``dst``, each ``[B, N, 2]``."""

    src: torch.Tensor
    dst: torch.Tensor


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


def _fit(centers: torch.Tensor, values: torch.Tensor, regularization: float) -> torch.Tensor:
    """Spline parameters ``[B, N + 3, 2]`` (``w`` then ``a_0, a_x, a_y``) with
    ``s(centers) = values`` (up to the regularisation)."""
    b, n, _ = centers.shape
    k = _radial(_sq_dist(centers, centers))
    if regularization > 0.0:
        k = k + regularization * torch.eye(n, dtype=k.dtype, device=k.device)
    p = torch.cat((torch.ones_like(centers[..., :1]), centers), dim=-1)  # [B, N, 3]
    zeros = centers.new_zeros(b, 3, 3)
    lhs = torch.cat((torch.cat((k, p), dim=-1), torch.cat((p.transpose(1, 2), zeros), dim=-1)), 1)
    rhs = torch.cat((values, values.new_zeros(b, 3, 2)), dim=1)
    params, _ = torch.linalg.solve_ex(lhs, rhs)  # no host sync; singular -> non-finite
    return params


def _apply(params: torch.Tensor, centers: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """Evaluate the spline at ``x [B, M, 2]`` -> ``[B, M, 2]``."""
    n = centers.shape[1]
    u = _radial(_sq_dist_mm(x, centers))
    return torch.baddbmm(
        torch.baddbmm(params[:, n : n + 1], x, params[:, n + 1 :]), u, params[:, :n]
    )


def _apply_with_jacobian(
    params: torch.Tensor, centers: torch.Tensor, x: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """Spline values ``[B, M, 2]`` and Jacobians ``[B, M, 2, 2]`` (``J[..., out, in]``) at ``x``.

    ``dU/dx = (log r^2 + 1) (x - c)`` (``0`` at ``r = 0``), so with ``A = log r^2 + 1``
    ``[B, M, N]``: ``J[o, i] = x_i (A w)_o - (A (w_o c_i))_{oi} + a_{1+i, o}``, all matmuls.
    """
    b, n = centers.shape[:2]
    w, a = params[:, :n], params[:, n:]
    r2 = _sq_dist_mm(x, centers).clamp_min(torch.finfo(x.dtype).tiny)
    log_r2 = torch.log(r2)
    value = torch.baddbmm(torch.baddbmm(a[:, :1], x, a[:, 1:]), 0.5 * r2 * log_r2, w)
    grad_coef = log_r2 + 1.0  # [B, M, N]
    aw = grad_coef @ w  # [B, M, 2 (out)]
    awc = grad_coef @ (w[..., :, None] * centers[..., None, :]).reshape(b, n, 4)
    jac = aw[..., :, None] * x[..., None, :] - awc.reshape(*aw.shape[:2], 2, 2)
    return value, jac + a[:, None, 1:].transpose(-1, -2)


def _solve2x2(jac: torch.Tensor, r: torch.Tensor) -> torch.Tensor:
    """``jac^{-1} r`` for ``jac [..., 2, 2]``, ``r [..., 2]`` in closed form."""
    a, b = jac[..., 0, 0], jac[..., 0, 1]
    c, d = jac[..., 1, 0], jac[..., 1, 1]
    det = a * d - b * c
    x = (d * r[..., 0] - b * r[..., 1]) / det
    y = (a * r[..., 1] - c * r[..., 0]) / det
    return torch.stack((x, y), dim=-1)


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


def _inverse_points(
    g: torch.Tensor,
    dst: torch.Tensor,
    f: torch.Tensor,
    src: torch.Tensor,
    points: torch.Tensor,
    max_iter: int,
    tol: float | None,
    check: bool | None = None,
) -> torch.Tensor:
    """``q = g^{-1}(points)``: Newton from ``f(points)``, then one differentiable step.

    With ``check`` (default: on CPU) each iteration checks convergence and only re-evaluates
    the samples that still have unconverged points (a folding warp keeps only its own sample
    iterating); without, exactly ``max_iter`` steps run on everything, with no host sync.
    """
    eps = torch.finfo(points.dtype).eps
    with torch.no_grad():
        p = points.detach()
        g0, c0 = g.detach(), dst.detach()
        q = _apply(f.detach(), src.detach(), p)
        if check is None:
            check = q.device.type == "cpu"
        if not check:
            for _ in range(max_iter):
                value, jac = _apply_with_jacobian(g0, c0, q)
                q = q - _solve2x2(jac, value - p)
            _, jac = _apply_with_jacobian(g0, c0, q)
        else:
            tol_t = (math.sqrt(eps) if tol is None else tol) * p.abs().amax(-1).clamp_min(1.0)
            # NaN in, NaN out: such points (or whole samples) are not waited for
            skip = ~torch.isfinite(p).all(-1) | ~torch.isfinite(g0).all(-1).all(-1)[:, None]
            jac = torch.empty(*q.shape, 2, dtype=q.dtype, device=q.device)
            active = torch.arange(q.shape[0], device=q.device)  # samples still iterating
            for step in range(max_iter + 1):
                qa = q[active]
                value, jac_a = _apply_with_jacobian(g0[active], c0[active], qa)
                r = value - p[active]
                done = (r.norm(dim=-1) <= tol_t[active]) | skip[active]
                jac[active] = jac_a  # the Jacobian at the current q, for the final step
                if step == max_iter:
                    break  # this pass only checks the last step
                q[active] = torch.where(done[..., None], qa, qa - _solve2x2(jac_a, r))
                active = active[~done.all(-1)]
                if active.numel() == 0:
                    break
            bad = ~done if active.numel() > 0 and step == max_iter else done[:0]
            if bool(bad.any()):
                warnings.warn(
                    f"tps_warp: the inverse did not converge for {int(bad.sum())} of "
                    f"{p.shape[0] * p.shape[1]} points after {max_iter} Newton steps (largest "
                    f"residual {float(r.norm(dim=-1)[bad].max()):.3g}); the warp probably folds "
                    "over (displacements too large for the control-point spacing). Their "
                    "positions are approximate.",
                    RuntimeWarning,
                    stacklevel=3,
                )
    # Final Newton step with the graph attached. At a root of g(q) = p its derivatives are
    # exactly those of the implicit function theorem: dq = J^{-1} (dp - dg|_q).
    return q - _solve2x2(jac, _apply(g, dst, q) - points)


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
    max_iter: int = 10,
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
    steps ``q <- q - J_g(q)^{-1} (g(q) - p)`` from the estimate of the forward-fitted spline
    ``f`` (``f(src_i) = dst_i``), until ``|g(q) - p| <= tol * max(1, |p|_inf)``, then one more
    step with the autograd graph attached.

    Gradients flow to ``image``, ``points``, ``src`` and ``dst``. Through the inverse they are
    those of the implicit function theorem, ``dq = J_g(q)^{-1} (dp - dg|_q)``: the Newton
    iterations run without a graph and the final step, taken from the converged (detached)
    ``q`` with ``J`` held constant, has exactly these first derivatives at the root. Cost:
    one extra spline evaluation at ``M`` points, whatever the number of iterations. The
    image path has a hand-written backward (first derivatives only, like the inverse).

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
        max_iter: maximal Newton steps (``>= 1``). On CPU the iteration stops when converged
            and a ``RuntimeWarning`` reports points that did not converge (a folding warp);
            on other devices exactly ``max_iter`` steps run and nothing is checked (no host
            synchronisation).
        tol: convergence tolerance relative to ``max(1, |p|_inf)``; default
            ``sqrt(eps)`` of the computation dtype (the final step then squares the error).

    Returns:
        :class:`TPSWarpResult` ``(image, points)``: ``[B, C, H, W]`` warped images, ``[B, M, 2]``
        warped points, each ``None`` when not given. Points come back in their dtype.

    Raises:
        TypeError: non-tensor or non-floating inputs; ``points``/``dst`` dtype unlike ``src``.
        ValueError: shapes (naming the argument, expected and received shapes), ``N < 3``,
            different devices, unknown ``interpolation``/``padding``/``inverse``, negative
            ``regularization``, ``max_iter < 1``, neither ``image`` nor ``points`` given.

    Cost: ``O(B N^3)`` for the two ``(N+3)``-square solves, ``O(B H W N)`` for the image
    (one ``[B, H W, N]`` radial matrix and two batched matmuls), ``O(B M N)`` per Newton
    step. Degenerate control points (repeated or collinear, without regularisation) make
    the system singular: the output is then non-finite (no check, no host sync). NaN in,
    NaN out.

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
        check_tensor(image, "image")
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
        check_tensor(points, "points")
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
    if isinstance(max_iter, bool) or not isinstance(max_iter, int) or max_iter < 1:
        raise ValueError(f"`max_iter` must be an int >= 1, got {max_iter!r}")
    if tol is not None and (
        isinstance(tol, bool) or not isinstance(tol, (int, float)) or not 0.0 < tol < float("inf")
    ):
        raise ValueError(f"`tol` must be a finite float > 0 or None, got {tol!r}")

    ct = _compute_dtype(src.dtype)
    s, d = src.to(ct), dst.to(ct)
    g = _fit(d, s, float(regularization))  # output -> input: g(dst) = src

    out_image = None
    if image is not None:
        h, w = image.shape[-2:]
        grid = pixel_grid((h, w), normalized=normalized, device=src.device, dtype=ct).reshape(-1, 2)
        where = _apply_grid(g, d, grid)  # [B, H W, 2]
        if not normalized:
            where = normalize_points(where, (h, w))
        out_image = F.grid_sample(
            image,
            where.reshape(b, h, w, 2).to(image.dtype),
            mode=interpolation,
            padding_mode=padding,
            align_corners=True,
        )

    out_points = None
    if points is not None:
        p = points.to(ct)
        f = _fit(s, d, float(regularization))  # input -> output: f(src) = dst
        if inverse == "fit":
            q = _apply(f, s, p)
        else:
            q = _inverse_points(g, d, f, s, p, max_iter, tol)
        out_points = q.to(points.dtype)
    return TPSWarpResult(out_image, out_points)


def _check_controls(src, dst) -> None:
    check_tensor(src, "src")
    check_shape(src, "src", "[B, N, 2]", src.dim() == 3 and src.shape[-1] == 2)
    check_shape(src, "src", "[B, N, 2] with N >= 3 control points", src.shape[1] >= 3)
    check_tensor(dst, "dst")
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
            dtype).

    Returns:
        :class:`RandomTPSResult` ``(src, dst)``, each ``[B, rows * cols, 2]`` ``(x, y)``,
        row-major over the grid.

    Example:
        >>> src, dst = random_tps(4, generator=torch.Generator().manual_seed(0))
        >>> src.shape, dst.shape
        (torch.Size([4, 25, 2]), torch.Size([4, 25, 2]))
    """
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"`batch_size` must be an int >= 1, got {batch_size!r}")
    rows, cols = (
        (grid, grid)
        if isinstance(grid, int) and not isinstance(grid, bool)
        else (tuple(grid) if isinstance(grid, (tuple, list)) and len(grid) == 2 else (None, None))
    )
    if not all(isinstance(v, int) and not isinstance(v, bool) and v >= 2 for v in (rows, cols)):
        raise ValueError(f"`grid` must be an int >= 2 or a pair (rows, cols) of them, got {grid!r}")
    if isinstance(noise_scale, bool) or not isinstance(noise_scale, (int, float)):
        raise TypeError(f"`noise_scale` must be a float >= 0, got {type(noise_scale).__name__}")
    if not 0.0 <= noise_scale < float("inf"):
        raise ValueError(f"`noise_scale` must be a finite float >= 0, got {noise_scale}")
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
        factor: a float or a tensor broadcastable to ``[B, 1, 1]`` (e.g. per-sample factors
            of shape ``[B, 1, 1]``; differentiable).

    Returns:
        :class:`ScaleTPSResult` ``(src, dst')``, ``dst' = src + factor * (dst - src)``,
        each ``[B, N, 2]``.

    Example:
        >>> src, dst = random_tps(1)
        >>> s, half = scale_tps(src, dst, 0.5)
        >>> torch.allclose(half - src, 0.5 * (dst - src), atol=1e-6)
        True
    """
    _check_controls(src, dst)
    if isinstance(factor, torch.Tensor):
        check_tensor(factor, "factor")
    elif isinstance(factor, bool) or not isinstance(factor, (int, float)):
        raise TypeError(f"`factor` must be a float or a tensor, got {type(factor).__name__}")
    return ScaleTPSResult(src, src + factor * (dst - src))
