"""Tests of torch_artic.mtl.BalancedMTL: loss balancing strategies."""

from __future__ import annotations

import math
import warnings

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from torch_artic.mtl import BalancedMTL

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
