"""lvmst forward + backward: native variance kernel vs the pure-torch reference.

python -m benchmarks.bench_lvmst [--quick] [--device cuda] [--threads N]
"""

from __future__ import annotations

import argparse

from benchmarks.harness import add_arguments, begin, measure, save, speedup_table


def _points(b, k, d, device):
    import torch

    g = torch.Generator().manual_seed(0)
    return torch.randn(b, k, d, generator=g).to(device).requires_grad_()


def case_lvmst(b, k, d, device, mode, fallback):
    from torch_artic import force_reference, lvmst

    x = _points(b, k, d, device)

    def step():
        if fallback:
            with force_reference():
                lvmst(x, relaxation=mode).loss.backward()
        else:
            lvmst(x, relaxation=mode).loss.backward()

    return step


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true")
    add_arguments(ap)
    args = ap.parse_args(argv)
    run = begin(args)
    sizes = [(128, 16, 3)] if args.quick else [(1024, 32, 3), (96, 7, 2)]
    results = []
    for b, k, d in sizes:
        for mode in ("ste", "hard"):
            case = f"B={b} K={k} D={d} relaxation={mode}"
            for impl, fallback in (("native", False), ("reference", True)):
                r = measure(
                    "lvmst fwd+bwd",
                    case,
                    impl,
                    case_lvmst,
                    b,
                    k,
                    d,
                    args.device,
                    mode,
                    fallback,
                    repeats=3 if args.quick else 15,
                    device=args.device,
                    threads=args.threads,
                )
                if r:
                    results.append(r)
    print()
    print(speedup_table(results, "native", f"lvmst fwd+bwd ({args.device})", run))
    if args.json:
        save(results, args.json, run)


if __name__ == "__main__":
    main()
