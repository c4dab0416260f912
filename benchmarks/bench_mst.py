"""Benchmark: ``dmst`` (differentiable minimum spanning tree).

1. ``dmst(relaxation="hard")`` on 4096 graphs of K = 32 (float32 and float64), 96 graphs
   of K = 7 and 1024 of K = 64, against a Python loop over
   ``scipy.sparse.csgraph.minimum_spanning_tree`` (one call per graph, the way one would
   use scipy on a batch): speed-ups (> 1: dmst is faster).
2. Cost vs K of the relaxations on one graph (the LVMST case: one variance matrix per
   batch; K up to 128) and on 64 graphs (K up to 64): ``soft`` forward and forward +
   backward, ``ste`` forward + backward, ``perturbed`` (32 samples) forward + backward.

    python benchmarks/bench_mst.py [--cases all|hard|modes] [--device cuda] [--repeats 15]
                                   [--threads 1] [--json out.json] [--allow-load]
"""

from __future__ import annotations

import argparse
import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

from benchmarks.harness import (  # noqa: E402
    add_arguments,
    begin,
    measure,
    save,
    speedup_table,
    times_table,
)

# exact trees against a scipy loop: (graphs, K, dtype); the first is the headline case
HARD_CASES = [
    (4096, 32, "float32"),
    (4096, 32, "float64"),
    (96, 7, "float32"),
    (1024, 64, "float32"),
]
KS = (8, 16, 32, 64, 128)


def _weights(n: int, k: int, dtype: str, device: str, grad: bool = False):
    import torch

    g = torch.Generator().manual_seed(0)
    w = torch.rand(n, k, k, generator=g, dtype=getattr(torch, dtype)) + 0.01  # scipy: 0 = no edge
    w = torch.minimum(w, w.transpose(1, 2)).to(device)
    return w.requires_grad_(grad)


def ours_hard(n: int, k: int, dtype: str, device: str):
    from torch_artic.mst import dmst

    w = _weights(n, k, dtype, device)

    def step():
        dmst(w, relaxation="hard")

    return step


def scipy_loop(n: int, k: int, dtype: str, device: str):
    import numpy as np
    from scipy.sparse.csgraph import minimum_spanning_tree

    w = _weights(n, k, dtype, "cpu").numpy()

    def step():
        out = np.empty_like(w)
        for i in range(len(w)):
            out[i] = minimum_spanning_tree(w[i]).toarray()  # same output: a dense tree

    return step


def ours_mode(n: int, k: int, device: str, mode: str, backward: bool):
    import torch

    from torch_artic.mst import dmst

    w = _weights(n, k, "float32", device, grad=backward)
    g = torch.rand(n, k, k, generator=torch.Generator().manual_seed(1)).to(device)

    def step():
        out = dmst(w, relaxation=mode)
        if backward:
            (out * g).sum().backward()

    return step


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    add_arguments(parser)
    parser.add_argument("--repeats", type=int, default=15)
    parser.add_argument("--cases", choices=("all", "hard", "modes"), default="all")
    args = parser.parse_args()
    run = begin(args)
    kw = dict(repeats=args.repeats, device=args.device, threads=args.threads)

    hard = []
    for n, k, dtype in HARD_CASES if args.cases in ("all", "hard") else ():
        case = f"[{n}, {k}, {k}] {dtype}"
        op = "mst hard"
        slow = {**kw, "repeats": min(args.repeats, 5), "device": "cpu"}
        hard.append(measure(op, case, "scipy loop", scipy_loop, n, k, dtype, "cpu", **slow))
        hard.append(measure(op, case, "dmst hard", ours_hard, n, k, dtype, args.device, **kw))
    hard = [r for r in hard if r is not None]

    relax = []
    sweep = ((1, KS), (64, KS[:-1])) if args.cases in ("all", "modes") else ()
    for n, ks in sweep:
        for k in ks:
            case = f"[{n}, {k}, {k}] float32"
            op = f"dmst N={n}"
            relax.append(
                measure(op, case, "hard", ours_mode, n, k, args.device, "hard", False, **kw)
            )
            for mode, backward, name in (
                ("soft", False, "soft fwd"),
                ("soft", True, "soft fwd+bwd"),
                ("ste", True, "ste fwd+bwd"),
                ("perturbed", True, "perturbed S=32 fwd+bwd"),
            ):
                relax.append(
                    measure(op, case, name, ours_mode, n, k, args.device, mode, backward, **kw)
                )
    relax = [r for r in relax if r is not None]

    if hard:
        print()
        print(speedup_table(hard, "dmst hard", f"dmst hard vs a scipy loop ({args.device})", run))
    if relax:
        print()
        print(times_table(relax, f"dmst relaxations vs K ({args.device})", run))
    if args.json:
        save(hard + relax, args.json, run)


if __name__ == "__main__":
    main()
