"""Benchmark: ``tps_warp`` vs kornia's ``get_tps_transform`` + ``warp_image_tps``.

Cases: ``[32, 3, 128, 128]`` images with a 5x5 control grid, forward only and forward +
backward (gradients w.r.t. the image and both control sets); and 1024 points per sample
through the exact inverse (``inverse="newton"``), the forward-fit shortcut (``"fit"``) and
kornia's ``warp_points_tps``. kornia is an optional benchmark dependency: without it only
torch_artic is timed.

    python benchmarks/bench_tps.py [--device cuda] [--repeats 15] [--json out.json]

Note: the two libraries do not compute the same spline. kornia's system uses the
kernel between the two point sets (``U(|src_i - dst_j|)``) and the side conditions of
the wrong set, so between control points it departs from the thin-plate spline (which
torch_artic matches to 1e-14 against ``scipy.interpolate.RBFInterpolator``); only the
timings are comparable.
"""

from __future__ import annotations

import argparse
import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

from benchmarks.harness import machine, measure, ratio_table, save  # noqa: E402

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


def ours_points(device: str, inverse: str):
    from torch_artic.tps import tps_warp

    src, dst, pts = _point_inputs(device)

    def step():
        tps_warp(src, dst, points=pts, inverse=inverse).points.sum().backward()

    return step


def kornia_points(device: str):
    from kornia.geometry.transform import get_tps_transform, warp_points_tps

    src, dst, pts = _point_inputs(device)

    def step():
        kernel_w, affine_w = get_tps_transform(src, dst)
        warp_points_tps(pts, dst, kernel_w, affine_w).sum().backward()

    return step


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--repeats", type=int, default=15)
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--json", default=None, help="write the results here")
    args = parser.parse_args()
    try:
        import kornia  # noqa: F401

        have_kornia = True
    except ImportError:
        have_kornia = False
        print("kornia is not installed: timing torch_artic only (pip install kornia)")

    print(machine())
    kw = dict(repeats=args.repeats, device=args.device, threads=args.threads)
    case = f"{list(SHAPE)} {GRID}x{GRID}"
    results = []
    for backward, op in ((False, "tps_warp image fwd"), (True, "tps_warp image fwd+bwd")):
        if have_kornia:
            results.append(measure(op, case, "kornia", kornia_image, args.device, backward, **kw))
        results.append(measure(op, case, "torch_artic", ours_image, args.device, backward, **kw))
    op, pcase = "tps_warp points fwd+bwd", f"[{SHAPE[0]}, {POINTS}, 2] {GRID}x{GRID}"
    if have_kornia:
        results.append(measure(op, pcase, "kornia", kornia_points, args.device, **kw))
    for inverse in ("newton", "fit"):
        results.append(
            measure(op, pcase, f"torch_artic {inverse}", ours_points, args.device, inverse, **kw)
        )
    results = [r for r in results if r is not None]
    print()
    print(
        ratio_table(
            results, "kornia" if have_kornia else "torch_artic", f"tps_warp ({args.device})"
        )
    )
    if args.json:
        save(results, args.json)


if __name__ == "__main__":
    main()
