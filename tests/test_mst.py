"""Tests of torch_artic.mst.dmst: exact trees, soft marginals, straight-through and
perturbed gradients, input policy."""

from __future__ import annotations

import functools
import itertools
import math
import os

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.sparse import block_diag
from scipy.sparse.csgraph import connected_components, minimum_spanning_tree

from torch_artic.mst import _soft, dmst

MODES = ("hard", "ste", "soft", "perturbed")


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    """These tests run many small ops; on a busy shared CPU, OpenMP threads make them
    tens of times slower without testing anything more. Restored afterwards."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


# ------------------------------------------------------------------------------------
# references
# ------------------------------------------------------------------------------------


def sym_rand(*shape, k, gen, dtype=torch.float64, low=0.1):
    w = torch.rand(*shape, k, k, generator=gen, dtype=dtype) + low
    return torch.minimum(w, w.transpose(-1, -2))


def sym_int(*shape, k, gen, low=1, high=4):
    w = torch.randint(low, high, (*shape, k, k), generator=gen).double()
    return torch.minimum(w, w.transpose(-1, -2))


def tree_weight(adj, w):
    """Total weight of the (possibly fractional) tree ``adj`` under the symmetrised
    weights ``w`` (0 * inf counts as 0)."""
    s = torch.minimum(w, w.transpose(-1, -2)).to(torch.float64)
    a = adj.to(torch.float64)
    return torch.where(a != 0, a * s, 0.0).sum((-1, -2)) / 2


def scipy_weights(w: torch.Tensor) -> torch.Tensor:
    """``[B]`` MST weights of ``w [B, K, K]`` from one scipy call on the block-diagonal
    union of the graphs (its minimum spanning forest is the union of their MSTs)."""
    b, k = w.shape[0], w.shape[-1]
    w = w.clone()
    w.diagonal(dim1=1, dim2=2).zero_()  # no self loops (scipy: zero = no edge)
    forest = minimum_spanning_tree(block_diag(list(w.numpy()), format="csr")).tocoo()
    sums = np.bincount(forest.row // k, weights=forest.data, minlength=b)
    return torch.from_numpy(sums.astype(np.float64))


def find(root: list[int], x: int) -> int:
    while root[x] != x:
        x = root[x]
    return x


def kruskal_lex(w: torch.Tensor) -> torch.Tensor:
    """Kruskal scanning the edges sorted by (weight, i, j), i < j: the documented tree."""
    k = w.shape[0]
    edges = sorted((float(w[i, j]), i, j) for i in range(k) for j in range(i + 1, k))
    root = list(range(k))
    adj = torch.zeros(k, k, dtype=w.dtype)
    for _, i, j in edges:
        a, b = find(root, i), find(root, j)
        if a != b:
            root[a] = b
            adj[i, j] = adj[j, i] = 1
    return adj


@functools.cache
def spanning_trees(k: int) -> torch.Tensor:
    """``[T, E]`` 0/1 indicators (edges in triu order) of all spanning trees of K_k."""
    edges = [(i, j) for i in range(k) for j in range(i + 1, k)]
    trees = []
    for combo in itertools.combinations(range(len(edges)), k - 1):
        root = list(range(k))
        ok = True
        for e in combo:
            a, b = find(root, edges[e][0]), find(root, edges[e][1])
            if a == b:
                ok = False
                break
            root[a] = b
        if ok:
            ind = torch.zeros(len(edges), dtype=torch.float64)
            ind[list(combo)] = 1
            trees.append(ind)
    return torch.stack(trees)


def brute_marginals(w: torch.Tensor, tau: float) -> torch.Tensor:
    """Exact Gibbs edge marginals by enumerating all spanning trees (log-space)."""
    k = w.shape[0]
    iu, ju = torch.triu_indices(k, k, 1)
    trees = spanning_trees(k)
    logits = -(trees @ w[iu, ju].double()) / tau
    p = torch.softmax(logits, 0)
    mu = p @ trees
    out = torch.zeros(k, k, dtype=torch.float64)
    out[iu, ju] = mu
    return out + out.T


def rel_scale(w: torch.Tensor) -> float:
    """The documented temperature scale: mean gap above the minimum (i < j)."""
    k = w.shape[0]
    iu, ju = torch.triu_indices(k, k, 1)
    e = w[iu, ju].double()
    m = float(e.mean() - e.min())
    return m if m > 0 else 1.0


def assert_tree(adj: torch.Tensor, k: int):
    """``adj [B, K, K]`` are spanning-tree adjacencies."""
    assert torch.equal(adj, adj.transpose(-1, -2))
    assert torch.all((adj == 0) | (adj == 1))
    assert torch.all(adj.diagonal(dim1=-2, dim2=-1) == 0)
    assert torch.all(adj.sum((-1, -2)) == 2 * (k - 1))
    for a in adj.reshape(-1, k, k):
        assert connected_components(a.numpy(), directed=False)[0] == 1


# ------------------------------------------------------------------------------------
# hard
# ------------------------------------------------------------------------------------


def test_hard_matches_scipy_thousands_of_graphs():
    gen = torch.Generator().manual_seed(0)
    total = 0
    for k in range(1, 65):
        b = 48 if k <= 32 else 15
        batches = [
            sym_rand(b, k=k, gen=gen),  # float, distinct
            sym_int(b, k=k, gen=gen, low=1, high=4),  # small integers: many ties
            torch.randint(1, 6, (b, k, k), generator=gen).double(),  # asymmetric (min rule)
            sym_rand(b, k=k, gen=gen, dtype=torch.float32).double(),
        ]
        for w in batches:
            adj = dmst(w.reshape(3, b // 3, k, k), relaxation="hard").reshape(b, k, k)
            assert adj.dtype == w.dtype
            ours = tree_weight(adj, w)
            ref = scipy_weights(w)
            if k <= 3:  # cross-check the block trick against one scipy call per graph
                single = [float(minimum_spanning_tree(x.numpy()).sum()) for x in w]
                torch.testing.assert_close(ref, torch.tensor(single, dtype=torch.float64))
            torch.testing.assert_close(ours, ref, rtol=0, atol=1e-12)
            if k <= 12:
                assert_tree(adj, k)
            total += b
    assert total > 8000


def test_hard_float32_batch_matches_scipy():
    gen = torch.Generator().manual_seed(1)
    w = sym_rand(512, k=32, gen=gen, dtype=torch.float32)
    adj = dmst(w, relaxation="hard")
    assert adj.dtype == torch.float32
    ours = tree_weight(adj, w)
    ref = scipy_weights(w.double())
    torch.testing.assert_close(ours, ref, rtol=0, atol=1e-9)
    assert_tree(adj[:16], 32)


def test_hard_tie_break_is_lexicographic_kruskal():
    gen = torch.Generator().manual_seed(2)
    for k in range(2, 10):
        w = sym_int(60, k=k, gen=gen, low=-1, high=2)
        w[:20][w[:20] == 1] = float("inf")
        w[20:40][w[20:40] == -1] = float("-inf")
        adj = dmst(w, relaxation="hard")
        ref = torch.stack([kruskal_lex(x) for x in w])
        assert torch.equal(adj, ref)


def test_hard_all_ties_is_star_at_node_0():
    for k in (2, 5, 17):
        adj = dmst(torch.full((k, k), 3.0), relaxation="hard")
        star = torch.zeros(k, k)
        star[0, 1:] = star[1:, 0] = 1
        assert torch.equal(adj, star)


def test_hard_deterministic_and_dtype_consistent():
    gen = torch.Generator().manual_seed(3)
    w = sym_int(50, k=9, gen=gen, low=-3, high=4)
    ref = dmst(w, relaxation="hard")
    assert torch.equal(dmst(w, relaxation="hard"), ref)
    for dt in (torch.float32, torch.float16, torch.bfloat16):
        out = dmst(w.to(dt), relaxation="hard")
        assert out.dtype == dt
        assert torch.equal(out.double(), ref)


def test_hard_has_no_gradient():
    w = torch.rand(4, 4, requires_grad=True)
    out = dmst(w, relaxation="hard")
    assert not out.requires_grad


@settings(max_examples=25, deadline=None)
@given(k=st.integers(2, 12), seed=st.integers(0, 2**31 - 1), ties=st.booleans())
def test_relabelling_equivariance(k, seed, ties):
    gen = torch.Generator().manual_seed(seed)
    w = sym_int(3, k=k, gen=gen, low=0, high=3) if ties else sym_rand(3, k=k, gen=gen)
    perm = torch.randperm(k, generator=gen)
    wp = w[:, perm][:, :, perm]
    hard, hard_p = dmst(w, relaxation="hard"), dmst(wp, relaxation="hard")
    # the MST weight never depends on the labels
    torch.testing.assert_close(tree_weight(hard_p, wp), tree_weight(hard, w))
    soft, soft_p = dmst(w, relaxation="soft"), dmst(wp, relaxation="soft")
    torch.testing.assert_close(soft_p, soft[:, perm][:, :, perm], rtol=0, atol=1e-10)
    if not ties:  # distinct weights: a unique MST, which permutes with the labels
        assert torch.equal(hard_p, hard[:, perm][:, :, perm])


@settings(max_examples=25, deadline=None)
@given(k=st.integers(2, 16), seed=st.integers(0, 2**31 - 1), f=st.integers(0, 4))
def test_hard_invariant_to_increasing_transforms(k, seed, f):
    gen = torch.Generator().manual_seed(seed)
    w = sym_int(4, k=k, gen=gen, low=-4, high=5)  # integers: ties on purpose
    transform = [
        torch.exp,
        lambda x: x**3,
        lambda x: 2.5 * x - 7.0,
        torch.atan,
        lambda x: torch.sign(x) * x.abs().sqrt(),
    ][f]
    assert torch.equal(dmst(transform(w), relaxation="hard"), dmst(w, relaxation="hard"))


def test_scipy_zero_entries_caveat_is_only_about_scipy():
    # every off-diagonal entry is an edge here, including zeros and negatives
    w = torch.tensor([[0.0, 0.0, -1.0], [0.0, 0.0, 5.0], [-1.0, 5.0, 0.0]])
    adj = dmst(w, relaxation="hard")
    assert float(tree_weight(adj, w)) == -1.0


# ------------------------------------------------------------------------------------
# input policy
# ------------------------------------------------------------------------------------


@pytest.mark.parametrize("mode", MODES)
def test_asymmetric_input_reads_min_of_both_directions(mode):
    gen = torch.Generator().manual_seed(4)
    w = torch.rand(3, 6, 6, generator=gen, dtype=torch.float64)
    sym = torch.minimum(w, w.transpose(1, 2))
    kw = {}
    if mode == "perturbed":
        out = dmst(w, relaxation=mode, generator=torch.Generator().manual_seed(7))
        ref = dmst(sym, relaxation=mode, generator=torch.Generator().manual_seed(7))
    else:
        out, ref = dmst(w, relaxation=mode, **kw), dmst(sym, relaxation=mode, **kw)
    assert torch.equal(out, ref)
    assert torch.equal(out, out.transpose(1, 2))


def test_soft_gradient_of_asymmetric_input_goes_to_the_cheaper_direction():
    gen = torch.Generator().manual_seed(5)
    w = torch.rand(5, 5, generator=gen, dtype=torch.float64, requires_grad=True)
    (dmst(w, relaxation="soft", temperature=0.5) * torch.arange(25.0).view(5, 5)).sum().backward()
    larger = w.detach() > w.detach().T
    assert torch.all(w.grad[larger] == 0)
    assert w.grad[~larger & ~torch.eye(5, dtype=torch.bool)].abs().sum() > 0


def test_symmetric_input_gets_symmetric_gradient():
    gen = torch.Generator().manual_seed(6)
    w = sym_rand(2, k=6, gen=gen).requires_grad_()
    g = torch.rand(2, 6, 6, generator=gen, dtype=torch.float64)
    for mode in ("soft", "ste"):
        w.grad = None
        (dmst(w, relaxation=mode) * g).sum().backward()
        torch.testing.assert_close(w.grad, w.grad.transpose(1, 2))
        assert torch.all(w.grad.diagonal(dim1=1, dim2=2) == 0)


@pytest.mark.parametrize("mode", MODES)
def test_diagonal_is_ignored(mode):
    gen = torch.Generator().manual_seed(8)
    w = sym_rand(2, k=5, gen=gen)
    odd = w.clone()
    odd[0].diagonal().copy_(torch.tensor([float("nan"), float("inf"), -1e30, 0.0, 7.0]))
    odd[1].diagonal().fill_(float("-inf"))
    out = dmst(odd, relaxation=mode, generator=torch.Generator().manual_seed(0))
    ref = dmst(w, relaxation=mode, generator=torch.Generator().manual_seed(0))
    assert torch.isfinite(out).all()
    assert torch.equal(out, ref)


@pytest.mark.parametrize("mode", MODES)
def test_nan_weight_gives_nan_graph_only(mode):
    gen = torch.Generator().manual_seed(9)
    w = sym_rand(3, k=6, gen=gen)
    bad = w.clone()
    bad[1, 2, 4] = float("nan")
    out = dmst(bad, relaxation=mode, generator=torch.Generator().manual_seed(0))
    ref = dmst(w, relaxation=mode, generator=torch.Generator().manual_seed(0))
    assert torch.isnan(out[1]).all()
    assert torch.equal(out[[0, 2]], ref[[0, 2]])


def test_infinite_weights_in_hard_mode():
    w = torch.tensor(
        [
            [0.0, 1.0, float("inf"), float("inf")],
            [1.0, 0.0, float("inf"), float("inf")],
            [float("inf"), float("inf"), 0.0, 2.0],
            [float("inf"), float("inf"), 2.0, 0.0],
        ]
    )
    adj = dmst(w, relaxation="hard")
    assert torch.equal(adj, kruskal_lex(w))
    assert tree_weight(adj, w) == float("inf")


@pytest.mark.parametrize("mode", MODES)
def test_k1_k2_and_empty_batch(mode):
    for dt in (torch.float32, torch.float64):
        one = dmst(torch.rand(3, 1, 1, dtype=dt), relaxation=mode)
        assert one.shape == (3, 1, 1) and one.dtype == dt and torch.all(one == 0)
        two = dmst(torch.rand(2, 2, dtype=dt), relaxation=mode)
        assert torch.equal(two, torch.tensor([[0.0, 1.0], [1.0, 0.0]], dtype=dt))
    empty = dmst(torch.rand(0, 4, 4), relaxation=mode)
    assert empty.shape == (0, 4, 4)


@pytest.mark.parametrize("mode", ("hard", "soft"))
def test_leading_dims_match_per_graph_calls(mode):
    gen = torch.Generator().manual_seed(10)
    w = sym_rand(2, 3, k=7, gen=gen)
    out = dmst(w, relaxation=mode)
    assert out.shape == (2, 3, 7, 7)
    for i in range(2):
        for j in range(3):
            torch.testing.assert_close(
                out[i, j], dmst(w[i, j], relaxation=mode), rtol=0, atol=1e-12
            )


# ------------------------------------------------------------------------------------
# soft
# ------------------------------------------------------------------------------------


@pytest.mark.parametrize("k", [2, 3, 4, 5, 6])
def test_soft_equals_enumeration_over_all_spanning_trees(k):
    gen = torch.Generator().manual_seed(11 + k)
    cases = [sym_rand(k=k, gen=gen), sym_int(k=k, gen=gen, low=0, high=3)]
    if k >= 4:  # two tight clusters (ties inside) joined by expensive edges
        w = torch.full((k, k), 50.0, dtype=torch.float64)
        h = k // 2
        w[:h, :h] = 1.0
        w[h:, h:] = 1.0
        w[0, h] = w[h, 0] = 40.0
        w[1, h] = w[h, 1] = 40.0
        cases.append(w)
    for w in cases:
        for t in (10.0, 1.0, 0.1, 0.01, 1e-3):
            mu = dmst(w, relaxation="soft", temperature=t)
            ref = brute_marginals(w, t * rel_scale(w))
            torch.testing.assert_close(mu, ref, rtol=0, atol=1e-9)


@pytest.mark.parametrize("t", [100.0, 1.0, 1e-2, 1e-6, 1e-12, 1e-300])
def test_soft_marginals_are_valid_at_every_temperature(t):
    gen = torch.Generator().manual_seed(12)
    for k in (3, 10, 33, 64):
        for w in (
            sym_rand(3, k=k, gen=gen),
            sym_int(3, k=k, gen=gen, low=0, high=3),
            sym_rand(2, k=k, gen=gen) * torch.logspace(-8, 8, k, dtype=torch.float64),
        ):
            mu = dmst(w, relaxation="soft", temperature=t)
            assert torch.isfinite(mu).all()
            assert torch.equal(mu, mu.transpose(1, 2))
            assert torch.all(mu.diagonal(dim1=1, dim2=2) == 0)
            assert mu.min() >= -1e-12 and mu.max() <= 1 + 1e-12
            torch.testing.assert_close(
                mu.sum((1, 2)) / 2,
                torch.full((len(w),), k - 1.0, dtype=w.dtype),
                rtol=0,
                atol=1e-9,
            )


def test_soft_tends_to_hard_as_temperature_goes_to_zero():
    gen = torch.Generator().manual_seed(13)
    w = sym_rand(8, k=12, gen=gen)  # distinct weights: unique MST
    hard = dmst(w, relaxation="hard")
    errs = [
        float((dmst(w, relaxation="soft", temperature=t) - hard).abs().max())
        for t in (1.0, 0.1, 0.01, 1e-3, 1e-4)
    ]
    assert all(b <= a for a, b in zip(errs, errs[1:]))
    assert errs[0] > 0.1 and errs[-1] < 1e-6
    # with ties the limit is the average of the tied MSTs: all mass on minimum trees
    wi = sym_int(8, k=12, gen=gen, low=0, high=3)
    mu = dmst(wi, relaxation="soft", temperature=1e-6)
    torch.testing.assert_close(tree_weight(mu, wi), tree_weight(dmst(wi, relaxation="hard"), wi))


@settings(max_examples=25, deadline=None)
@given(
    k=st.integers(2, 10),
    seed=st.integers(0, 2**31 - 1),
    a=st.floats(1e-3, 1e3),
    b=st.floats(-100.0, 100.0),
)
def test_soft_is_invariant_to_affine_rescaling(k, seed, a, b):
    gen = torch.Generator().manual_seed(seed)
    w = sym_rand(2, k=k, gen=gen)
    torch.testing.assert_close(
        dmst(a * w + b, relaxation="soft"), dmst(w, relaxation="soft"), rtol=0, atol=1e-6
    )


def test_soft_float32_input():
    gen = torch.Generator().manual_seed(14)
    w = sym_rand(4, k=9, gen=gen)
    out = dmst(w.float(), relaxation="soft")
    assert out.dtype == torch.float32
    torch.testing.assert_close(out.double(), dmst(w, relaxation="soft"), rtol=0, atol=1e-6)


@pytest.mark.parametrize(("k", "tau"), [(2, 0.3), (3, 0.02), (4, 3.0), (5, 0.3), (6, 0.02)])
def test_soft_gradcheck(k, tau):
    gen = torch.Generator().manual_seed(15 + k)
    w = torch.rand(2, k, k, generator=gen, dtype=torch.float64).requires_grad_()
    taus = torch.tensor([tau, 2 * tau], dtype=torch.float64)
    assert torch.autograd.gradcheck(lambda x: _soft(torch.minimum(x, x.mT), taus), (w,))


def test_soft_gradient_treats_the_scale_as_a_constant():
    gen = torch.Generator().manual_seed(16)
    w = sym_rand(3, k=6, gen=gen).requires_grad_()
    g = torch.rand(3, 6, 6, generator=gen, dtype=torch.float64)
    t = 0.2
    (dmst(w, relaxation="soft", temperature=t) * g).sum().backward()
    taus = torch.tensor([t * rel_scale(x) for x in w.detach()], dtype=torch.float64)
    w2 = w.detach().clone().requires_grad_()
    (_soft(torch.minimum(w2, w2.mT), taus) * g).sum().backward()
    torch.testing.assert_close(w.grad, w2.grad, rtol=1e-12, atol=1e-12)


def test_soft_gradient_is_minus_covariance_over_tau():
    # d mu_e / d w_f = -Cov(1_e, 1_f) / tau under the Gibbs distribution
    gen = torch.Generator().manual_seed(17)
    k = 5
    w = sym_rand(k=k, gen=gen)
    tau = 0.3
    iu, ju = torch.triu_indices(k, k, 1)
    trees = spanning_trees(k)
    p = torch.softmax(-(trees @ w[iu, ju]) / tau, 0)
    mu = p @ trees
    cov = (trees * p[:, None]).T @ trees - torch.outer(mu, mu)
    x = w[iu, ju].clone().requires_grad_()
    full = torch.zeros(k, k, dtype=torch.float64).index_put((iu, ju), x)
    full = full + full.T
    jac = torch.autograd.functional.jacobian(
        lambda e: _soft(
            (
                torch.zeros(k, k, dtype=torch.float64).index_put((iu, ju), e)
                + torch.zeros(k, k, dtype=torch.float64).index_put((ju, iu), e)
            )[None],
            torch.tensor([tau], dtype=torch.float64),
        )[0][iu, ju],
        x.detach(),
    )
    torch.testing.assert_close(jac, -cov / tau, rtol=0, atol=1e-10)


# ------------------------------------------------------------------------------------
# ste
# ------------------------------------------------------------------------------------


def test_ste_forward_is_hard_and_backward_is_soft():
    gen = torch.Generator().manual_seed(18)
    w = sym_rand(3, k=8, gen=gen).requires_grad_()
    g = torch.rand(3, 8, 8, generator=gen, dtype=torch.float64)
    out = dmst(w, temperature=0.2)  # default mode
    assert out.requires_grad
    assert torch.equal(out.detach(), dmst(w, relaxation="hard"))
    (out * g).sum().backward()
    ste_grad = w.grad.clone()
    w.grad = None
    (dmst(w, relaxation="soft", temperature=0.2) * g).sum().backward()
    torch.testing.assert_close(ste_grad, w.grad, rtol=0, atol=0)
    assert ste_grad.abs().sum() > 0


def test_ste_without_grad_is_hard():
    gen = torch.Generator().manual_seed(19)
    w = sym_rand(2, k=6, gen=gen)
    assert torch.equal(dmst(w), dmst(w, relaxation="hard"))
    with torch.no_grad():
        out = dmst(w.clone().requires_grad_())
    assert not out.requires_grad and torch.equal(out, dmst(w, relaxation="hard"))


def test_ste_keeps_infinite_weights_in_forward():
    w = torch.tensor(
        [[0.0, 1.0, float("inf")], [1.0, 0.0, 2.0], [float("inf"), 2.0, 0.0]],
        requires_grad=True,
    )
    out = dmst(w)
    assert torch.equal(out.detach(), dmst(w, relaxation="hard"))


# ------------------------------------------------------------------------------------
# perturbed
# ------------------------------------------------------------------------------------


def test_perturbed_is_reproducible_with_a_generator():
    gen = torch.Generator().manual_seed(20)
    w = sym_rand(2, k=7, gen=gen).requires_grad_()
    g = torch.rand(2, 7, 7, generator=gen, dtype=torch.float64)
    outs, grads = [], []
    for seed in (5, 5, 6):
        w.grad = None
        out = dmst(
            w, relaxation="perturbed", num_samples=16, generator=torch.Generator().manual_seed(seed)
        )
        (out * g).sum().backward()
        outs.append(out.detach())
        grads.append(w.grad.clone())
    assert torch.equal(outs[0], outs[1]) and torch.equal(grads[0], grads[1])
    assert not torch.equal(grads[0], grads[2])
    out = outs[0]
    assert torch.equal(out, out.transpose(1, 2))
    assert torch.all(out.diagonal(dim1=1, dim2=2) == 0)
    torch.testing.assert_close(out.sum((1, 2)) / 2, torch.full((2,), 6.0, dtype=out.dtype))
    assert torch.equal(out * 16, (out * 16).round())  # frequencies over 16 trees


def test_perturbed_forward_and_backward_follow_berthet_formulas():
    gen = torch.Generator().manual_seed(21)
    k, n, s = 6, 2, 8
    w = sym_rand(n, k=k, gen=gen).requires_grad_()
    g = torch.rand(n, k, k, generator=gen, dtype=torch.float64)
    ns = 0.3
    out = dmst(
        w,
        relaxation="perturbed",
        num_samples=s,
        noise_scale=ns,
        generator=torch.Generator().manual_seed(3),
    )
    (out * g).sum().backward()
    # the same noise, by hand: Z [S, N, E] from the same generator state
    iu, ju = torch.triu_indices(k, k, 1)
    z = torch.randn(s, n, len(iu), generator=torch.Generator().manual_seed(3), dtype=torch.float64)
    e = w.detach()[:, iu, ju]
    sigma = torch.tensor([ns * rel_scale(x) for x in w.detach()], dtype=torch.float64)
    ys, grad_e = [], torch.zeros(n, len(iu), dtype=torch.float64)
    for i in range(s):
        pert = torch.zeros(n, k, k, dtype=torch.float64)
        pert[:, iu, ju] = e + sigma[:, None] * z[i]
        y = dmst(pert + pert.mT, relaxation="hard")
        ys.append(y)
        dot = (y * g).sum((1, 2))
        grad_e += dot[:, None] * z[i] / (s * sigma[:, None])
    torch.testing.assert_close(out.detach(), torch.stack(ys).mean(0))
    ref = torch.zeros(n, k, k, dtype=torch.float64)
    ref[:, iu, ju] = grad_e / 2  # w_ij and w_ji share the edge's gradient equally
    ref = ref + ref.mT
    torch.testing.assert_close(w.grad, ref, rtol=1e-10, atol=1e-12)


def _k3_expectation(e: np.ndarray, sigma: float) -> np.ndarray:
    """E[MST(e + sigma Z)] for the triangle: the tree drops the heaviest edge."""
    z = np.linspace(-9, 9, 4001)
    phi = np.exp(-0.5 * z**2) / math.sqrt(2 * math.pi)
    from scipy.special import ndtr

    p_max = []
    for i in range(3):
        integrand = phi.copy()
        for j in range(3):
            if j != i:
                integrand = integrand * ndtr((e[i] - e[j]) / sigma + z)
        p_max.append(np.trapezoid(integrand, z))
    return 1.0 - np.array(p_max)


def test_perturbed_gradient_estimator_is_unbiased():
    e = np.array([0.0, 0.3, 0.5])  # edges (0,1), (0,2), (1,2)
    sigma = 1.0 * (e.mean() - e.min())  # noise_scale = 1
    w = torch.zeros(3, 3, dtype=torch.float64)
    iu, ju = torch.triu_indices(3, 3, 1)
    w[iu, ju] = torch.tensor(e)
    w = (w + w.T).requires_grad_()
    gvec = torch.tensor([1.0, -2.0, 0.5], dtype=torch.float64)
    out = dmst(
        w,
        relaxation="perturbed",
        num_samples=200_000,
        noise_scale=1.0,
        generator=torch.Generator().manual_seed(0),
    )
    out[iu, ju].mul(gvec).sum().backward()
    grad_e = w.grad[iu, ju] * 2
    mean = _k3_expectation(e, sigma)
    torch.testing.assert_close(out.detach()[iu, ju], torch.tensor(mean), rtol=0, atol=5e-3)
    h = 1e-4
    jac = np.stack(
        [
            (
                _k3_expectation(e + h * np.eye(3)[f], sigma)
                - _k3_expectation(e - h * np.eye(3)[f], sigma)
            )
            / (2 * h)
            for f in range(3)
        ],
        axis=1,
    )  # jac[e, f] = d E[y_e] / d w_f
    ref = torch.tensor(gvec.numpy() @ jac)
    torch.testing.assert_close(grad_e, ref, rtol=0, atol=0.05)


# ------------------------------------------------------------------------------------
# bad input
# ------------------------------------------------------------------------------------


def test_bad_costs():
    with pytest.raises(TypeError, match="costs"):
        dmst([[0.0, 1.0], [1.0, 0.0]])
    with pytest.raises(TypeError, match="`costs` must have a floating dtype"):
        dmst(torch.ones(3, 3, dtype=torch.int64))
    with pytest.raises(TypeError, match="costs"):
        dmst(torch.ones(3, 3, dtype=torch.bool))
    for shape in [(5,), (), (3, 4), (2, 3, 4), (0, 0), (2, 0, 0)]:
        got = "[" + ", ".join(map(str, shape)) + "]"
        with pytest.raises(ValueError, match=r"`costs` must have shape \[\.\.\., K, K\]") as e:
            dmst(torch.ones(shape))
        assert f"got {got}" in str(e.value)


def test_bad_relaxation():
    for mode in ("exact", "", None, 1, "HARD"):
        with pytest.raises(ValueError, match="`relaxation` must be one of"):
            dmst(torch.ones(3, 3), relaxation=mode)


def test_bad_temperature_and_noise_scale():
    for name in ("temperature", "noise_scale"):
        for bad in (0.0, -1.0, float("nan"), float("inf")):
            with pytest.raises(ValueError, match=name):
                dmst(torch.ones(3, 3), **{name: bad})
        for bad in ("0.1", True, None, torch.tensor(0.1)):
            with pytest.raises(TypeError, match=name):
                dmst(torch.ones(3, 3), **{name: bad})


def test_bad_num_samples_and_generator():
    for bad in (0, -3):
        with pytest.raises(ValueError, match="num_samples"):
            dmst(torch.ones(3, 3), relaxation="perturbed", num_samples=bad)
    for bad in (2.0, True, "4", None):
        with pytest.raises(TypeError, match="num_samples"):
            dmst(torch.ones(3, 3), relaxation="perturbed", num_samples=bad)
    with pytest.raises(TypeError, match="generator"):
        dmst(torch.ones(3, 3), relaxation="perturbed", generator=0)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_matches_cpu_and_rejects_cpu_generator():
    gen = torch.Generator().manual_seed(22)
    w = sym_rand(64, k=16, gen=gen)
    for mode in ("hard", "soft"):
        torch.testing.assert_close(dmst(w.cuda(), relaxation=mode).cpu(), dmst(w, relaxation=mode))
    with pytest.raises(ValueError, match="generator"):
        dmst(w.cuda(), relaxation="perturbed", generator=torch.Generator())


@pytest.mark.skipif(
    "cpu" not in __import__("torch_artic")._native.REGISTRY["mst_prim"].kernels,
    reason="native mst_prim kernel not built",
)
@pytest.mark.parametrize("integer", [False, True])
def test_native_prim_equals_torch_prim(integer):
    """The native CPU Prim returns exactly the pure-torch Prim's trees, ties included."""
    from torch_artic.mst import _prim_torch

    g = torch.Generator().manual_seed(11)
    for k in (1, 2, 3, 7, 16, 33):
        for dtype in (torch.float32, torch.float64):
            if integer:
                w = torch.randint(0, 3, (300, k, k), generator=g).to(dtype)
            else:
                w = torch.rand(300, k, k, generator=g, dtype=dtype)
            if k > 1:
                w[:5, 0, -1] = w[:5, -1, 0] = float("inf")
                w[5:9, 0, -1] = w[5:9, -1, 0] = -float("inf")
                w[9:12, 0, 1] = -0.0  # -0 and +0 are equal costs
                w[9:12, 1, 0] = w[9:12, 0, -1] = w[9:12, -1, 0] = 0.0
                w[12, 1, 0] = float("nan")  # that graph's adjacency is all NaN
            for costs in (w, torch.minimum(w, w.mT)):  # asymmetric and symmetric
                p, o, a = torch.ops.torch_artic.mst_prim(costs.contiguous())
                p2, o2, a2 = _prim_torch(costs)
                keep = torch.ones(300, dtype=torch.bool)
                keep[12] = False  # (a NaN graph's tree is arbitrary)
                assert torch.equal(p[keep], p2[keep]) and torch.equal(o[keep], o2[keep])
                assert torch.equal(a.isnan(), a2.isnan())
                assert torch.equal(a[keep], a2[keep])
    torch.library.opcheck(torch.ops.torch_artic.mst_prim.default, (torch.rand(4, 5, 5),))


def _vma_flags(address: int) -> list[str] | None:
    """The ``VmFlags`` of the mapping of this process that contains ``address``."""
    inside = False
    with open("/proc/self/smaps") as f:
        for line in f:
            head = line.split()[0]
            if "-" in head and not head.endswith(":"):
                lo, hi = (int(x, 16) for x in head.split("-"))
                inside = lo <= address < hi
            elif inside and head == "VmFlags:":
                return line.split()[1:]
    return None


@pytest.mark.skipif(
    "cpu" not in __import__("torch_artic")._native.REGISTRY["mst_prim"].kernels,
    reason="native mst_prim kernel not built",
)
@pytest.mark.skipif(
    not os.path.exists("/sys/kernel/mm/transparent_hugepage/enabled"),
    reason="Linux transparent huge pages not available",
)
def test_large_native_output_is_advised_huge_pages_and_unchanged():
    """A >= 32 MiB CPU output (always a fresh mmap under glibc) is advised huge pages
    (``csrc/common/memory.h``: the first-touch page faults otherwise cost as much as the
    hard MST itself), and its values are the reference's."""
    from torch_artic.mst import _prim_torch

    w = torch.rand(4096, 32, 32, generator=torch.Generator().manual_seed(3), dtype=torch.float64)
    p, o, a = torch.ops.torch_artic.mst_prim(w)
    assert a.numel() * a.element_size() >= 32 << 20
    middle = a.data_ptr() + a.numel() * a.element_size() // 2
    flags = _vma_flags(middle)
    assert flags is not None and "hg" in flags, flags  # VM_HUGEPAGE: madvise(MADV_HUGEPAGE)
    p2, o2, a2 = _prim_torch(w)
    assert torch.equal(p, p2) and torch.equal(o, o2) and torch.equal(a, a2)
