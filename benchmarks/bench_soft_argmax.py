"""Benchmark: soft_argmax2d (separable marginals) vs the straightforward dense version.

Forward + backward (``torch.autograd.grad`` of a random linear function of the output) on
``[64, 16, 64, 64]`` and ``[16, 32, 128, 128]`` float32 heatmaps. The baseline, ``dense``, is
the textbook implementation: softmax over the flattened ``H * W`` pixels, then
``(probs[..., None] * grid).sum`` with a materialised ``[..., H, W, 2]`` product
(``soft_argmax2d_dense`` of ``tests/oracles.py``, the tests' oracle). With
``--covariance`` both also return the covariance (centred outer products; dense builds
``[..., H, W, 2, 2]``).

Run from the repository root::

    python -m benchmarks.bench_soft_argmax [--device cuda] [--covariance] [--out results.json]
"""

from __future__ import annotations

import argparse

from benchmarks.harness import add_arguments, begin, measure, save, speedup_table

SHAPES = [(64, 16, 64, 64), (16, 32, 128, 128)]
IMPLS = ("torch_artic", "dense")


def make_step(impl: str, shape: tuple[int, ...], device: str, covariance: bool):
    """Factory (runs in the benchmark subprocess): inputs + a forward/backward closure."""
    import torch

    from tests.oracles import soft_argmax2d_dense
    from torch_artic.soft_argmax import soft_argmax2d

    fn = soft_argmax2d if impl == "torch_artic" else soft_argmax2d_dense
    gen = torch.Generator(device=device).manual_seed(0)
    h = torch.randn(shape, generator=gen, device=device).requires_grad_()
    w_mean = torch.randn(*shape[:-2], 2, generator=gen, device=device)
    w_cov = torch.randn(*shape[:-2], 2, 2, generator=gen, device=device)

    def step():
        if covariance:
            mean, cov = fn(h, temperature=0.5, return_covariance=True)
            loss = (mean * w_mean).sum() + (cov * w_cov).sum()
        else:
            loss = (fn(h, temperature=0.5) * w_mean).sum()
        torch.autograd.grad(loss, h)

    return step


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_arguments(parser)
    parser.add_argument("--covariance", action="store_true", help="also time mean+covariance")
    parser.add_argument("--repeats", type=int, default=15)
    args = parser.parse_args(argv)
    run = begin(args)
    variants = [False, True] if args.covariance else [False]
    results = []
    for covariance in variants:
        op = "soft_argmax2d" + ("+cov" if covariance else "") + " fwd+bwd"
        for shape in SHAPES:
            case = "[" + ", ".join(map(str, shape)) + "] " + args.device
            for impl in IMPLS:
                res = measure(
                    op,
                    case,
                    impl,
                    make_step,
                    impl,
                    shape,
                    args.device,
                    covariance,
                    repeats=args.repeats,
                    device=args.device,
                    threads=args.threads,
                )
                if res is not None:
                    results.append(res)
    print()
    print(speedup_table(results, "torch_artic", f"soft_argmax2d vs dense ({args.device})", run))
    if args.json:
        save(results, args.json, run)


if __name__ == "__main__":
    main()
