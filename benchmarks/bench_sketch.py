"""Benchmark: ``sketch_render`` (native kernels) against the formulations a user could write.

Implementations, each forward + backward (gradients w.r.t. the points; ``+w`` cases also
w.r.t. the line weights), composite ``sum_clamp``; the ``max`` cases draw every pair of
keypoints with a learnable weight (a learned-graph renderer) and keep the per-pixel
maximum:

- ``native``: :func:`torch_artic.sketch_render` (C++ / CUDA kernels);
- ``reference``: the library's pure-torch fallback (chunked over edges, checkpointed);
- ``dense eager``: the DSketch-style all-pixels-all-edges formula, ``[B, E, H*W]``
  distances to every segment, no cutoff;
- ``dense compiled``: the same under ``torch.compile`` (the strongest alternative);
- ``edge loop``: a Python loop over the lines, ``[B, H*W]`` at a time.

The dense formulas and the loop draw only the listed edges of the tree; ``native`` and
``reference`` take the ``[K, K]`` adjacency (and, in ``+w`` cases, return the gradient
of every entry i < j, also of the pairs that are not drawn).

    python benchmarks/bench_sketch.py [--device cuda] [--threads 2] [--json out.json]

Peak memory: every factory returns freed memory to the OS and resets the resident
high-water mark (``/proc/self/clear_refs``) after its set-up (and after compiling), so
the harness's first call measures the step's own peak.
"""

from __future__ import annotations

import argparse
import ctypes
import gc
import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

from benchmarks.harness import (  # noqa: E402
    add_arguments,
    begin,
    measure,
    save,
    speedup_table,
)

SIGMA = 1.0


def _reset_peak(device: str) -> None:
    """Give freed memory back to the OS and restart the peak-RSS count from here."""
    gc.collect()
    if device.startswith("cuda"):
        import torch

        torch.cuda.synchronize()
        torch.cuda.empty_cache()
        return
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
    except OSError:
        pass


def _tree(k: int, seed: int):
    """Edges of a random tree on k nodes (each node joins an earlier one)."""
    import torch

    g = torch.Generator().manual_seed(seed)
    parent = [int(torch.randint(0, i, (1,), generator=g)) for i in range(1, k)]
    return [(min(p, i), max(p, i)) for i, p in zip(range(1, k), parent)]


def _inputs(b: int, k: int, size: int, device: str, wgrad: bool):
    import torch

    g = torch.Generator().manual_seed(0)
    pts = (torch.rand(b, k, 2, generator=g) * 1.8 - 0.9).to(device).requires_grad_()
    edges = _tree(k, 1)
    adj = torch.zeros(k, k)
    for i, j in edges:
        adj[i, j] = adj[j, i] = 1.0
    adj = adj.to(device).requires_grad_(wgrad)
    ei = torch.tensor([e[0] for e in edges], device=device)
    ej = torch.tensor([e[1] for e in edges], device=device)
    w = torch.ones(len(edges), device=device, requires_grad=wgrad)
    return pts, adj, ei, ej, w


def _params(*ts):
    return [t for t in ts if t.requires_grad]


def ours(b, k, size, device, wgrad, composite="sum_clamp", sigma=SIGMA, reference=False):
    from torch_artic import force_reference, sketch_render

    if composite == "max":
        pts, adj, *_ = _all_pairs(b, k, size, device)
    else:
        pts, adj, *_ = _inputs(b, k, size, device, wgrad)

    def step():
        with force_reference(enabled=reference):
            out = sketch_render(pts, adj, size, sigma=sigma, composite=composite)
        out.sum().backward()

    _reset_peak(device)
    return step


def reference(b, k, size, device, wgrad):
    return ours(b, k, size, device, wgrad, reference=True)


def _all_pairs(b: int, k: int, size: int, device: str):
    """Every pair of k keypoints, each with a learnable weight in (0, 1)."""
    import torch

    g = torch.Generator().manual_seed(0)
    pts = (torch.rand(b, k, 2, generator=g) * 1.8 - 0.9).to(device).requires_grad_()
    a = torch.rand(k, k, generator=g)
    adj = ((a + a.T) / 2).to(device).requires_grad_()
    iu, ju = torch.triu_indices(k, k, 1)
    w = adj.detach()[iu, ju].clone().requires_grad_()
    return pts, adj, iu.to(device), ju.to(device), w


def _dense_max(pts, ei, ej, w, size, sigma):
    """The all-pixels-all-lines formula with the max composite, [B, E, H*W]."""
    import torch

    h = wd = size
    ys, xs = torch.meshgrid(
        torch.arange(h, device=pts.device, dtype=pts.dtype),
        torch.arange(wd, device=pts.device, dtype=pts.dtype),
        indexing="ij",
    )
    grid = torch.stack((xs, ys), -1).reshape(1, 1, h * wd, 2)
    px = (pts + 1) * torch.tensor([(wd - 1) / 2, (h - 1) / 2], device=pts.device)
    a, b = px[:, ei, None], px[:, ej, None]
    ab = b - a
    ap = grid - a
    l2 = (ab * ab).sum(-1).clamp_min(1e-12)
    t = ((ap * ab).sum(-1) / l2).clamp(0, 1)
    d2 = ((ap - t[..., None] * ab) ** 2).sum(-1)
    ras = w[:, None] * torch.exp(-d2 / sigma**2)
    return ras.amax(1).clamp(min=0).reshape(pts.shape[0], 1, h, wd)


def ours_max(b, k, size, device, sigma):
    return ours(b, k, size, device, True, composite="max", sigma=sigma)


def dense_max_compiled(b, k, size, device, sigma, compiled=True):
    import torch

    pts, _, ei, ej, w = _all_pairs(b, k, size, device)
    fn = torch.compile(_dense_max) if compiled else _dense_max

    def step():
        fn(pts, ei, ej, w, size, sigma).sum().backward()

    step()  # compile outside the measurement
    _reset_peak(device)
    return step


def dense_max_eager(b, k, size, device, sigma):
    return dense_max_compiled(b, k, size, device, sigma, compiled=False)


def _dense_render(pts, ei, ej, w, size, sigma):
    """DSketch-style: distance of every pixel to every segment, [B, E, H*W], no cutoff."""
    import torch

    h = wd = size
    ys, xs = torch.meshgrid(
        torch.arange(h, device=pts.device, dtype=pts.dtype),
        torch.arange(wd, device=pts.device, dtype=pts.dtype),
        indexing="ij",
    )
    grid = torch.stack((xs, ys), -1).reshape(1, 1, h * wd, 2)
    px = (pts + 1) * torch.tensor([(wd - 1) / 2, (h - 1) / 2], device=pts.device)
    a, b = px[:, ei, None], px[:, ej, None]  # [B, E, 1, 2]
    ab = b - a
    ap = grid - a  # [B, E, HW, 2]
    l2 = (ab * ab).sum(-1).clamp_min(1e-12)
    t = ((ap * ab).sum(-1) / l2).clamp(0, 1)  # [B, E, HW]
    d2 = ((ap - t[..., None] * ab) ** 2).sum(-1)
    ras = w[:, None] * torch.exp(-d2 / sigma**2)
    return ras.sum(1).clamp(max=1).reshape(pts.shape[0], 1, h, wd)


def _edge_loop_render(pts, ei, ej, w, size, sigma):
    """A Python loop over the lines, [B, H*W] at a time."""
    import torch

    h = wd = size
    ys, xs = torch.meshgrid(
        torch.arange(h, device=pts.device, dtype=pts.dtype),
        torch.arange(wd, device=pts.device, dtype=pts.dtype),
        indexing="ij",
    )
    gx, gy = xs.reshape(1, -1), ys.reshape(1, -1)
    px = (pts + 1) * torch.tensor([(wd - 1) / 2, (h - 1) / 2], device=pts.device)
    out = torch.zeros(pts.shape[0], h * wd, device=pts.device, dtype=pts.dtype)
    for e in range(ei.shape[0]):
        a, b = px[:, int(ei[e])], px[:, int(ej[e])]  # [B, 2]
        abx, aby = (b[:, 0] - a[:, 0])[:, None], (b[:, 1] - a[:, 1])[:, None]
        apx, apy = gx - a[:, 0, None], gy - a[:, 1, None]
        l2 = (abx * abx + aby * aby).clamp_min(1e-12)
        t = ((apx * abx + apy * aby) / l2).clamp(0, 1)
        dx, dy = apx - t * abx, apy - t * aby
        out = out + w[e] * torch.exp(-(dx * dx + dy * dy) / sigma**2)
    return out.clamp(max=1).reshape(pts.shape[0], 1, h, wd)


def dense_eager(b, k, size, device, wgrad, compiled=False):
    import torch

    pts, _, ei, ej, w = _inputs(b, k, size, device, wgrad)
    fn = torch.compile(_dense_render) if compiled else _dense_render

    def step():
        fn(pts, ei, ej, w, size, SIGMA).sum().backward()

    if compiled:
        step()  # compile outside the measurement
        pts.grad = None
        w.grad = None
    _reset_peak(device)
    return step


def dense_compiled(b, k, size, device, wgrad):
    return dense_eager(b, k, size, device, wgrad, compiled=True)


def edge_loop(b, k, size, device, wgrad):
    pts, _, ei, ej, w = _inputs(b, k, size, device, wgrad)
    ei, ej = ei.cpu(), ej.cpu()

    def step():
        _edge_loop_render(pts, ei, ej, w, size, SIGMA).sum().backward()

    _reset_peak(device)
    return step


def forward_only(b, k, size, device, wgrad):
    """native's forward alone, as in training (inputs require grad, so the state the
    backward needs is kept): with ``ours`` it gives the backward's share."""
    from torch_artic import sketch_render

    pts, adj, *_ = _inputs(b, k, size, device, wgrad)

    def step():
        sketch_render(pts, adj, size, sigma=SIGMA)

    _reset_peak(device)
    return step


CPU_CASES = [
    # (B, K, size, weight grads, repeats of the slow baselines)
    (32, 16, 128, False, 7),
    (32, 16, 128, True, 7),
    (8, 65, 256, False, 3),
    (96, 7, 64, False, 7),
]
GPU_CASES = [(32, 16, 128, False, 25), (256, 16, 256, False, 10)]
# learned graph, max composite: (B, K, size, sigma px); all K (K - 1) / 2 pairs drawn
MAX_CASES = [(16, 16, 128, 3.0), (16, 16, 128, 6.0)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    add_arguments(parser)
    parser.add_argument("--repeats", type=int, default=15)
    parser.add_argument("--skip-slow", action="store_true", help="no reference / edge loop")
    parser.add_argument("--cases", default=None, help="comma-separated case indices (0-based)")
    args = parser.parse_args()
    run = begin(args)
    cuda = args.device.startswith("cuda")
    cases = GPU_CASES if cuda else CPU_CASES
    if args.cases:
        cases = [cases[int(i)] for i in args.cases.split(",")]
    results, split = [], []
    for b, k, size, wgrad, slow_repeats in cases:
        op = "sketch_render fwd+bwd" + (" +w" if wgrad else "")
        case = f"B={b} E={k - 1} {size}x{size}"
        fast = dict(repeats=args.repeats, device=args.device, threads=args.threads)
        slow = dict(fast, repeats=min(args.repeats, slow_repeats), warmup=1)
        impls = [
            ("native", ours, fast),
            ("dense compiled", dense_compiled, fast),
            ("dense eager", dense_eager, slow),
        ]
        if not args.skip_slow:
            impls.append(("edge loop", edge_loop, slow))
            if k <= 16:  # the reference draws all K (K - 1) / 2 pairs: 2080 at K = 65
                impls.append(("reference", reference, slow))
        for name, factory, kw in impls:
            res = measure(op, case, name, factory, b, k, size, args.device, wgrad, **kw)
            if res is not None:
                results.append(res)
        fwd = measure("sketch_render fwd", case, "native fwd", forward_only, b, k, size,
                      args.device, wgrad, **fast)  # fmt: skip
        both = next(
            (r for r in results if (r.op, r.case, r.impl) == (op, case, "native")), None
        )
        if fwd is not None and both is not None:
            split.append((f"{case}{' +w' if wgrad else ''}", fwd.median_ms, both.median_ms))
    print()
    title = f"sketch_render fwd+bwd ({args.device}), sigma = {SIGMA} px"
    print(speedup_table(results, "native", title, run))
    if split:
        print()
        print("| case | forward ms | backward ms | backward / forward |")
        print("|---|---:|---:|---:|")
        for case, f, fb in split:
            print(f"| {case} | {f:.3f} | {fb - f:.3f} | {(fb - f) / f:.2f} |")
    if not cuda and not args.cases:
        max_results = []
        for b, k, size, sigma in MAX_CASES:
            op = "sketch_render max fwd+bwd +w"
            case = f"B={b} K={k} (all {k * (k - 1) // 2} pairs) {size}x{size} sigma={sigma}"
            fast = dict(repeats=args.repeats, device=args.device, threads=args.threads)
            slow = dict(fast, repeats=min(args.repeats, 5), warmup=1)
            for name, factory, kw in [
                ("native", ours_max, fast),
                ("dense compiled", dense_max_compiled, slow),
                ("dense eager", dense_max_eager, slow),
            ]:
                res = measure(op, case, name, factory, b, k, size, args.device, sigma, **kw)
                if res is not None:
                    max_results.append(res)
        print()
        print(speedup_table(max_results, "native", "sketch_render, max composite", run))
        results += max_results
    if args.json:
        save(results, args.json, run)


if __name__ == "__main__":
    main()
