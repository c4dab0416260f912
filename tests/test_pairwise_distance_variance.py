"""pairwise_distance_variance / pairwise_distance_stats: math, parity, properties, errors."""

import math

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from torch_artic import _native
from torch_artic.pairwise_distance_variance import (
    _stats_reference,
    pairwise_distance_stats,
    pairwise_distance_variance,
)
from torch_artic.testing import assert_gradients, keypoints

native = pytest.mark.skipif(not _native.extension_loaded(), reason="native extension not loaded")


def _random_rotation(d, generator=None, dtype=torch.float64):
    q, r = torch.linalg.qr(torch.randn(d, d, generator=generator, dtype=dtype))
    return q * torch.sign(torch.diagonal(r))


# ------------------------------------------------------------------ definition


def test_matches_cdist_var(backend):
    x = torch.randn(33, 9, 3, dtype=torch.float64)
    ref = torch.cdist(x, x).var(0)
    torch.testing.assert_close(pairwise_distance_variance(x), ref)
    torch.testing.assert_close(
        pairwise_distance_variance(x, unbiased=False), torch.cdist(x, x).var(0, unbiased=False)
    )


def test_weighted_formula(backend):
    x = torch.randn(20, 5, 2, dtype=torch.float64)
    w = torch.rand(20, 5, dtype=torch.float64) + 0.1
    d = torch.cdist(x, x)
    wp = w[:, :, None] * w[:, None, :]
    W, V = wp.sum(0), (wp * wp).sum(0)
    mu = (wp * d).sum(0) / W
    m2 = (wp * (d - mu) ** 2).sum(0)
    expect = m2 / (W - V / W)
    expect.fill_diagonal_(0)
    torch.testing.assert_close(pairwise_distance_variance(x, confidence=w), expect)
    torch.testing.assert_close(
        pairwise_distance_variance(x, confidence=w, unbiased=False), (m2 / W).fill_diagonal_(0)
    )


def test_zero_weight_sample_is_dropped(backend):
    x = torch.randn(12, 6, 3, dtype=torch.float64)
    w = torch.ones(12, 6, dtype=torch.float64)
    w[3] = 0
    keep = torch.cat([x[:3], x[4:]])
    torch.testing.assert_close(
        pairwise_distance_variance(x, confidence=w), pairwise_distance_variance(keep)
    )


def test_unit_weights_equal_unweighted(backend):
    x = torch.randn(10, 4, 3, dtype=torch.float64)
    torch.testing.assert_close(
        pairwise_distance_variance(x, confidence=torch.ones(10, 4, dtype=torch.float64)),
        pairwise_distance_variance(x),
    )


def test_stats_shapes_and_values(backend):
    x = torch.randn(7, 4, 2, dtype=torch.float64)
    st_ = pairwise_distance_stats(x)
    assert all(t.shape == (4, 4) for t in st_)
    assert torch.all(st_.wsum == 7) and torch.all(st_.w2sum == 7)
    torch.testing.assert_close(st_.mean, torch.cdist(x, x).mean(0))


# ------------------------------------------------------------------ properties


@given(keypoints(batch_size=(2, 9), num_keypoints=(2, 7), dim=3), st.integers(0, 2**16))
def test_invariant_to_rigid_motion_of_every_sample(points, seed):
    g = torch.Generator().manual_seed(seed)
    b = points.shape[0]
    rot = torch.stack([_random_rotation(3, g) for _ in range(b)])
    moved = points @ rot.transpose(1, 2) + torch.randn(b, 1, 3, generator=g, dtype=points.dtype)
    torch.testing.assert_close(
        pairwise_distance_variance(moved), pairwise_distance_variance(points), atol=1e-10, rtol=1e-8
    )


@given(keypoints(batch_size=(2, 9), num_keypoints=(2, 7), dim=2), st.integers(0, 2**16))
def test_invariant_to_batch_permutation(points, seed):
    g = torch.Generator().manual_seed(seed)
    perm = torch.randperm(points.shape[0], generator=g)
    torch.testing.assert_close(
        pairwise_distance_variance(points[perm]), pairwise_distance_variance(points)
    )


@given(keypoints(batch_size=(2, 9), num_keypoints=(2, 9), dim=3))
def test_symmetric_zero_diagonal_nonnegative(points):
    v = pairwise_distance_variance(points)
    assert torch.equal(v, v.T)
    assert torch.all(torch.diagonal(v) == 0)
    assert torch.all(v >= 0)


@given(keypoints(batch_size=(2, 9), num_keypoints=(2, 6), dim=2), st.floats(0.1, 10.0))
def test_scales_quadratically(points, s):
    torch.testing.assert_close(
        pairwise_distance_variance(points * s), s * s * pairwise_distance_variance(points)
    )


def test_rigid_pair_has_zero_variance(backend):
    b = 64
    theta = torch.rand(b, dtype=torch.float64) * 2 * math.pi
    a = torch.randn(b, 2, dtype=torch.float64) * 5
    bone = torch.stack([a, a + 1.5 * torch.stack([theta.cos(), theta.sin()], -1)], 1)
    free = torch.randn(b, 1, 2, dtype=torch.float64)
    v = pairwise_distance_variance(torch.cat([bone, free], 1))
    assert float(v[0, 1]) < 1e-20
    assert float(v[0, 2]) > 1e-2


def test_large_offset_is_stable(backend):
    """A far-from-origin, nearly rigid pair: no catastrophic cancellation in float32."""
    b = 4096
    theta = torch.rand(b, dtype=torch.float64) * 2 * math.pi
    length = 1.0 + 1e-3 * torch.randn(b, dtype=torch.float64)
    a = torch.full((b, 2), 1e3, dtype=torch.float64)
    x = torch.stack([a, a + length[:, None] * torch.stack([theta.cos(), theta.sin()], -1)], 1)
    exact = float(pairwise_distance_variance(x)[0, 1])
    got = float(pairwise_distance_variance(x.float())[0, 1])
    # float32 distances at 1e3 carry ~6e-5 absolute error, so the relative accuracy of
    # a 1e-6 variance is limited to a few 1e-2 by the input, not by the accumulation.
    assert got == pytest.approx(exact, rel=0.1)


# ------------------------------------------------------------------ gradients


@pytest.mark.parametrize("weighted", [False, True])
@pytest.mark.parametrize("d", [1, 2, 3, 5])
def test_gradcheck(backend, weighted, d):
    x = torch.randn(6, 5, d, dtype=torch.float64)
    if weighted:
        w = torch.rand(6, 5, dtype=torch.float64) + 0.2
        assert_gradients(lambda x, w: pairwise_distance_stats(x, confidence=w), (x, w))
        assert_gradients(
            lambda x, w: pairwise_distance_variance(x, confidence=w, unbiased=False), (x, w)
        )
        assert_gradients(lambda x, w: pairwise_distance_variance(x, confidence=w), (x, w))
    else:
        assert_gradients(lambda x: pairwise_distance_stats(x), (x,))
        assert_gradients(pairwise_distance_variance, (x,))


def test_gradgradcheck(backend):
    x = torch.randn(5, 4, 3, dtype=torch.float64)
    w = torch.rand(5, 4, dtype=torch.float64) + 0.2
    assert_gradients(
        lambda x, w: pairwise_distance_variance(x, confidence=w), (x, w), second_order=True
    )


def test_gradient_at_coincident_points_is_finite(backend):
    x = torch.randn(5, 4, 3, dtype=torch.float64)
    x[:, 1] = x[:, 0]  # keypoints 0 and 1 coincide in every sample
    x[2, 3] = x[2, 2]  # and 2, 3 in one sample
    x.requires_grad_()
    v = pairwise_distance_variance(x)
    (v * torch.arange(16, dtype=torch.float64).view(4, 4)).sum().backward()
    assert torch.isfinite(x.grad).all()
    ref = x.detach().clone().requires_grad_()
    st_ = _stats_reference(ref, None)
    (st_.m2 / 4 * torch.arange(16, dtype=torch.float64).view(4, 4)).sum().backward()
    torch.testing.assert_close(x.grad, ref.grad)


# ------------------------------------------------------------------ native vs reference


@native
@given(
    keypoints(batch_size=(1, 40), num_keypoints=(2, 20), dim=3),
    st.booleans(),
    st.sampled_from([torch.float32, torch.float64]),
)
def test_native_matches_reference(points, weighted, dtype):
    x = points.to(dtype).requires_grad_()
    w = (torch.rand(x.shape[:2], dtype=dtype) + 0.1).requires_grad_() if weighted else None
    nat = pairwise_distance_stats(x, confidence=w)
    xr = x.detach().clone().requires_grad_()
    wr = w.detach().clone().requires_grad_() if weighted else None
    ref = _stats_reference(xr, wr)
    tol = dict(atol=1e-4, rtol=1e-4) if dtype == torch.float32 else dict(atol=1e-10, rtol=1e-9)
    for a, b in zip(nat, ref):
        torch.testing.assert_close(a, b, **tol)
    # unweighted, wsum and w2sum are constants (B): only mean and m2 carry gradient
    keep = slice(0, 4) if weighted else slice(2, 4)
    gs = [torch.randn_like(t) for t in nat[keep]]
    ga = torch.autograd.grad(nat[keep], [x] + ([w] if weighted else []), gs)
    gb = torch.autograd.grad(ref[keep], [xr] + ([wr] if weighted else []), gs)
    for a, b in zip(ga, gb):
        torch.testing.assert_close(a, b, **tol)


@native
def test_native_is_used_and_deterministic_across_threads():
    assert "cpu" in _native.REGISTRY["pairwise_distance_stats"].kernels
    x = torch.randn(999, 17, 3).requires_grad_()
    outs = []
    threads = torch.get_num_threads()
    try:
        for n in (1, 2, 1):
            torch.set_num_threads(n)
            v = pairwise_distance_variance(x)
            (g,) = torch.autograd.grad((v * v).sum(), x)
            outs.append((v, g))
    finally:
        torch.set_num_threads(threads)
    for v, g in outs[1:]:
        assert torch.equal(v, outs[0][0]) and torch.equal(g, outs[0][1])


@native
def test_torch_compile_fullgraph():
    x = torch.randn(16, 6, 3, requires_grad=True)
    w = torch.rand(16, 6)
    f = torch.compile(
        lambda x, w: pairwise_distance_variance(x, confidence=w).sum(),
        fullgraph=True,
        dynamic=False,
    )
    y = f(x, w)
    (g,) = torch.autograd.grad(y, x)
    xe = x.detach().clone().requires_grad_()
    ye = pairwise_distance_variance(xe, confidence=w).sum()
    (ge,) = torch.autograd.grad(ye, xe)
    torch.testing.assert_close(y, ye)
    torch.testing.assert_close(g, ge)


# ------------------------------------------------------------------ bad input


def test_errors():
    x = torch.randn(4, 3, 2)
    with pytest.raises(TypeError, match="points"):
        pairwise_distance_variance(x.tolist())
    with pytest.raises(TypeError, match="points"):
        pairwise_distance_variance(torch.ones(4, 3, 2, dtype=torch.int64))
    with pytest.raises(ValueError, match=r"points.*\[B, K, D\].*\[4, 3\]"):
        pairwise_distance_variance(torch.randn(4, 3))
    with pytest.raises(ValueError, match=r"K >= 2"):
        pairwise_distance_variance(torch.randn(4, 1, 2))
    with pytest.raises(ValueError, match=r"B >= 2"):
        pairwise_distance_variance(torch.randn(1, 3, 2))
    assert pairwise_distance_variance(torch.randn(1, 3, 2), unbiased=False).abs().sum() == 0
    with pytest.raises(ValueError, match=r"confidence.*\[B, K\] = \[4, 3\].*\[4, 2\]"):
        pairwise_distance_variance(x, confidence=torch.rand(4, 2))
    with pytest.raises(TypeError, match="confidence"):
        pairwise_distance_variance(x, confidence=torch.rand(4, 3, dtype=torch.float64))
    with pytest.raises(TypeError, match="confidence"):
        pairwise_distance_variance(x, confidence=torch.ones(4, 3, dtype=torch.int32))
    w = torch.ones(4, 3)
    w[1:, 2] = 0  # keypoint 2 is seen in one sample only
    with pytest.raises(ValueError, match="2 keypoint pair.*confidence"):
        pairwise_distance_variance(x, confidence=w)
    pairwise_distance_variance(x, confidence=w, unbiased=False)  # one sample suffices here
    with pytest.raises(TypeError, match="points"):
        pairwise_distance_stats("nope")


def test_nan_in_nan_out(backend):
    x = torch.randn(5, 3, 2)
    x[2, 1, 0] = float("nan")
    v = pairwise_distance_variance(x)
    assert torch.isnan(v[0, 1]) and torch.isnan(v[1, 2])
    assert torch.isfinite(v[0, 2])


# ------------------------------------------------------------------ CUDA (runs where a GPU is)

cuda = pytest.mark.skipif(
    not torch.cuda.is_available()
    or "cuda" not in _native.REGISTRY["pairwise_distance_stats"].kernels,
    reason="no CUDA device or no CUDA kernel built",
)


@cuda
@pytest.mark.parametrize("weighted", [False, True])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_cuda_matches_cpu(weighted, dtype):
    x = torch.randn(300, 13, 3, dtype=dtype)
    w = torch.rand(300, 13, dtype=dtype) + 0.1 if weighted else None
    xc = x.cuda().requires_grad_()
    wc = w.cuda().requires_grad_() if weighted else None
    xr = x.clone().requires_grad_()
    wr = w.clone().requires_grad_() if weighted else None
    vc = pairwise_distance_variance(xc, confidence=wc)
    vr = pairwise_distance_variance(xr, confidence=wr)
    tol = dict(atol=1e-4, rtol=1e-4) if dtype == torch.float32 else {}
    torch.testing.assert_close(vc.cpu(), vr, **tol)
    coef = torch.randn(13, 13, dtype=dtype)
    ins_c = [xc] + ([wc] if weighted else [])
    ins_r = [xr] + ([wr] if weighted else [])
    gc = torch.autograd.grad((vc * coef.cuda()).sum(), ins_c)
    gr = torch.autograd.grad((vr * coef).sum(), ins_r)
    for a, b in zip(gc, gr):
        torch.testing.assert_close(a.cpu(), b, **tol)


@cuda
def test_cuda_gradcheck_and_opcheck():
    x = torch.randn(6, 5, 3, dtype=torch.float64, device="cuda")
    w = torch.rand(6, 5, dtype=torch.float64, device="cuda") + 0.2
    assert_gradients(lambda x, w: pairwise_distance_variance(x, confidence=w), (x, w))
    torch.library.opcheck(
        torch.ops.torch_artic.pairwise_distance_stats.default,
        (x.clone().requires_grad_(), w.clone().requires_grad_()),
    )


@cuda
@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_cuda_half_precision_accumulates_in_float(dtype):
    x = torch.randn(2048, 8, 3, device="cuda")
    v16 = pairwise_distance_variance(x.to(dtype))
    assert v16.dtype == dtype
    ref = pairwise_distance_variance(x.to(dtype).double())
    torch.testing.assert_close(v16.double(), ref, atol=2e-2, rtol=2e-2)


@cuda
def test_cuda_deterministic():
    x = torch.randn(1000, 20, 3, device="cuda", requires_grad=True)
    runs = []
    for _ in range(2):
        v = pairwise_distance_variance(x)
        (g,) = torch.autograd.grad((v * v).sum(), x)
        runs.append((v, g))
    assert torch.equal(runs[0][0], runs[1][0]) and torch.equal(runs[0][1], runs[1][1])
