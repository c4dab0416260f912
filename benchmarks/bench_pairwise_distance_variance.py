"""pairwise_distance_variance: native kernel vs pure-torch reference vs cdist().var().

Forward + backward of ``var.sum()`` w.r.t. the points, median over repeats, and the
peak extra memory of one call. Run from the repository root:

    python -m benchmarks.bench_pairwise_distance_variance [--quick] [--device cuda]
"""

from __future__ import annotations

import argparse

from benchmarks.harness import add_arguments, begin, measure, save, speedup_table


def _inputs(b, k, d, device, weighted):
    import torch

    g = torch.Generator().manual_seed(0)
    x = torch.randn(b, k, d, generator=g).to(device).requires_grad_()
    w = torch.rand(b, k, generator=g).to(device) if weighted else None
    return x, w


def case_native(b, k, d, device, weighted):
    from torch_artic import pairwise_distance_variance

    x, w = _inputs(b, k, d, device, weighted)

    def step():
        pairwise_distance_variance(x, confidence=w).sum().backward()

    return step


def case_reference(b, k, d, device, weighted):
    from torch_artic import force_reference, pairwise_distance_variance

    x, w = _inputs(b, k, d, device, weighted)

    def step():
        with force_reference():
            pairwise_distance_variance(x, confidence=w).sum().backward()

    return step


def case_cdist(b, k, d, device, weighted):
    x, _ = _inputs(b, k, d, device, False)

    def step():
        import torch

        torch.cdist(x, x).var(0).sum().backward()

    return step


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="one small case, few repeats")
    add_arguments(ap)
    args = ap.parse_args(argv)
    run = begin(args)
    sizes = [(256, 16, 3)] if args.quick else [(4096, 64, 3), (1024, 32, 3), (96, 7, 2)]
    repeats = 3 if args.quick else 15
    results = []
    for b, k, d in sizes:
        for weighted in (False, True):
            if weighted and (b, k, d) != sizes[0]:
                continue
            case = f"B={b} K={k} D={d}" + (" weighted" if weighted else "")
            impls = [("native", case_native), ("reference", case_reference)]
            if not weighted:
                impls.append(("cdist().var()", case_cdist))
            for name, fn in impls:
                r = measure(
                    "pdv fwd+bwd",
                    case,
                    name,
                    fn,
                    b,
                    k,
                    d,
                    args.device,
                    weighted,
                    repeats=repeats,
                    device=args.device,
                    threads=args.threads,
                )
                if r:
                    results.append(r)
    print()
    title = f"pairwise_distance_variance fwd+bwd ({args.device})"
    print(speedup_table(results, "native", title, run))
    if args.json:
        save(results, args.json, run)


if __name__ == "__main__":
    main()
