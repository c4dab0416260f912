"""The native-op pattern itself: every op declared once, dispatched by one rule, checked
by opcheck / torch.compile / native-vs-reference parity on its own samples, and every
tensor argument validated by the C++ side (device, dtype, shape, contiguity)."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
import torch

import torch_artic as ta
from torch_artic import _native

OPS = sorted(_native.REGISTRY)
LOADED = _native.extension_loaded()
native = pytest.mark.skipif(not LOADED, reason="native extension not loaded")


def _samples(op, dtype=torch.float64, grad=True):
    grad = grad and _native.REGISTRY[op].backward_op is not None
    out = []
    for args in _native.REGISTRY[op].samples(torch.device("cpu"), dtype):
        out.append(
            tuple(
                a.clone().requires_grad_(grad and a.is_floating_point())
                if isinstance(a, torch.Tensor)
                else a
                for a in args
            )
        )
    return out


def _call(op, args):
    return getattr(torch.ops.torch_artic, op).default(*args)


def _as_tuple(out):
    return out if isinstance(out, tuple) else (out,)


# --------------------------------------------------------------------------- the registry
def test_every_op_is_declared_and_has_samples():
    declared = {"pairwise_distance_stats", "sketch_render_forward", "mst_prim", "tps_inverse"}
    assert set(OPS) == declared
    for op in OPS:
        assert _native.REGISTRY[op].samples(torch.device("cpu"), torch.float64)


@native
def test_every_extension_kernel_belongs_to_a_declared_op():
    # a kernel the extension registers but Python does not declare would silently never
    # run: the kernel table and the declarations must cover each other
    declared = set(OPS) | {o.backward_op for o in _native.REGISTRY.values() if o.backward_op}
    assert set(_native.KERNELS) == declared
    names = {
        n.split("::")[1] for n in torch._C._dispatch_get_all_op_names() if "torch_artic::" in n
    }
    assert names == declared


@native
def test_kernel_table_agrees_with_the_dispatcher():
    for op, devices in _native.KERNELS.items():
        for dev, key in (("cpu", "CPU"), ("cuda", "CUDA")):
            has = torch._C._dispatch_has_kernel_for_dispatch_key(f"torch_artic::{op}", key)
            assert has == (dev in devices), (op, dev)
        assert set(devices["cpu"]) == {torch.float32, torch.float64}


@native
def test_backend_info_reports_the_kernel_table():
    info = ta.backend_info()
    assert info["extension"] == "loaded" and info["reason"] is None
    assert info["reference_forced"] is False
    for op in OPS:
        assert info["ops"][op]["cpu"] == ["float32", "float64"]
        assert ("cuda" in info["ops"][op]) == ("cuda" in _native.KERNELS[op])


@native
def test_dispatch_rule():
    op = _native.REGISTRY["pairwise_distance_stats"]
    assert op.native_for(torch.zeros(1))
    assert op.native_for(torch.zeros(1, dtype=torch.float64))
    assert not op.native_for(torch.zeros(1, dtype=torch.float16))  # no CPU float16 kernel
    assert not op.native_for(torch.zeros(1, device="meta"))
    with ta.force_reference():
        assert not op.native_for(torch.zeros(1))
        assert ta.backend_info()["reference_forced"]
        with ta.force_reference(enabled=False):  # nested: switched back on for the inner block
            assert op.native_for(torch.zeros(1))
        assert not op.native_for(torch.zeros(1))
    assert op.native_for(torch.zeros(1))


def test_force_reference_at_import_skips_the_extension():
    code = (
        "import torch, torch_artic as ta;"
        "i = ta.backend_info(); assert i['extension'] == 'forced off', i;"
        "assert i['reference_forced'] and all(v == {} for v in i['ops'].values()), i;"
        "x = torch.randn(9, 4, 3, dtype=torch.float64);"
        "torch.testing.assert_close(ta.pairwise_distance_variance(x), torch.cdist(x, x).var(0));"
        "print('ok')"
    )
    env = dict(os.environ, TORCH_ARTIC_FORCE_REFERENCE="1")
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "ok"


def test_a_second_declaration_is_refused():
    with pytest.raises(RuntimeError, match="declared twice"):
        _native.NativeOp(
            "mst_prim", reference=lambda x: x, fake=lambda x: x, samples=lambda d, t: []
        )


# --------------------------------------------------------------------------- per op
@native
@pytest.mark.parametrize("op", OPS)
def test_opcheck(op):
    for args in _samples(op):
        torch.library.opcheck(getattr(torch.ops.torch_artic, op).default, args)


@native
@pytest.mark.parametrize("op", OPS)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_native_matches_reference(op, dtype):
    declared = _native.REGISTRY[op]
    tol = dict(atol=1e-9, rtol=1e-8) if dtype == torch.float64 else dict(atol=2e-4, rtol=2e-4)
    for args in _samples(op, dtype):
        outs_n = _as_tuple(declared.public(_call(op, args)))
        outs_r = _as_tuple(declared.public(declared.reference(*args)))
        for a, b in zip(outs_n, outs_r):
            assert a.shape == b.shape and a.dtype == b.dtype
            if a.is_floating_point():
                torch.testing.assert_close(a, b, **tol)
            else:
                assert torch.equal(a, b)
        if declared.backward_op is None:
            continue
        wrt = [a for a in args if isinstance(a, torch.Tensor) and a.requires_grad]
        gs = [torch.cos(3 * o.detach() + 1) for o in outs_n]
        gn = torch.autograd.grad(outs_n, wrt, gs, allow_unused=True)
        gr = torch.autograd.grad(
            [o for o in outs_r if o.requires_grad],
            wrt,
            [g for g, o in zip(gs, outs_r) if o.requires_grad],
            allow_unused=True,
        )
        for a, b in zip(gn, gr):
            if a is None or b is None:
                assert (a is None or not a.any()) and (b is None or not b.any())
            else:
                torch.testing.assert_close(a, b, **tol)


@native
@pytest.mark.parametrize("op", [o for o in OPS if _native.REGISTRY[o].backward_op])
def test_higher_order_gradients_go_through_the_reference(op):
    for args in _samples(op)[:2]:
        wrt = [a for a in args if isinstance(a, torch.Tensor) and a.requires_grad]
        out = _as_tuple(_native.REGISTRY[op](*args))
        first = torch.autograd.grad(
            [o for o in out if o.requires_grad],
            wrt,
            [torch.cos(o.detach()) for o in out if o.requires_grad],
            create_graph=True,
            allow_unused=True,
        )
        used = [g for g in first if g is not None and g.requires_grad]
        assert used, op
        second = torch.autograd.grad(sum((g * g).sum() for g in used), wrt, allow_unused=True)
        assert any(g is not None and torch.isfinite(g).all() for g in second)


@native
@pytest.mark.parametrize("op", OPS)
def test_torch_compile_fullgraph_matches_eager(op):
    declared = _native.REGISTRY[op]
    for args in _samples(op, grad=False)[:2]:
        compiled = torch.compile(lambda *a: declared(*a), fullgraph=True, backend="aot_eager")
        for a, b in zip(_as_tuple(compiled(*args)), _as_tuple(declared(*args))):
            assert torch.equal(a, b)


# --------------------------------------------------------------------------- C++ argument checks
@native
@pytest.mark.parametrize("op", OPS)
def test_every_tensor_argument_is_checked_by_the_kernel(op):
    # direct torch.ops calls with a bad tensor in any position must raise (never read
    # garbage), with the op and the argument named and no build path in the message
    schema = getattr(torch.ops.torch_artic, op).default._schema
    names = [a.name for a in schema.arguments]
    # the sample with the most tensors (optional ones given)
    args = max(_samples(op, grad=False), key=lambda a: sum(isinstance(x, torch.Tensor) for x in a))
    # (a bad first tensor decides the dispatch itself, e.g. to the meta kernel, or makes
    # the others look wrong: it is the Python layer's to name)
    positions = [i for i, a in enumerate(args) if isinstance(a, torch.Tensor)][1:]
    assert positions or op == "mst_prim"
    for i in positions:
        good = args[i]
        bad_inputs = {
            "meta": good.to("meta"),
            "dtype": good.to(torch.float32 if good.dtype == torch.float64 else torch.float64),
            "stride": good.mT if good.dim() >= 2 and good.shape[-1] > 1 else None,
            "shape": good[..., :1] if good.shape[-1] > 1 else good.unsqueeze(0),
        }
        for kind, bad in bad_inputs.items():
            if bad is None:
                continue
            trial = list(args)
            trial[i] = bad
            with pytest.raises(RuntimeError) as err:
                _call(op, tuple(trial))
            msg = str(err.value)
            assert f"torch_artic::{op}" in msg, (kind, msg)
            assert f"`{names[i]}`" in msg, (kind, names[i], msg)
            assert os.getcwd() not in msg and "/csrc/" not in msg, msg


@native
def test_first_argument_is_checked_by_the_kernel():
    for op, bad, name in [
        ("mst_prim", torch.ones(2, 3, 4, dtype=torch.float64), "costs"),
        ("mst_prim", torch.rand(2, 4, 4, dtype=torch.float64).mT, "costs"),
        ("pairwise_distance_stats", torch.ones(2, 3), "points"),
        ("sketch_render_forward", torch.ones(1, 3, 3, dtype=torch.float64), "points"),
        ("tps_inverse", torch.ones(3, 9, 3, dtype=torch.float64), "centers"),
        ("tps_inverse", torch.ones(3, 2, 9, dtype=torch.float64).mT, "centers"),
    ]:
        args = list(_samples(op, grad=False)[0])
        args[0] = bad
        with pytest.raises(RuntimeError, match=f"torch_artic::{op}: `{name}`"):
            _call(op, tuple(args))


@native
def test_unknown_composite_is_an_error_in_the_kernel():
    args = list(_samples("sketch_render_forward", grad=False)[0])
    args[6] = "maximum"
    with pytest.raises(RuntimeError, match="`composite` must be"):
        _call("sketch_render_forward", tuple(args))
