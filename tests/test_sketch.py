"""sketch_render (thesis §5.5.1-5.5.2, §6.7.1.2): definition, parity, gradients,
properties, compile/opcheck, determinism and every bad input."""

from __future__ import annotations

import math

import pytest
import torch
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from torch_artic import force_reference
from torch_artic._native import REGISTRY
from torch_artic.coords import normalize_points
from torch_artic.sketch import CUTOFF, _prepare, sketch_render
from torch_artic.testing import random_trees

SETTINGS = settings(max_examples=25, deadline=None)
# property tests run once per backend (the `backend` fixture selects it for the whole test)
PROPS = settings(
    max_examples=15, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
F64 = torch.float64
COMPOSITES = ["sum_clamp", "soft_or", "max"]
KERNELS = REGISTRY["sketch_render_forward"].kernels
NATIVE = "cpu" in KERNELS
native = pytest.mark.skipif(not NATIVE, reason="native sketch_render kernel not loaded")
cuda = pytest.mark.skipif(
    not (torch.cuda.is_available() and "cuda" in KERNELS),
    reason="needs CUDA and the native CUDA kernel",
)


def _close(a, b, atol=1e-11, rtol=1e-9):
    torch.testing.assert_close(a, b, atol=atol, rtol=rtol)


def _line(a, b, size, **kw):
    """One line a -> b (pixel coordinates) in a [H, W] image."""
    pts = torch.tensor([[a, b]], dtype=F64)
    adj = torch.tensor([[0.0, 1.0], [1.0, 0.0]], dtype=F64)
    return sketch_render(pts, adj, size, normalized=False, **kw)[0, 0]


def _dense(pts_px, adjacency, size, sigma, composite="sum_clamp"):
    """Untruncated all-pixels-all-edges formula (no cutoff), one channel."""
    h, w = size
    k = pts_px.shape[1]
    iu, ju = torch.triu_indices(k, k, 1)
    a, b = pts_px[:, iu], pts_px[:, ju]  # [B, E, 2]
    wts = adjacency[..., iu, ju].expand(pts_px.shape[0], -1)
    ys, xs = torch.meshgrid(torch.arange(h, dtype=F64), torch.arange(w, dtype=F64), indexing="ij")
    p = torch.stack((xs, ys), -1)  # [H, W, 2]
    ab = (b - a)[:, :, None, None]
    ap = p - a[:, :, None, None]
    l2 = (ab * ab).sum(-1)
    t = torch.where(l2 > 0, (ap * ab).sum(-1) / l2.clamp_min(1e-300), 0).clamp(0, 1)
    d2 = ((ap - t[..., None] * ab) ** 2).sum(-1)
    inten = wts[:, :, None, None] * torch.exp(-d2 / sigma**2)
    if composite == "sum_clamp":
        return inten.sum(1).clamp(max=1)
    if composite == "soft_or":
        return 1 - (1 - inten).prod(1)
    return inten.amax(1).clamp(min=0)


# --------------------------------------------------------------------------- strategies
@st.composite
def scenes(draw, max_k=6, max_side=18, soft=True):
    """Random inputs: points partly outside the image, a (batched or shared) adjacency
    with zeros, sigma a float or per edge, colours none / [C] / [B, K, C]."""
    b = draw(st.integers(1, 3))
    k = draw(st.integers(2, max_k))
    h, w = draw(st.integers(2, max_side)), draw(st.integers(2, max_side))
    seed = draw(st.integers(0, 2**31 - 1))
    g = torch.Generator().manual_seed(seed)
    pts = torch.rand(b, k, 2, generator=g, dtype=F64) * 2.6 - 1.3
    batched = draw(st.booleans())
    shape = (b, k, k) if batched else (k, k)
    adj = torch.rand(shape, generator=g, dtype=F64)
    adj = torch.where(torch.rand(shape, generator=g, dtype=F64) < 0.3, 0.0, adj)
    if not soft:
        adj = (adj > 0).to(F64)
    sig_kind = draw(st.sampled_from(["float", "shared", "batched"]))
    if sig_kind == "float":
        sigma = draw(st.sampled_from([0.05, 0.4, 1.0, 2.5, 9.0]))
    else:
        sshape = (b, k, k) if sig_kind == "batched" else (k, k)
        sigma = torch.rand(sshape, generator=g, dtype=F64) * 3 + 0.2
    col_kind = draw(st.sampled_from([None, "one", "per_point"]))
    c = draw(st.integers(1, 5))
    colors = None
    if col_kind == "one":
        colors = torch.rand(c, generator=g, dtype=F64)
    elif col_kind == "per_point":
        colors = torch.rand(b, k, c, generator=g, dtype=F64)
    return dict(points=pts, adjacency=adj, size=(h, w), sigma=sigma, colors=colors)


def _render_both(scene, composite, normalized=True, grads=True):
    """(values, grads) on the native and the reference backends."""
    res = []
    for backend in ("native", "reference"):
        ins = {
            key: (v.clone().requires_grad_() if isinstance(v, torch.Tensor) else v)
            for key, v in scene.items()
        }
        with force_reference(enabled=backend == "reference"):
            out = sketch_render(
                ins["points"],
                ins["adjacency"],
                ins["size"],
                sigma=ins["sigma"],
                colors=ins["colors"],
                composite=composite,
                normalized=normalized,
            )
        tensors = [v for v in ins.values() if isinstance(v, torch.Tensor)]
        g = torch.autograd.grad(out, tensors, torch.cos(out * 7 + 1)) if grads else ()
        res.append((out.detach(), g))
    return res


# --------------------------------------------------------------------------- definition
def test_pixel_values_match_the_formula(backend):
    # a line from (2, 3) to (9, 3): pixel (x, y) has d = |y - 3| between the ends,
    # the distance to the nearer end beyond them
    img = _line((2.0, 3.0), (9.0, 3.0), (8, 14), sigma=1.5)
    for x, y in [(5, 3), (5, 4), (5, 6), (0, 3), (11, 5), (2, 7)]:
        dx = 2 - x if x < 2 else (x - 9 if x > 9 else 0)
        d2 = dx * dx + (y - 3) ** 2
        expect = math.exp(-d2 / 1.5**2) if d2 < (CUTOFF * 1.5) ** 2 else 0.0
        assert img[y, x].item() == pytest.approx(expect, rel=1e-12, abs=1e-300)
    assert img[3, 2:10].eq(1.0).all()  # on the segment: exactly 1


@PROPS
@given(scenes(soft=False), st.sampled_from(COMPOSITES))
def test_truncation_error_is_below_exp_minus_r_squared(backend, scene, composite):
    sigma = scene["sigma"] if isinstance(scene["sigma"], float) else 1.3
    pts = scene["points"]
    size = scene["size"]
    out = sketch_render(pts, scene["adjacency"], size, sigma=sigma, composite=composite)
    from torch_artic.coords import denormalize_points

    dense = _dense(denormalize_points(pts, size), scene["adjacency"], size, sigma, composite)
    e = pts.shape[1] * (pts.shape[1] - 1) // 2
    assert (out[:, 0] - dense).abs().max() <= e * math.exp(-(CUTOFF**2)) * 1.0001


def test_weight_scales_and_composites_combine(backend):
    pts = torch.tensor([[[1.0, 4.0], [12.0, 4.0], [6.0, 0.0], [6.0, 9.0]]], dtype=F64)
    adj = torch.zeros(4, 4, dtype=F64)
    adj[0, 1] = 0.3  # horizontal line through row 4
    adj[2, 3] = 0.5  # vertical line through column 6
    kw = dict(normalized=False, sigma=1.0)
    single = torch.zeros_like(adj)
    single[0, 1] = 1.0
    one = sketch_render(pts, single, (10, 14), **kw)[0, 0]
    a = sketch_render(pts, adj * single, (10, 14), **kw)[0, 0]
    _close(a, 0.3 * one)
    i1 = 0.3 * one
    only2 = torch.zeros_like(adj)
    only2[2, 3] = 0.5
    i2 = sketch_render(pts, only2, (10, 14), **kw)[0, 0]
    _close(
        sketch_render(pts, adj, (10, 14), composite="sum_clamp", **kw)[0, 0], (i1 + i2).clamp(max=1)
    )
    _close(
        sketch_render(pts, adj, (10, 14), composite="soft_or", **kw)[0, 0], 1 - (1 - i1) * (1 - i2)
    )
    _close(sketch_render(pts, adj, (10, 14), composite="max", **kw)[0, 0], torch.maximum(i1, i2))


def test_colours_grade_along_the_line(backend):
    pts = torch.tensor([[[2.0, 5.0], [12.0, 5.0]]], dtype=F64)
    adj = torch.tensor([[0.0, 1.0], [1.0, 0.0]], dtype=F64)
    cols = torch.tensor([[[1.0, 0.0, 0.2], [0.0, 1.0, 0.2]]], dtype=F64)  # red -> green
    img = sketch_render(pts, adj, (10, 15), colors=cols, normalized=False)
    assert img.shape == (1, 3, 10, 15)
    for x in range(2, 13):
        t = (x - 2) / 10
        _close(img[0, :, 5, x], torch.tensor([1 - t, t, 0.2], dtype=F64))
    # off the line: colour times intensity, per channel (sum_clamp, below the clamp)
    mono = sketch_render(pts, adj, (10, 15), normalized=False)[0, 0]
    _close(img[0, 2], 0.2 * mono)


def test_single_colour_equals_colour_times_mono_under_max(backend):
    pts = torch.rand(2, 5, 2, dtype=F64) * 2 - 1
    adj = torch.rand(5, 5, dtype=F64)
    c = torch.tensor([0.3, 0.9], dtype=F64)
    img = sketch_render(pts, adj, (11, 9), colors=c, composite="max")
    mono = sketch_render(pts, adj, (11, 9), composite="max")
    _close(img, c[None, :, None, None] * mono)


def test_zero_edges_give_a_blank_image_and_zero_gradients(backend):
    pts = (torch.rand(3, 4, 2, dtype=F64) * 2 - 1).requires_grad_()
    adj = torch.zeros(4, 4, dtype=F64, requires_grad=True)
    for composite in COMPOSITES:
        out = sketch_render(pts, adj, (7, 9), composite=composite)
        assert out.shape == (3, 1, 7, 9) and out.eq(0).all()
        gp, ga = torch.autograd.grad(out.sum(), (pts, adj))
        assert gp.eq(0).all()
        if composite == "max":
            assert ga.eq(0).all()  # a zero line never beats the background
        else:
            assert ga.triu(1).gt(0).any()  # raising a weight would brighten the image


def test_lines_outside_the_image_draw_nothing(backend):
    pts = torch.tensor([[[-30.0, -30.0], [-20.0, -25.0], [40.0, 3.0], [60.0, 8.0]]], dtype=F64)
    adj = torch.ones(4, 4, dtype=F64)
    adj[0, 2] = adj[0, 3] = adj[1, 2] = adj[1, 3] = 0
    out = sketch_render(pts, adj, (10, 12), normalized=False)
    assert out.eq(0).all()


def test_empty_batch(backend):
    out = sketch_render(torch.zeros(0, 3, 2, dtype=F64), torch.ones(3, 3, dtype=F64), 5)
    assert out.shape == (0, 1, 5, 5)


# --------------------------------------------------------------------------- parity
@native
@SETTINGS
@given(scenes(), st.sampled_from(COMPOSITES), st.booleans())
def test_native_matches_reference_values_and_gradients(scene, composite, normalized):
    if not normalized:
        h, w = scene["size"]
        scene["points"] = (scene["points"] + 1) * torch.tensor(
            [(w - 1) / 2, (h - 1) / 2], dtype=F64
        )
    (vn, gn), (vr, gr) = _render_both(scene, composite, normalized)
    _close(vn, vr)
    for a, b in zip(gn, gr):
        _close(a, b, atol=1e-9, rtol=1e-8)


@native
@pytest.mark.parametrize("composite", COMPOSITES)
def test_native_matches_reference_in_float32(composite):
    g = torch.Generator().manual_seed(3)
    scene = dict(
        points=torch.rand(4, 9, 2, generator=g) * 2.2 - 1.1,
        adjacency=torch.rand(9, 9, generator=g),
        size=(33, 27),
        sigma=torch.rand(9, 9, generator=g) * 2 + 0.5,
        colors=torch.rand(4, 9, 3, generator=g),
    )
    (vn, gn), (vr, gr) = _render_both(scene, composite)
    torch.testing.assert_close(vn, vr, atol=2e-6, rtol=1e-5)
    for a, b in zip(gn, gr):
        torch.testing.assert_close(a, b, atol=5e-4, rtol=1e-3)


@native
@pytest.mark.parametrize("sigma", [0.03, 0.7, 40.0])
def test_native_matches_reference_for_extreme_widths(sigma):
    g = torch.Generator().manual_seed(4)
    scene = dict(
        points=torch.rand(2, 5, 2, generator=g, dtype=F64) * 2 - 1,
        adjacency=torch.rand(5, 5, generator=g, dtype=F64),
        size=(17, 23),
        sigma=sigma,
        colors=None,
    )
    for composite in COMPOSITES:
        (vn, gn), (vr, gr) = _render_both(scene, composite)
        _close(vn, vr)
        for a, b in zip(gn, gr):
            _close(a, b, atol=1e-9, rtol=1e-8)


@native
def test_integer_coordinates_and_coincident_points_match():
    # exact ties: pixel centres on lines and on the cutoff, t exactly 0 / 1,
    # coincident endpoints (a degenerate segment is a point), unit weights (I = 1)
    pts = torch.tensor([[[3.0, 4.0], [11.0, 4.0], [3.0, 4.0], [7.0, 8.0], [7.0, 8.0]]], dtype=F64)
    adj = torch.ones(5, 5, dtype=F64)
    scene = dict(points=pts, adjacency=adj, size=(13, 15), sigma=1.0, colors=None)
    for composite in COMPOSITES:
        (vn, gn), (vr, gr) = _render_both(scene, composite, normalized=False)
        _close(vn, vr)
        for a, b in zip(gn, gr):
            assert torch.isfinite(a).all()
            _close(a, b, atol=1e-9, rtol=1e-8)


# --------------------------------------------------------------------------- gradients
def _grad_inputs(k=4, b=2, c=2, seed=0):
    g = torch.Generator().manual_seed(seed)
    pts = torch.rand(b, k, 2, generator=g, dtype=F64) * 1.6 - 0.8
    adj = torch.rand(b, k, k, generator=g, dtype=F64) * 0.8
    sig = torch.rand(k, k, generator=g, dtype=F64) * 1.5 + 0.7
    cols = torch.rand(b, k, c, generator=g, dtype=F64)
    return [t.requires_grad_() for t in (pts, adj, sig, cols)]


@pytest.mark.parametrize("composite", COMPOSITES)
def test_gradcheck_all_inputs(backend, composite):
    pts, adj, sig, cols = _grad_inputs()

    def f(p, a, s, c):
        return sketch_render(p, a, (8, 10), sigma=s, colors=c, composite=composite)

    assert torch.autograd.gradcheck(f, (pts, adj, sig, cols), eps=1e-6, atol=1e-5)


@pytest.mark.parametrize("composite", COMPOSITES)
def test_gradcheck_single_colour_and_mono(backend, composite):
    pts, adj, _, _ = _grad_inputs(k=3, seed=1)
    col = torch.rand(3, dtype=F64, requires_grad=True)
    assert torch.autograd.gradcheck(
        lambda p, a, c: sketch_render(p, a, (7, 9), sigma=1.2, colors=c, composite=composite),
        (pts, adj, col),
        eps=1e-6,
        atol=1e-5,
    )
    assert torch.autograd.gradcheck(
        lambda p, a: sketch_render(p, a[0], (9, 6), sigma=0.9, composite=composite),
        (pts, adj),
        eps=1e-6,
        atol=1e-5,
    )


def test_second_order_gradients(backend):
    pts, adj, _, _ = _grad_inputs(k=3, b=1, seed=2)
    assert torch.autograd.gradgradcheck(
        lambda p, a: sketch_render(p, a, (6, 7), sigma=1.3, composite="soft_or"),
        (pts, adj),
        eps=1e-6,
        atol=1e-4,
    )


@pytest.mark.parametrize("composite", COMPOSITES)
def test_gradients_finite_on_segment_at_coincident_points_and_at_the_clamp(backend, composite):
    # unit weights: I = 1 on the segment, soft_or factors exactly 0, sum_clamp exactly at
    # and above 1 (where lines cross), a degenerate segment (coincident keypoints)
    pts = torch.tensor(
        [[[2.0, 2.0], [9.0, 2.0], [5.0, 0.0], [5.0, 6.0], [7.0, 5.0], [7.0, 5.0]]],
        dtype=F64,
        requires_grad=True,
    )
    adj = torch.ones(6, 6, dtype=F64, requires_grad=True)
    sig = torch.ones(6, 6, dtype=F64, requires_grad=True)
    out = sketch_render(pts, adj, (8, 11), sigma=sig, normalized=False, composite=composite)
    for g in torch.autograd.grad(out.sum(), (pts, adj, sig)):
        assert torch.isfinite(g).all()


def test_sum_clamp_subgradient_passes_at_exactly_one(backend):
    # a single unit line: pixels on it are exactly 1 = the clamp; the weight's gradient
    # still counts them (torch.clamp's convention), so d out / d w = sum of exp(-d^2/s^2)
    pts = torch.tensor([[[2.0, 3.0], [8.0, 3.0]]], dtype=F64)
    w = torch.ones(2, 2, dtype=F64, requires_grad=True)
    out = sketch_render(pts, w, (7, 11), normalized=False)
    (g,) = torch.autograd.grad(out.sum(), w)
    assert g[0, 1].item() == pytest.approx(out.sum().item(), rel=1e-12)
    assert g[1, 0].item() == 0.0  # the lower triangle is not read


def test_soft_or_gradient_with_a_zero_factor_is_exact(backend):
    # two unit lines crossing: at the crossing both factors are 0 -> d out / d w = 0;
    # on one line only its own factor is 0 -> d out / d w_other = prod of the others
    pts = torch.tensor([[[1.0, 4.0], [9.0, 4.0], [5.0, 0.0], [5.0, 8.0]]], dtype=F64)
    adj = torch.zeros(4, 4, dtype=F64)
    adj[0, 1] = adj[2, 3] = 1.0
    adj.requires_grad_()
    out = sketch_render(pts, adj, (9, 11), normalized=False, composite="soft_or")
    g = torch.zeros_like(out)
    g[0, 0, 4, 5] = 1.0  # the crossing
    (ga,) = torch.autograd.grad(out, adj, g, retain_graph=True)
    assert ga[0, 1].item() == 0.0 and ga[2, 3].item() == 0.0
    g = torch.zeros_like(out)
    g[0, 0, 4, 2] = 1.0  # on line (0, 1), distance 3 from the vertical line
    (ga,) = torch.autograd.grad(out, adj, g)
    assert ga[2, 3].item() == pytest.approx(0.0, abs=1e-300)  # its factor 1 - 1 = 0
    assert ga[0, 1].item() == pytest.approx(1 - math.exp(-9.0), rel=1e-12)


# --------------------------------------------------------------------------- properties
@PROPS
@given(scenes(max_k=5), st.sampled_from(COMPOSITES), st.data())
def test_swapping_keypoints_changes_nothing(backend, scene, composite, data):
    # relabelling keypoints (so that a line's endpoints swap roles) draws the same image
    k = scene["points"].shape[1]
    perm = torch.tensor(data.draw(st.permutations(range(k))))
    adj = scene["adjacency"]
    adj = adj.triu(1) + adj.triu(1).mT  # symmetric, so the relabelled matrix is the same graph
    sig = scene["sigma"]
    if isinstance(sig, torch.Tensor):
        sig = sig.triu(1) + sig.triu(1).mT + 1.0
    cols = scene["colors"]
    kw = dict(composite=composite)
    a = sketch_render(scene["points"], adj, scene["size"], sigma=sig, colors=cols, **kw)
    pcols = cols[:, perm] if isinstance(cols, torch.Tensor) and cols.dim() == 3 else cols
    psig = sig[..., perm, :][..., :, perm] if isinstance(sig, torch.Tensor) else sig
    b = sketch_render(
        scene["points"][:, perm],
        adj[..., perm, :][..., :, perm],
        scene["size"],
        sigma=psig,
        colors=pcols,
        **kw,
    )
    _close(a, b, atol=1e-9, rtol=1e-9)


@PROPS
@given(st.integers(-4, 4), st.integers(-4, 4), st.sampled_from(COMPOSITES))
def test_translating_by_whole_pixels_shifts_the_image(backend, dx, dy, composite):
    g = torch.Generator().manual_seed(7)
    pts = torch.rand(2, 4, 2, generator=g, dtype=F64) * 6 + 9  # well inside a 24 x 24 image
    adj = torch.rand(4, 4, generator=g, dtype=F64)
    a = sketch_render(pts, adj, 24, sigma=0.8, normalized=False, composite=composite)
    shift = torch.tensor([dx, dy], dtype=F64)
    b = sketch_render(pts + shift, adj, 24, sigma=0.8, normalized=False, composite=composite)
    _close(torch.roll(a, shifts=(dy, dx), dims=(-2, -1)), b, atol=1e-12, rtol=1e-10)


@PROPS
@given(st.floats(2.0, 13.0), st.floats(0.0, 4.0), st.floats(9.0, 20.0), st.floats(0.3, 3.0))
def test_horizontal_line_brightest_row_is_the_lines_row(backend, y, x0, x1, sigma):
    assume(abs(y % 1.0 - 0.5) > 1e-6)  # not halfway between two rows
    img = _line((x0, y), (x1, y), (16, 24), sigma=sigma)
    col = img[:, int(round((x0 + x1) / 2))]
    assert int(col.argmax()) == round(y)
    # and the sketch, found by the library's coordinate convention, sits where drawn
    assert col.max().item() == pytest.approx(math.exp(-((round(y) - y) ** 2) / sigma**2))


@PROPS
@given(scenes(max_k=5), st.sampled_from(COMPOSITES))
def test_only_the_upper_triangle_is_read(backend, scene, composite):
    adj = scene["adjacency"]
    upper = adj.triu(1)
    noisy = upper + torch.rand_like(adj).tril(0) * 5  # garbage on and below the diagonal
    sym = upper + upper.mT
    kw = dict(sigma=scene["sigma"], colors=scene["colors"], composite=composite)
    a = sketch_render(scene["points"], upper, scene["size"], **kw)
    _close(a, sketch_render(scene["points"], noisy, scene["size"], **kw), atol=0.0, rtol=0.0)
    _close(a, sketch_render(scene["points"], sym, scene["size"], **kw), atol=0.0, rtol=0.0)
    sym.requires_grad_()
    out = sketch_render(scene["points"], sym, scene["size"], **kw)
    (g,) = torch.autograd.grad(out.sum(), sym)
    assert g.tril(0).eq(0).all()


def test_shared_adjacency_equals_batched_copy(backend):
    pts, _, sig, cols = _grad_inputs(k=5, b=3, c=3, seed=5)
    adj = torch.rand(5, 5, dtype=F64, requires_grad=True)
    a = sketch_render(pts, adj, (9, 8), sigma=sig, colors=cols)
    adj_b = adj.detach().expand(3, 5, 5).clone().requires_grad_()
    b = sketch_render(pts, adj_b, (9, 8), sigma=sig.expand(3, 5, 5), colors=cols)
    _close(a, b, atol=0.0, rtol=0.0)
    (ga,) = torch.autograd.grad(a.sum(), adj)
    (gb,) = torch.autograd.grad(b.sum(), adj_b)
    _close(ga, gb.sum(0))


def test_normalized_and_pixel_conventions_agree(backend):
    px = torch.rand(2, 4, 2, dtype=F64) * 10
    adj = torch.rand(4, 4, dtype=F64)
    a = sketch_render(px, adj, (12, 15), normalized=False)
    b = sketch_render(normalize_points(px, (12, 15)), adj, (12, 15))
    _close(a, b, atol=1e-12, rtol=1e-10)


def test_bool_and_integer_adjacency(backend):
    pts = torch.rand(2, 5, 2, dtype=F64) * 2 - 1
    adj = torch.rand(5, 5) > 0.5
    ref = sketch_render(pts, adj.to(F64), 9)
    _close(sketch_render(pts, adj, 9), ref, atol=0.0, rtol=0.0)
    _close(sketch_render(pts, adj.to(torch.int64), 9), ref, atol=0.0, rtol=0.0)


@PROPS
@given(random_trees(num_nodes=(2, 7)))
def test_tree_from_dmst_style_adjacency_draws_each_limb(backend, tree):
    k = tree.shape[0]
    g = torch.Generator().manual_seed(k)
    pts = torch.rand(1, k, 2, generator=g, dtype=F64) * 20 + 2
    img = sketch_render(pts, tree, 25, sigma=1.0, normalized=False)
    iu, ju = torch.triu_indices(k, k, 1)
    for i, j in zip(iu.tolist(), ju.tolist()):
        mid = (pts[0, i] + pts[0, j]) / 2
        x, y = int(mid[0].round()), int(mid[1].round())
        if tree[i, j]:
            assert img[0, 0, y, x] > math.exp(-1.0)  # within ~0.7 px of a drawn limb


@pytest.mark.parametrize("composite", COMPOSITES)
def test_nan_in_a_point_gives_a_nan_image(backend, composite):
    pts = torch.rand(2, 3, 2, dtype=F64) * 2 - 1
    pts[1, 0, 0] = float("nan")
    out = sketch_render(pts, torch.ones(3, 3, dtype=F64), (6, 7), composite=composite)
    assert torch.isnan(out[1]).all()
    assert torch.isfinite(out[0]).all()


def test_half_precision_runs_through_float32(backend):
    pts = torch.rand(2, 4, 2) * 2 - 1
    adj = torch.rand(4, 4)
    a = sketch_render(pts.half(), adj.half(), 12)
    assert a.dtype == torch.float16
    torch.testing.assert_close(
        a.float(), sketch_render(pts.half().float(), adj.half().float(), 12), atol=2e-2, rtol=2e-2
    )


# --------------------------------------------------------------------------- native op
@native
def test_cpu_results_are_bit_reproducible_across_runs_and_threads():
    pts, adj, sig, cols = _grad_inputs(k=8, b=5, c=3, seed=9)
    threads = torch.get_num_threads()
    outs = []
    try:
        for n in (1, 2, 1, max(2, threads)):
            torch.set_num_threads(n)
            # large enough (B C H W > 2^16) for the kernels to use the thread pool
            out = sketch_render(pts, adj, (72, 70), sigma=sig, colors=cols, composite="soft_or")
            grads = torch.autograd.grad((out * out).sum(), (pts, adj, sig, cols))
            outs.append((out, *grads))
    finally:
        torch.set_num_threads(threads)
    for other in outs[1:]:
        for a, b in zip(outs[0], other):
            assert torch.equal(a, b)


@native
def test_weight_gradient_of_undrawn_lines_only_when_asked():
    pts = torch.rand(2, 6, 2, dtype=F64) * 2 - 1
    adj = torch.zeros(6, 6, dtype=F64)
    adj[0, 1] = adj[2, 3] = 1.0
    pts_px, w, s, cols, h, wd, mode = _prepare(pts, adj, 16, 1.0, None, "sum_clamp", True)
    g = torch.ones(2, 1, 16, 16, dtype=F64)
    op = torch.ops.torch_artic.sketch_render_backward
    none = (pts_px.new_empty(0), torch.empty(0, dtype=torch.int32))  # no kept state
    gp0, gw0, gs0, gc0 = op(g, pts_px, w, s, cols, *none, h, wd, mode, CUTOFF, False, False, False)
    gp1, gw1, gs1, gc1 = op(g, pts_px, w, s, cols, *none, h, wd, mode, CUTOFF, True, True, False)
    assert gw0.numel() == 0 and gs0.numel() == 0 and gc0.numel() == 0
    assert gw1.shape == (1, 15) and gs1.shape == (1, 15)  # shared: summed over the batch
    assert torch.equal(gp0, gp1)
    # the same from the state a forward kept
    _, *kept = torch.ops.torch_artic.sketch_render_forward(
        pts_px, w, s, cols, h, wd, mode, CUTOFF, True
    )
    gp2, gw2, gs2, _ = op(g, pts_px, w, s, cols, *kept, h, wd, mode, CUTOFF, True, True, False)
    assert torch.equal(gp2, gp1) and torch.equal(gw2, gw1) and torch.equal(gs2, gs1)
    # an undrawn line's weight gradient is the sum of its exp(-d^2/s^2): positive
    # unless its capsule misses the image; its sigma gets none (its intensity is 0)
    drawn = w[0] != 0
    assert (gw1 >= 0).all() and gw1[:, ~drawn].gt(0).sum() > 2
    assert gs1[:, ~drawn].eq(0).all()


@native
def test_torch_compile_fullgraph_matches_eager():
    pts, adj, sig, cols = _grad_inputs(k=5, b=2, c=3, seed=12)

    def f(p, a, s, c):
        return sketch_render(p, a, (10, 13), sigma=s, colors=c, composite="soft_or")

    compiled = torch.compile(f, fullgraph=True, backend="aot_eager")
    out = compiled(pts, adj, sig, cols)
    ref = f(pts, adj, sig, cols)
    _close(out, ref, atol=0.0, rtol=0.0)
    g1 = torch.autograd.grad(out.sum(), (pts, adj, sig, cols))
    g2 = torch.autograd.grad(ref.sum(), (pts, adj, sig, cols))
    for a, b in zip(g1, g2):
        _close(a, b, atol=0.0, rtol=0.0)


# --------------------------------------------------------------------------- CUDA
@cuda
@pytest.mark.parametrize("composite", COMPOSITES)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_cuda_matches_cpu(composite, dtype):
    pts, adj, sig, cols = (t.detach().to(dtype) for t in _grad_inputs(k=9, b=3, c=5, seed=13))
    outs = []
    for dev in ("cpu", "cuda"):
        ins = [t.to(dev).requires_grad_() for t in (pts, adj, sig, cols)]
        out = sketch_render(
            ins[0], ins[1], (37, 41), sigma=ins[2], colors=ins[3], composite=composite
        )
        grads = torch.autograd.grad(out, ins, torch.cos(out * 3))
        outs.append([out.detach().cpu(), *(g.cpu() for g in grads)])
    tol = dict(atol=1e-10, rtol=1e-8) if dtype == F64 else dict(atol=1e-4, rtol=1e-3)
    for a, b in zip(*outs):
        torch.testing.assert_close(a, b, **tol)


@cuda
@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_cuda_low_precision(dtype):
    pts, adj, _, cols = (t.detach() for t in _grad_inputs(k=6, b=2, c=2, seed=14))
    ref = sketch_render(pts.float(), adj.float(), 24, colors=cols.float())
    out = sketch_render(
        pts.cuda().to(dtype), adj.cuda().to(dtype), 24, colors=cols.cuda().to(dtype)
    )
    assert out.dtype == dtype
    torch.testing.assert_close(out.float().cpu(), ref, atol=3e-2, rtol=3e-2)


@cuda
def test_cuda_backward_is_deterministic():
    pts, adj, sig, cols = (t.detach().cuda() for t in _grad_inputs(k=12, b=4, c=3, seed=15))
    prev = torch.are_deterministic_algorithms_enabled()
    torch.use_deterministic_algorithms(True)
    try:
        res = []
        for _ in range(2):
            ins = [t.clone().requires_grad_() for t in (pts, adj, sig, cols)]
            out = sketch_render(ins[0], ins[1], 64, sigma=ins[2], colors=ins[3])
            res.append(torch.autograd.grad((out * out).sum(), ins))
    finally:
        torch.use_deterministic_algorithms(prev)
    for a, b in zip(*res):
        assert torch.equal(a, b)


# --------------------------------------------------------------------------- bad input
def _ok():
    return torch.rand(2, 3, 2, dtype=F64), torch.ones(3, 3, dtype=F64)


@pytest.mark.parametrize(
    "kwargs, exc, match",
    [
        (dict(points=[[0.0, 0.0]]), TypeError, "points"),
        (dict(points=torch.zeros(2, 3, 2, dtype=torch.int64)), TypeError, "points"),
        (dict(points=torch.zeros(2, 3)), ValueError, r"points.*\[B, K, 2\].*\[2, 3\]"),
        (dict(points=torch.zeros(2, 3, 3, dtype=F64)), ValueError, "points"),
        (
            dict(points=torch.zeros(2, 1, 2, dtype=F64), adjacency=torch.ones(1, 1, dtype=F64)),
            ValueError,
            "K >= 2",
        ),
        (dict(adjacency=[[0, 1]]), TypeError, "adjacency"),
        (dict(adjacency=torch.ones(3, 4, dtype=F64)), ValueError, r"adjacency.*\[K, K\].*\[3, 4\]"),
        (dict(adjacency=torch.ones(5, 3, 3, dtype=F64)), ValueError, r"adjacency.*\[5, 3, 3\]"),
        (dict(adjacency=torch.ones(3, 3, dtype=torch.float32)), TypeError, "adjacency"),
        (dict(adjacency=torch.ones(3, 3, dtype=F64, device="meta")), ValueError, "adjacency"),
        (
            dict(adjacency=torch.ones(3, 3, dtype=torch.bool, device="meta")),
            ValueError,
            "adjacency",
        ),
        (dict(size=1), ValueError, "size"),
        (dict(size=(4,)), TypeError, "size"),
        (dict(size=4.0), TypeError, "size"),
        (dict(sigma=0.0), ValueError, "sigma"),
        (dict(sigma=-1.0), ValueError, "sigma"),
        (dict(sigma=float("inf")), ValueError, "sigma"),
        (dict(sigma="1"), TypeError, "sigma"),
        (dict(sigma=torch.ones(3, dtype=F64)), ValueError, r"sigma.*\[K, K\]"),
        (dict(sigma=torch.ones(3, 3, dtype=torch.float32)), TypeError, "sigma"),
        (dict(sigma=-torch.ones(3, 3, dtype=F64)), ValueError, "sigma.*> 0"),
        (dict(sigma=torch.zeros(2, 3, 3, dtype=F64)), ValueError, "sigma.*> 0"),
        (dict(colors=torch.ones(3, 3, dtype=F64)), ValueError, r"colors.*\[C\] or \[B, K, C\]"),
        (dict(colors=torch.ones(2, 3, 0, dtype=F64)), ValueError, "colors"),
        (dict(colors=torch.ones(0, dtype=F64)), ValueError, "colors"),
        (dict(colors=torch.ones(3, dtype=torch.float32)), TypeError, "colors"),
        (dict(colors=[1.0]), TypeError, "colors"),
        (dict(composite="sum"), ValueError, "composite"),
        (dict(composite=None), ValueError, "composite"),
        (dict(normalized=1), TypeError, "normalized"),
    ],
)
def test_bad_input(kwargs, exc, match):
    pts, adj = _ok()
    args = dict(points=pts, adjacency=adj, size=(5, 6))
    args.update({k: v for k, v in kwargs.items() if k in args})
    extra = {k: v for k, v in kwargs.items() if k not in args}
    with pytest.raises(exc, match=match):
        sketch_render(args["points"], args["adjacency"], args["size"], **extra)


def test_sigma_entries_below_the_diagonal_are_not_checked():
    pts, adj = _ok()
    sig = torch.ones(3, 3, dtype=F64)
    sig[2, 0] = -1.0  # not read
    sketch_render(pts, adj, 5, sigma=sig)
