"""Benchmark: ``tps_warp`` vs kornia's ``get_tps_transform`` + ``warp_image_tps``.

Cases: ``[32, 3, 128, 128]`` images with a 5x5 control grid, forward only and forward +
backward (gradients w.r.t. the image and both control sets); and 1024 points per sample,
forward + backward, through the exact inverse (``inverse="newton"``), against kornia's
``warp_points_tps`` (a second spline fitted ``src -> dst``, the shortcut that is not the
inverse of the image's warp), the same shortcut in torch_artic (``inverse="fit"``) and the
exact inverse with the pure-torch reference of its ``tps_inverse`` kernel.
kornia is an optional benchmark dependency: without it only torch_artic is timed.

    python benchmarks/bench_tps.py [--threads 1] [--device cuda] [--repeats 15]
        [--pairs 40] [--json out.json]

Each case runs in its own subprocess (:mod:`benchmarks.harness`). The points case is
also timed **back to back in one process** (``--pairs`` alternating calls of torch_artic
and kornia, after a warm-up), which cancels most of the noise of a shared machine: the
script prints the ratio torch_artic / kornia (< 1: torch_artic is faster) from the
subprocess medians, and the median of the per-pair wall-time and CPU-time ratios from the
back-to-back run, each with the load average.

Note: the two libraries do not compute the same spline. kornia's system uses the
kernel between the two point sets (``U(|src_i - dst_j|)``) and the side conditions of
the wrong set, so between control points it departs from the thin-plate spline (which
torch_artic matches to 1e-14 against ``scipy.interpolate.RBFInterpolator``); only the
timings are comparable.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

from benchmarks.harness import (  # noqa: E402
    add_arguments,
    begin,
    interleaved,
    load_average,
    measure,
    save,
    speedup_table,
    times_table,
)

SHAPE = (32, 3, 128, 128)
GRID = 5
POINTS = 1024


def _inputs(device: str, grad: bool):
    import torch

    from torch_artic.tps import random_tps

    g = torch.Generator().manual_seed(0)
    src, dst = random_tps(SHAPE[0], grid=GRID, noise_scale=0.08, generator=g)
    image = torch.rand(SHAPE, generator=g)
    src, dst, image = (t.to(device).requires_grad_(grad) for t in (src, dst, image))
    return src, dst, image


def ours_image(device: str, backward: bool):
    from torch_artic.tps import tps_warp

    src, dst, image = _inputs(device, backward)

    def step():
        out = tps_warp(src, dst, image=image).image
        if backward:
            out.sum().backward()

    return step


def kornia_image(device: str, backward: bool):
    from kornia.geometry.transform import get_tps_transform, warp_image_tps

    src, dst, image = _inputs(device, backward)

    def step():
        # kornia's documented recipe: fit dst -> src, centres = the second argument
        kernel_w, affine_w = get_tps_transform(dst, src)
        out = warp_image_tps(
            image, src, kernel_w, affine_w, align_corners=True, padding_mode="border"
        )
        if backward:
            out.sum().backward()

    return step


def _point_inputs(device: str):
    import torch

    src, dst, _ = _inputs(device, True)
    g = torch.Generator().manual_seed(1)
    pts = (torch.rand(SHAPE[0], POINTS, 2, generator=g) * 1.8 - 0.9).to(device)
    return src, dst, pts.requires_grad_()


def ours_points(device: str, inverse: str, reference: bool = False):
    """torch_artic's points case; ``reference``: with the pure-torch reference of the
    ``tps_inverse`` op instead of its native kernel."""
    import warnings

    from torch_artic import force_reference
    from torch_artic.tps import tps_warp

    src, dst, pts = _point_inputs(device)

    def step():
        # one of the 32 warps folds: its warning, once
        with warnings.catch_warnings(), force_reference(enabled=reference):
            warnings.simplefilter("ignore", RuntimeWarning)
            tps_warp(src, dst, points=pts, inverse=inverse).points.nansum().backward()

    return step


def kornia_points(device: str):
    from kornia.geometry.transform import get_tps_transform, warp_points_tps

    src, dst, pts = _point_inputs(device)

    def step():
        kernel_w, affine_w = get_tps_transform(src, dst)
        warp_points_tps(pts, dst, kernel_w, affine_w).sum().backward()

    return step


def back_to_back(device: str, threads: int | None, pairs: int) -> dict:
    """The points case, torch_artic (exact inverse) and kornia interleaved in this process
    (:func:`benchmarks.harness.interleaved`): medians of the per-pair ratios of wall time
    and of this thread's CPU time."""
    import torch

    if threads:
        torch.set_num_threads(threads)
    steps = {"ours": ours_points(device, "newton"), "kornia": kornia_points(device)}
    sync = torch.cuda.synchronize if device.startswith("cuda") else None
    load0 = load_average()
    t = interleaved(steps, pairs, sync=sync)
    ratio = {
        k: statistics.median(a / b for a, b in zip(t["ours"][k], t["kornia"][k]))
        for k in ("wall", "cpu")
    }
    return dict(ratio, pairs=pairs, load=(load0, load_average()))


def tps_inverse_native() -> bool:
    """Whether the native ``tps_inverse`` kernel is loaded (CPU)."""
    from torch_artic import tps

    return bool(tps._TPS_INVERSE.kernels.get("cpu"))


def inverse_op(device: str, threads: int | None, repeats: int) -> dict:
    """The ``tps_inverse`` op alone on the points case's splines (centred, as
    ``tps_warp`` calls it): the native kernel and its torch reference interleaved in this
    process (:func:`benchmarks.harness.interleaved`), medians in ms; and the native kernel
    with ``max_iter=0`` (the start only: ``f(p)``, and ``g`` with its Jacobian there)."""
    import torch

    from torch_artic import tps
    from torch_artic.tps import _fit, _tolerance

    if threads:
        torch.set_num_threads(threads)
    src, dst, pts = (t.detach() for t in _point_inputs(device))
    o = dst.mean(1, keepdim=True)
    src, dst, pts = src - o, dst - o, pts - o
    pt = torch.cat((pts.transpose(1, 2), _tolerance(pts, None)[:, None]), 1).contiguous()
    g, f = _fit(dst, src, 0.0).contiguous(), _fit(src, dst, 0.0).contiguous()
    args = (dst.contiguous(), g, src.contiguous(), f, pt, 20)
    op = torch.ops.torch_artic.tps_inverse.default
    steps = {
        "native": lambda: op(*args),
        "start only": lambda: op(*args[:-1], 0),
        "reference": lambda: tps._inverse_reference(*args),
    }
    t = interleaved(steps, repeats)
    return {k: statistics.median(v["wall"]) for k, v in t.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    add_arguments(parser)
    parser.add_argument("--repeats", type=int, default=15)
    parser.add_argument(
        "--pairs", type=int, default=40, help="back-to-back pairs for the points ratio"
    )
    args = parser.parse_args()
    try:
        import kornia  # noqa: F401

        have_kornia = True
    except ImportError:
        have_kornia = False
        print("kornia is not installed: timing torch_artic only (pip install kornia)")

    run = begin(args)
    kw = dict(repeats=args.repeats, device=args.device, threads=args.threads)
    case = f"{list(SHAPE)} {GRID}x{GRID}"
    results = []
    for backward, op in ((False, "tps_warp image fwd"), (True, "tps_warp image fwd+bwd")):
        if have_kornia:
            results.append(measure(op, case, "kornia", kornia_image, args.device, backward, **kw))
        results.append(measure(op, case, "torch_artic", ours_image, args.device, backward, **kw))
    op, pcase = "tps_warp points fwd+bwd", f"[{SHAPE[0]}, {POINTS}, 2] {GRID}x{GRID}"
    if have_kornia:
        results.append(
            measure(op, pcase, "kornia (shortcut fit)", kornia_points, args.device, **kw)
        )
    results.append(measure(op, pcase, "torch_artic", ours_points, args.device, "newton", **kw))
    own = [
        measure(op, pcase, impl, ours_points, args.device, inverse, reference, **kw)
        for impl, inverse, reference in (
            ('torch_artic inverse="fit"', "fit", False),
            ("torch_artic (reference)", "newton", True),
        )
    ]
    results = [r for r in results if r is not None]
    print()
    title = f"tps_warp ({args.device}): torch_artic (exact inverse for points) vs kornia"
    if have_kornia:
        print(speedup_table(results, "torch_artic", title, run))
    else:
        print(times_table(results, title, run))
    own = [r for r in own if r is not None]
    if own:
        title = 'torch_artic inverse="fit" (the shortcut); the exact inverse without its kernel'
        print()
        print(times_table(own, title, run))
    if have_kornia:
        mine = {r.impl: r for r in results if r.op == op}
        ours, peer = mine.get("torch_artic"), mine.get("kornia (shortcut fit)")
        print()
        if ours and peer:
            print(
                f"points fwd+bwd {pcase}: torch_artic / kornia = "
                f"{ours.median_ms / peer.median_ms:.3f} (subprocess medians, "
                f"{ours.median_ms:.2f} ms vs {peer.median_ms:.2f} ms; < 1: torch_artic faster; "
                f"load average {ours.load:.2f} / {peer.load:.2f})"
            )
        b2b = back_to_back(args.device, args.threads, args.pairs)
        print(
            f"points fwd+bwd {pcase}: torch_artic / kornia back to back in one process, "
            f"median of {b2b['pairs']} pairs: wall {b2b['wall']:.3f}, CPU time {b2b['cpu']:.3f} "
            f"(load average {b2b['load'][0]:.2f} -> {b2b['load'][1]:.2f})"
        )
    results += own
    if args.device == "cpu" and tps_inverse_native():
        ms = inverse_op(args.device, args.threads, 4 * args.repeats)
        print()
        print(
            f"tps_inverse op alone, {pcase} (medians of {4 * args.repeats}, interleaved): native "
            f"{ms['native']:.2f} ms (start only {ms['start only']:.2f} ms), torch reference "
            f"{ms['reference']:.2f} ms: {ms['reference'] / ms['native']:.1f}x"
        )
    if args.json:
        save(results, args.json, run)


if __name__ == "__main__":
    main()
