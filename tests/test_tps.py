"""Tests of torch_artic.tps: the thin-plate-spline warp of images and points."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st

from torch_artic.coords import denormalize_points, pixel_grid
from torch_artic.tps import (
    TPSWarpResult,
    _apply_with_jacobian,
    _fit,
    _inverse_points,
    random_tps,
    scale_tps,
    tps_warp,
)

try:
    from torch_artic.soft_argmax import soft_argmax2d
except ImportError:  # pragma: no cover - the sibling module is written in parallel
    soft_argmax2d = None


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


def _min_jacobian_det(src, dst, size=65):
    """Smallest det of the output->input map g over the image (<= 0: the warp folds)."""
    g = _fit(dst.double(), src.double(), 0.0)
    x = pixel_grid((size, size), dtype=torch.float64).reshape(1, -1, 2).expand(len(src), -1, -1)
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
def test_control_points_map_exactly(inverse):
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
def test_gradcheck_points(inverse):
    src, dst, _, pts = _small_problem(18)
    inputs = tuple(t.clone().requires_grad_() for t in (src, dst, pts))
    assert torch.autograd.gradcheck(
        lambda s, d, p: tps_warp(s, d, points=p, inverse=inverse).points, inputs
    )


def test_gradcheck_with_regularization_and_pixels():
    src, dst, image, pts = _small_problem(19)
    src, dst, pts = (denormalize_points(t, (5, 6)) for t in (src, dst, pts))
    inputs = tuple(t.clone().requires_grad_() for t in (src, dst, image, pts))

    def fn(s, d, i, p):
        out = tps_warp(s, d, image=i, points=p, normalized=False, regularization=0.1)
        return out.image, out.points

    assert torch.autograd.gradcheck(fn, inputs)


def test_inverse_gradient_is_the_implicit_one():
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


def test_nan_in_nan_out_without_warning():
    src, dst = random_tps(1, noise_scale=0.08, generator=_gen(24))
    p = torch.tensor([[[0.1, 0.2], [float("nan"), 0.0]]])
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        q = tps_warp(src, dst, points=p).points
    assert torch.isfinite(q[0, 0]).all() and torch.isnan(q[0, 1]).all()


def test_folding_warp_warns():
    src, dst = random_tps(4, noise_scale=0.6, generator=_gen(25))
    p = torch.rand(4, 200, 2, generator=_gen(26)) * 2 - 1
    with pytest.warns(RuntimeWarning, match="did not converge"):
        tps_warp(src, dst, points=p, max_iter=3)


def test_unchecked_iteration_matches_the_checked_one():
    # the path taken off CPU (fixed number of steps, no host sync), run here on CPU
    src, dst = random_tps(3, noise_scale=0.08, generator=_gen(29), dtype=torch.float64)
    p = (torch.rand(3, 50, 2, generator=_gen(30), dtype=torch.float64) * 1.6 - 0.8).requires_grad_()
    keep = _min_jacobian_det(src, dst) > 0
    src, dst = src[keep], dst[keep]
    p_kept = p[keep]
    g, f = _fit(dst, src, 0.0), _fit(src, dst, 0.0)
    a = _inverse_points(g, dst, f, src, p_kept, 10, None, check=True)
    b = _inverse_points(g, dst, f, src, p_kept, 10, None, check=False)
    torch.testing.assert_close(a, b, atol=1e-12, rtol=0)
    (ga,) = torch.autograd.grad(a.sum(), p, retain_graph=True)
    (gb,) = torch.autograd.grad(b.sum(), p)
    torch.testing.assert_close(ga, gb)


def test_empty_points():
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
    with pytest.raises(ValueError, match="grid"):
        random_tps(1, grid=(2, 3, 4))
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


def test_singular_controls_give_non_finite_without_raising():
    # collinear control points: the affine part is undetermined (documented: no check)
    src = torch.tensor([[[0.0, 0.0], [0.5, 0.0], [1.0, 0.0]]])
    out = tps_warp(src, src + 0.1, points=torch.zeros(1, 1, 2), inverse="fit")
    assert not torch.isfinite(out.points).all()
