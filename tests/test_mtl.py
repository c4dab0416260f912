"""Tests of torch_artic.mtl: BalancedMTL's loss and gradient balancing strategies."""

from __future__ import annotations

import datetime
import itertools
import math
import os
import sys
import time
import traceback
import warnings

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

from torch_artic.mtl import BalancedMTL, min_norm_weights, pcgrad_project

STRATEGIES = ["exp", "log", "uncertainty", "fixed", "dwa"]


def _losses(values, dtype=torch.float32):
    return [torch.tensor(v, dtype=dtype, requires_grad=True) for v in values]


def _autograd_weights(total, losses):
    grads = torch.autograd.grad(total, losses, allow_unused=True)
    return torch.stack([g if g is not None else torch.tensor(0.0) for g in grads])


def _analytic(strategy, values, mult, *, T=None, weights=None, log_vars=None, lam=None):
    """d total / d l_t from the strategies' formulas, written independently of mtl.py."""
    out = []
    for t, (l, m) in enumerate(zip(values, mult)):
        if strategy == "exp":
            out.append(m / T * math.exp(m * l / T))
        elif strategy == "log":
            out.append(m / (1.0 + m * l))
        elif strategy == "uncertainty":
            out.append(0.5 * m * math.exp(-log_vars[t]))
        elif strategy == "fixed":
            out.append(weights[t] * m)
        else:
            out.append(lam[t] * m)
    return torch.tensor(out, dtype=torch.float64)


# --------------------------------------------------------------------------- weights


@settings(max_examples=25, deadline=None)
@given(
    strategy=st.sampled_from(STRATEGIES),
    values=st.lists(st.floats(0.0, 20.0), min_size=1, max_size=4),
    data=st.data(),
)
def test_effective_weights_are_the_analytic_ones(strategy, values, data):
    k = len(values)
    mult = data.draw(st.lists(st.floats(0.1, 10.0), min_size=k, max_size=k))
    kw = {}
    if strategy in ("exp", "dwa"):
        kw["temperature"] = data.draw(st.floats(1.0, 100.0))
    if strategy == "fixed":
        kw["task_weights"] = data.draw(st.lists(st.floats(0.0, 5.0), min_size=k, max_size=k))
    mtl = BalancedMTL(k, strategy=strategy, multipliers=mult, **kw).double()
    if strategy == "uncertainty":
        with torch.no_grad():
            mtl.log_vars.copy_(
                torch.tensor(data.draw(st.lists(st.floats(-2.0, 2.0), min_size=k, max_size=k)))
            )
    lam = None
    if strategy == "dwa":  # two recorded steps, then the weights come from their ratios
        first = [v + 1.0 for v in values]
        second = [v + 0.5 for v in values]
        mtl(_losses(first, torch.float64))
        mtl(_losses(second, torch.float64))
        r = torch.tensor(second, dtype=torch.float64) / torch.tensor(first, dtype=torch.float64)
        lam = (k * torch.softmax(r / kw["temperature"], 0)).tolist()
    losses = _losses(values, torch.float64)
    total = mtl(losses)
    expected = _analytic(
        strategy,
        values,
        mult,
        T=kw.get("temperature"),
        weights=kw.get("task_weights"),
        log_vars=mtl.log_vars.tolist() if strategy == "uncertainty" else None,
        lam=lam,
    ).double()
    torch.testing.assert_close(mtl.last_weights, expected, rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(_autograd_weights(total, losses), expected, rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(mtl.last_losses, torch.tensor(values, dtype=torch.float64))
    assert mtl.last_present.all()


def test_totals_match_the_formulas():
    v = [0.3, 2.0, 7.0]
    m = [10.0, 1.0, 0.5]
    z = [a * b for a, b in zip(v, m)]
    cases = {
        "exp": sum(math.exp(x / 50.0) for x in z),
        "log": sum(math.log1p(x) for x in z),
        "uncertainty": sum(0.5 * x for x in z),  # log_vars = 0
        "fixed": sum(x for x in z),
        "dwa": sum(x for x in z),  # lambda = 1 before any history
    }
    for strategy, expected in cases.items():
        mtl = BalancedMTL(["a", "b", "c"], strategy=strategy, multipliers=m)
        total = mtl(_losses(v))
        assert total.dtype == torch.float32 and total.dim() == 0
        assert abs(total.item() - expected) < 1e-5 * max(1.0, expected), strategy


def test_default_temperatures_and_thesis_configuration():
    assert BalancedMTL(2).temperature == 50.0  # thesis: e^{l/50}
    assert BalancedMTL(2, strategy="dwa").temperature == 2.0  # Liu et al. 2019
    assert BalancedMTL(2, strategy="log").temperature is None
    mtl = BalancedMTL(["recon", "other"], multipliers={"recon": 10.0})
    mtl({"recon": torch.tensor(0.5), "other": torch.tensor(0.5)})
    w = mtl.last_weights
    assert w[0] / w[1] > 10.0  # the multiplier, then the larger exp slope
    assert mtl.multipliers.tolist() == [10.0, 1.0]


def test_exp_emphasises_the_larger_loss():
    mtl = BalancedMTL(2, strategy="exp", temperature=1.0)
    mtl(_losses([0.1, 2.0]))
    assert mtl.last_weights[1] > 6 * mtl.last_weights[0]
    mtl = BalancedMTL(2, strategy="log")
    mtl(_losses([0.1, 2.0]))
    assert mtl.last_weights[1] < mtl.last_weights[0]  # log does the opposite


# --------------------------------------------------------------------------- uncertainty


def test_uncertainty_learns_the_noise_levels():
    # two regression tasks with known noise std 0.1 and 0.5: sigma_t^2 -> MSE_t -> std^2
    g = torch.Generator().manual_seed(0)
    x = torch.randn(4000, 3, generator=g)
    true_w = torch.tensor([[1.0, -2.0, 0.5], [0.3, 0.7, -1.0]])
    noise = torch.tensor([0.1, 0.5])
    y = x @ true_w.T + noise * torch.randn(4000, 2, generator=g)
    model = torch.nn.Linear(3, 2)
    mtl = BalancedMTL(["a", "b"], strategy="uncertainty")
    assert [n for n, _ in mtl.named_parameters()] == ["log_vars"]
    opt = torch.optim.Adam(list(model.parameters()) + list(mtl.parameters()), lr=0.05)
    for step in range(400):
        pred = model(x)
        losses = [((pred[:, t] - y[:, t]) ** 2).mean() for t in range(2)]
        opt.zero_grad()
        mtl(losses).backward()
        if step == 0:
            assert mtl.log_vars.grad is not None and (mtl.log_vars.grad != 0).all()
        opt.step()
    sigma2 = mtl.log_vars.detach().exp()
    torch.testing.assert_close(sigma2, noise**2, rtol=0.15, atol=0.0)
    logged = mtl.log_dict()
    assert abs(logged["b/sigma2"] - 0.25) < 0.04 and "a/loss" in logged


# --------------------------------------------------------------------------- missing tasks


@pytest.mark.parametrize("strategy", STRATEGIES)
def test_missing_task_is_skipped(strategy):
    mtl = BalancedMTL(["a", "b", "sup"], strategy=strategy)
    full = mtl({"a": torch.tensor(1.0), "b": torch.tensor(2.0), "sup": torch.tensor(3.0)})
    mtl2 = BalancedMTL(["a", "b", "sup"], strategy=strategy)
    a = torch.tensor(1.0, requires_grad=True)
    part = mtl2({"a": a, "b": torch.tensor(2.0)})
    part_none = BalancedMTL(["a", "b", "sup"], strategy=strategy)(
        [torch.tensor(1.0), torch.tensor(2.0), None]
    )
    # (at log_vars = 0 a loss of 1 is the optimum of its s: d/ds = 0; task "b" has loss 2)
    assert part < full
    torch.testing.assert_close(part, part_none)
    assert mtl2.last_present.tolist() == [True, True, False]
    assert math.isnan(mtl2.last_losses[2]) and math.isnan(mtl2.last_weights[2])
    assert set(mtl2.log_dict()) >= {"a/loss", "a/weight", "b/loss"}
    assert "sup/loss" not in mtl2.log_dict()
    part.backward()
    assert a.grad is not None
    if strategy == "uncertainty":
        assert mtl2.log_vars.grad[2] == 0.0 and mtl2.log_vars.grad[1] != 0.0


def test_missing_task_keeps_its_dwa_history():
    mtl = BalancedMTL(["a", "b"], strategy="dwa")
    mtl([torch.tensor(4.0), torch.tensor(4.0)])
    mtl([torch.tensor(2.0), torch.tensor(4.0)])
    mtl({"b": torch.tensor(8.0)})  # "a" absent: its ratio stays 2/4
    r = torch.tensor([2.0 / 4.0, 8.0 / 4.0], dtype=torch.float64)
    torch.testing.assert_close(mtl.dwa_weights(), 2 * torch.softmax(r / 2.0, 0))


def test_indices_and_names_address_tasks():
    mtl = BalancedMTL(["a", "b"], strategy="fixed", task_weights={"b": 3.0})
    t1 = mtl({0: torch.tensor(1.0), "b": torch.tensor(1.0)})
    assert t1.item() == pytest.approx(4.0)
    counted = BalancedMTL(3, strategy="fixed", task_weights=[1.0, 2.0, 3.0])
    assert counted.task_names == ["0", "1", "2"]
    assert counted({"2": torch.tensor(1.0), 0: torch.tensor(1.0)}).item() == pytest.approx(4.0)


# --------------------------------------------------------------------------- DWA


def test_dwa_epoch_mode():
    mtl = BalancedMTL(["a", "b"], strategy="dwa", dwa_update="epoch")
    for epoch_losses in ([[2.0, 1.0], [4.0, 1.0]], [[1.0, 2.0], [1.0, 2.0]]):
        for l in epoch_losses:
            mtl(_losses(l))
            torch.testing.assert_close(mtl.last_weights, torch.ones(2))  # no history yet
        mtl.end_epoch()
    # averages: epoch 1 (3, 1), epoch 2 (1, 2): r = (1/3, 2)
    r = torch.tensor([1.0 / 3.0, 2.0], dtype=torch.float64)
    torch.testing.assert_close(mtl.dwa_weights(), 2 * torch.softmax(r / 2.0, 0))
    mtl(_losses([1.0, 1.0]))
    torch.testing.assert_close(mtl.last_weights, mtl.dwa_weights().float())
    with pytest.raises(ValueError, match="end_epoch"):
        BalancedMTL(2, strategy="dwa").end_epoch()


def test_dwa_weights_sum_to_k():
    mtl = BalancedMTL(3, strategy="dwa")
    g = torch.Generator().manual_seed(1)
    for _ in range(5):
        mtl(list(torch.rand(3, generator=g) + 0.1))
        assert mtl.dwa_weights().sum().item() == pytest.approx(3.0)
    mtl([torch.tensor(0.0)] * 3)
    mtl([torch.tensor(1.0)] * 3)  # a zero previous loss: ratio falls back to 1, finite
    assert torch.isfinite(mtl.dwa_weights()).all()


@pytest.mark.parametrize("bad", [float("nan"), float("inf")])
@pytest.mark.parametrize("update", ["step", "epoch"])
def test_dwa_skips_a_non_finite_loss(bad, update):
    # one bad loss makes its own total non-finite, but is not recorded: the history and
    # the weights afterwards are those of a run in which that task was absent at that
    # step (issue: it used to poison the next two steps with NaN weights)
    clean = BalancedMTL(2, strategy="dwa", dwa_update=update)
    hit = BalancedMTL(2, strategy="dwa", dwa_update=update)
    for step, v in enumerate([2.0, 3.0, bad, 5.0, 1.0]):
        total = hit(_losses([1.0 + step, v]))
        if step == 2:  # the bad loss
            assert not torch.isfinite(total)
            clean({0: torch.tensor(1.0 + step)})
        else:
            assert torch.isfinite(total)
            torch.testing.assert_close(total, clean(_losses([1.0 + step, v])))
        if update == "epoch":
            clean.end_epoch()
            hit.end_epoch()
        torch.testing.assert_close(hit.dwa_history, clean.dwa_history)
        assert torch.isfinite(hit.dwa_weights()).all()


def test_dwa_ratio_overflow_stays_finite():
    mtl = BalancedMTL(2, strategy="dwa").double()
    mtl([torch.tensor(1e-308, dtype=torch.float64), torch.tensor(1.0, dtype=torch.float64)])
    mtl([torch.tensor(1e300, dtype=torch.float64), torch.tensor(1.0, dtype=torch.float64)])
    w = mtl.dwa_weights()  # ratio 1e608 overflows float64: clamped, softmax stays finite
    assert torch.isfinite(w).all() and w[0] == pytest.approx(2.0)


# --------------------------------------------------------------------------- robustness


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_amp_dtypes_are_computed_in_float32(dtype):
    # 600 / 50 = 12: e^12 = 1.6e5 overflows float16 (max 65504), not the float32 computation;
    # the gradient e^12 / 50 = 3255 fits the loss's dtype
    mtl = BalancedMTL(2, strategy="exp")
    losses = [torch.tensor(600.0, dtype=dtype, requires_grad=True), torch.tensor(1.0, dtype=dtype)]
    total = mtl(losses)
    assert total.dtype == torch.float32
    expected = math.exp(600.0 / 50) + math.exp(1.0 / 50)
    assert total.item() == pytest.approx(expected, rel=1e-5)
    total.backward()
    assert losses[0].grad.dtype == dtype and torch.isfinite(losses[0].grad).all()
    assert mtl.last_weights.dtype == torch.float32
    for strategy in STRATEGIES:
        out = BalancedMTL(2, strategy=strategy)([torch.tensor(0.5, dtype=dtype)] * 2)
        assert out.dtype == torch.float32 and torch.isfinite(out)


def test_under_autocast():
    mtl = BalancedMTL(2, strategy="uncertainty")
    lin = torch.nn.Linear(4, 1)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = lin(torch.randn(8, 4))
        losses = [out.pow(2).mean(), out.abs().mean()]
        total = mtl(losses)
    assert total.dtype == torch.float32
    total.backward()
    assert mtl.log_vars.grad is not None and lin.weight.grad is not None


def test_float64_losses_give_float64():
    assert BalancedMTL(2)([torch.tensor(1.0, dtype=torch.float64), torch.tensor(1.0)]).dtype == (
        torch.float64
    )


def test_exp_overflow_guard():
    mtl = BalancedMTL(["small", "huge"], strategy="exp")
    losses = _losses([1.0, 5000.0])  # 5000 / 50 = 100 > 80: e^100 overflows float32
    with pytest.warns(RuntimeWarning, match="huge"):
        total = mtl(losses)
    assert torch.isfinite(total)
    total.backward()
    assert torch.isfinite(losses[1].grad) and losses[1].grad > 0
    # linear continuation: slope e^80 / T; and no warning below the limit
    assert losses[1].grad.item() == pytest.approx(math.exp(80.0) / 50.0, rel=1e-4)
    torch.testing.assert_close(mtl.last_weights[1], losses[1].grad)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        BalancedMTL(2, strategy="exp")(_losses([1.0, 3999.0]))


def test_exp_is_continuous_at_the_guard():
    mtl = BalancedMTL(1, strategy="exp", temperature=1.0)
    below = mtl([torch.tensor(79.999)]).item()
    with pytest.warns(RuntimeWarning):
        above = mtl([torch.tensor(80.001)]).item()
    assert above > below and above / below == pytest.approx(1.0, rel=1e-2)


def test_nan_in_nan_out():
    for strategy in STRATEGIES:
        out = BalancedMTL(2, strategy=strategy)([torch.tensor(float("nan")), torch.tensor(1.0)])
        assert torch.isnan(out)


# --------------------------------------------------------------------------- state


@pytest.mark.parametrize("strategy", STRATEGIES)
def test_state_dict_round_trip(strategy):
    kw = {"task_weights": [1.0, 2.0]} if strategy == "fixed" else {}
    mtl = BalancedMTL(["a", "b"], strategy=strategy, multipliers=[10.0, 1.0], **kw)
    g = torch.Generator().manual_seed(2)
    opt = torch.optim.SGD(mtl.parameters(), lr=0.1) if strategy == "uncertainty" else None
    for _ in range(3):
        total = mtl(list(torch.rand(2, generator=g) + 0.1))
        if opt is not None:
            opt.zero_grad()
            total.backward()
            opt.step()
    state = mtl.state_dict()
    fresh = BalancedMTL(["a", "b"], strategy=strategy)
    fresh.load_state_dict(state)
    probe = [torch.tensor(0.7), torch.tensor(0.3)]
    torch.testing.assert_close(fresh(probe), mtl(probe))
    torch.testing.assert_close(fresh.last_weights, mtl.last_weights)
    if strategy == "uncertainty":
        assert (state["log_vars"] != 0).all()
    if strategy == "dwa":
        assert (state["dwa_count"] == 2).all()
    if strategy in ("uncertainty", "fixed", "dwa"):  # strategy-specific state: strict load fails
        with pytest.raises(RuntimeError):
            BalancedMTL(["a", "b"], strategy="exp").load_state_dict(state)


def test_module_behaviour():
    mtl = BalancedMTL(["a", "b"], strategy="uncertainty")
    assert "strategy='uncertainty'" in repr(mtl) and mtl.num_tasks == 2
    mtl = mtl.double()
    assert mtl(_losses([1.0, 1.0], torch.float64)).dtype == torch.float64


# --------------------------------------------------------------------------- bad input


def test_bad_construction():
    with pytest.raises(ValueError, match="tasks"):
        BalancedMTL(0)
    with pytest.raises(TypeError, match="tasks"):
        BalancedMTL(True)
    with pytest.raises(TypeError, match="tasks"):
        BalancedMTL("abc")
    with pytest.raises(ValueError, match="distinct"):
        BalancedMTL(["a", "a"])
    with pytest.raises(ValueError, match="tasks"):
        BalancedMTL(["a", ""])
    with pytest.raises(ValueError, match="strategy"):
        BalancedMTL(2, strategy="pareto")
    with pytest.raises(ValueError, match="temperature"):
        BalancedMTL(2, strategy="exp", temperature=0.0)
    with pytest.raises(TypeError, match="temperature"):
        BalancedMTL(2, strategy="exp", temperature="hot")
    with pytest.raises(ValueError, match="temperature"):
        BalancedMTL(2, strategy="log", temperature=2.0)
    with pytest.raises(ValueError, match="task_weights"):
        BalancedMTL(2, strategy="exp", task_weights=[1.0, 1.0])
    with pytest.raises(ValueError, match=r"`task_weights` must have 2 entries"):
        BalancedMTL(2, strategy="fixed", task_weights=[1.0])
    with pytest.raises(ValueError, match=r"`task_weights` must have shape \[2\], got \[3\]"):
        BalancedMTL(2, strategy="fixed", task_weights=torch.ones(3))
    with pytest.raises(ValueError, match="task_weights"):
        BalancedMTL(2, strategy="fixed", task_weights=[1.0, -1.0])
    with pytest.raises(TypeError, match="task_weights"):
        BalancedMTL(2, strategy="fixed", task_weights=3.0)
    with pytest.raises(TypeError, match="task_weights"):
        BalancedMTL(2, strategy="fixed", task_weights=["x", 1.0])
    with pytest.raises(ValueError, match="multipliers"):
        BalancedMTL(["a"], multipliers={"b": 2.0})
    with pytest.raises(ValueError, match="multipliers"):
        BalancedMTL(2, multipliers=[1.0, 0.0])
    with pytest.raises(ValueError, match="dwa_update"):
        BalancedMTL(2, strategy="dwa", dwa_update="batch")
    with pytest.raises(ValueError, match="dwa"):
        BalancedMTL(2, strategy="exp").dwa_weights()


def test_bad_losses():
    mtl = BalancedMTL(["a", "b"])
    one = torch.tensor(1.0)
    with pytest.raises(ValueError, match=r"`losses` must have 2 entries"):
        mtl([one])
    with pytest.raises(TypeError, match="losses"):
        mtl(one)
    with pytest.raises(TypeError, match=r"`losses\[0\]` must be a scalar tensor, got float"):
        mtl([1.0, one])
    with pytest.raises(TypeError, match=r"losses\['a'\].*floating"):
        mtl({"a": torch.tensor(1), "b": one})
    with pytest.raises(ValueError, match=r"`losses\[1\]` must be a scalar loss .*got \[3\]"):
        mtl([one, torch.ones(3)])
    with pytest.raises(ValueError, match="unknown task 'c'"):
        mtl({"c": one})
    with pytest.raises(ValueError, match="unknown task 5"):
        mtl({5: one})
    with pytest.raises(ValueError, match="twice"):
        mtl({"a": one, 0: one})
    with pytest.raises(ValueError, match="no loss"):
        mtl([None, None])
    with pytest.raises(ValueError, match="no loss"):
        mtl({})
    assert mtl([one, torch.ones(1)]).dim() == 0  # shape [1] is accepted


# =========================================================================== gradient strategies
# MGDA-UB (Sener & Koltun 2018) and PCGrad (Yu et al. 2020): checked against the papers'
# definitions, written out here independently of mtl.py.

GRADIENT = ["mgda_ub", "pcgrad"]
DTYPES = [torch.float32, torch.float64]


def _tol(dtype):
    return dict(rtol=1e-4, atol=1e-5) if dtype == torch.float32 else dict(rtol=1e-9, atol=1e-11)


def _simplex_grid(k, n):
    """All points of the simplex in R^k with coordinates in {0, 1/n, ..., 1}."""
    pts = [c for c in itertools.product(range(n + 1), repeat=k - 1) if sum(c) <= n]
    return torch.tensor([[*c, n - sum(c)] for c in pts], dtype=torch.float64) / n


def _kkt_gap(w, g):
    """Frank-Wolfe duality gap of w for min |w^T g|^2 on the simplex: w^T M w - min_i (M w)_i.

    It is >= 0, bounds the suboptimality from above, and is 0 exactly at the optimum."""
    m = g @ g.T
    mw = m @ w
    return (w @ mw - mw.min()).item()


def _pcgrad_reference(g, orders):
    """Yu et al. 2020, Algorithm 1, verbatim: task i visits the others in orders[i]."""
    out = []
    for i in range(g.shape[0]):
        gi = g[i].clone()
        for j in orders[i]:
            dot = gi @ g[j]
            if dot < 0:
                gi = gi - dot / (g[j] @ g[j]) * g[j]
        out.append(gi)
    return torch.stack(out)


# --------------------------------------------------------------------------- min-norm


@pytest.mark.parametrize("dtype", DTYPES)
def test_min_norm_two_tasks_closed_form(dtype):
    g = torch.Generator().manual_seed(0)
    grid = _simplex_grid(2, 4000)
    for trial in range(30):
        grads = torch.randn(2, 6, generator=g, dtype=torch.float64)
        if trial % 3 == 0:  # one gradient much longer: the optimum is often at a vertex
            grads[1] *= 10
        w = min_norm_weights(grads.to(dtype))
        assert w.dtype == dtype and w.shape == (2,)
        # Sener & Koltun, Algorithm 1: gamma = [(g2 - g1) . g2 / |g1 - g2|^2] clipped to [0, 1]
        g1, g2 = grads
        gamma = ((g2 - g1) @ g2 / (g1 - g2).square().sum()).clamp(0, 1)
        torch.testing.assert_close(w.double(), torch.stack((gamma, 1 - gamma)), **_tol(dtype))
        # and brute force over the segment
        norms = (grid @ grads).square().sum(1)
        assert (w.double() @ grads).square().sum() <= norms.min() + 1e-6
        assert (w >= 0).all() and abs(w.sum().item() - 1) < 1e-6


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("k", [2, 3])
def test_min_norm_brute_force_over_the_simplex(k, dtype):
    g = torch.Generator().manual_seed(k)
    grid = _simplex_grid(k, 300 if k == 2 else 150)
    cases = [torch.randn(k, 5, generator=g, dtype=torch.float64) for _ in range(20)]
    cases.append(torch.eye(k, 5, dtype=torch.float64))  # orthogonal: w_t ~ 1/|g_t|^2
    same = torch.randn(1, 5, generator=g, dtype=torch.float64)
    cases.append(same.repeat(k, 1))  # identical: any w, norm |g|
    cases.append(torch.cat((torch.zeros(1, 5, dtype=torch.float64), cases[0][1:])))  # a zero g
    cases.append(torch.cat((same, -2 * same, cases[0][2:])))  # opposite: 0 is in the hull
    for grads in cases:
        w = min_norm_weights(grads.to(dtype)).double()
        best = (grid @ grads).square().sum(1).min()
        value = (w @ grads).square().sum()
        assert (w >= 0).all() and abs(w.sum().item() - 1) < 1e-6
        assert value <= best + 1e-5 * max(1.0, best.item())
        assert _kkt_gap(w, grads) < (1e-4 if dtype == torch.float32 else 1e-9)
    # orthogonal gradients: w_t proportional to 1 / |g_t|^2
    grads = torch.diag(torch.arange(1.0, k + 1, dtype=dtype))
    inv = 1 / torch.arange(1.0, k + 1, dtype=torch.float64) ** 2
    torch.testing.assert_close(min_norm_weights(grads).double(), inv / inv.sum(), **_tol(dtype))


def test_min_norm_many_tasks_uses_frank_wolfe_and_converges():
    g = torch.Generator().manual_seed(5)
    for k in (6, 12):  # 6: the exact solver; 12: Frank-Wolfe (more than 10 tasks)
        grads = torch.randn(k, 40, generator=g, dtype=torch.float64) + 0.3
        w = min_norm_weights(grads)
        scale = (grads @ grads.T).diagonal().max().item()
        assert (w >= 0).all() and abs(w.sum().item() - 1) < 1e-9
        assert _kkt_gap(w, grads) < 1e-9 * scale


def test_min_norm_is_scale_invariant_and_nan_safe():
    grads = torch.randn(3, 7, dtype=torch.float64)
    torch.testing.assert_close(min_norm_weights(grads), min_norm_weights(65536.0 * grads))
    assert min_norm_weights(torch.ones(1, 3)).tolist() == [1.0]
    bad = grads.clone()
    bad[1, 2] = math.inf
    assert torch.isnan(min_norm_weights(bad)).all()
    # half-precision gradients: weights in float32 (the Gram matrix is accumulated in float32)
    assert min_norm_weights(torch.randn(3, 2, 2, dtype=torch.float16)).dtype == torch.float32
    assert torch.isnan(pcgrad_project(bad)).any()


# --------------------------------------------------------------------------- PCGrad


@pytest.mark.parametrize("dtype", DTYPES)
def test_pcgrad_two_tasks_conflicting(dtype):
    g = torch.Generator().manual_seed(1)
    n = 0
    while n < 20:
        grads = torch.randn(2, 6, generator=g, dtype=torch.float64)
        g1, g2 = grads
        if g1 @ g2 >= 0:
            continue
        n += 1
        pc = pcgrad_project(grads.to(dtype)).double()
        expected = torch.stack((g1 - (g1 @ g2) / (g2 @ g2) * g2, g2 - (g2 @ g1) / (g1 @ g1) * g1))
        torch.testing.assert_close(pc, expected, **_tol(dtype))
        # the paper's guarantee for two tasks: no conflict is left, each projected gradient is
        # orthogonal to the other task's gradient, and the sum still descends on both tasks
        scale = (g1.norm() * g2.norm()).item()
        assert abs((pc[0] @ g2).item()) < 1e-5 * scale and abs((pc[1] @ g1).item()) < 1e-5 * scale
        assert pc.sum(0) @ g1 >= -1e-5 * scale and pc.sum(0) @ g2 >= -1e-5 * scale


@pytest.mark.parametrize("dtype", DTYPES)
def test_pcgrad_non_conflicting_pass_unchanged(dtype):
    g = torch.Generator().manual_seed(2)
    for _ in range(10):
        grads = torch.rand(3, 5, generator=g, dtype=torch.float64).to(dtype)  # all dots > 0
        torch.testing.assert_close(pcgrad_project(grads), grads, rtol=0, atol=0)
    orth = torch.eye(3, dtype=dtype)
    torch.testing.assert_close(pcgrad_project(orth), orth, rtol=0, atol=0)


@pytest.mark.parametrize("dtype", DTYPES)
def test_pcgrad_mixed_pairs_follow_algorithm_1(dtype):
    # three tasks: g0 conflicts with g1 only; g2 conflicts with nothing
    grads = torch.tensor(
        [[1.0, 0.0, 0.0, 0.2], [-1.0, 1.0, 0.0, 0.5], [0.1, 0.1, 1.0, 0.3]], dtype=torch.float64
    )
    pc = pcgrad_project(grads.to(dtype)).double()
    g0, g1, g2 = grads
    torch.testing.assert_close(pc[2], g2.double(), **_tol(dtype))
    torch.testing.assert_close(pc[0], g0 - (g0 @ g1) / (g1 @ g1) * g1, **_tol(dtype))
    torch.testing.assert_close(pc[1], g1 - (g1 @ g0) / (g0 @ g0) * g0, **_tol(dtype))


@pytest.mark.parametrize("dtype", DTYPES)
def test_pcgrad_random_order_matches_the_reference(dtype):
    g = torch.Generator().manual_seed(3)
    for seed in range(10):
        grads = torch.randn(4, 3, generator=g, dtype=torch.float64)  # many conflicts
        pc = pcgrad_project(grads.to(dtype), generator=torch.Generator().manual_seed(seed))
        keys = torch.rand(4, 4, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)
        orders = [[j for j in keys[i].argsort().tolist() if j != i] for i in range(4)]
        torch.testing.assert_close(pc.double(), _pcgrad_reference(grads, orders), **_tol(dtype))
    # without a generator the order is random, but some order of Algorithm 1 is followed
    grads = torch.randn(3, 2, generator=g, dtype=torch.float64)
    pc = pcgrad_project(grads)
    perms = [list(itertools.permutations([j for j in range(3) if j != i])) for i in range(3)]
    refs = [_pcgrad_reference(grads, list(o)) for o in itertools.product(*perms)]
    assert any(torch.allclose(pc, r) for r in refs)


# --------------------------------------------------------------------------- BalancedMTL.backward


class _Count(torch.autograd.Function):
    """Identity that counts how often autograd runs its backward."""

    calls = 0

    @staticmethod
    def forward(ctx, x):
        return x.view_as(x)

    @staticmethod
    def backward(ctx, grad):
        _Count.calls += 1
        return grad


class _Net(nn.Module):
    """A shared encoder -> representation z [B, 6]; three linear heads, three tasks."""

    def __init__(self, count=False):
        super().__init__()
        self.enc = nn.Sequential(nn.Linear(4, 8), nn.Tanh(), nn.Linear(8, 6))
        self.heads = nn.ModuleList(nn.Linear(6, 2) for _ in range(3))
        self.count = count

    def encode(self, x):
        h = self.enc[0](x)
        if self.count:
            h = _Count.apply(h)  # inside the encoder: counts encoder backwards
        return self.enc[2](self.enc[1](h))

    def forward(self, x):
        z = self.encode(x)
        return z, [head(z) for head in self.heads]


def _task_losses(outs, y):
    return [((o - y[:, 2 * t : 2 * t + 2]) ** 2).mean() for t, o in enumerate(outs)]


def _data(n=8, dtype=torch.float64, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 4, generator=g, dtype=dtype)
    y = torch.randn(n, 6, generator=g, dtype=dtype)
    y[:, 2:4] = -3 * y[:, 0:2]  # conflicting targets
    return x, y


def _net(dtype=torch.float64, count=False):
    torch.manual_seed(1)
    return _Net(count).to(dtype)


def _expected_grads(net, x, y, strategy, *, mult=(1.0, 1.0, 1.0), present=(0, 1, 2), gen=0):
    """The update both papers define, computed by hand: every task's gradient at z, the
    weights from the papers' formulas, then J^T (sum_t w_t g_t) for the encoder and each
    head's own loss gradient for the heads."""
    z, outs = net(x)
    losses = [mult[t] * lt for t, lt in enumerate(_task_losses(outs, y))]
    gz = torch.stack([torch.autograd.grad(losses[t], z, retain_graph=True)[0] for t in present])
    flat = gz.flatten(1)
    if strategy == "mgda_ub":
        w = min_norm_weights(flat)
        combined = (w[:, None, None] * gz).sum(0)
    else:
        combined = pcgrad_project(flat, generator=torch.Generator().manual_seed(gen)).sum(0)
        combined = combined.view_as(z)
    enc = torch.autograd.grad(z, list(net.enc.parameters()), combined, retain_graph=True)
    out = dict(zip([f"enc.{n}" for n, _ in net.enc.named_parameters()], enc))
    for t in present:
        hp = list(net.heads[t].parameters())
        for n, gr in zip(["weight", "bias"], torch.autograd.grad(losses[t], hp, retain_graph=True)):
            out[f"heads.{t}.{n}"] = gr
    return out


def _grads_of(net):
    return {n: p.grad for n, p in net.named_parameters() if p.grad is not None}


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("strategy", GRADIENT)
def test_backward_is_the_papers_update(strategy, dtype):
    x, y = _data(dtype=dtype)
    net = _net(dtype)
    expected = _expected_grads(net, x, y, strategy, mult=(2.0, 1.0, 0.5))
    net.zero_grad()
    mtl = BalancedMTL(["a", "b", "c"], strategy=strategy, multipliers=[2.0, 1.0, 0.5])
    z, outs = net(x)
    losses = _task_losses(outs, y)
    mtl.backward(losses, shared=z, generator=torch.Generator().manual_seed(0))
    got = _grads_of(net)
    assert set(got) == set(expected)
    for name in expected:
        torch.testing.assert_close(got[name], expected[name], **_tol(dtype))
    assert mtl.last_present.all() and mtl.last_weights.dtype == dtype
    torch.testing.assert_close(mtl.last_losses, torch.stack(losses).detach())
    if strategy == "mgda_ub":  # weights w_t m_t with w on the simplex
        w = mtl.last_weights / torch.tensor([2.0, 1.0, 0.5], dtype=dtype)
        assert (w >= 0).all() and abs(w.sum().item() - 1) < 1e-5
    else:  # PCGrad only adds conflicting components back: w_t >= 1
        assert (mtl.last_weights / torch.tensor([2.0, 1.0, 0.5], dtype=dtype) >= 1 - 1e-6).all()
    assert set(mtl.log_dict()) >= {"a/loss", "a/weight"}


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("strategy", GRADIENT)
def test_backward_on_linear_losses_gives_the_combination(strategy, dtype):
    # l_t = a_t . z: g_t = a_t exactly, so z.grad is the combined gradient itself
    a = torch.randn(3, 5, dtype=torch.float64).to(dtype)
    z = torch.zeros(5, dtype=dtype, requires_grad=True)
    mtl = BalancedMTL(3, strategy=strategy)
    mtl.backward([(at * z).sum() for at in a], shared=z, generator=torch.Generator().manual_seed(7))
    if strategy == "mgda_ub":
        expected = min_norm_weights(a) @ a
    else:
        expected = pcgrad_project(a, generator=torch.Generator().manual_seed(7)).sum(0)
    torch.testing.assert_close(z.grad, expected, **_tol(dtype))


@pytest.mark.parametrize("strategy", GRADIENT)
def test_no_second_backward_through_the_encoder(strategy):
    x, y = _data()
    net = _net(count=True)
    calls = {t: 0 for t in range(3)}
    for t, head in enumerate(net.heads):
        head.register_full_backward_pre_hook(lambda m, g, t=t: calls.__setitem__(t, calls[t] + 1))
    _Count.calls = 0
    z, outs = net(x)
    BalancedMTL(3, strategy=strategy).backward(_task_losses(outs, y), shared=z)
    assert _Count.calls == 1  # the encoder: once, in the final backward
    assert calls == {0: 2, 1: 2, 2: 2}  # each head: its task's gradient at z, then the final
    # the parameter-level variant (shared = the encoder's parameters) is the papers' original
    # MGDA / PCGrad: one encoder backward per task, plus the final one
    _Count.calls = 0
    net.zero_grad()
    z, outs = net(x)
    BalancedMTL(3, strategy=strategy).backward(
        _task_losses(outs, y), shared=list(net.enc.parameters())
    )
    assert _Count.calls == 4


@pytest.mark.parametrize("strategy", GRADIENT)
def test_shared_parameters_is_the_parameter_level_method(strategy):
    x, y = _data()
    net = _net()
    z, outs = net(x)
    losses = _task_losses(outs, y)
    params = list(net.enc.parameters())
    per_task = [torch.autograd.grad(lt, params, retain_graph=True) for lt in losses]
    flat = torch.stack([torch.cat([g.flatten() for g in gs]) for gs in per_task])
    if strategy == "mgda_ub":
        combined = min_norm_weights(flat) @ flat
    else:
        combined = pcgrad_project(flat, generator=torch.Generator().manual_seed(4)).sum(0)
    BalancedMTL(3, strategy=strategy).backward(
        losses, shared=params, generator=torch.Generator().manual_seed(4)
    )
    torch.testing.assert_close(torch.cat([p.grad.flatten() for p in params]), combined)
    for t in range(3):  # heads: their own loss's gradient
        (gw,) = torch.autograd.grad(_task_losses(net(x)[1], y)[t], net.heads[t].weight)
        torch.testing.assert_close(net.heads[t].weight.grad, gw)


@pytest.mark.parametrize("strategy", GRADIENT)
def test_backward_absent_tasks(strategy):
    x, y = _data()
    net = _net()
    expected = _expected_grads(net, x, y, strategy, present=(0, 2))
    for absent in ({"a": 0, "c": 2}, "none"):
        net.zero_grad()
        z, outs = net(x)
        losses = _task_losses(outs, y)
        mtl = BalancedMTL(["a", "b", "c"], strategy=strategy)
        given = (
            {"a": losses[0], "c": losses[2]} if absent != "none" else [losses[0], None, losses[2]]
        )
        mtl.backward(given, shared=z, generator=torch.Generator().manual_seed(0))
        got = _grads_of(net)
        assert not any(n.startswith("heads.1.") for n in got)  # the absent task's head
        for name in expected:
            torch.testing.assert_close(got[name], expected[name])
        assert mtl.last_present.tolist() == [True, False, True]
        assert math.isnan(mtl.last_weights[1]) and math.isnan(mtl.last_losses[1])
        assert "b/loss" not in mtl.log_dict()


def test_backward_single_present_task_is_its_plain_gradient():
    x, y = _data()
    net = _net()
    z, outs = net(x)
    loss = _task_losses(outs, y)[1]
    ref = torch.autograd.grad(loss, list(net.parameters()), retain_graph=True, allow_unused=True)
    BalancedMTL(3, strategy="mgda_ub").backward([None, loss, None], shared=z)
    for p, r in zip(net.parameters(), ref):
        if r is None:
            assert p.grad is None
        else:
            torch.testing.assert_close(p.grad, r)


def test_backward_task_independent_of_shared():
    # a loss that does not reach z (a penalty on one head) is not balanced: weight m_t
    x, y = _data()
    net = _net()
    z, outs = net(x)
    losses = _task_losses(outs, y)
    penalty = net.heads[0].weight.square().sum()
    mtl = BalancedMTL(["a", "b", "reg"], strategy="mgda_ub", multipliers={"reg": 3.0})
    mtl.backward([losses[0], losses[1], penalty], shared=z)
    assert mtl.last_weights[2].item() == 3.0
    w = mtl.last_weights[:2]
    assert abs(w.sum().item() - 1) < 1e-9
    (g0,) = torch.autograd.grad(_task_losses(net(x)[1], y)[0], net.heads[0].weight)
    torch.testing.assert_close(net.heads[0].weight.grad, g0 + 6.0 * net.heads[0].weight)
    with pytest.raises(ValueError, match="depends on `shared`"):
        BalancedMTL(1, strategy="pcgrad").backward([penalty], shared=z)


@pytest.mark.parametrize("strategy", STRATEGIES)
def test_backward_of_loss_strategies_is_forward_backward(strategy):
    x, y = _data()
    net = _net()
    _, outs = net(x)
    BalancedMTL(3, strategy=strategy)(_task_losses(outs, y)).backward()
    ref = {n: g.clone() for n, g in _grads_of(net).items()}
    net.zero_grad()
    z, outs = net(x)
    BalancedMTL(3, strategy=strategy).backward(_task_losses(outs, y), shared=z)
    for n, g in _grads_of(net).items():
        torch.testing.assert_close(g, ref[n])


@pytest.mark.parametrize("strategy", GRADIENT)
def test_gradient_strategies_are_not_called_as_losses(strategy):
    mtl = BalancedMTL(2, strategy=strategy)
    with pytest.raises(ValueError, match=r"mtl.backward\(losses, shared=z\)"):
        mtl([torch.tensor(1.0), torch.tensor(2.0)])
    assert [n for n, _ in mtl.named_parameters()] == []
    assert set(mtl.state_dict()) == {"multipliers"}
    with pytest.raises(ValueError, match="temperature"):
        BalancedMTL(2, strategy=strategy, temperature=2.0)
    with pytest.raises(ValueError, match="task_weights"):
        BalancedMTL(2, strategy=strategy, task_weights=[1.0, 2.0])


@pytest.mark.parametrize("strategy", GRADIENT)
def test_backward_bad_input(strategy):
    mtl = BalancedMTL(2, strategy=strategy)
    z = torch.randn(3, requires_grad=True)
    losses = [z.sum(), z.square().sum()]
    with pytest.raises(ValueError, match="needs `shared`"):
        mtl.backward(losses)
    with pytest.raises(TypeError, match="`shared` must be a tensor or a sequence"):
        mtl.backward(losses, shared=3.0)
    with pytest.raises(TypeError, match=r"`shared\[1\]` must be a tensor, got str"):
        mtl.backward(losses, shared=[z, "x"])
    with pytest.raises(ValueError, match="`shared` must require grad"):
        mtl.backward(losses, shared=torch.randn(3))
    with pytest.raises(TypeError, match="floating"):
        mtl.backward(losses, shared=torch.ones(3, dtype=torch.long))
    with pytest.raises(ValueError, match="same tensor twice"):
        mtl.backward(losses, shared=[z, z])
    with pytest.raises(ValueError, match="`shared` is empty"):
        mtl.backward(losses, shared=[])
    with pytest.raises(TypeError, match="`scaler`"):
        mtl.backward(losses, shared=z, scaler=2.0)
    with pytest.raises(TypeError, match="`generator`"):
        mtl.backward(losses, shared=z, generator=0)
    with pytest.raises(ValueError, match="distributed is not initialized"):
        mtl.backward(losses, shared=z, group=object())
    with pytest.raises(ValueError, match="no loss"):
        mtl.backward([None, None], shared=z)
    with pytest.raises(ValueError, match=r"`losses` must have 2 entries"):
        mtl.backward([losses[0]], shared=z)
    with pytest.raises(TypeError, match="`grads` must be a tensor"):
        min_norm_weights([[1.0, 2.0]])
    with pytest.raises(ValueError, match=r"`grads` must have shape \[K, \.\.\.\]"):
        pcgrad_project(torch.ones(3))
    with pytest.raises(TypeError, match="floating"):
        min_norm_weights(torch.ones(2, 2, dtype=torch.long))
    assert z.grad is None  # nothing was backpropagated by the failed calls


# --------------------------------------------------------------------------- AMP and compile


@pytest.mark.parametrize("strategy", GRADIENT)
def test_backward_under_autocast(strategy):
    x, y = _data(dtype=torch.float32)
    ref_net = _net(torch.float32)
    expected = _expected_grads(ref_net, x, y, strategy)
    net = _net(torch.float32)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        z, outs = net(x)
        losses = _task_losses(outs, y)
    assert z.dtype == torch.bfloat16
    mtl = BalancedMTL(3, strategy=strategy)
    mtl.backward(losses, shared=z, generator=torch.Generator().manual_seed(0))
    assert mtl.last_weights.dtype == torch.float32
    for name, g in _grads_of(net).items():  # bfloat16 has 8 bits of mantissa
        assert torch.isfinite(g).all()
        torch.testing.assert_close(g, expected[name], rtol=0.1, atol=0.05)


@pytest.mark.parametrize("strategy", GRADIENT)
def test_backward_with_grad_scaler(strategy):
    x, y = _data(dtype=torch.float32)
    net = _net(torch.float32)
    z, outs = net(x)
    BalancedMTL(3, strategy=strategy).backward(
        _task_losses(outs, y), shared=z, generator=torch.Generator().manual_seed(0)
    )
    ref = {n: g.clone() for n, g in _grads_of(net).items()}
    net.zero_grad()
    scaler = torch.amp.GradScaler("cpu", init_scale=2.0**12)
    opt = torch.optim.SGD(net.parameters(), lr=0.0)
    z, outs = net(x)
    mtl = BalancedMTL(3, strategy=strategy)
    mtl.backward(
        _task_losses(outs, y), shared=z, scaler=scaler, generator=torch.Generator().manual_seed(0)
    )
    for n, g in _grads_of(net).items():  # everything is scaled, consistently
        torch.testing.assert_close(g, 2.0**12 * ref[n], rtol=1e-4, atol=1e-6)
    scaler.unscale_(opt)
    for n, g in _grads_of(net).items():
        torch.testing.assert_close(g, ref[n], rtol=1e-4, atol=1e-6)
    # a non-finite task gradient: NaN weights, non-finite grads, the scaler skips the step
    net.zero_grad()
    scaler = torch.amp.GradScaler("cpu", init_scale=2.0**12)
    z, outs = net(x)
    losses = _task_losses(outs, y)
    losses[1] = losses[1] * torch.tensor(math.inf)
    mtl.backward(losses, shared=z, scaler=scaler)
    assert torch.isnan(mtl.last_weights).any()
    before = [p.detach().clone() for p in net.parameters()]
    scaler.step(torch.optim.SGD(net.parameters(), lr=1.0))
    scaler.update()
    assert scaler.get_scale() < 2.0**12
    assert all(torch.equal(a, p) for a, p in zip(before, net.parameters()))


@pytest.mark.parametrize("strategy", GRADIENT)
def test_backward_with_compiled_encoder_and_heads(strategy):
    torch._dynamo.reset()
    x, y = _data(dtype=torch.float32)
    net = _net(torch.float32)
    expected = _expected_grads(net, x, y, strategy)
    enc = torch.compile(net.encode, backend="aot_eager")
    heads = [torch.compile(h, backend="aot_eager") for h in net.heads]
    z = enc(x)
    losses = _task_losses([h(z) for h in heads], y)
    BalancedMTL(3, strategy=strategy).backward(
        losses, shared=z, generator=torch.Generator().manual_seed(0)
    )
    for name, g in _grads_of(net).items():
        torch.testing.assert_close(g, expected[name], rtol=1e-4, atol=1e-5)
    # one graph for encoder and heads: z is an output, not an input of the heads' graph
    net.zero_grad()
    both = torch.compile(lambda x: net(x), backend="aot_eager")
    z, outs = both(x)
    with pytest.raises(ValueError, match="graph boundary"):
        BalancedMTL(3, strategy=strategy).backward(_task_losses(outs, y), shared=z)


def test_docstring_examples_run():
    import doctest

    import torch_artic.mtl as module

    res = doctest.testmod(module, extraglobs={"torch": torch, "nn": nn}, verbose=False)
    assert res.attempted >= 5 and res.failed == 0


# --------------------------------------------------------------------------- DDP


def _ddp_worker(rank, world, init_file, out_dir):
    from torch.nn.parallel import DistributedDataParallel as DDP

    dist.init_process_group(
        "gloo",
        init_method=f"file://{init_file}",
        rank=rank,
        world_size=world,
        timeout=datetime.timedelta(seconds=120),  # fail, do not hang, if a rank is lost
    )
    try:
        x, y = _data()
        lo, hi = 4 * rank, 4 * rank + 4  # equal local batches
        out = {}
        for strategy in GRADIENT:
            for mode in ("global", "local", "params"):
                net = _net()
                ddp = DDP(net)
                z, outs = ddp(x[lo:hi])
                mtl = BalancedMTL(3, strategy=strategy)
                mtl.backward(
                    _task_losses(outs, y[lo:hi]),
                    shared=list(net.enc.parameters()) if mode == "params" else z,
                    group=None if mode == "local" else dist.group.WORLD,
                    generator=torch.Generator().manual_seed(5),
                )
                out[strategy, mode] = {
                    "grads": {n: p.grad.clone() for n, p in net.named_parameters()},
                    "weights": mtl.last_weights.clone(),
                }
        torch.save(out, os.path.join(out_dir, f"rank{rank}.pt"))
        dist.barrier()  # every rank's collectives are done
    except BaseException:
        traceback.print_exc()
        sys.stderr.flush()
        os._exit(1)
    # No teardown: freeing the DDP reducers and the gloo group at exit can deadlock in torch
    # (the group's destructor, holding the GIL, joins a gloo thread that waits for the GIL
    # to free a Python object; seen once in a few runs). The results are saved; just leave.
    sys.stdout.flush()
    os._exit(0)


def _single(strategy, x, y, params=False):
    net = _net()
    z, outs = net(x)
    mtl = BalancedMTL(3, strategy=strategy)
    mtl.backward(
        _task_losses(outs, y),
        shared=list(net.enc.parameters()) if params else z,
        generator=torch.Generator().manual_seed(5),
    )
    return {n: p.grad for n, p in net.named_parameters()}, mtl.last_weights


def test_ddp_two_gloo_processes(tmp_path):
    world = 2
    ctx = mp.spawn(
        _ddp_worker, args=(world, str(tmp_path / "init"), str(tmp_path)), nprocs=world, join=False
    )
    deadline = time.monotonic() + 300
    while not ctx.join(timeout=5):  # a hang fails the test instead of the whole run
        if time.monotonic() > deadline:
            for proc in ctx.processes:
                proc.kill()
            pytest.fail("the DDP workers did not finish within 300 s")
    parts = [torch.load(tmp_path / f"rank{r}.pt") for r in range(world)]
    x, y = _data()
    for strategy in GRADIENT:
        # group=WORLD: the Gram matrix of the global batch (and rank 0's PCGrad order) on
        # every rank, DDP averages the parameter gradients: the single-process result on the
        # concatenated batch
        full, w_full = _single(strategy, x, y)
        for r in range(world):
            got = parts[r][strategy, "global"]
            for n in full:
                torch.testing.assert_close(got["grads"][n], full[n])
            torch.testing.assert_close(got["weights"], w_full)
        # the same for the parameter-level method (per-task gradients averaged first)
        full_p, _ = _single(strategy, x, y, params=True)
        for r in range(world):
            for n in full_p:
                torch.testing.assert_close(parts[r][strategy, "params"]["grads"][n], full_p[n])
        # group=None: each rank balances its own shard, DDP averages the balanced gradients
        shards = [_single(strategy, x[4 * r : 4 * r + 4], y[4 * r : 4 * r + 4]) for r in range(2)]
        for r in range(world):
            got = parts[r][strategy, "local"]
            for n in full:
                torch.testing.assert_close(got["grads"][n], (shards[0][0][n] + shards[1][0][n]) / 2)
            torch.testing.assert_close(got["weights"], shards[r][1])
        # and local balancing differs from the global one here (conflicting tasks)
        n = "enc.0.weight"
        assert not torch.allclose(parts[0][strategy, "local"]["grads"][n], full[n])
