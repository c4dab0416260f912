"""Tests for torch_artic.heatmaps: Gaussian rendering (§4.5.3) and concentration (eq. 4.2)."""

from __future__ import annotations

import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from torch_artic.coords import denormalize_points, normalize_points, pixel_grid
from torch_artic.heatmaps import concentration_loss, gaussian_heatmaps
from torch_artic.soft_argmax import soft_argmax2d

SETTINGS = settings(max_examples=25, deadline=None)
F64 = torch.float64


def _close(a, b, atol=1e-10, rtol=1e-9):
    torch.testing.assert_close(a, b, atol=atol, rtol=rtol)


# --------------------------------------------------------------------------- strategies
def sizes_from(lo=2, hi=20):
    return st.tuples(st.integers(lo, hi), st.integers(lo, hi))


sizes = sizes_from()
sigmas = st.floats(0.3, 6.0)


@st.composite
def pixel_points(draw, size, n=None, margin=0.0):
    """``[n, 2]`` (or ``[2]``) float64 pixel ``(x, y)`` at least ``margin`` from the border
    (the margin is clipped so that the range is never empty)."""
    hh, ww = size
    mx, my = min(margin, (ww - 1) / 2), min(margin, (hh - 1) / 2)
    xy = st.tuples(st.floats(mx, ww - 1 - mx), st.floats(my, hh - 1 - my))
    if n is None:
        return torch.tensor(draw(xy), dtype=F64)
    return torch.tensor(draw(st.lists(xy, min_size=n, max_size=n)), dtype=F64)


@st.composite
def sized_points(draw, margin=0.0, n_max=4, min_side=2):
    size = draw(sizes_from(min_side, max(20, min_side + 12)))
    n = draw(st.integers(1, n_max))
    return size, draw(pixel_points(size, n, margin))


# --------------------------------------------------------------------------- gaussian_heatmaps
@SETTINGS
@given(sized_points(), sigmas)
def test_matches_direct_formula_in_both_modes(sp, sigma):
    size, px = sp
    grid = pixel_grid(size, normalized=False, dtype=F64)  # [H, W, 2]
    d2 = ((grid - px[:, None, None, :]) ** 2).sum(-1)
    expected = torch.exp(-d2 / (2 * sigma**2))
    _close(gaussian_heatmaps(px, size, sigma, normalized=False), expected)
    _close(gaussian_heatmaps(normalize_points(px, size), size, sigma), expected)


@SETTINGS
@given(sizes, st.data(), sigmas)
def test_peak_is_one_at_pixel_centres_and_argmax_is_the_point(size, data, sigma):
    hh, ww = size
    r, c = data.draw(st.integers(0, hh - 1)), data.draw(st.integers(0, ww - 1))
    px = torch.tensor([float(c), float(r)], dtype=F64)
    g = gaussian_heatmaps(px, size, sigma, normalized=False)
    assert g.shape == size
    assert g[r, c].item() == 1.0
    assert int(g.flatten().argmax()) == r * ww + c
    assert ((g >= 0) & (g <= 1)).all()


@SETTINGS
@given(st.tuples(st.integers(3, 20), st.integers(3, 20)), sigmas, st.data())
def test_sigma_is_in_pixels_and_blob_is_round(size, sigma, data):
    """One pixel right and one pixel down have the same value exp(-1 / 2 sigma^2) whatever
    H and W: sigma is measured in pixels, in both modes."""
    hh, ww = size
    r, c = data.draw(st.integers(0, hh - 2)), data.draw(st.integers(0, ww - 2))
    px = torch.tensor([float(c), float(r)], dtype=F64)
    for g in (
        gaussian_heatmaps(px, size, sigma, normalized=False),
        gaussian_heatmaps(normalize_points(px, size), size, sigma),
    ):
        want = math.exp(-1.0 / (2 * sigma**2))
        assert g[r, c + 1].item() == pytest.approx(want, rel=1e-12)
        assert g[r + 1, c].item() == pytest.approx(want, rel=1e-12)
        assert g[r + 1, c + 1].item() == pytest.approx(want**2, rel=1e-12)


@SETTINGS
@given(sized_points(), st.lists(sigmas, min_size=4, max_size=4))
def test_tensor_sigma_matches_floats_and_is_rank_one(sp, sig):
    size, px = sp
    n = px.shape[0]
    s = torch.tensor(sig[:n], dtype=F64)
    g = gaussian_heatmaps(px, size, s, normalized=False)
    for i in range(n):
        _close(g[i], gaussian_heatmaps(px[i], size, sig[i], normalized=False))
    # separable: A = u v^T  <=>  A * sum(A) == outer(row sums, column sums)
    total = g.sum(dim=(-2, -1))[:, None, None]
    outer = g.sum(-1)[:, :, None] * g.sum(-2)[:, None, :]
    _close(g * total, outer, atol=1e-12, rtol=1e-9)


@pytest.mark.parametrize("lead", [(), (3,), (2, 3), (0, 4)])
def test_shapes_dtype_and_int_size(lead):
    pts = torch.zeros(*lead, 2, dtype=torch.float32)
    g = gaussian_heatmaps(pts, 6, 1.0)
    assert g.shape == (*lead, 6, 6) and g.dtype == torch.float32
    assert gaussian_heatmaps(pts, (4, 9), 1.0).shape == (*lead, 4, 9)
    assert gaussian_heatmaps(pts, torch.Size([4, 9]), 1.0).shape == (*lead, 4, 9)


def test_points_outside_the_image_and_nan():
    pts = torch.tensor([[5.0, -5.0], [math.nan, 0.0]], dtype=F64)
    g = gaussian_heatmaps(pts, (8, 8), 2.0)
    assert torch.isfinite(g[0]).all() and (g[0] < 1e-10).all()
    assert torch.isnan(g[1]).all()


# --------------------------------------------------------------------------- round trips
@SETTINGS
@given(sized_points(margin=12.0, min_side=25), st.floats(1.0, 2.0))
def test_round_trip_log_heatmap_recovers_point_and_sigma(sp, sigma):
    """soft_argmax2d(log g) is the mean of a sampled Gaussian: p back to ~1e-6 px, and the
    covariance is sigma^2 I (the discretisation error is O(exp(-2 pi^2 sigma^2)))."""
    size, px = sp
    for normalized in (True, False):
        pts = normalize_points(px, size) if normalized else px
        g = gaussian_heatmaps(pts, size, sigma, normalized=normalized)
        res = soft_argmax2d(g.log(), normalized=normalized, return_covariance=True)
        back = denormalize_points(res.mean, size) if normalized else res.mean
        _close(back, px, atol=1e-5, rtol=0)
    res = soft_argmax2d(g.log(), normalized=False, return_covariance=True)
    eye = torch.eye(2, dtype=F64).expand_as(res.covariance)
    _close(res.covariance, sigma**2 * eye, atol=1e-4 * sigma**2, rtol=0)


@SETTINGS
@given(
    sized_points(margin=8.0, min_side=17),
    st.floats(0.7, 3.0),
    st.sampled_from([0.05, 0.02, 1e-3]),
)
def test_round_trip_raw_heatmap_low_temperature_is_subpixel(sp, sigma, t):
    """On the raw (unnormalised) map a low temperature gives a point within half a pixel per
    axis: the marginals decrease with the distance to p, so the mean lies between p and the
    nearest pixel centre."""
    size, px = sp
    for normalized in (True, False):
        pts = normalize_points(px, size) if normalized else px
        g = gaussian_heatmaps(pts, size, sigma, normalized=normalized)
        out = soft_argmax2d(g, temperature=t, normalized=normalized)
        back = denormalize_points(out, size) if normalized else out
        err = (back - px).abs()
        assert (err <= 0.5 + 1e-9).all()
        nearest = px.round()
        assert (((back - px) * (nearest - px)) >= -1e-9).all()  # on the side of the nearest


def test_round_trip_zero_temperature_gives_nearest_pixel():
    px = torch.tensor([[10.3, 7.8], [4.6, 12.1]], dtype=F64)
    g = gaussian_heatmaps(px, (20, 24), 1.5, normalized=False)
    _close(soft_argmax2d(g, temperature=1e-6, normalized=False), px.round(), atol=1e-12, rtol=0)


# --------------------------------------------------------------------------- concentration_loss
@SETTINGS
@given(sized_points(n_max=3), sigmas, st.floats(0.2, 3.0), st.integers(0, 2**31 - 1))
def test_concentration_equals_eq_4_2(sp, sigma, t, seed):
    size, px = sp
    gen = torch.Generator().manual_seed(seed)
    h = torch.rand(2, px.shape[0], *size, generator=gen, dtype=F64)
    pts = soft_argmax2d(h, temperature=t)
    g = gaussian_heatmaps(pts, size, sigma)
    per = ((h - g) ** 2).sum(dim=(-2, -1))
    none = concentration_loss(h, sigma, temperature=t, reduction="none")
    assert none.shape == h.shape[:-2]
    _close(none, per)
    _close(concentration_loss(h, sigma, temperature=t), per.mean())
    _close(concentration_loss(h, sigma, temperature=t, reduction="sum"), per.sum())
    # given points (pixel units) instead of the soft-argmax
    ppx = px.expand(2, -1, -1)
    per_p = ((h - gaussian_heatmaps(ppx, size, sigma, normalized=False)) ** 2).sum((-2, -1))
    _close(concentration_loss(h, sigma, points=ppx, normalized=False, reduction="none"), per_p)


@SETTINGS
@given(sized_points(n_max=3), sigmas)
def test_concentration_zero_iff_gaussian_at_its_point(sp, sigma):
    size, px = sp
    g = gaussian_heatmaps(px, size, sigma, normalized=False)
    loss = concentration_loss(g, sigma, points=px, normalized=False, reduction="none")
    assert (loss == 0).all()
    bumped = g.clone()
    bumped[:, 0, 0] += 0.1
    loss = concentration_loss(bumped, sigma, points=px, normalized=False, reduction="none")
    _close(loss, torch.full_like(loss, 0.01))


def test_concentration_detach_target_gradient():
    torch.manual_seed(6)
    h = torch.rand(2, 3, 7, 9, dtype=F64, requires_grad=True)
    loss = concentration_loss(h, 1.2, detach_target=True, reduction="sum")
    (grad,) = torch.autograd.grad(loss, h)
    g = gaussian_heatmaps(soft_argmax2d(h.detach()), (7, 9), 1.2)
    _close(grad, 2 * (h.detach() - g))
    (full,) = torch.autograd.grad(concentration_loss(h, 1.2, reduction="sum"), h)
    assert not torch.allclose(full, grad)  # the keypoint path contributes too


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16])
def test_concentration_dtypes(dtype):
    h = torch.rand(2, 3, 8, 8).to(dtype)
    loss = concentration_loss(h, 1.0)
    assert loss.dtype == dtype and loss.shape == ()


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_matches_cpu():
    pts = torch.rand(2, 3, 2, dtype=F64) * 2 - 1
    sig = torch.rand(2, 3, dtype=F64) + 0.5
    cpu = gaussian_heatmaps(pts, (9, 11), sig)
    _close(gaussian_heatmaps(pts.cuda(), (9, 11), sig.cuda()).cpu(), cpu)
    _close(
        gaussian_heatmaps(pts.cuda(), (9, 11), torch.tensor(1.5)).cpu(),
        gaussian_heatmaps(pts, (9, 11), 1.5),
    )
    h = torch.rand(2, 3, 9, 11, dtype=F64)
    _close(
        concentration_loss(h.cuda(), sig.cuda(), reduction="none").cpu(),
        concentration_loss(h, sig, reduction="none"),
    )
    with pytest.raises(ValueError, match="sigma.*device"):
        gaussian_heatmaps(pts.cuda(), 5, sig)
    with pytest.raises(ValueError, match="points.*device"):
        concentration_loss(h.cuda(), 1.0, points=pts)


# --------------------------------------------------------------------------- gradients
@pytest.mark.parametrize("normalized", [True, False])
def test_gradcheck_gaussian_heatmaps(normalized):
    torch.manual_seed(7)
    size = (5, 6)
    px = torch.tensor([[1.3, 2.2], [3.9, 0.4], [2.5, 3.1]], dtype=F64)
    pts = (normalize_points(px, size) if normalized else px).requires_grad_()
    sigma = torch.tensor([0.8, 1.3, 2.0], dtype=F64, requires_grad=True)
    assert torch.autograd.gradcheck(
        lambda p, s: gaussian_heatmaps(p, size, s, normalized=normalized), (pts, sigma)
    )
    assert torch.autograd.gradcheck(
        lambda p: gaussian_heatmaps(p, size, 1.1, normalized=normalized), (pts,)
    )


def test_gradcheck_concentration_loss():
    torch.manual_seed(8)
    h = torch.rand(2, 2, 4, 5, dtype=F64, requires_grad=True)
    sigma = torch.tensor([[0.9, 1.4], [1.1, 2.0]], dtype=F64, requires_grad=True)
    pts = (torch.rand(2, 2, 2, dtype=F64) * 2 - 1).requires_grad_()
    assert torch.autograd.gradcheck(
        lambda x, s: concentration_loss(x, s, temperature=0.7, reduction="none"), (h, sigma)
    )
    assert torch.autograd.gradcheck(
        lambda x, p: concentration_loss(x, 1.3, points=p, reduction="sum"), (h, pts)
    )
    # (detach_target=True is a deliberately partial gradient: checked exactly above)


# --------------------------------------------------------------------------- errors
def test_gaussian_heatmaps_errors():
    pts = torch.zeros(2, 3, 2)
    with pytest.raises(TypeError, match="points"):
        gaussian_heatmaps([[0.0, 0.0]], 5, 1.0)
    with pytest.raises(TypeError, match="points.*floating"):
        gaussian_heatmaps(torch.zeros(3, 2, dtype=torch.int64), 5, 1.0)
    with pytest.raises(ValueError, match=r"`points` must have shape \[\.\.\., 2\], got \[2, 3\]"):
        gaussian_heatmaps(torch.zeros(2, 3), 5, 1.0)
    with pytest.raises(ValueError, match="size"):
        gaussian_heatmaps(pts, 1, 1.0)
    with pytest.raises(ValueError, match="size"):
        gaussian_heatmaps(pts, (5, 1), 1.0)
    with pytest.raises(TypeError, match="size"):
        gaussian_heatmaps(pts, (5,), 1.0)
    with pytest.raises(TypeError, match="size"):
        gaussian_heatmaps(pts, 5.0, 1.0)
    for bad in (0.0, -1.0, math.inf, math.nan):
        with pytest.raises(ValueError, match="sigma"):
            gaussian_heatmaps(pts, 5, bad)
    with pytest.raises(TypeError, match="sigma"):
        gaussian_heatmaps(pts, 5, "1")
    with pytest.raises(ValueError, match=r"sigma.*broadcastable to \[2, 3\].*got \[2\]"):
        gaussian_heatmaps(pts, 5, torch.ones(2))
    with pytest.raises(ValueError, match="sigma.*> 0"):
        gaussian_heatmaps(pts, 5, torch.tensor([1.0, 0.0, 1.0]))


def test_concentration_loss_errors():
    h = torch.rand(2, 3, 6, 6)
    with pytest.raises(TypeError, match="heatmaps"):
        concentration_loss(h.numpy(), 1.0)
    with pytest.raises(ValueError, match=r"heatmaps.*got \[6\]"):
        concentration_loss(torch.rand(6), 1.0)
    with pytest.raises(ValueError, match="reduction.*'avg'"):
        concentration_loss(h, 1.0, reduction="avg")
    with pytest.raises(ValueError, match="sigma"):
        concentration_loss(h, 0.0)
    with pytest.raises(ValueError, match="temperature"):
        concentration_loss(h, 1.0, temperature=-1.0)
    with pytest.raises(ValueError, match=r"`points` must have shape \[2, 3, 2\].*got \[3, 2\]"):
        concentration_loss(h, 1.0, points=torch.zeros(3, 2))
    with pytest.raises(ValueError, match=r"points.*\[\.\.\., 2\].*got \[2, 3, 3\]"):
        concentration_loss(h, 1.0, points=torch.zeros(2, 3, 3))
    with pytest.raises(TypeError, match="points.*dtype"):
        concentration_loss(h, 1.0, points=torch.zeros(2, 3, 2, dtype=F64))
