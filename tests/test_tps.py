"""Tests of torch_artic.tps: the thin-plate-spline warp of images and points."""

from __future__ import annotations

import math
import os
import subprocess
import sys
import warnings
from pathlib import Path
from unittest import mock

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st

from torch_artic import force_reference
from torch_artic import tps as tps_module
from torch_artic.coords import denormalize_points, pixel_grid
from torch_artic.tps import (
    TPSWarpResult,
    _apply_with_jacobian,
    _fit,
    _warp,
    random_tps,
    scale_tps,
    tps_warp,
)

try:
    from torch_artic.soft_argmax import soft_argmax2d
except ImportError:  # pragma: no cover - the sibling module is written in parallel
    soft_argmax2d = None


ROOT = Path(__file__).resolve().parents[1]


def _gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _spline(src, dst, x, **kw):
    """The spline s with s(src) = dst evaluated at x (the forward fit)."""
    return tps_warp(src, dst, points=x, inverse="fit", **kw).points


def _smooth_image(b, c, h, w, dtype=torch.float32):
    grid = pixel_grid((h, w), dtype=dtype)
    x, y = grid[..., 0], grid[..., 1]
    chans = [torch.sin(2.0 * x + k) * torch.cos(1.5 * y - k) + 0.3 * x * y for k in range(c)]
    return torch.stack(chans)[None].expand(b, -1, -1, -1).contiguous()


def _dots(points_px, size, sigma=1.5):
    """One Gaussian dot per channel: points_px [B, K, 2] -> [B, K, H, W]."""
    grid = pixel_grid((size, size), normalized=False, dtype=points_px.dtype)
    d2 = ((grid[None, None] - points_px[:, :, None, None, :]) ** 2).sum(-1)
    return torch.exp(-d2 / (2 * sigma**2))


def _location(images):
    """Where a dot is (pixels): the soft-argmax of its log-intensity at T = 1/4, i.e. the
    centroid of ``image^4`` (sharper than the intensity centroid, so less biased by the
    warp's curvature, yet wide enough, sigma 0.75 px, to be free of pixel-grid bias)."""
    heat = torch.log(images.clamp_min(1e-30))
    if soft_argmax2d is not None:
        return soft_argmax2d(heat, temperature=0.25, normalized=False)
    grid = pixel_grid(tuple(images.shape[-2:]), normalized=False, dtype=images.dtype)
    wts = torch.softmax(heat.flatten(-2) / 0.25, -1).view(heat.shape)
    return (wts[..., None] * grid).sum((-3, -2))


def _min_jacobian_det(src, dst, size=65, lim=1.0):
    """Smallest det of the output->input map g over the image, or [-lim, lim]^2 (<= 0: the
    warp folds)."""
    g = _fit(dst.double(), src.double(), 0.0)
    x = lim * pixel_grid((size, size), dtype=torch.float64).reshape(1, -1, 2)
    x = x.expand(len(src), -1, -1)
    _, jac = _apply_with_jacobian(g, dst.double(), x.contiguous())
    return torch.linalg.det(jac).amin(-1)


# --------------------------------------------------------------------------- maths


def test_identity_when_src_equals_dst():
    src, _ = random_tps(2, generator=_gen(0))
    image = torch.rand(2, 3, 17, 23, generator=_gen(1))
    pts = torch.rand(2, 9, 2, generator=_gen(2)) * 2 - 1
    out = tps_warp(src, src, image=image, points=pts)
    assert isinstance(out, TPSWarpResult)
    torch.testing.assert_close(out.image, image, atol=1e-5, rtol=0)
    torch.testing.assert_close(out.points, pts, atol=1e-5, rtol=0)


@pytest.mark.parametrize("inverse", ["newton", "fit"])
def test_control_points_map_exactly(backend, inverse):
    src, dst = random_tps(3, noise_scale=0.08, generator=_gen(3))
    out = tps_warp(src.double(), dst.double(), points=src.double(), inverse=inverse)
    torch.testing.assert_close(out.points, dst.double(), atol=1e-10, rtol=0)


def test_matches_scipy_thin_plate_spline():
    interp = pytest.importorskip("scipy.interpolate")
    src, dst = random_tps(2, noise_scale=0.1, generator=_gen(4), dtype=torch.float64)
    x = torch.rand(2, 40, 2, generator=_gen(5), dtype=torch.float64) * 2 - 1
    ours = _spline(src, dst, x)
    for b in range(2):
        ref = interp.RBFInterpolator(
            src[b].numpy(), dst[b].numpy(), kernel="thin_plate_spline", degree=1
        )(x[b].numpy())
        np.testing.assert_allclose(ours[b].numpy(), ref, atol=1e-12)


def test_affine_displacement_reproduced_everywhere():
    g = _gen(6)
    src = torch.rand(2, 12, 2, generator=g, dtype=torch.float64) * 2 - 1
    mat = torch.eye(2, dtype=torch.float64) + 0.1 * torch.randn(
        2, 2, 2, generator=g, dtype=torch.float64
    )
    shift = 0.1 * torch.randn(2, 1, 2, generator=g, dtype=torch.float64)
    dst = src @ mat.transpose(1, 2) + shift
    pts = torch.rand(2, 30, 2, generator=g, dtype=torch.float64) * 2 - 1
    image = _smooth_image(2, 2, 20, 24, torch.float64)
    out = tps_warp(src, dst, image=image, points=pts)
    torch.testing.assert_close(out.points, pts @ mat.transpose(1, 2) + shift, atol=1e-10, rtol=0)
    # output pixel x samples A^{-1} (x - t): exactly affine_grid's map
    inv = torch.linalg.inv(mat)
    theta = torch.cat((inv, -(inv @ shift.transpose(1, 2))), dim=-1)
    ref_grid = F.affine_grid(theta, list(image.shape), align_corners=True)
    ref = F.grid_sample(image, ref_grid, padding_mode="border", align_corners=True)
    torch.testing.assert_close(out.image, ref, atol=1e-10, rtol=0)


@settings(max_examples=20, deadline=None)
@given(seed=st.integers(0, 2**31 - 1), scale=st.floats(0.0, 0.08), n=st.integers(1, 20))
def test_points_are_the_exact_inverse_of_the_image_map(seed, scale, n):
    # the image samples g(x), g(dst) = src; points go to q with g(q) = p
    src, dst = random_tps(2, noise_scale=scale, generator=_gen(seed), dtype=torch.float64)
    p = torch.rand(2, n, 2, generator=_gen(seed + 1), dtype=torch.float64) * 1.6 - 0.8
    if (_min_jacobian_det(src, dst) <= 0).any():
        return  # a folding warp has no inverse
    for forced in (False, True):  # native kernel (where built), torch reference
        with force_reference(enabled=forced):
            q = tps_warp(src, dst, points=p).points
        torch.testing.assert_close(_spline(dst, src, q), p, atol=1e-9, rtol=0)


@settings(max_examples=15, deadline=None)
@given(
    seed=st.integers(0, 2**31 - 1),
    angle=st.floats(-3.1, 3.1),
    scale=st.floats(0.5, 2.0),
    tx=st.floats(-2, 2),
    ty=st.floats(-2, 2),
)
def test_similarity_equivariance(seed, angle, scale, tx, ty):
    # a thin-plate spline commutes with rotations, uniform scalings and translations
    src, dst = random_tps(1, noise_scale=0.06, generator=_gen(seed), dtype=torch.float64)
    p = torch.rand(1, 7, 2, generator=_gen(seed + 1), dtype=torch.float64) * 1.6 - 0.8
    c, s = np.cos(angle), np.sin(angle)
    rot = scale * torch.tensor([[c, -s], [s, c]], dtype=torch.float64)
    t = torch.tensor([tx, ty], dtype=torch.float64)

    def sim(z):
        return z @ rot.T + t

    for inverse in ("newton", "fit"):
        a = tps_warp(sim(src), sim(dst), points=sim(p), inverse=inverse).points
        b = sim(tps_warp(src, dst, points=p, inverse=inverse).points)
        torch.testing.assert_close(a, b, atol=1e-8, rtol=0)


def test_pixel_coordinates_give_the_same_warp_on_square_images():
    src, dst = random_tps(2, noise_scale=0.08, generator=_gen(7), dtype=torch.float64)
    image = _smooth_image(2, 1, 21, 21, torch.float64)
    p = torch.rand(2, 5, 2, generator=_gen(8), dtype=torch.float64) * 1.6 - 0.8
    a = tps_warp(src, dst, image=image, points=p)
    size = (21, 21)
    b = tps_warp(
        denormalize_points(src, size),
        denormalize_points(dst, size),
        image=image,
        points=denormalize_points(p, size),
        normalized=False,
    )
    torch.testing.assert_close(b.image, a.image, atol=1e-9, rtol=0)
    torch.testing.assert_close(b.points, denormalize_points(a.points, size), atol=1e-9, rtol=0)


def test_pixel_coordinates_on_non_square_image_stay_consistent():
    # normalized=False on a non-square image: a different spline, but image and points agree
    size = (24, 40)
    src, dst = random_tps(1, noise_scale=0.08, generator=_gen(9), dtype=torch.float64)
    src, dst = denormalize_points(src, size), denormalize_points(dst, size)
    dot = torch.tensor([[[21.0, 11.0]]], dtype=torch.float64)
    grid = pixel_grid(size, normalized=False, dtype=torch.float64)
    image = torch.exp(-((grid - dot[0, 0]) ** 2).sum(-1) / (2 * 1.5**2))[None, None]
    out = tps_warp(src, dst, image=image, points=dot, normalized=False)
    w = out.image[0, 0] ** 8  # a sharp peak: its centroid is where the dot's centre went
    where = (w[..., None] * grid).sum((0, 1)) / w.sum()
    assert (where - out.points[0, 0]).norm() < 0.2


def test_regularization_keeps_image_and_points_consistent():
    src, dst = random_tps(2, noise_scale=0.1, generator=_gen(10), dtype=torch.float64)
    p = torch.rand(2, 10, 2, generator=_gen(11), dtype=torch.float64) * 1.6 - 0.8
    for lam in (0.0, 1e-2, 1.0):
        q = tps_warp(src, dst, points=p, regularization=lam).points
        torch.testing.assert_close(_spline(dst, src, q, regularization=lam), p, atol=1e-9, rtol=0)
    # smoothing: control points are no longer interpolated, and a huge lambda is the
    # least-squares affine map
    smooth = tps_warp(src, dst, points=src, regularization=1.0).points
    assert (smooth - dst).abs().max() > 1e-3
    big = tps_warp(src, dst, points=p, regularization=1e8, inverse="fit").points
    ones = torch.ones_like(src[..., :1])
    coef = torch.linalg.lstsq(torch.cat((ones, src), -1), dst).solution
    affine = torch.cat((torch.ones_like(p[..., :1]), p), -1) @ coef
    torch.testing.assert_close(big, affine, atol=1e-5, rtol=0)


# --------------------------------------------------------------------------- the dot test


def test_dot_lands_where_its_point_lands():
    """A Gaussian dot (sigma 1.5 px) at p, warped, is found within 0.2 px of the warped p;
    64x64, random 5x5 warps with displacement std 0.08.

    The residual is the measure's, not the warp's: a warped dot is not symmetric, so its
    soft-argmax sits a little off its mode q = g^{-1}(p) where the warp bends most (the
    same residual comes from a dot warped analytically, see the next test). Hence 95% within
    0.2 px, all within 0.5 px; the forward-fit shortcut is several times worse.
    """
    size, batch, dots = 64, 24, 6
    src, dst = random_tps(batch, grid=5, noise_scale=0.08, generator=_gen(12))
    keep = _min_jacobian_det(src, dst) > 0
    assert keep.sum() >= batch - 2  # folding warps (no inverse) are rare at this scale
    src, dst = src[keep], dst[keep]
    p = torch.rand(len(src), dots, 2, generator=_gen(13)) * 1.2 - 0.6
    images = _dots(denormalize_points(p, size), size)
    out = tps_warp(src, dst, image=images, points=p)
    found = _location(out.image)
    err = (found - denormalize_points(out.points, size)).norm(dim=-1).flatten()
    assert err.quantile(0.95) < 0.2, err.quantile(0.95)
    assert err.max() < 0.5, err.max()
    assert err.mean() < 0.1, err.mean()
    fit = tps_warp(src, dst, points=p, inverse="fit").points
    err_fit = (found - denormalize_points(fit, size)).norm(dim=-1).flatten()
    assert err_fit.mean() > 4 * err.mean()
    assert err_fit.max() > 1.0


def test_dot_image_matches_the_analytically_warped_dot():
    # isolates the implementation from the measure: resampling a dot image through g and
    # evaluating the dot at g(x) directly give the same soft-argmax to < 0.1 px
    size, dots = 64, 6
    src, dst = random_tps(8, grid=5, noise_scale=0.08, generator=_gen(27))
    keep = _min_jacobian_det(src, dst) > 0
    src, dst = src[keep], dst[keep]
    p = torch.rand(len(src), dots, 2, generator=_gen(28)) * 1.2 - 0.6
    p_px = denormalize_points(p, size)
    out = tps_warp(src, dst, image=_dots(p_px, size), points=p)
    grid = pixel_grid((size, size)).reshape(1, -1, 2).expand(len(src), -1, -1)
    g_px = denormalize_points(_spline(dst, src, grid.contiguous()), size)  # g(x): g(dst) = src
    g_px = g_px.reshape(len(src), 1, size, size, 2)
    ideal = torch.exp(-((g_px - p_px[:, :, None, None]) ** 2).sum(-1) / (2 * 1.5**2))
    diff = (_location(out.image) - _location(ideal)).norm(dim=-1)
    assert diff.max() < 0.1, diff.max()


def test_scaled_warps():
    src, dst = random_tps(2, noise_scale=0.08, generator=_gen(14))
    image = _smooth_image(2, 1, 16, 16)
    s0, d0 = scale_tps(src, dst, 0.0)
    torch.testing.assert_close(d0, src)
    torch.testing.assert_close(tps_warp(s0, d0, image=image).image, image, atol=1e-5, rtol=0)
    s1, d1 = scale_tps(src, dst, 1.0)
    torch.testing.assert_close(d1, dst)
    _, half = scale_tps(src, dst, 0.5)
    torch.testing.assert_close(half - src, 0.5 * (dst - src))
    # per-sample factors, differentiable
    f = torch.tensor([0.5, 1.0]).reshape(2, 1, 1).requires_grad_()
    _, df = scale_tps(src, dst, f)
    torch.testing.assert_close(df[1], dst[1])
    tps_warp(src, df, image=image).image.sum().backward()
    assert f.grad is not None and torch.isfinite(f.grad).all()


def test_random_tps():
    src, dst = random_tps(5, grid=(3, 4), noise_scale=0.1, generator=_gen(15))
    assert src.shape == dst.shape == (5, 12, 2)
    torch.testing.assert_close(src[0, 0], torch.tensor([-1.0, -1.0]))
    torch.testing.assert_close(src[0, -1], torch.tensor([1.0, 1.0]))
    torch.testing.assert_close(src[0, 1], torch.tensor([-1.0 / 3.0, -1.0]))  # row-major, x first
    assert (src == src[:1]).all()
    a = random_tps(5, grid=(3, 4), noise_scale=0.1, generator=_gen(15))[1]
    torch.testing.assert_close(a, dst)  # reproducible
    big_src, big_dst = random_tps(400, noise_scale=0.08, generator=_gen(16), dtype=torch.float64)
    assert abs((big_dst - big_src).std().item() - 0.08) < 0.004
    assert random_tps(1, dtype=torch.float64)[0].dtype == torch.float64
    s, d = random_tps(2, noise_scale=0.0)
    torch.testing.assert_close(s, d)


# --------------------------------------------------------------------------- gradients


def _small_problem(seed):
    g = _gen(seed)
    src, dst = random_tps(1, grid=3, noise_scale=0.1, generator=g, dtype=torch.float64)
    image = torch.rand(1, 1, 5, 6, generator=g, dtype=torch.float64)
    pts = torch.rand(1, 3, 2, generator=g, dtype=torch.float64) * 1.4 - 0.7
    return src, dst, image, pts


def test_gradcheck_image():
    src, dst, image, _ = _small_problem(17)
    inputs = tuple(t.clone().requires_grad_() for t in (src, dst, image))
    assert torch.autograd.gradcheck(lambda s, d, i: tps_warp(s, d, image=i).image, inputs)


@pytest.mark.parametrize("inverse", ["newton", "fit"])
def test_gradcheck_points(backend, inverse):
    src, dst, _, pts = _small_problem(18)
    inputs = tuple(t.clone().requires_grad_() for t in (src, dst, pts))
    assert torch.autograd.gradcheck(
        lambda s, d, p: tps_warp(s, d, points=p, inverse=inverse).points, inputs
    )


def test_gradcheck_with_regularization_and_pixels(backend):
    src, dst, image, pts = _small_problem(19)
    src, dst, pts = (denormalize_points(t, (5, 6)) for t in (src, dst, pts))
    inputs = tuple(t.clone().requires_grad_() for t in (src, dst, image, pts))

    def fn(s, d, i, p):
        out = tps_warp(s, d, image=i, points=p, normalized=False, regularization=0.1)
        return out.image, out.points

    assert torch.autograd.gradcheck(fn, inputs)


def test_inverse_gradient_is_the_implicit_one(backend):
    # dq/dp = J_g(q)^{-1}: compose with g and get the identity
    src, dst = random_tps(1, noise_scale=0.08, generator=_gen(20), dtype=torch.float64)
    p = torch.tensor([[[0.3, -0.2]]], dtype=torch.float64, requires_grad=True)
    q = tps_warp(src, dst, points=p).points
    jac_q = torch.stack(
        [torch.autograd.grad(q[0, 0, i], p, retain_graph=True)[0][0, 0] for i in range(2)]
    )
    _, jac_g = _apply_with_jacobian(_fit(dst, src, 0.0), dst, q.detach())
    torch.testing.assert_close(jac_g[0, 0] @ jac_q, torch.eye(2, dtype=torch.float64))


# --------------------------------------------------------------------------- dtypes, NaN


def test_low_precision_image_and_float32_controls():
    src, dst = random_tps(2, noise_scale=0.08, generator=_gen(21))
    image = _smooth_image(2, 2, 16, 16)
    ref = tps_warp(src, dst, image=image).image
    for dt in (torch.bfloat16, torch.float16):
        try:
            out = tps_warp(src, dst, image=image.to(dt)).image
        except RuntimeError as exc:  # grid_sample without a CPU kernel for this dtype
            pytest.skip(f"grid_sample {dt} on CPU: {exc}")
        assert out.dtype == dt
        torch.testing.assert_close(out.float(), ref, atol=5e-2, rtol=0)


def test_low_precision_points_are_computed_in_float32():
    src, dst = random_tps(1, noise_scale=0.08, generator=_gen(22))
    p = torch.rand(1, 4, 2, generator=_gen(23)) - 0.5
    ref = tps_warp(src, dst, points=p).points
    out = tps_warp(src.bfloat16(), dst.bfloat16(), points=p.bfloat16()).points
    assert out.dtype == torch.bfloat16
    torch.testing.assert_close(out.float(), ref, atol=3e-2, rtol=0)


def test_nan_in_nan_out_without_warning(backend):
    src, dst = random_tps(1, noise_scale=0.08, generator=_gen(24))
    p = torch.tensor([[[0.1, 0.2], [float("nan"), 0.0]]])
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        q = tps_warp(src, dst, points=p).points
    assert torch.isfinite(q[0, 0]).all() and torch.isnan(q[0, 1]).all()


def test_folding_warp_warns(backend):
    src, dst = random_tps(4, noise_scale=0.6, generator=_gen(25))
    p = torch.rand(4, 200, 2, generator=_gen(26)) * 2 - 1
    with pytest.warns(RuntimeWarning, match="did not converge"):
        tps_warp(src, dst, points=p, max_iter=3)


def _warp_unchecked(src, dst, image=None, points=None, **kw):
    """The path taken off CPU, run here on CPU: no host sync (no value checks) and the torch
    reference of the inverse with a fixed number of iterations (no early stop, no
    compaction; on CPU the native kernel runs otherwise, also under torch.compile)."""
    opts = dict(
        normalized=True,
        regularization=0.0,
        interpolation="bilinear",
        padding="border",
        inverse="newton",
        max_iter=20,
        tol=None,
    )
    opts.update(kw)
    with force_reference(), mock.patch.object(tps_module, "_can_sync", lambda t: False):
        return _warp(src, dst, image, points, check=False, **opts)


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_unchecked_iteration_matches_the_checked_one(dtype):
    # on warps that do not fold, the CPU path (early stop, compaction) and the no-sync path
    # (a fixed number of iterations) give the same points and the same gradients
    src, dst = random_tps(6, noise_scale=0.1, generator=_gen(29), dtype=dtype)
    keep = _min_jacobian_det(src, dst) > 0
    src, dst = src[keep].requires_grad_(), dst[keep].requires_grad_()
    p = (torch.rand(len(src), 200, 2, generator=_gen(30), dtype=dtype) * 2 - 1).requires_grad_()
    a = tps_warp(src, dst, points=p).points
    b = _warp_unchecked(src, dst, points=p).points
    assert torch.isfinite(a).all()
    atol = 1e-12 if dtype == torch.float64 else 1e-5
    torch.testing.assert_close(a, b, atol=atol, rtol=0)
    ga = torch.autograd.grad(a.sum(), (src, dst, p))
    gb = torch.autograd.grad(b.sum(), (src, dst, p))
    for x, y in zip(ga, gb):
        # float32: the native kernel and the torch iteration stop at slightly different
        # iterates (|r| <= tol = sqrt(eps) |p|), where the implicit gradient is taken; each
        # is ~7e-4 (of the largest entry) from the float64 gradient, they agree to 5e-5
        g_atol = 100 * atol if dtype == torch.float64 else 2e-4 * float(y.abs().max())
        torch.testing.assert_close(x, y, atol=g_atol, rtol=1e-4)


def test_empty_points(backend):
    src, dst = random_tps(2)
    out = tps_warp(src, dst, points=torch.zeros(2, 0, 2))
    assert out.points.shape == (2, 0, 2) and out.image is None


# --------------------------------------------------------------------------- bad input


def test_bad_inputs():
    src, dst = random_tps(2)
    image = torch.rand(2, 1, 8, 8)
    pts = torch.zeros(2, 3, 2)
    with pytest.raises(TypeError, match="src"):
        tps_warp(src.numpy(), dst, image=image)
    with pytest.raises(TypeError, match="src"):
        tps_warp(src.long(), dst, image=image)
    with pytest.raises(ValueError, match=r"`src` must have shape \[B, N, 2\], got \[25, 2\]"):
        tps_warp(src[0], dst, image=image)
    with pytest.raises(ValueError, match=r"`src` must have shape \[B, N, 2\] with N >= 3"):
        tps_warp(src[:, :2], dst[:, :2], image=image)
    with pytest.raises(ValueError, match=r"`dst` must have shape .*\[2, 25, 2\].*got \[2, 24, 2\]"):
        tps_warp(src, dst[:, 1:], image=image)
    with pytest.raises(TypeError, match="dst"):
        tps_warp(src, dst.double(), image=image)
    with pytest.raises(ValueError, match="neither"):
        tps_warp(src, dst)
    with pytest.raises(ValueError, match=r"`image` must have shape \[B, C, H, W\] with B = 2"):
        tps_warp(src, dst, image=image[0])
    with pytest.raises(ValueError, match=r"`image` must have shape .*got \[3, 1, 8, 8\]"):
        tps_warp(src, dst, image=torch.rand(3, 1, 8, 8))
    with pytest.raises(ValueError, match=r"`image` .*H, W >= 2"):
        tps_warp(src, dst, image=torch.rand(2, 1, 1, 8))
    with pytest.raises(TypeError, match="image"):
        tps_warp(src, dst, image=image.long())
    with pytest.raises(ValueError, match=r"`points` must have shape \[B, M, 2\] with B = 2"):
        tps_warp(src, dst, points=pts[0])
    with pytest.raises(ValueError, match=r"`points` .*got \[2, 3, 3\]"):
        tps_warp(src, dst, points=torch.zeros(2, 3, 3))
    with pytest.raises(TypeError, match="points"):
        tps_warp(src, dst, points=pts.double())
    with pytest.raises(TypeError, match="points"):
        tps_warp(src, dst, points=[[0.0, 0.0]])
    with pytest.raises(ValueError, match="interpolation"):
        tps_warp(src, dst, image=image, interpolation="area")
    with pytest.raises(ValueError, match="padding"):
        tps_warp(src, dst, image=image, padding="wrap")
    with pytest.raises(ValueError, match="inverse"):
        tps_warp(src, dst, points=pts, inverse="exact")
    with pytest.raises(ValueError, match="regularization"):
        tps_warp(src, dst, image=image, regularization=-1.0)
    with pytest.raises(TypeError, match="regularization"):
        tps_warp(src, dst, image=image, regularization="big")
    with pytest.raises(ValueError, match="max_iter"):
        tps_warp(src, dst, points=pts, max_iter=0)
    with pytest.raises(ValueError, match="tol"):
        tps_warp(src, dst, points=pts, tol=-1.0)


def test_bad_inputs_helpers():
    with pytest.raises(ValueError, match="batch"):
        random_tps(0)
    with pytest.raises(ValueError, match="grid"):
        random_tps(1, grid=1)
    with pytest.raises(TypeError, match="grid"):
        random_tps(1, grid=(2, 3, 4))
    with pytest.raises(TypeError, match="batch_size"):
        random_tps(2.0)
    with pytest.raises(TypeError, match="max_iter"):
        tps_warp(*random_tps(1), points=torch.zeros(1, 1, 2), max_iter=2.5)
    with pytest.raises(ValueError, match="scale"):
        random_tps(1, noise_scale=-0.1)
    with pytest.raises(TypeError, match="scale"):
        random_tps(1, noise_scale="x")
    src, dst = random_tps(1)
    with pytest.raises(ValueError, match="dst"):
        scale_tps(src, dst[:, :3], 0.5)
    with pytest.raises(TypeError, match="factor"):
        scale_tps(src, dst, "half")
    with pytest.raises(TypeError, match="factor"):
        scale_tps(src, dst, torch.tensor([1]))


def test_bad_layouts_and_devices_name_the_argument():
    src, dst = random_tps(2)
    image, pts = torch.rand(2, 1, 8, 8), torch.zeros(2, 3, 2)
    with pytest.raises(TypeError, match="`src` must be a dense"):
        tps_warp(src.to_sparse(), dst, image=image)
    with pytest.raises(TypeError, match="`dst` must be a dense"):
        tps_warp(src, dst.to_sparse(), image=image)
    with pytest.raises(TypeError, match="`image` must be a dense"):
        tps_warp(src, dst, image=image.to_sparse())
    with pytest.raises(TypeError, match="`points` must be a dense"):
        tps_warp(src, dst, points=pts.to_sparse())
    with pytest.raises(ValueError, match="`src` .*meta"):
        tps_warp(src.to("meta"), dst.to("meta"), image=image.to("meta"))
    with pytest.raises(ValueError, match="`image` .*meta"):
        tps_warp(src, dst, image=image.to("meta"))
    with pytest.raises(ValueError, match="`points` .*meta"):
        tps_warp(src, dst, points=pts.to("meta"))
    with pytest.raises(ValueError, match="`factor` .*meta"):
        scale_tps(src, dst, torch.tensor(0.5, device="meta"))
    with pytest.raises(TypeError, match="`src` must be a dense"):
        scale_tps(src.to_sparse(), dst, 0.5)


def test_random_tps_dtype_must_be_floating():
    # used to fail inside normal_ with a message about the generator
    for dtype in (torch.int64, torch.bool, torch.complex64, "float32"):
        with pytest.raises(TypeError, match="`dtype` must be a floating"):
            random_tps(2, dtype=dtype)
    assert random_tps(2, dtype=torch.float16)[1].dtype == torch.float16


def test_scale_tps_factor_shapes():
    src, dst = random_tps(2, noise_scale=0.1, generator=_gen(40))
    # [B]: one factor per sample (used to scale x by one factor and y by the other)
    _, d = scale_tps(src, dst, torch.tensor([0.0, 1.0]))
    torch.testing.assert_close(d[0], src[0])
    torch.testing.assert_close(d[1], dst[1])
    _, d3 = scale_tps(src, dst, torch.tensor([0.0, 1.0]).reshape(2, 1, 1))
    torch.testing.assert_close(d3, d)
    for one in (torch.tensor(0.5), torch.tensor([0.5]), torch.tensor([[[0.5]]])):
        torch.testing.assert_close(scale_tps(src, dst, one)[1], scale_tps(src, dst, 0.5)[1])
    assert scale_tps(src, dst, torch.tensor(0.5, dtype=torch.float64))[1].dtype == torch.float32
    with pytest.raises(ValueError, match=r"`factor` must be .*\[B\] or \[B, 1, 1\] .*got \[3\]"):
        scale_tps(src, dst, torch.tensor([0.0, 1.0, 2.0]))
    with pytest.raises(ValueError, match=r"`factor` .*got \[2, 2\]"):
        scale_tps(src, dst, torch.ones(2, 2))
    with pytest.raises(ValueError, match=r"`factor` .*got \[1, 2, 1\]"):
        scale_tps(src, dst, torch.ones(1, 2, 1))
    # one factor per sample also with B = 1
    s1, d1 = random_tps(1, generator=_gen(41))
    torch.testing.assert_close(scale_tps(s1, d1, torch.tensor([0.0]))[1], s1)


def _grid_with(n_side=3, batch=2):
    src, dst = random_tps(batch, grid=n_side, noise_scale=0.05, generator=_gen(42))
    return src.clone(), dst.clone()


@pytest.mark.parametrize(
    "name, corrupt, needs",
    [
        ("dst", lambda s, d: d[1, 4].copy_(d[1, 0]), "any"),  # duplicate centres of g
        ("src", lambda s, d: s[1, 4].copy_(s[1, 0]), "points"),  # duplicate centres of f
        ("dst", lambda s, d: d[1, :, 1].copy_(0.3 * d[1, :, 0] + 0.1), "any"),  # collinear
        ("src", lambda s, d: s[1, :, 1].fill_(0.5), "points"),
        ("src", lambda s, d: s[1, 2, 0].fill_(float("nan")), "any"),  # non-finite anywhere
        ("dst", lambda s, d: d[1, 2, 1].fill_(float("inf")), "any"),
    ],
)
def test_degenerate_controls_raise_on_cpu(name, corrupt, needs):
    src, dst = _grid_with()
    corrupt(src, dst)
    image, pts = torch.rand(2, 1, 8, 8), torch.rand(2, 4, 2) - 0.5
    with pytest.raises(ValueError, match=rf"`{name}`.* sample 1"):
        tps_warp(src, dst, image=image, points=pts)
    with pytest.raises(ValueError, match=rf"`{name}`"):
        tps_warp(src, dst, points=pts)
    if needs == "points":  # the image needs only g, fitted on dst: src's geometry is free
        assert torch.isfinite(tps_warp(src, dst, image=image).image).all()
    else:
        with pytest.raises(ValueError, match=rf"`{name}`.* sample 1"):
            tps_warp(src, dst, image=image)


def test_duplicates_are_fine_with_regularization_collinear_never():
    src, dst = _grid_with()
    dst[0, 4], src[0, 4] = dst[0, 0], src[0, 0]  # a control pair given twice
    image, pts = torch.rand(2, 1, 8, 8), torch.rand(2, 4, 2) - 0.5
    with pytest.raises(ValueError, match="coincide.*regularization > 0"):
        tps_warp(src, dst, image=image, points=pts)
    out = tps_warp(src, dst, image=image, points=pts, regularization=1e-3)
    assert torch.isfinite(out.image).all() and torch.isfinite(out.points).all()
    src, dst = _grid_with()
    dst[0, :, 0] = 0.25
    with pytest.raises(ValueError, match="`dst`: the control points are collinear in sample 0"):
        tps_warp(src, dst, image=image, regularization=1.0)


def test_nearly_degenerate_controls_are_accepted():
    # a thin but genuine spread (1e-3 of the extent) and close but distinct points
    src, dst = _grid_with()
    dst[0, :, 1] = 1e-3 * dst[0, :, 1] + 0.2
    src[1, 4], dst[1, 4] = src[1, 0] + 1e-3, dst[1, 0] + 1e-3
    out = tps_warp(src, dst, image=torch.rand(2, 1, 8, 8))
    assert torch.isfinite(out.image).all()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        q = tps_warp(src[1:], dst[1:], points=torch.rand(1, 4, 2) - 0.5).points
    assert torch.isfinite(q).all()


def test_degenerate_sample_gives_nan_image_and_points_without_checks():
    # where checking needs a host sync (CUDA) or cannot run (torch.compile): that sample's
    # image AND points are NaN (border padding used to turn its NaN grid into one repeated
    # pixel), other samples are unaffected and the gradients finite (zero for that sample)
    src, dst = random_tps(3, noise_scale=0.05, generator=_gen(43), dtype=torch.float64)
    image = _smooth_image(3, 2, 12, 12, torch.float64)
    pts = torch.rand(3, 5, 2, generator=_gen(44), dtype=torch.float64) - 0.5
    ref = tps_warp(src, dst, image=image, points=pts)
    for corrupt in (
        lambda s, d: d[1, 3].copy_(d[1, 7]),
        lambda s, d: s[1, :, 0].fill_(0.0),
        lambda s, d: s[1, 0, 0].fill_(float("nan")),
    ):
        s, d = src.clone(), dst.clone()
        corrupt(s, d)
        s, d, img, p = (t.clone().requires_grad_() for t in (s, d, image, pts))
        for inverse in ("newton", "fit"):
            out = _warp_unchecked(s, d, image=img, points=p, inverse=inverse)
            assert torch.isnan(out.image[1]).all() and torch.isnan(out.points[1]).all()
            keep = [0, 2]
            torch.testing.assert_close(out.image[keep], ref.image[keep])
            ref_p = tps_warp(src, dst, points=pts, inverse=inverse).points
            torch.testing.assert_close(out.points[keep], ref_p[keep])
        loss = out.image[[0, 2]].sum() + out.points[[0, 2]].sum()
        grads = torch.autograd.grad(loss, (s, d, img, p))
        for gr in grads:
            assert torch.isfinite(gr).all()
            assert (gr[1] == 0).all()


def test_degenerate_sample_gives_nan_under_torch_compile():
    src, dst = random_tps(2, noise_scale=0.05, generator=_gen(45))
    dst[1, 3] = dst[1, 7]
    image, pts = torch.rand(2, 1, 8, 8), torch.rand(2, 5, 2) - 0.5
    with pytest.raises(ValueError, match="`dst`: control points 3 and 7 coincide"):
        tps_warp(src, dst, image=image, points=pts)
    compiled = torch.compile(
        lambda s, d, i, p: tps_warp(s, d, image=i, points=p, max_iter=5), backend="eager"
    )
    out = compiled(src, dst, image, pts)
    assert torch.isnan(out.image[1]).all() and torch.isnan(out.points[1]).all()
    assert torch.isfinite(out.image[0]).all() and torch.isfinite(out.points[0]).all()


# --------------------------------------------------------------------------- robust inverse


def test_issue_reproducer_converges_to_the_true_root(backend):
    # issue 11, defect 16: plain Newton stopped at a residual of 0.77 on this warp, which
    # does not fold (smallest det J_g on [-2, 2]^2: 0.079); the root is unique
    src, dst = random_tps(500, grid=5, noise_scale=0.08, generator=_gen(1), dtype=torch.float64)
    src, dst = src[472:473], dst[472:473]
    assert _min_jacobian_det(src, dst) > 0.05
    p = torch.tensor([[[0.247, 0.498]]], dtype=torch.float64)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        q = tps_warp(src, dst, points=p).points
    assert (q - torch.tensor([0.5559, 0.5642], dtype=torch.float64)).abs().max() < 1e-3
    assert (_spline(dst, src, q) - p).norm() < 1e-12  # g(q) = p
    torch.testing.assert_close(_warp_unchecked(src, dst, points=p).points, q, atol=1e-12, rtol=0)
    # float32 too
    q32 = tps_warp(src.float(), dst.float(), points=p.float()).points
    torch.testing.assert_close(q32.double(), q, atol=1e-5, rtol=0)


@settings(max_examples=10, deadline=None)
@given(seed=st.integers(0, 2**31 - 1))
def test_inverse_converges_on_every_non_folding_warp(seed):
    # large displacements (std 0.12: a quarter of these warps fold), points over the whole
    # image and beyond it: every point of every warp that does not fold converges
    src, dst = random_tps(16, noise_scale=0.12, generator=_gen(seed), dtype=torch.float64)
    keep = _min_jacobian_det(src, dst, size=101, lim=2.0) > 0  # the issue's criterion
    src, dst = src[keep], dst[keep]
    p = torch.rand(len(src), 64, 2, generator=_gen(seed + 1), dtype=torch.float64) * 2.4 - 1.2
    for forced in (False, True):  # native kernel (where built), torch reference
        with warnings.catch_warnings(), force_reference(enabled=forced):
            warnings.simplefilter("error")
            q = tps_warp(src, dst, points=p).points
        assert torch.isfinite(q).all()
        torch.testing.assert_close(_spline(dst, src, q), p, atol=1e-10, rtol=0)


def test_far_points_and_affine_warps_converge(backend):
    # a global scaling by 2 (steps are capped, the start is exact) and points far outside
    src, _ = random_tps(2, generator=_gen(46), dtype=torch.float64)
    dst = 2.0 * src + torch.tensor([0.3, -0.2], dtype=torch.float64)
    p = torch.tensor([[[5.0, -4.0], [0.1, 0.2]], [[-30.0, 12.0], [1.0, 1.0]]], dtype=torch.float64)
    q = tps_warp(src, dst, points=p).points
    torch.testing.assert_close(q, 2.0 * p + torch.tensor([0.3, -0.2], dtype=torch.float64))
    _, wavy = random_tps(2, noise_scale=0.08, generator=_gen(47), dtype=torch.float64)
    q = tps_warp(src, wavy, points=p).points
    torch.testing.assert_close(_spline(wavy, src, q), p, atol=1e-9, rtol=0)


def test_folding_is_detected_from_the_jacobian(backend):
    src, dst = random_tps(6, noise_scale=0.6, generator=_gen(25), dtype=torch.float64)
    p = torch.rand(6, 300, 2, generator=_gen(26), dtype=torch.float64) * 2 - 1
    with pytest.warns(RuntimeWarning, match="folds over") as record:
        q = tps_warp(src, dst, points=p).points
    message = str(record[0].message)
    assert "NaN" in message
    folds = _min_jacobian_det(src, dst) <= 0
    nan = torch.isnan(q).any(-1)
    assert nan.any()
    assert folds[nan.any(1)].all()  # NaN only in warps that fold
    # every returned point is an exact preimage
    torch.testing.assert_close(_spline(dst, src, q)[~nan], p[~nan], atol=1e-8, rtol=0)
    # same NaN pattern and values on the no-sync path
    q2 = _warp_unchecked(src, dst, points=p).points
    assert torch.equal(torch.isnan(q2), torch.isnan(q))
    torch.testing.assert_close(q2[~nan], q[~nan], atol=1e-10, rtol=0)


def test_unconverged_points_are_nan_with_zero_gradients(backend):
    src, dst = random_tps(2, noise_scale=0.08, generator=_gen(48), dtype=torch.float64)
    src, dst = src.requires_grad_(), dst.requires_grad_()
    p = (torch.rand(2, 300, 2, generator=_gen(49), dtype=torch.float64) * 2 - 1).requires_grad_()
    assert (_min_jacobian_det(src, dst, size=101, lim=2.0) > 0).all()
    with pytest.warns(RuntimeWarning, match="does not fold .*increase max_iter"):
        q = tps_warp(src, dst, points=p, max_iter=2).points
    nan = torch.isnan(q).any(-1)
    assert nan.any() and not nan.all()
    grads = torch.autograd.grad(q[~nan].sum(), (src, dst, p))
    assert all(torch.isfinite(g).all() for g in grads)
    assert (grads[2][nan] == 0).all()


def test_tol_is_in_the_coordinates_units(backend):
    # normalized=False: tol is in pixels; a loose tolerance stops early, and the final
    # step still squares the error
    size = (64, 64)
    src, dst = random_tps(2, noise_scale=0.08, generator=_gen(50), dtype=torch.float64)
    src, dst = denormalize_points(src, size), denormalize_points(dst, size)
    p = torch.rand(2, 50, 2, generator=_gen(51), dtype=torch.float64) * 50 + 7
    exact = tps_warp(src, dst, points=p, normalized=False).points
    torch.testing.assert_close(_spline(dst, src, exact), p, atol=1e-9, rtol=0)
    loose = tps_warp(src, dst, points=p, normalized=False, tol=0.5).points
    err = (loose - exact).norm(dim=-1)
    assert err.max() < 0.05 and err.max() > 1e-12


def test_gradcheck_points_without_checks():
    # the no-sync path's gradients are the implicit ones too
    src, dst, _, pts = _small_problem(52)
    inputs = tuple(t.clone().requires_grad_() for t in (src, dst, pts))
    assert torch.autograd.gradcheck(lambda s, d, p: _warp_unchecked(s, d, points=p).points, inputs)


def test_nan_points_give_zero_gradients(backend):
    src, dst = random_tps(1, noise_scale=0.08, generator=_gen(53), dtype=torch.float64)
    src, dst = src.requires_grad_(), dst.requires_grad_()
    p = torch.tensor([[[0.1, 0.2], [float("nan"), 0.0]]], dtype=torch.float64, requires_grad=True)
    q = tps_warp(src, dst, points=p).points
    assert torch.isnan(q[0, 1]).all()
    gs, gd, gp = torch.autograd.grad(q[0, 0].sum(), (src, dst, p))
    assert torch.isfinite(gs).all() and torch.isfinite(gd).all() and (gp[0, 1] == 0).all()


# --------------------------------------------------------------------------- native inverse


def _inverse_args(src, dst, p, max_iter=20, tol=None):
    """The arguments of the ``tps_inverse`` op as ``_inverse_points`` builds them."""
    from torch_artic.tps import _tolerance

    g, f = _fit(dst, src, 0.0), _fit(src, dst, 0.0)
    pt = torch.cat((p.transpose(1, 2), _tolerance(p, tol)[:, None]), 1).contiguous()
    return dst.contiguous(), g.contiguous(), src.contiguous(), f.contiguous(), pt, max_iter


def _both(args):
    native = torch.ops.torch_artic.tps_inverse.default(*args)
    reference = tps_module._inverse_reference(*args)
    return native, reference


native_only = pytest.mark.skipif(
    not tps_module._TPS_INVERSE.kernels, reason="native extension not loaded"
)


def _direct_spline(params, centers, q):
    """Value ``[B, M, 2]``, Jacobian ``[B, M, 2, 2]`` (``[..., out, in]``) and the scale of
    the terms summed ``[B, M]`` of a spline at ``q [B, M, 2]``, from exact differences."""
    n = centers.shape[1]
    w, a = params[:, :n], params[:, n:]
    d = q[:, :, None, :] - centers[:, None, :, :]  # [B, M, N, 2]
    r2 = (d * d).sum(-1).clamp_min(torch.finfo(q.dtype).tiny)
    log_r2 = torch.log(r2)
    u = 0.5 * r2 * log_r2
    value = a[:, :1] + q @ a[:, 1:] + u @ w
    grad_u = (log_r2 + 1)[..., None] * d  # dU_i/dq [B, M, N, 2]
    jac = a[:, 1:].transpose(1, 2)[:, None] + torch.einsum("bmni,bno->bmoi", grad_u, w)
    terms = a[:, :1].abs().sum(-1) + (q.abs() @ a[:, 1:].abs()).sum(-1)
    terms = terms + (u.abs() @ w.abs()).sum(-1)
    terms = terms + (((log_r2 + 1).abs() * d.abs().sum(-1)) @ w.abs()).sum(-1)
    return value, jac, terms


@native_only
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_native_spline_evaluation_is_accurate_at_every_distance(dtype):
    # max_iter=0: the state is g and J_g at the start, so this checks the kernel's spline
    # evaluation (its own vectorised log included) against exact differences in float64,
    # at distances to the centres from 0 (points on a centre: r^2 clamped) to 1e6, to a
    # few ulp of the sum of the absolute terms (the planar formula of the torch reference
    # is only accurate to eps |q|^2 |w| |log r^2|: fine for points near the centres)
    src, dst = random_tps(4, noise_scale=0.1, generator=_gen(60), dtype=dtype)
    p = torch.rand(4, 300, 2, generator=_gen(61), dtype=dtype) * 2 - 1
    scale = torch.logspace(-6, 6, 300, dtype=dtype)[None, :, None]
    p = torch.cat((p * scale, p[:, :20]), 1)
    p[:, :4] = dst[:, :4]  # exactly on a centre
    args = list(_inverse_args(src, dst, p, max_iter=0))
    identity = torch.zeros_like(args[3])  # the start spline f(p) = p: no weights, A = I
    identity[:, -2, 0] = identity[:, -1, 1] = 1.0
    args[3] = identity
    state, _ = torch.ops.torch_artic.tps_inverse.default(*args)
    q = p.double()
    value, jac, terms = _direct_spline(args[1].double(), args[0].double(), q)
    assert torch.equal(state[:, :2].transpose(1, 2), p)
    r = value - q
    eps = torch.finfo(dtype).eps
    err_r = (state[:, 2:4].transpose(1, 2).double() - r).abs().amax(-1) / terms
    j = torch.stack((state[:, 4:6], state[:, 6:8]), -1).transpose(1, 2).double()  # [B, M, o, i]
    err_j = (j - jac).abs().amax((-2, -1)) / terms
    assert err_r.max() < 8 * eps and err_j.max() < 8 * eps, (err_r.max(), err_j.max())


@native_only
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_native_inverse_matches_the_reference_on_folding_and_odd_input(dtype):
    # warps that fold (std 0.2: some do), points far outside, NaN and inf targets and
    # starts: the same converged points, the same NaN pattern, the same fold flags
    src, dst = random_tps(8, noise_scale=0.2, generator=_gen(62), dtype=torch.float64)
    p = torch.rand(8, 200, 2, generator=_gen(63), dtype=torch.float64) * 3 - 1.5
    src, dst, p = src.to(dtype), dst.to(dtype), p.to(dtype)
    args = list(_inverse_args(src, dst, p))
    pt, f = args[4].clone(), args[3].clone()
    pt[0, 0, 3], pt[1, 1, 4], pt[2, 2, 5] = math.nan, math.inf, math.nan  # p, tol
    pt[5, 0, 6] = 1e30  # the start f(p) overflows
    f[3, 0, 0] = math.nan  # every start NaN
    args[3], args[4] = f, pt
    (s_n, f_n), (s_r, f_r) = _both(tuple(args))
    assert torch.equal(f_n, f_r) and f_n.any() and not f_n.all()
    tol = pt[:, 2]
    ok_n, ok_r = s_n[:, 8] <= tol, s_r[:, 8] <= tol
    # on a fold the iteration may end at another preimage or give up: a few points
    assert (ok_n != ok_r).float().mean() < 0.02
    both = ok_n & ok_r
    q_n, q_r = s_n[:, :2].transpose(1, 2)[both], s_r[:, :2].transpose(1, 2)[both]
    same_root = (q_n - q_r).norm(dim=-1) < 1e-3
    assert same_root.float().mean() > 0.98
    atol = 1e-9 if dtype == torch.float64 else 2e-3
    torch.testing.assert_close(q_n[same_root], q_r[same_root], atol=atol, rtol=0)
    assert torch.equal(torch.isnan(s_n[:, :8]), torch.isnan(s_r[:, :8]))


@native_only
def test_native_inverse_is_bitwise_the_same_for_any_thread_count():
    src, dst = random_tps(7, noise_scale=0.2, generator=_gen(64))
    p = torch.rand(7, 500, 2, generator=_gen(65)) * 2 - 1
    args = _inverse_args(src, dst, p)
    threads = torch.get_num_threads()
    try:
        outs = []
        for n in (1, 2, 3):
            torch.set_num_threads(n)
            outs.append(torch.ops.torch_artic.tps_inverse.default(*args))
    finally:
        torch.set_num_threads(threads)
    for out in outs[1:]:
        assert all(torch.equal(a, b) for a, b in zip(out, outs[0]))
    again = torch.ops.torch_artic.tps_inverse.default(*args)
    assert all(torch.equal(a, b) for a, b in zip(again, outs[0]))


@native_only
def test_native_inverse_is_bitwise_the_same_with_every_instruction_set(tmp_path):
    # the kernel's spline evaluation is compiled for AVX-512, AVX2 and baseline x86-64 and
    # picks the widest the CPU has; TORCH_ARTIC_CPU_ISA caps the choice (read once per
    # process): every variant must give the same bits, float32 and float64
    script = (
        "import sys, torch\n"
        f"sys.path.insert(0, {str(ROOT / 'tests')!r})\n"
        "from test_tps import _gen, _inverse_args\n"
        "from torch_artic.tps import random_tps\n"
        "outs = []\n"
        "for dtype in (torch.float32, torch.float64):\n"
        "    src, dst = random_tps(5, noise_scale=0.15, generator=_gen(66), dtype=dtype)\n"
        "    p = torch.rand(5, 333, 2, generator=_gen(67), dtype=dtype) * 2.4 - 1.2\n"
        "    outs.append(torch.ops.torch_artic.tps_inverse.default(*_inverse_args(src, dst, p)))\n"
        "torch.save(outs, sys.argv[1])\n"
    )
    results = []
    for cap in ("baseline", "avx2", None):
        env = {k: v for k, v in os.environ.items() if k != "TORCH_ARTIC_CPU_ISA"}
        if cap:
            env["TORCH_ARTIC_CPU_ISA"] = cap
        out = tmp_path / f"{cap}.pt"
        subprocess.run([sys.executable, "-c", script, str(out)], env=env, check=True, cwd=ROOT)
        results.append(torch.load(out))
    for other in results[1:]:
        for (s_a, f_a), (s_b, f_b) in zip(results[0], other):
            assert torch.equal(s_a.isnan(), s_b.isnan()) and torch.equal(f_a, f_b)
            assert torch.equal(s_a.nan_to_num(), s_b.nan_to_num())
