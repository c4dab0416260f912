"""Tests for torch_artic.soft_argmax (thesis eq. 4.1)."""

from __future__ import annotations

import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from oracles import soft_argmax2d_dense

from torch_artic.coords import normalize_points, pixel_coordinates
from torch_artic.soft_argmax import SoftArgmax2dResult, soft_argmax2d

SETTINGS = settings(max_examples=25, deadline=None)
F64 = torch.float64


# --------------------------------------------------------------------------- strategies
@st.composite
def heatmaps(draw, min_side=2, max_side=12, max_lead=2, dtype=F64):
    """A ``[..., H, W]`` float heatmap: random leading dims (0-``max_lead`` of size 1-3),
    ``H, W`` in ``[min_side, max_side]``, standard-normal values times a drawn scale."""
    lead = tuple(draw(st.lists(st.integers(1, 3), max_size=max_lead)))
    h = draw(st.integers(min_side, max_side))
    w = draw(st.integers(min_side, max_side))
    scale = draw(st.floats(0.1, 10.0))
    seed = draw(st.integers(0, 2**31 - 1))
    gen = torch.Generator().manual_seed(seed)
    return torch.randn(*lead, h, w, generator=gen, dtype=dtype) * scale


temperatures = st.floats(0.05, 5.0)


def _close(a, b, atol=1e-10, rtol=1e-9):
    torch.testing.assert_close(a, b, atol=atol, rtol=rtol)


# --------------------------------------------------------------------------- values
@SETTINGS
@given(heatmaps(), temperatures, st.booleans())
def test_matches_dense_reference(h, t, normalized):
    res = soft_argmax2d(h, temperature=t, normalized=normalized, return_covariance=True)
    ref = soft_argmax2d_dense(h, t, normalized=normalized, return_covariance=True)
    scale = 1.0 if normalized else max(h.shape[-2:])
    _close(res.mean, ref.mean, atol=1e-10 * scale)
    _close(res.covariance, ref.covariance, atol=1e-10 * scale**2)
    _close(soft_argmax2d(h, temperature=t, normalized=normalized), res.mean, atol=0.0, rtol=0.0)


@SETTINGS
@given(heatmaps(max_lead=0), st.lists(temperatures, min_size=3, max_size=3))
def test_tensor_temperature_matches_per_map_floats(h, ts):
    stack = torch.stack([h, h * 2.0, -h])  # [3, H, W]
    t = torch.tensor(ts, dtype=F64)
    res = soft_argmax2d(stack, temperature=t, return_covariance=True)
    for i, ti in enumerate(ts):
        one = soft_argmax2d(stack[i], temperature=ti, return_covariance=True)
        _close(res.mean[i], one.mean)
        _close(res.covariance[i], one.covariance)
    # a temperature broadcast along a leading dim
    both = torch.stack([stack, stack])  # [2, 3, H, W]
    _close(soft_argmax2d(both, temperature=t)[1], res.mean)


@pytest.mark.parametrize("lead", [(), (3,), (2, 3, 4), (0,), (2, 0)])
def test_shapes_and_result_type(lead):
    h = torch.randn(*lead, 5, 7)
    out = soft_argmax2d(h)
    assert out.shape == (*lead, 2) and out.dtype == h.dtype
    res = soft_argmax2d(h, return_covariance=True)
    assert isinstance(res, SoftArgmax2dResult)
    mean, cov = res
    assert mean.shape == (*lead, 2) and cov.shape == (*lead, 2, 2)
    assert res.mean is mean and res.covariance is cov


@pytest.mark.parametrize("size", [(2, 2), (5, 7), (8, 3)])
def test_uniform_heatmap_gives_centre(size):
    h, w = size
    flat = torch.full((2, h, w), 3.7, dtype=F64)
    mean, cov = soft_argmax2d(flat, return_covariance=True)
    _close(mean, torch.zeros(2, 2, dtype=F64), atol=1e-12)
    px, pcov = soft_argmax2d(flat, normalized=False, return_covariance=True)
    _close(px[0], torch.tensor([(w - 1) / 2, (h - 1) / 2], dtype=F64), atol=1e-12)
    # variance of the discrete uniform distribution on {0, ..., n-1}: (n^2 - 1) / 12
    expected = torch.diag(torch.tensor([(w * w - 1) / 12, (h * h - 1) / 12], dtype=F64))
    _close(pcov[0], expected, atol=1e-12)
    # normalised covariance scales by (2 / (n - 1))^2 per axis
    s = torch.tensor([2 / (w - 1), 2 / (h - 1)], dtype=F64)
    _close(cov[0], expected * s[:, None] * s[None, :], atol=1e-12)


@SETTINGS
@given(heatmaps(), st.booleans())
def test_huge_temperature_tends_to_centre(h, normalized):
    h_, w_ = h.shape[-2:]
    out = soft_argmax2d(h, temperature=1e9, normalized=normalized)
    centre = torch.zeros(2, dtype=F64) if normalized else torch.tensor([(w_ - 1) / 2, (h_ - 1) / 2])
    _close(out, centre.to(F64).expand_as(out), atol=1e-6 * max(h_, w_))


@SETTINGS
@given(heatmaps(max_lead=1), st.data())
def test_zero_temperature_gives_argmax_pixel(h, data):
    hh, ww = h.shape[-2:]
    r = data.draw(st.integers(0, hh - 1))
    c = data.draw(st.integers(0, ww - 1))
    h = h.clone()
    h[..., r, c] = h.amax(dim=(-2, -1)) + 1.0  # unique maximum, margin >= 1
    for t in (1e-3, 1e-30, 1e-300):
        px = soft_argmax2d(h, temperature=t, normalized=False)
        _close(px, torch.tensor([float(c), float(r)], dtype=F64).expand_as(px), atol=1e-12)
    xs, ys = pixel_coordinates((hh, ww), dtype=F64)
    _close(soft_argmax2d(h, temperature=1e-3), torch.stack((xs[c], ys[r])).expand(*h.shape[:-2], 2))


def test_tiny_temperature_float32_no_overflow():
    torch.manual_seed(0)
    h = (torch.randn(4, 6, 9, 11) * 1e3).requires_grad_()
    flat = h.detach().flatten(-2).argmax(-1)
    out = soft_argmax2d(h, temperature=1e-30, normalized=False)
    assert torch.isfinite(out).all()
    expected = torch.stack(((flat % 11).float(), (flat // 11).float()), -1)
    _close(out, expected, atol=0.0, rtol=0.0)
    out.sum().backward()
    assert torch.isfinite(h.grad).all()
    # a tensor temperature takes the same stable path
    out_t = soft_argmax2d(h.detach(), temperature=torch.tensor(1e-30))
    assert torch.isfinite(out_t).all()


@SETTINGS
@given(
    heatmaps(max_side=6, max_lead=0),
    st.integers(0, 5),
    st.integers(0, 5),
    st.integers(-3, 3),
    st.integers(-3, 3),
    temperatures,
)
def test_integer_translation_shifts_result(patch, oy, ox, dy, dx, t):
    """A map on a -inf canvas moved by (dx, dy) whole pixels moves its result by (dx, dy)."""
    ph, pw = patch.shape
    hh, ww = ph + 12, pw + 12
    oy, ox = oy + 3, ox + 3  # room for shifts of up to 3 in either direction

    def place(y, x):
        canvas = torch.full((hh, ww), -math.inf, dtype=F64)
        canvas[y : y + ph, x : x + pw] = patch
        return canvas

    a, b = place(oy, ox), place(oy + dy, ox + dx)
    ra = soft_argmax2d(a, temperature=t, normalized=False, return_covariance=True)
    rb = soft_argmax2d(b, temperature=t, normalized=False, return_covariance=True)
    _close(rb.mean - ra.mean, torch.tensor([dx, dy], dtype=F64), atol=1e-9)
    _close(rb.covariance, ra.covariance, atol=1e-9)
    na, nb = soft_argmax2d(a, temperature=t), soft_argmax2d(b, temperature=t)
    _close(nb - na, torch.tensor([2 * dx / (ww - 1), 2 * dy / (hh - 1)], dtype=F64), atol=1e-9)
    # and the result is that of the patch alone, offset by its position
    _close(
        ra.mean,
        soft_argmax2d(patch, temperature=t, normalized=False) + torch.tensor([ox, oy]).to(F64),
    )


@SETTINGS
@given(heatmaps(), temperatures, st.booleans())
def test_transpose_swaps_x_and_y(h, t, normalized):
    res = soft_argmax2d(h, temperature=t, normalized=normalized, return_covariance=True)
    tr = soft_argmax2d(h.mT, temperature=t, normalized=normalized, return_covariance=True)
    _close(tr.mean, res.mean.flip(-1))
    _close(tr.covariance, res.covariance.flip(-1, -2))


@SETTINGS
@given(heatmaps(), temperatures, st.floats(-50.0, 50.0), st.floats(0.1, 10.0))
def test_shift_and_scale_invariances(h, t, shift, scale):
    base = soft_argmax2d(h, temperature=t)
    _close(soft_argmax2d(h + shift, temperature=t), base, atol=1e-9)  # softmax is shift-invariant
    _close(soft_argmax2d(h * scale, temperature=t * scale), base, atol=1e-9)  # only h / T matters


@SETTINGS
@given(heatmaps(), temperatures)
def test_pixel_and_normalised_modes_agree(h, t):
    size = tuple(h.shape[-2:])
    px = soft_argmax2d(h, temperature=t, normalized=False, return_covariance=True)
    nm = soft_argmax2d(h, temperature=t, return_covariance=True)
    _close(normalize_points(px.mean, size), nm.mean)
    s = torch.tensor([2 / (size[1] - 1), 2 / (size[0] - 1)], dtype=F64)
    _close(px.covariance * s[:, None] * s[None, :], nm.covariance)


@SETTINGS
@given(heatmaps(), temperatures, st.booleans())
def test_covariance_symmetric_psd_and_bounded(h, t, normalized):
    mean, cov = soft_argmax2d(h, temperature=t, normalized=normalized, return_covariance=True)
    assert torch.equal(cov, cov.mT)
    eig = torch.linalg.eigvalsh(cov)
    unit = 1.0 if normalized else max(h.shape[-2:]) ** 2
    assert (eig >= -1e-12 * unit).all()
    # a distribution on [lo, hi] has variance <= (hi - lo)^2 / 4, and its mean lies inside
    hh, ww = h.shape[-2:]
    span = torch.tensor([2.0, 2.0] if normalized else [ww - 1.0, hh - 1.0], dtype=F64)
    assert (cov.diagonal(dim1=-2, dim2=-1) <= span**2 / 4 + 1e-12).all()
    lo = -1.0 if normalized else 0.0
    assert ((mean >= lo - 1e-12) & (mean <= lo + span + 1e-12)).all()


def test_covariance_is_stable_for_sharp_peaks_far_from_origin():
    """Centred outer products: no E[uu^T] - mu mu^T cancellation for a sharp far peak."""
    hh = ww = 2048
    h = torch.full((hh, ww), -math.inf, dtype=torch.float32)
    h[2000, 2040] = 0.0
    h[2000, 2041] = math.log(1e-6)
    _, cov = soft_argmax2d(h, normalized=False, return_covariance=True)
    p = 1e-6 / (1 + 1e-6)
    # float32 resolves the mean to ~1e-4 px here, so ~2% error remains; the textbook
    # E[x^2] - E[x]^2 would lose everything (ulp(2040^2) = 0.25 >> 1e-6)
    assert cov[0, 0].item() == pytest.approx(p * (1 - p), rel=5e-2)
    assert cov[1, 1].item() == 0.0 and cov[0, 1].item() == 0.0


# --------------------------------------------------------------------------- non-finite input
def test_partially_minus_inf_is_finite_with_finite_gradients():
    torch.manual_seed(1)
    h = torch.randn(3, 6, 8, dtype=F64)
    h[:, :, :3] = -math.inf
    h[1, 2:, :] = -math.inf
    h.requires_grad_()
    res = soft_argmax2d(h, temperature=0.7, return_covariance=True)
    assert torch.isfinite(res.mean).all() and torch.isfinite(res.covariance).all()
    (res.mean.sum() + res.covariance.sum()).backward()
    assert torch.isfinite(h.grad).all()
    assert (h.grad[:, :, :3] == 0).all()  # zero probability, zero gradient
    # equals the soft-argmax of the finite block, offset to its position
    block = soft_argmax2d(h.detach()[0, :, 3:], temperature=0.7, normalized=False)
    _close(
        soft_argmax2d(h.detach()[0], temperature=0.7, normalized=False),
        block + torch.tensor([3.0, 0.0]),
    )


@pytest.mark.parametrize("t", [1.0, 0.5, 2.0])
def test_all_minus_inf_or_nan_map_gives_nan_for_that_map_only(t):
    h = torch.randn(4, 5, 6, dtype=F64)
    h[1] = -math.inf
    h[2, 3, 3] = math.nan
    h[3, 0, 0] = math.inf
    res = soft_argmax2d(h, temperature=t, return_covariance=True)
    assert torch.isnan(res.mean[1:]).all() and torch.isnan(res.covariance[1:]).all()
    assert torch.isfinite(res.mean[0]).all() and torch.isfinite(res.covariance[0]).all()
    _close(res.mean[0], soft_argmax2d(h[0], temperature=t))


# --------------------------------------------------------------------------- dtypes / devices
@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16, torch.float32])
def test_low_precision_dtypes(dtype):
    torch.manual_seed(2)
    h = torch.randn(2, 3, 16, 16, dtype=F64) * 3
    res = soft_argmax2d(h.to(dtype), temperature=0.5, return_covariance=True)
    assert res.mean.dtype == dtype and res.covariance.dtype == dtype
    ref = soft_argmax2d(h.to(dtype).to(F64), temperature=0.5, return_covariance=True)
    tol = {torch.float16: 2e-3, torch.bfloat16: 1e-2, torch.float32: 1e-6}[dtype]
    _close(res.mean.to(F64), ref.mean, atol=tol, rtol=tol)
    _close(res.covariance.to(F64), ref.covariance, atol=tol, rtol=tol)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_matches_cpu():
    torch.manual_seed(3)
    h = torch.randn(2, 5, 17, 23, dtype=F64)
    t = torch.rand(2, 5, dtype=F64) + 0.2
    cpu = soft_argmax2d(h, temperature=t, return_covariance=True)
    gpu = soft_argmax2d(h.cuda(), temperature=t.cuda(), return_covariance=True)
    _close(gpu.mean.cpu(), cpu.mean)
    _close(gpu.covariance.cpu(), cpu.covariance)
    half = soft_argmax2d(h.cuda().half(), temperature=0.5)
    assert half.dtype == torch.float16 and half.is_cuda
    # a 0-dim CPU temperature is accepted with CUDA heatmaps, like a Python float
    _close(
        soft_argmax2d(h.cuda(), temperature=torch.tensor(0.5)).cpu(),
        soft_argmax2d(h, temperature=0.5),
    )


def test_torch_compile_fullgraph():
    h = torch.randn(2, 3, 6, 7)
    t = torch.rand(2, 3) + 0.5
    compiled = torch.compile(
        lambda x, temp: soft_argmax2d(x, temperature=temp, return_covariance=True), fullgraph=True
    )
    got = compiled(h, t)
    want = soft_argmax2d(h, temperature=t, return_covariance=True)
    _close(got.mean, want.mean, atol=1e-6, rtol=1e-5)
    _close(got.covariance, want.covariance, atol=1e-6, rtol=1e-5)


# --------------------------------------------------------------------------- gradients
@pytest.mark.parametrize("t", [1.0, 0.4, 2.5])
@pytest.mark.parametrize("normalized", [True, False])
def test_gradcheck_heatmaps(t, normalized):
    torch.manual_seed(4)
    h = torch.randn(2, 4, 5, dtype=F64, requires_grad=True)

    def f(x):
        return tuple(soft_argmax2d(x, temperature=t, normalized=normalized, return_covariance=True))

    assert torch.autograd.gradcheck(f, (h,))
    assert torch.autograd.gradgradcheck(f, (h,))


def test_gradcheck_tensor_temperature_and_partial_minus_inf():
    torch.manual_seed(5)
    h = torch.randn(3, 4, 5, dtype=F64)
    h[0, :, 0] = -math.inf
    h.requires_grad_()
    t = (torch.rand(3, dtype=F64) + 0.3).requires_grad_()

    def f(x, temp):
        return tuple(soft_argmax2d(x, temperature=temp, return_covariance=True))

    assert torch.autograd.gradcheck(f, (h, t))


# --------------------------------------------------------------------------- errors
def test_heatmaps_errors():
    with pytest.raises(TypeError, match="heatmaps"):
        soft_argmax2d([[0.0, 1.0], [2.0, 3.0]])
    with pytest.raises(TypeError, match="heatmaps.*floating"):
        soft_argmax2d(torch.zeros(3, 3, dtype=torch.int64))
    with pytest.raises(ValueError, match=r"`heatmaps` must have shape \[\.\.\., H, W\], got \[5\]"):
        soft_argmax2d(torch.zeros(5))
    with pytest.raises(ValueError, match=r"heatmaps.*H >= 2 and W >= 2, got \[3, 1, 5\]"):
        soft_argmax2d(torch.zeros(3, 1, 5))
    with pytest.raises(ValueError, match=r"heatmaps.*got \[4, 1\]"):
        soft_argmax2d(torch.zeros(4, 1))


@pytest.mark.parametrize("bad", [0.0, -1.0, math.inf, math.nan])
def test_temperature_value_errors(bad):
    with pytest.raises(ValueError, match="temperature"):
        soft_argmax2d(torch.zeros(3, 3), temperature=bad)
    with pytest.raises(ValueError, match="temperature"):
        soft_argmax2d(torch.zeros(2, 3, 3), temperature=torch.tensor([1.0, bad]))


@pytest.mark.parametrize("bad", ["1", True, None, [1.0]])
def test_temperature_type_errors(bad):
    with pytest.raises(TypeError, match="temperature"):
        soft_argmax2d(torch.zeros(3, 3), temperature=bad)


def test_temperature_tensor_errors():
    h = torch.zeros(2, 3, 4, 4)
    with pytest.raises(TypeError, match="temperature"):
        soft_argmax2d(h, temperature=torch.ones(2, 3, dtype=torch.int64))
    with pytest.raises(ValueError, match=r"temperature.*broadcastable to \[2, 3\].*got \[4\]"):
        soft_argmax2d(h, temperature=torch.ones(4))
    with pytest.raises(ValueError, match=r"temperature.*got \[2, 3, 4, 4\]"):
        soft_argmax2d(
            h, temperature=torch.ones(2, 3, 4, 4)
        )  # one temperature per map, not per pixel
    if torch.cuda.is_available():
        with pytest.raises(ValueError, match="temperature.*device"):
            soft_argmax2d(h, temperature=torch.ones(2, 3, device="cuda"))
