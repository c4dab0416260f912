"""Hostile inputs over the whole public API, on both backends.

A catalogue, not a list of anecdotes: every public function gets a valid base call, and
every tensor argument of it is put through the same mutations (non-finite entries,
wrong dtypes, sparse layout, the meta device, a non-contiguous view, a wrong rank, a
wrong size, an empty batch), every scalar option through bad values (0, negative, NaN,
inf, tiny, wrong type), plus the degenerate inputs of each op (coincident points,
single keypoints, edge sizes). Each case runs with the native kernels and with the
pure-torch references (``force_reference``), and asserts one of:

- ``error``: both backends raise the expected ``TypeError``/``ValueError`` and its
  message names the argument (backquoted, as the library writes it);
- ``agree``: both backends return, and values, gradients and which entries are finite
  agree (bit for bit where the op is pure torch, to rounding where a kernel runs); a
  case may add its documented property (e.g. "NaN in that heatmap only").

Crash-prone calls (direct ``torch.ops.torch_artic`` calls with hostile tensors) run in a
subprocess, so a segfault is a failing test and not a dead test run.
"""

from __future__ import annotations

import math
import re
import subprocess
import sys
import textwrap
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import pytest
import torch

import torch_artic as ta

F64 = torch.float64
NAN, INF = float("nan"), float("inf")


def _g(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


@dataclass
class Case:
    """``fn(*args, **kwargs)``; tensors in ``args``/``kwargs`` that are floating get a
    gradient where ``grad`` says so. ``error = (type, names)``: the call must raise
    ``type`` naming one of ``names``; else both backends must agree (and ``check``)."""

    id: str
    fn: Callable
    args: tuple = ()
    kwargs: dict = field(default_factory=dict)
    error: tuple[type, tuple[str, ...]] | None = None
    grad: bool = True
    check: Callable[[Any], None] | None = None


CASES: list[Case] = []


def add(id, fn, args=(), kwargs=None, *, error=None, grad=True, check=None):
    CASES.append(Case(id, fn, tuple(args), dict(kwargs or {}), error, grad, check))


# --------------------------------------------------------------------------- mutations
def _nan(t):
    t = t.clone()
    t.view(-1)[t.numel() // 2] = NAN
    return t


def _inf(t, sign=1.0):
    t = t.clone()
    t.view(-1)[0] = sign * INF
    return t


def _noncontiguous(t):
    """The same values and shape, in a non-contiguous layout."""
    if t.dim() < 2:
        return torch.stack((t, t), -1)[..., 0]
    return t.transpose(0, 1).contiguous().transpose(0, 1)


def _drop_last(t):
    return t[..., :-1] if t.shape[-1] > 1 else t[..., :0]


TYPE, VALUE = TypeError, ValueError


def tensor_mutations(
    func: str,
    fn: Callable,
    args: tuple,
    kwargs: dict,
    which: str,
    *,
    others: tuple[str, ...] = (),
    nan_ok: bool = True,
    non_negative: bool = False,
    integer_ok: bool = False,
    resize_ok: bool = False,
    empty: tuple | None = None,
    shape_error: type = ValueError,
):
    """Register the standard mutations of the tensor argument ``which`` (a kwarg name,
    or ``"0"``/``"1"``... for a positional one) of ``fn``. ``others``: the other tensor
    arguments (a device mismatch may name either; without others a meta tensor is a
    valid shape-only call). ``resize_ok``: one entry fewer in the last dim is valid.
    ``empty``: ``("ok",)`` or ``("error", type)`` for a zero-size first dim."""

    def put(value):
        a, k = list(args), dict(kwargs)
        if which.isdigit():
            a[int(which)] = value
        else:
            k[which] = value
        return tuple(a), k

    base = args[int(which)] if which.isdigit() else kwargs[which]
    name = _argname(fn, which)
    names = (name, *others)
    pre = f"{func}[{name}]"
    if nan_ok:
        add(f"{pre}-nan", fn, *put(_nan(base)))
        add(f"{pre}-inf", fn, *put(_inf(base)))
        if non_negative:  # a value check refuses -inf
            add(f"{pre}--inf", fn, *put(_inf(base, -1.0)), error=(VALUE, (name,)))
        else:
            add(f"{pre}--inf", fn, *put(_inf(base, -1.0)))
    if not integer_ok:
        add(f"{pre}-int64", fn, *put(base.long()), error=(TYPE, names))
        add(f"{pre}-bool", fn, *put(base > 0), error=(TYPE, names))
    add(f"{pre}-complex", fn, *put(base.to(torch.complex128)), error=(TYPE, names))
    add(f"{pre}-sparse", fn, *put(base.to_sparse()), error=(TYPE, names))
    if others:
        add(f"{pre}-meta", fn, *put(base.to("meta")), error=(VALUE, names))
    else:  # a meta-only call: shapes only, no error
        add(f"{pre}-meta", fn, *put(base.to("meta")), grad=False, check=_on_meta)
    add(f"{pre}-noncontiguous", fn, *put(_noncontiguous(base)), check=None)
    add(f"{pre}-list", fn, *put(base.tolist()), error=(TYPE, names))
    add(f"{pre}-rank", fn, *put(base.reshape(-1)[:1].reshape(())), error=(shape_error, names))
    if base.dim() >= 1 and base.shape[-1] > 1:
        if resize_ok:
            add(f"{pre}-size", fn, *put(_drop_last(base)))
        else:
            add(f"{pre}-size", fn, *put(_drop_last(base)), error=(shape_error, names))
    if empty is not None:
        kind, *rest = empty
        mut = base[:0]
        if kind == "error":
            add(f"{pre}-empty", fn, *put(mut), error=(rest[0], names))
        else:
            add(f"{pre}-empty", fn, *put(mut))


def scalar_mutations(func, fn, args, kwargs, which, bad_values, *, ok_values=()):
    """Bad values of the scalar option ``which``: ``(value, exception)`` pairs."""
    for value, exc in bad_values:
        k = dict(kwargs, **{which: value})
        add(f"{func}[{which}={value!r}]", fn, args, k, error=(exc, (which,)))
    for value in ok_values:
        k = dict(kwargs, **{which: value})
        add(f"{func}[{which}={value!r}]", fn, args, k)


def _on_meta(out) -> None:
    assert all(t.device.type == "meta" for t in _tensors(out))


def _argname(fn, which: str) -> str:
    if not which.isdigit():
        return which
    import inspect

    return list(inspect.signature(fn).parameters)[int(which)]


POSITIVE_BAD = [
    (0.0, VALUE),
    (-1.0, VALUE),
    (NAN, VALUE),
    (INF, VALUE),
    ("1", TYPE),
    (None, TYPE),
    (True, TYPE),
]


# --------------------------------------------------------------------------- catalogue
def _points(b=6, k=5, d=2, seed=0):
    return torch.rand(b, k, d, generator=_g(seed), dtype=F64) * 1.6 - 0.8


# soft_argmax2d ---------------------------------------------------------------
heat = torch.randn(2, 3, 5, 6, generator=_g(1), dtype=F64)
tensor_mutations("soft_argmax2d", ta.soft_argmax2d, (heat,), {}, "0", empty=("ok",),
                 resize_ok=True)  # fmt: skip
scalar_mutations(
    "soft_argmax2d",
    ta.soft_argmax2d,
    (heat,),
    {},
    "temperature",
    POSITIVE_BAD,
    ok_values=(1e-300, 1e-46, 1e30),
)
add("soft_argmax2d[temperature-tensor-meta]", ta.soft_argmax2d, (heat,),
    {"temperature": torch.ones(2, 3, device="meta")}, error=(VALUE, ("temperature",)))  # fmt: skip
add("soft_argmax2d[temperature-tensor-broadcast]", ta.soft_argmax2d, (heat,),
    {"temperature": torch.ones(4, dtype=F64)}, error=(VALUE, ("temperature",)))  # fmt: skip
add("soft_argmax2d[temperature-tensor-negative]", ta.soft_argmax2d, (heat,),
    {"temperature": -torch.ones(2, 3, dtype=F64)}, error=(VALUE, ("temperature",)))  # fmt: skip
add("soft_argmax2d[1x1 map]", ta.soft_argmax2d, (torch.zeros(1, 1, dtype=F64),),
    error=(VALUE, ("heatmaps",)))  # fmt: skip
add("soft_argmax2d[all -inf]", ta.soft_argmax2d, (torch.full((2, 4, 4), -INF, dtype=F64),),
    grad=False, check=lambda out: _assert(torch.isnan(out).all()))  # fmt: skip


def _one_nan_heatmap(out):
    # NaN in one heatmap (_nan: the middle entry, heatmap [1, 0]) gives NaN there only
    bad = torch.isnan(out).any(-1)
    _assert(bad[1, 0] and bad.sum() == 1 and torch.isnan(out[1, 0]).all())


add("soft_argmax2d[nan in one map]", ta.soft_argmax2d, (_nan(heat),), check=_one_nan_heatmap)

# gaussian_heatmaps / concentration_loss ------------------------------------
pts2 = _points(2, 3)
tensor_mutations("gaussian_heatmaps", ta.gaussian_heatmaps, (pts2, 8, 1.5), {}, "0",
                 empty=("ok",))  # fmt: skip
scalar_mutations("gaussian_heatmaps", ta.gaussian_heatmaps, (pts2, 8), {}, "sigma", [],
                 ok_values=(1e-170, 1e-300, 1e30))  # fmt: skip
for v, exc in POSITIVE_BAD:
    add(
        f"gaussian_heatmaps[sigma={v!r}]",
        ta.gaussian_heatmaps,
        (pts2, 8, v),
        error=(exc, ("sigma",)),
    )
for v, exc in [(1, VALUE), ((8,), TYPE), (8.0, TYPE), ((8, 1), VALUE), ("8", TYPE)]:
    add(
        f"gaussian_heatmaps[size={v!r}]",
        ta.gaussian_heatmaps,
        (pts2, v, 1.0),
        error=(exc, ("size",)),
    )
maps = torch.rand(2, 3, 8, 8, generator=_g(2), dtype=F64)
tensor_mutations("concentration_loss", ta.concentration_loss, (maps, 1.5), {}, "0",
                 empty=("ok",), resize_ok=True)  # fmt: skip
tensor_mutations("concentration_loss", ta.concentration_loss, (maps, 1.5),
                 {"points": _points(2, 3)}, "points", others=("heatmaps",))  # fmt: skip
add("concentration_loss[points shape]", ta.concentration_loss, (maps, 1.5),
    {"points": _points(2, 4)}, error=(VALUE, ("points",)))  # fmt: skip
scalar_mutations("concentration_loss", ta.concentration_loss, (maps, 1.5), {}, "reduction",
                 [("avg", VALUE), (None, VALUE)], ok_values=("sum", "none"))  # fmt: skip
add("concentration_loss[sigma tiny]", ta.concentration_loss, (maps, 1e-170))

# pairwise_distance_variance / stats --------------------------------------------
pts = _points(8, 5, 3)
conf = torch.rand(8, 5, generator=_g(3), dtype=F64) + 0.2
pdv = ta.pairwise_distance_variance
tensor_mutations("pairwise_distance_variance", pdv, (pts,), {}, "0",
                 empty=("error", VALUE), resize_ok=True)  # fmt: skip
tensor_mutations("pairwise_distance_variance", pdv, (pts,), {"confidence": conf}, "confidence",
                 others=("points",), empty=("error", VALUE), non_negative=True)  # fmt: skip
add("pairwise_distance_variance[D=9]", pdv, (_points(6, 4, 9),))
add("pairwise_distance_variance[D=1]", pdv, (_points(6, 4, 1),))
add("pairwise_distance_variance[B=1 biased]", pdv, (_points(1, 4),), {"unbiased": False})
add("pairwise_distance_variance[B=1]", pdv, (_points(1, 4),), error=(VALUE, ("points",)))
add("pairwise_distance_variance[K=1]", pdv, (_points(6, 1),), error=(VALUE, ("points",)))
add("pairwise_distance_variance[coincident]", pdv, (_points(6, 3).repeat(1, 2, 1),))
neg = conf.clone()
neg[7, 1] = -0.5
add("pairwise_distance_variance[negative confidence]", pdv, (pts,), {"confidence": neg},
    error=(VALUE, ("confidence",)))  # fmt: skip
add("pairwise_distance_variance[zero confidence]", pdv, (pts,),
    {"confidence": torch.zeros_like(conf)}, error=(VALUE, ("confidence",)))  # fmt: skip
add("pairwise_distance_variance[one sample seen]", pdv, (pts,),
    {"confidence": torch.cat((torch.ones(1, 5), torch.zeros(7, 5))).to(F64)},
    error=(VALUE, ("confidence",)))  # fmt: skip


def _zero_stats(st):
    _assert(all(torch.equal(t, torch.zeros(4, 4, dtype=F64)) for t in st))


add("pairwise_distance_stats[B=0]", ta.pairwise_distance_stats, (_points(0, 4),), grad=False,
    check=_zero_stats)  # fmt: skip
add("pairwise_distance_stats[B=0 confidence]", ta.pairwise_distance_stats, (_points(0, 4),),
    {"confidence": torch.ones(0, 4, dtype=F64)}, grad=False)  # fmt: skip
add("pairwise_distance_stats[confidence positional]", ta.pairwise_distance_stats, (pts, conf),
    error=(TYPE, ("pairwise_distance_stats",)))  # fmt: skip

# dmst --------------------------------------------------------------------------
cost = torch.rand(2, 5, 5, generator=_g(4), dtype=F64)
cost = cost + cost.mT
for rel in ("hard", "ste", "soft", "perturbed"):
    kw = {"relaxation": rel, "generator": _g(5)}
    tensor_mutations(f"dmst-{rel}", ta.dmst, (cost,), kw, "0", empty=("ok",),
                     others=("generator",))  # fmt: skip
    inf_cost = cost.clone()
    inf_cost[0, 0, 2] = inf_cost[0, 2, 0] = INF
    add(f"dmst-{rel}[+inf off the tree]", ta.dmst, (inf_cost,), kw, grad=rel != "hard",
        check=lambda out: _assert(out[0, 0, 2] == 0))  # fmt: skip
    add(f"dmst-{rel}[K=1]", ta.dmst, (torch.zeros(3, 1, 1, dtype=F64),), kw, grad=False)
    add(f"dmst-{rel}[ties]", ta.dmst, (torch.ones(2, 4, 4, dtype=F64),), kw, grad=rel != "hard")
add("dmst[asymmetric]", ta.dmst, (torch.rand(4, 4, generator=_g(6), dtype=F64),),
    {"relaxation": "hard"}, grad=False)  # fmt: skip
scalar_mutations("dmst", ta.dmst, (cost,), {}, "relaxation", [("exact", VALUE), (None, VALUE)])
scalar_mutations("dmst", ta.dmst, (cost,), {}, "temperature", POSITIVE_BAD, ok_values=(1e-12,))
scalar_mutations("dmst", ta.dmst, (cost,), {"relaxation": "perturbed", "generator": _g(7)},
                 "noise_scale", POSITIVE_BAD)  # fmt: skip
scalar_mutations("dmst", ta.dmst, (cost,), {"relaxation": "perturbed"}, "num_samples",
                 [(0, VALUE), (2.0, TYPE), (None, TYPE)])  # fmt: skip
scalar_mutations("dmst", ta.dmst, (cost,), {"relaxation": "perturbed"}, "generator",
                 [(0, TYPE)])  # fmt: skip

# lvmst / limb_variance_loss / self_consistency_loss ------------------------------
for si in (False, True):
    kw = {"scale_invariant": si}
    tensor_mutations(f"lvmst{'-log' if si else ''}", ta.lvmst, (pts,), kw, "0",
                     empty=("error", VALUE), resize_ok=True)  # fmt: skip
    tensor_mutations(f"lvmst{'-log' if si else ''}", ta.lvmst, (pts,), dict(kw, confidence=conf),
                     "confidence", others=("points",), non_negative=True)  # fmt: skip
    add(f"lvmst{'-log' if si else ''}[negative confidence]", ta.lvmst, (pts,),
        dict(kw, confidence=neg), error=(VALUE, ("confidence",)))  # fmt: skip
scalar_mutations("lvmst", ta.lvmst, (pts,), {"scale_invariant": True}, "eps", POSITIVE_BAD,
                 ok_values=(1e-30, 1e-300, 1e6))  # fmt: skip
coincident = pts.index_select(1, torch.tensor([0, 0, 1, 2]))
add("lvmst[eps tiny, coincident pair]", ta.lvmst, (coincident,),
    {"scale_invariant": True, "eps": 1e-30},
    check=lambda r: _assert(torch.isfinite(r.variance).all()))  # fmt: skip
adj = ta.edges_to_adjacency([[0, 1], [1, 2], [2, 3], [3, 4]], 5, dtype=F64)
tensor_mutations("limb_variance_loss", ta.limb_variance_loss, (pts, adj), {}, "1",
                 others=("points",))  # fmt: skip
tensor_mutations("limb_variance_loss", ta.limb_variance_loss, (pts, adj), {}, "0",
                 others=("adjacency",), empty=("error", VALUE), resize_ok=True)  # fmt: skip


def _lift(p):
    return p[..., 0] * 0.5 + p[..., 1]


xy = _points(4, 3)
tensor_mutations("self_consistency_loss", ta.self_consistency_loss, (_lift, xy), {}, "1",
                 empty=("ok",))  # fmt: skip
add("self_consistency_loss[depth_fn shape]", ta.self_consistency_loss,
    (lambda p: p, xy), error=(VALUE, ("depth_fn",)))  # fmt: skip
add("self_consistency_loss[depth_fn type]", ta.self_consistency_loss,
    (lambda p: 1.0, xy), error=(TYPE, ("depth_fn",)))  # fmt: skip


def _bad_side_view():
    calls = []

    def depth_fn(p):  # right shape for the front view, wrong for the side view
        calls.append(1)
        return p[..., 0] if len(calls) == 1 else p[..., :1]

    return depth_fn


add("self_consistency_loss[side view shape]", ta.self_consistency_loss,
    (_bad_side_view(), xy), error=(VALUE, ("depth_fn",)))  # fmt: skip
add("self_consistency_loss[depth meta]", ta.self_consistency_loss, (_lift, xy),
    {"depth": torch.zeros(4, 3, device="meta")}, error=(VALUE, ("depth",)))  # fmt: skip

# sketch_render -----------------------------------------------------------------
skp = _points(2, 4)
sk_adj = torch.rand(4, 4, generator=_g(8), dtype=F64)
sk_sig = torch.rand(4, 4, generator=_g(9), dtype=F64) + 0.5
sk_col = torch.rand(2, 4, 3, generator=_g(10), dtype=F64)
for comp in ta.sketch.COMPOSITES:
    kw = {"composite": comp}
    sk = ta.sketch_render
    tensor_mutations(f"sketch_render-{comp}", sk, (skp, sk_adj, 12), kw, "0",
                     others=("adjacency",), empty=("ok",))  # fmt: skip
    tensor_mutations(f"sketch_render-{comp}", sk, (skp, sk_adj, 12), kw, "1",
                     others=("points",), integer_ok=True)  # fmt: skip
    tensor_mutations(f"sketch_render-{comp}", sk, (skp, sk_adj, 12), dict(kw, sigma=sk_sig),
                     "sigma", others=("points",), nan_ok=False)  # fmt: skip
    tensor_mutations(f"sketch_render-{comp}", sk, (skp, sk_adj, 12), dict(kw, colors=sk_col),
                     "colors", others=("points",), resize_ok=True)  # fmt: skip
    for sigma in (1e-20, 1e-3, 40.0):
        add(f"sketch_render-{comp}[sigma={sigma}]", sk, (skp, sk_adj, 12), dict(kw, sigma=sigma))
    short = skp.clone()
    short[:, 1] = short[:, 0] + 1e-160
    add(f"sketch_render-{comp}[length 1e-160]", sk, (short, sk_adj, 12), kw)
    same = skp.clone()
    same[:, 1] = same[:, 0]
    add(f"sketch_render-{comp}[coincident]", sk, (same, sk_adj, 12), kw)
    zero_nan = sk_col.clone()
    zero_nan[:, 1] = NAN
    adj0 = sk_adj.clone()
    adj0[1] = adj0[:, 1] = 0
    add(f"sketch_render-{comp}[NaN colour, zero strength]", sk, (skp, adj0, 12),
        dict(kw, colors=zero_nan),
        check=lambda out: _assert(torch.isfinite(out).all()))  # fmt: skip
    add(f"sketch_render-{comp}[far outside]", sk, (skp * 1e6, sk_adj, 12), kw,
        check=lambda out: _assert(out.abs().sum() == 0))  # fmt: skip
    neg_sig = sk_sig.clone()
    neg_sig[0, 1] = -1.0
    add(f"sketch_render-{comp}[negative sigma]", sk, (skp, sk_adj, 12), dict(kw, sigma=neg_sig),
        error=(VALUE, ("sigma",)))  # fmt: skip
for v, exc in POSITIVE_BAD:
    add(f"sketch_render[sigma={v!r}]", ta.sketch_render, (skp, sk_adj, 12), {"sigma": v},
        error=(exc, ("sigma",)))  # fmt: skip
for v, exc in [(1, VALUE), ((8,), TYPE), (8.0, TYPE), ((8, 0), VALUE)]:
    add(f"sketch_render[size={v!r}]", ta.sketch_render, (skp, sk_adj, v), error=(exc, ("size",)))
scalar_mutations("sketch_render", ta.sketch_render, (skp, sk_adj, 12), {}, "composite",
                 [("maximum", VALUE), (None, VALUE), (2, VALUE)])  # fmt: skip
scalar_mutations("sketch_render", ta.sketch_render, (skp, sk_adj, 12), {}, "normalized",
                 [(1, TYPE), ("yes", TYPE)])  # fmt: skip
add("sketch_render[K=1]", ta.sketch_render, (_points(2, 1), torch.ones(1, 1, dtype=F64), 8),
    error=(VALUE, ("points",)))  # fmt: skip

# data and coordinates ------------------------------------------------------------
for gen in (ta.stickman2d, ta.stickman3d):
    nm = gen.__name__
    for v, exc in [(0, VALUE), (2.0, TYPE), (True, TYPE), (None, TYPE)]:
        add(f"{nm}[batch_size={v!r}]", gen, (v,), {"render": False}, error=(exc, ("batch_size",)))
    for v, exc in [(torch.int64, TYPE), ("float32", TYPE)]:
        add(f"{nm}[dtype={v!r}]", gen, (2,), {"dtype": v, "render": False},
            error=(exc, ("dtype",)))  # fmt: skip
    add(f"{nm}[generator=0]", gen, (2,), {"generator": 0}, error=(TYPE, ("generator",)))
    add(f"{nm}[sigma=-1]", gen, (2,), {"sigma": -1.0}, error=(VALUE, ("sigma",)))
for v, exc in [(1, VALUE), (0, VALUE)]:
    add(f"stickman2d[size={v}]", ta.stickman2d, (2,), {"size": v}, error=(exc, ("size",)))
add(
    "edges_to_adjacency[bad index]", ta.edges_to_adjacency, ([[0, 5]], 3), error=(VALUE, ("edges",))
)
add("edges_to_adjacency[float edges]", ta.edges_to_adjacency, (torch.tensor([[0.0, 1.0]]), 3),
    error=(TYPE, ("edges",)))  # fmt: skip
tensor_mutations("normalize_points", ta.normalize_points, (pts2, (5, 9)), {}, "0", empty=("ok",),
                 shape_error=VALUE)  # fmt: skip
tensor_mutations("denormalize_points", ta.denormalize_points, (pts2, (5, 9)), {}, "0",
                 empty=("ok",))  # fmt: skip
for v, exc in [(1, VALUE), ((4, 4, 4), TYPE), (None, TYPE)]:
    add(f"pixel_grid[size={v!r}]", ta.pixel_grid, (v,), error=(exc, ("size",)))

# metrics -----------------------------------------------------------------------------
poses = torch.randn(4, 6, 3, generator=_g(11), dtype=F64)
pred = poses + 0.1 * torch.randn(4, 6, 3, generator=_g(12), dtype=F64)
for metric in (ta.mpjpe, ta.pa_mpjpe, ta.procrustes_align):
    nm = metric.__name__
    tensor_mutations(nm, metric, (pred, poses), {}, "0", others=("target",))
    tensor_mutations(nm, metric, (pred, poses), {}, "1", others=("pred",))
    for dt in (torch.float16, torch.bfloat16):
        add(f"{nm}[{dt}]", metric, (pred.to(dt), poses.to(dt)), grad=False)


def _nan_sample_only(out):
    _assert(torch.isnan(out[1]).all() and torch.isfinite(out[[0, 2, 3]]).all())


nan_pred = pred.clone()
nan_pred[1, 2, 0] = NAN
add("pa_mpjpe[NaN in one sample]", ta.pa_mpjpe, (nan_pred, poses), {"reduction": "none"},
    check=_nan_sample_only)  # fmt: skip


def _nan_in_sample_one(out):
    _assert(torch.isnan(out[1]).any() and torch.isfinite(out[[0, 2, 3]]).all())


add("mpjpe[NaN in one sample]", ta.mpjpe, (nan_pred, poses), {"reduction": "none", "root": 0},
    check=_nan_in_sample_one)  # fmt: skip
scalar_mutations("mpjpe", ta.mpjpe, (pred, poses), {}, "root", [(6, VALUE), (1.0, TYPE)])
kp_pred = _points(8, 5)
kp_true = _points(8, 4, seed=1)
tensor_mutations("hungarian_keypoint_error", ta.hungarian_keypoint_error, (kp_pred, kp_true), {},
                 "0", others=("target",))  # fmt: skip
add("hungarian_keypoint_error[more true than predicted]", ta.hungarian_keypoint_error,
    (kp_true, kp_pred), error=(VALUE, ("pred", "target")))  # fmt: skip


# thin-plate splines ----------------------------------------------------------------------
tps_src, tps_dst = ta.random_tps(2, grid=3, generator=_g(21), dtype=F64)
tps_img = torch.rand(2, 1, 6, 7, generator=_g(22), dtype=F64)
tps_pts = _points(2, 4, seed=23)
tps_kw = {"image": tps_img, "points": tps_pts}
for which in ("src", "dst"):
    other = "dst" if which == "src" else "src"
    tensor_mutations("tps_warp", lambda src, dst, **kw: ta.tps_warp(src, dst, **kw),
                     (tps_src, tps_dst), tps_kw, "0" if which == "src" else "1",
                     others=(other,), nan_ok=False)  # fmt: skip
    base = tps_src if which == "src" else tps_dst
    for label, mut in [("nan", _nan(base)), ("inf", _inf(base))]:
        a = (mut, tps_dst) if which == "src" else (tps_src, mut)
        add(f"tps_warp[{which}]-{label} control point", ta.tps_warp, a, tps_kw,
            error=(VALUE, (which,)))  # fmt: skip
    dup = base.clone()
    dup[:, 1] = dup[:, 0]
    a = (dup, tps_dst) if which == "src" else (tps_src, dup)
    add(f"tps_warp[{which}]-duplicate control points", ta.tps_warp, a, tps_kw,
        error=(VALUE, (which,)))  # fmt: skip
    add(f"tps_warp[{which}]-duplicate control points, regularized", ta.tps_warp, a,
        dict(tps_kw, regularization=1e-3))  # fmt: skip
    line = base.clone()
    line[..., 1] = 0.5 * line[..., 0]
    a = (line, tps_dst) if which == "src" else (tps_src, line)
    add(f"tps_warp[{which}]-collinear control points", ta.tps_warp, a,
        dict(tps_kw, regularization=1e-3), error=(VALUE, (which,)))  # fmt: skip
for which in ("image", "points"):
    tensor_mutations("tps_warp", lambda src, dst, **kw: ta.tps_warp(src, dst, **kw),
                     (tps_src, tps_dst), tps_kw, which, others=("src", "dst"),
                     resize_ok=which == "image")  # fmt: skip
add("tps_warp[image and points absent]", ta.tps_warp, (tps_src, tps_dst), {},
    error=(VALUE, ("image", "points")))  # fmt: skip
add("tps_warp[far points]", ta.tps_warp, (tps_src, tps_dst), {"points": tps_pts * 1e3},
    check=lambda out: _assert(torch.isfinite(out.points).all()))  # fmt: skip
for v, exc in [(-1.0, VALUE), (NAN, VALUE), (INF, VALUE), ("0", TYPE)]:
    add(f"tps_warp[regularization={v!r}]", ta.tps_warp, (tps_src, tps_dst),
        {"regularization": v} | tps_kw, error=(exc, ("regularization",)))  # fmt: skip
scalar_mutations("tps_warp", ta.tps_warp, (tps_src, tps_dst), tps_kw, "interpolation",
                 [("cubic", VALUE), (None, VALUE)])  # fmt: skip
scalar_mutations("tps_warp", ta.tps_warp, (tps_src, tps_dst), tps_kw, "padding",
                 [("wrap", VALUE), (None, VALUE)])  # fmt: skip
scalar_mutations("tps_warp", ta.tps_warp, (tps_src, tps_dst), tps_kw, "inverse",
                 [("exact", VALUE), (None, VALUE)])  # fmt: skip
scalar_mutations("tps_warp", ta.tps_warp, (tps_src, tps_dst), tps_kw, "max_iter",
                 [(0, VALUE), (-1, VALUE), (2.5, TYPE)])  # fmt: skip
scalar_mutations("tps_warp", ta.tps_warp, (tps_src, tps_dst), tps_kw, "tol",
                 [(0.0, VALUE), (-1.0, VALUE), (NAN, VALUE)])  # fmt: skip
for v, exc in [(0, VALUE), (2.0, TYPE), (True, TYPE)]:
    add(f"random_tps[batch_size={v!r}]", ta.random_tps, (v,), error=(exc, ("batch_size",)))
for v, exc in [(1, VALUE), ((3, 1), VALUE), (2.0, TYPE)]:
    add(f"random_tps[grid={v!r}]", ta.random_tps, (2,), {"grid": v}, error=(exc, ("grid",)))
for v, exc in [(torch.int64, TYPE), ("float32", TYPE)]:
    add(f"random_tps[dtype={v!r}]", ta.random_tps, (2,), {"dtype": v}, error=(exc, ("dtype",)))
scalar_mutations("random_tps", ta.random_tps, (2,), {}, "noise_scale",
                 [(-1.0, VALUE), (NAN, VALUE), (INF, VALUE)])  # fmt: skip
tps_factor = torch.tensor([0.5, 2.0], dtype=F64)
for v in (0.5, torch.tensor(0.5, dtype=F64), tps_factor, tps_factor[:, None, None]):
    label = f"factor {list(v.shape)}" if isinstance(v, torch.Tensor) else "factor float"
    add(f"scale_tps[{label}]", ta.scale_tps, (tps_src, tps_dst, v))
add("scale_tps[one factor per sample]", ta.scale_tps, (tps_src, tps_dst, tps_factor),
    check=lambda out: _assert(torch.allclose(out.dst[1] - out.src[1],
                                             2.0 * (tps_dst[1] - tps_src[1]))))  # fmt: skip
for v in (torch.ones(3, dtype=F64), torch.ones(2, 2, dtype=F64), torch.ones(2, 1, 2, dtype=F64)):
    add(f"scale_tps[factor {list(v.shape)}]", ta.scale_tps, (tps_src, tps_dst, v),
        error=(VALUE, ("factor",)))  # fmt: skip
add("scale_tps[sparse factor]", ta.scale_tps, (tps_src, tps_dst, tps_factor.to_sparse()),
    error=(TYPE, ("factor",)))  # fmt: skip
add("scale_tps[meta factor]", ta.scale_tps, (tps_src, tps_dst, tps_factor.to("meta")),
    error=(VALUE, ("factor",)))  # fmt: skip
add("scale_tps[NaN factor]", ta.scale_tps, (tps_src, tps_dst, NAN), error=(VALUE, ("factor",)))


# BalancedMTL -------------------------------------------------------------------------
def _mtl_steps(strategy, values, **kw):
    """Totals of a fresh BalancedMTL over the steps ``losses = [1, v]``, v in ``values``."""
    mtl = ta.BalancedMTL(2, strategy=strategy, **kw).double()
    one = torch.ones((), dtype=F64)
    with __import__("warnings").catch_warnings():
        __import__("warnings").simplefilter("ignore")  # exp's overflow warning for inf
        return torch.stack([mtl([one, torch.tensor(v, dtype=F64)]).detach() for v in values])


def _bad_step_only(bad):
    """A non-finite loss makes its own step's total non-finite, and no other step."""

    def check(out):
        _assert((~torch.isfinite(out[list(bad)])).all())
        good = [i for i in range(len(out)) if i not in bad]
        _assert(torch.isfinite(out[good]).all() and (out[good] == out[good[0]]).all())

    return check


for strat in ("exp", "log", "uncertainty", "fixed", "dwa"):
    add(f"BalancedMTL-{strat}[NaN then inf loss]", _mtl_steps, (strat, [2.0, NAN, 2.0, INF, 2.0]),
        grad=False, check=_bad_step_only((1, 3)))  # fmt: skip
add("BalancedMTL-dwa-epoch[NaN loss]", _mtl_steps, ("dwa", [2.0, NAN, 2.0]),
    {"dwa_update": "epoch"}, grad=False, check=_bad_step_only((1,)))  # fmt: skip
_mtl2 = ta.BalancedMTL(2)
_one = torch.ones(())
for label, losses, exc, name in [
    ("too few", [_one], VALUE, "losses"),
    ("vector loss", [torch.ones(2), _one], VALUE, "losses[0]"),
    ("python float", [1.0, _one], TYPE, "losses[0]"),
    ("int64 loss", [torch.ones((), dtype=torch.long), _one], TYPE, "losses[0]"),
    ("meta loss", [_one.to("meta"), _one], VALUE, "losses[0]"),
    ("a tensor, not a sequence", torch.ones(2), TYPE, "losses"),
]:
    add(f"BalancedMTL[{label}]", _mtl2, (losses,), error=(exc, (name,)))
for kw, exc, name in [
    ({"tasks": 0}, VALUE, "tasks"),
    ({"tasks": 2, "strategy": "nope"}, VALUE, "strategy"),
    ({"tasks": 2, "temperature": 0.0}, VALUE, "temperature"),
    ({"tasks": 2, "temperature": NAN}, VALUE, "temperature"),
    ({"tasks": 2, "strategy": "fixed", "task_weights": [1.0]}, VALUE, "task_weights"),
    ({"tasks": 2, "strategy": "fixed", "task_weights": [1.0, NAN]}, VALUE, "task_weights"),
    ({"tasks": 2, "multipliers": [1.0, -1.0]}, VALUE, "multipliers"),
    ({"tasks": 2, "strategy": "dwa", "dwa_update": "batch"}, VALUE, "dwa_update"),
]:
    add(f"BalancedMTL[{kw}]", ta.BalancedMTL, (), kw, error=(exc, (name,)))
add("BalancedMTL-pcgrad[called as a loss]", ta.BalancedMTL(2, strategy="pcgrad"), ([_one, _one],),
    error=(VALUE, ("backward",)))  # fmt: skip


def _assert(ok) -> None:
    assert bool(ok)


# --------------------------------------------------------------------------- running
def _materialise(case: Case):
    """Fresh copies of the case's tensors, floating ones requiring grad if asked."""

    def copy(v):
        if isinstance(v, torch.Generator):  # each backend draws the same noise
            return torch.Generator(device=v.device).set_state(v.get_state())
        if isinstance(v, torch.Tensor) and v.layout == torch.strided and v.device.type != "meta":
            c = v.detach().clone()
            if case.grad and case.error is None and c.is_floating_point():
                c.requires_grad_(True)
            return c
        return v

    return tuple(copy(a) for a in case.args), {k: copy(v) for k, v in case.kwargs.items()}


def _tensors(out) -> list[torch.Tensor]:
    if isinstance(out, torch.Tensor):
        return [out]
    if isinstance(out, (tuple, list)):
        return [t for o in out for t in _tensors(o)]
    return []


def _run(case: Case, reference: bool):
    args, kwargs = _materialise(case)
    with ta.force_reference(enabled=reference):
        try:
            out = case.fn(*args, **kwargs)
        except Exception as exc:  # compared below
            return exc, None, None
        leaves = [t for t in (*args, *kwargs.values()) if isinstance(t, torch.Tensor)]
        leaves = [t for t in leaves if t.requires_grad]
        outs = [t for t in _tensors(out) if t.requires_grad]
        grads = None
        if leaves and outs:
            weights = [
                torch.cos(torch.arange(t.numel(), dtype=t.dtype).view(t.shape)) for t in outs
            ]
            grads = torch.autograd.grad(outs, leaves, weights, allow_unused=True)
    return None, out, grads


def _same(a: torch.Tensor, b: torch.Tensor, what: str) -> None:
    assert a.shape == b.shape and a.dtype == b.dtype, (what, a.shape, b.shape)
    if not a.is_floating_point():
        assert torch.equal(a, b), what
        return
    assert torch.equal(torch.isnan(a), torch.isnan(b)), f"{what}: NaN patterns differ"
    assert torch.equal(torch.isinf(a), torch.isinf(b)), f"{what}: inf patterns differ"
    fin = torch.isfinite(a)
    tol = 1e-9 if a.dtype == F64 else 2e-3
    torch.testing.assert_close(a[fin], b[fin], atol=tol, rtol=tol, msg=what)


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_hostile_input(case: Case):
    exc_n, out_n, grad_n = _run(case, reference=False)
    exc_r, out_r, grad_r = _run(case, reference=True)
    if case.error is not None:
        kind, names = case.error
        for exc in (exc_n, exc_r):
            assert exc is not None, f"{case.id}: no error raised"
            assert isinstance(exc, kind), f"{case.id}: {type(exc).__name__}: {exc}"
            named = "|".join(re.escape(n) for n in names)
            assert re.search(rf"`({named})`|\b({named})\(\)", str(exc)), f"{case.id}: {exc}"
        assert type(exc_n) is type(exc_r) and str(exc_n) == str(exc_r)
        return
    assert exc_n is None and exc_r is None, f"{case.id}: {exc_n!r} / {exc_r!r}"
    if any(t.device.type == "meta" for t in _tensors(out_n)):
        for a, b in zip(_tensors(out_n), _tensors(out_r)):
            assert a.shape == b.shape and a.dtype == b.dtype
        case.check(out_n)
        return
    for a, b in zip(_tensors(out_n), _tensors(out_r)):
        _same(a.detach(), b.detach(), f"{case.id} value")
    if grad_n is not None or grad_r is not None:
        for a, b in zip(grad_n, grad_r):
            if a is None or b is None:
                assert (a is None or not a.any()) and (b is None or not b.any())
            else:
                _same(a, b, f"{case.id} gradient")
    if case.check is not None:
        case.check(out_n)


def test_catalogue_size():
    # (the closing note reports these numbers)
    funcs = {c.id.split("[")[0].split("-")[0] for c in CASES}
    assert len(CASES) >= 400 and len(funcs) >= 20


# --------------------------------------------------------------------------- crash-prone calls
CRASH_PRONE = textwrap.dedent(
    """
    import torch, torch_artic as ta
    ops = torch.ops.torch_artic
    F, I32 = torch.float64, torch.int32
    p = torch.rand(4, 3, 2, dtype=F)
    w = torch.rand(1, 3, dtype=F)
    s = torch.ones(1, 3, dtype=F)
    none = (torch.zeros(0, dtype=F), torch.zeros(0, dtype=I32))
    g = torch.zeros(4, 1, 8, 8, dtype=F)
    fwd, bwd = ops.sketch_render_forward, ops.sketch_render_backward
    stats = ops.pairwise_distance_stats
    coef = [torch.zeros(2, 2, dtype=F)] * 5
    calls = {
        "stats meta confidence": lambda: stats(p, torch.ones(4, 3, dtype=F, device="meta")),
        "stats wrong confidence": lambda: stats(p, torch.ones(5, 3, dtype=F)),
        "stats 2d points": lambda: stats(p[0], None),
        "stats huge K": lambda: stats(torch.rand(2, 1 << 20, 1, dtype=F), None),
        "stats backward short": lambda: ops.pairwise_distance_stats_backward(p, None, *coef),
        "sketch meta strength": lambda: fwd(p, w.to("meta"), s, None, 8, 8, "max", 4.0, False),
        "sketch short strength": lambda: fwd(p, w[:, :2], s, None, 8, 8, "max", 4.0, False),
        "sketch bad composite": lambda: fwd(p, w, s, None, 8, 8, "nope", 4.0, False),
        "sketch zero size": lambda: fwd(p, w, s, None, 0, 8, "max", 4.0, False),
        "sketch negative cutoff": lambda: fwd(p, w, s, None, 8, 8, "max", -1.0, False),
        "sketch colours K": lambda: fwd(p, w, s, p[:1, :2], 8, 8, "max", 4.0, False),
        "sketch huge image": lambda: fwd(p, w, s, None, 1 << 20, 1 << 20, "max", 4.0, False),
        "sketch backward grad shape": lambda: bwd(
            g[..., :7, :], p, w, s, None, *none, 8, 8, "max", 4.0, True, True, False
        ),
        "sketch backward bad state": lambda: bwd(
            g, p, w, s, None, torch.zeros(3, 3, dtype=F), none[1], 8, 8, "sum_clamp", 4.0,
            True, True, False,
        ),
        "mst non-square": lambda: ops.mst_prim(torch.rand(2, 3, 4, dtype=F)),
        "mst transposed": lambda: ops.mst_prim(torch.rand(2, 4, 4, dtype=F).mT),
        "mst int": lambda: ops.mst_prim(torch.ones(2, 3, 3, dtype=torch.long)),
    }
    for name, call in calls.items():
        try:
            call()
        except RuntimeError as exc:
            msg = str(exc)
            assert msg.startswith("torch_artic::"), (name, msg)
            print("ok", name)
            continue
        raise AssertionError(f"{name}: no error")
    print("all refused")
    """
)


@pytest.mark.skipif(not ta._native.extension_loaded(), reason="native extension not loaded")
def test_direct_op_calls_with_hostile_tensors_do_not_crash():
    proc = subprocess.run(
        [sys.executable, "-c", CRASH_PRONE], capture_output=True, text=True, timeout=300
    )
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    assert proc.stdout.strip().endswith("all refused")
    assert math.isfinite(len(proc.stdout))
