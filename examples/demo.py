"""Smoke demo: which native kernels are active, and the rigidity signal at work.

Generates a batch of random 2D poses of a 7-joint stick figure (rigid limbs, random
joint angles), computes the batch variance of every pairwise keypoint distance with
``torch_artic.pairwise_distance_variance`` (native kernel when built) and takes the
minimum spanning tree of that variance: the rigid limbs come out as the tree. Prints a
JSON line of metrics and writes a figure.

    python examples/demo.py [--quick] [--out demo.png]
"""

from __future__ import annotations

import argparse
import json
import math
import time

import numpy as np
import torch
from scipy.sparse.csgraph import minimum_spanning_tree

import torch_artic as ta

# (parent, child, length) of a 7-joint stick figure: 0 mid-shoulder (root), 1 head,
# 2 mid-hip, 3/4 hands, 5/6 feet.
BONES = [(0, 1, 0.25), (0, 2, 0.5), (0, 3, 0.45), (0, 4, 0.45), (2, 5, 0.55), (2, 6, 0.55)]


def random_poses(n: int, generator: torch.Generator) -> torch.Tensor:
    """``[n, 7, 2]`` poses: random root position and bone angles, rigid bone lengths."""
    pts = torch.zeros(n, 7, 2, dtype=torch.float64)
    pts[:, 0] = torch.rand(n, 2, generator=generator, dtype=torch.float64) - 0.5
    for parent, child, length in BONES:
        angle = torch.rand(n, generator=generator, dtype=torch.float64) * 2 * math.pi
        pts[:, child] = pts[:, parent] + length * torch.stack((angle.cos(), angle.sin()), -1)
    return pts


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(
        description=__doc__.splitlines()[0],
        epilog="Takes about 5 seconds.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    ap.add_argument("--quick", action="store_true", help="a small batch (CI)")
    ap.add_argument(
        "--batch", type=int, default=None, help="number of poses (default: 4096, 64 with --quick)"
    )
    ap.add_argument("--noise", type=float, default=0.01, help="keypoint noise std")
    ap.add_argument("--out", default="demo.png", help="where to write the figure (PNG)")
    ap.add_argument("--seed", type=int, default=0, help="random seed of the poses and noise")
    args = ap.parse_args(argv)
    n = args.batch or (64 if args.quick else 4096)

    info = ta.backend_info()
    print(f"torch-artic {ta.__version__}: native extension {info['extension']}", flush=True)
    if info["reason"]:
        print(f"  (reason: {info['reason']})")
    for op, devices in info["ops"].items():
        print(f"  {op}: native on {devices or 'no device'}; otherwise the pure-torch reference")

    g = torch.Generator().manual_seed(args.seed)
    pts = random_poses(n, g)
    pts = pts + args.noise * torch.randn(pts.shape, generator=g, dtype=pts.dtype)
    pts = pts.float().requires_grad_()
    t0 = time.perf_counter()
    var = ta.pairwise_distance_variance(pts)
    var.sum().backward()
    elapsed = time.perf_counter() - t0

    tree = minimum_spanning_tree(np.triu(var.detach().double().numpy() + 1e-12, 1)).toarray()
    found = {tuple(sorted(map(int, e))) for e in zip(*np.nonzero(tree))}
    truth = {(min(a, b), max(a, b)) for a, b, _ in BONES}
    recall = len(found & truth) / len(truth)
    metrics = {
        "batch": n,
        "backend": info["extension"],
        "variance_fwd_bwd_ms": round(elapsed * 1e3, 3),
        "edge_recall": recall,
        "edges_found": sorted(map(list, found)),
    }

    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        fig, (a0, a1) = plt.subplots(1, 2, figsize=(8, 3.8))
        im = a0.imshow(var.detach().numpy(), cmap="viridis")
        a0.set_title("variance of pairwise distances")
        a0.set_xlabel("keypoint j")
        a0.set_ylabel("keypoint i")
        fig.colorbar(im, ax=a0, fraction=0.046)
        p = pts.detach()[0].numpy()
        for i, j in found:
            a1.plot(p[[i, j], 0], p[[i, j], 1], "-", color="tab:blue", lw=3)
        a1.scatter(p[:, 0], p[:, 1], c="k", zorder=3)
        for k, (x, y) in enumerate(p):
            a1.annotate(str(k), (x, y), textcoords="offset points", xytext=(4, 4))
        a1.set_title(f"MST of the variance (recall {recall:.0%})")
        a1.set_aspect("equal")
        a1.invert_yaxis()
        fig.tight_layout()
        fig.savefig(args.out, dpi=100)
        metrics["figure"] = args.out
        print(f"figure written to {args.out}")
    except ImportError:
        print("matplotlib not installed: no figure (pip install 'torch-artic[examples]')")
    print(json.dumps(metrics))
    return metrics


if __name__ == "__main__":
    main()
