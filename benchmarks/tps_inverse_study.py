"""Study: does ``tps_warp``'s exact point inverse converge on every warp that does not fold?

    python benchmarks/tps_inverse_study.py [--warps 5000] [--points 64] [--noise 0.08 0.12]
        [--dtype float64] [--max-iter 20] [--threads 2]

For each displacement std (``noise_scale``): ``--warps`` random 5x5 warps
(``random_tps``, seed 1) and ``--points`` points per warp, uniform on the image
``[-1, 1]^2`` (seed 2). Each warp is classified by the smallest ``det J_g`` of its
output -> input spline on a 101 x 101 grid over ``[-2, 2]^2`` (``<= 0``: it folds over;
the criterion of issue 11). Reported, for the inverse as ``tps_warp`` runs it:

- the residual ``|g(q) - p|`` of every returned point (normalised units; ``x 31.5`` for
  pixels of a 64-pixel image), computed independently in float64 as
  ``tps_warp(dst, src, points=q, inverse="fit")`` (that is ``g(q)``) minus ``p``;
- the iterations each point needed (the no-sync path's count of iterations in which it
  was still running);
- the points returned NaN (not converged), and whether each lies in a folding warp;
- the points whose root lies where ``det J_g <= 0`` (one of several preimages);
- the largest difference between the CPU path (early stop, compaction) and the no-sync
  path (fixed ``max_iter``, what CUDA and ``torch.compile`` run) on non-folding warps;
- for comparison, the previous algorithm: 10 plain Newton steps from the same start,
  counting points left with a residual above ``1e-6`` on non-folding warps.

The Markdown table it prints is the one in ``docs/tps.md``.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
import warnings

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

import torch  # noqa: E402

import torch_artic.tps as T  # noqa: E402
from torch_artic import force_reference, random_tps, tps_warp  # noqa: E402


def min_det(src: torch.Tensor, dst: torch.Tensor, lim: float = 2.0, k: int = 101):
    """Smallest ``det J_g`` of each warp on a ``k x k`` grid over ``[-lim, lim]^2``."""
    u = torch.linspace(-lim, lim, k, dtype=torch.float64)
    gy, gx = torch.meshgrid(u, u, indexing="ij")
    grid = torch.stack((gx.flatten(), gy.flatten()), 0)[None]
    out = []
    for i in range(0, len(src), 250):
        s, d = src[i : i + 250].double(), dst[i : i + 250].double()
        spl = T._planar_spline(T._fit(d, s, 0.0), d)
        _, jx, jy = T._eval_planar(spl, grid.expand(len(s), -1, -1).contiguous())
        out.append((jx[:, 0] * jy[:, 1] - jy[:, 0] * jx[:, 1]).amin(-1))
    return torch.cat(out)


def no_sync_run(src, dst, points, max_iter: int):
    """The no-sync path (``check=False``: the torch iteration, a fixed number of steps, as
    on CUDA; on CPU the native kernel runs otherwise), recording each point's iteration
    count."""
    counts = torch.zeros(points.shape[:2], dtype=torch.long)
    step, can_sync = T._newton_step, T._can_sync

    def counting(spl, pt, s, folds, it):
        counts.add_(((s[:, T._NR] > pt[:, 2]) & (s[:, T._RAD] > 0)).long())
        return step(spl, pt, s, folds, it)

    T._newton_step, T._can_sync = counting, lambda t: False
    opts = dict(normalized=True, regularization=0.0, interpolation="bilinear")
    opts.update(padding="border", inverse="newton", max_iter=max_iter, tol=None, check=False)
    try:
        with force_reference():
            q = T._warp(src, dst, None, points, **opts).points
    finally:
        T._newton_step, T._can_sync = step, can_sync
    return q, counts


def plain_newton(src, dst, points, steps: int = 10):
    """The previous algorithm: ``steps`` full Newton steps from ``f(p)``; residuals."""
    o = dst.mean(1, keepdim=True)
    sc, dc, p = src - o, dst - o, (points - o).transpose(1, 2)
    g, f = T._fit(dc, sc, 0.0), T._fit(sc, dc, 0.0)
    spl = T._planar_spline(g, dc)
    q = T._eval_planar(T._planar_spline(f, sc), p, jacobian=False)
    for _ in range(steps):
        value, jx, jy = T._eval_planar(spl, q)
        r = value - p
        a, b, c, d = jx[:, 0], jy[:, 0], jx[:, 1], jy[:, 1]
        det = a * d - b * c
        q = (
            q
            - torch.stack((d * r[:, 0] - b * r[:, 1], a * r[:, 1] - c * r[:, 0]), 1) / det[:, None]
        )
    value = T._eval_planar(spl, q, jacobian=False)
    return torch.linalg.vector_norm(value - p, dim=1)


def quantiles(x: torch.Tensor, qs=(0.5, 0.99, 0.999)) -> list[float]:
    x = x.double().flatten()
    return [float(x.quantile(q)) for q in qs] + [float(x.max())]


def study(noise: float, args) -> dict:
    dtype = getattr(torch, args.dtype)
    src, dst = random_tps(
        args.warps,
        grid=5,
        noise_scale=noise,
        generator=torch.Generator().manual_seed(1),
        dtype=dtype,
    )
    p = (
        torch.rand(
            args.warps, args.points, 2, generator=torch.Generator().manual_seed(2), dtype=dtype
        )
        * 2
        - 1
    )
    t0 = time.perf_counter()
    folds = min_det(src, dst) <= 0  # [B]
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        q_cpu = tps_warp(src, dst, points=p, max_iter=args.max_iter).points
    q_fixed, iters = no_sync_run(src, dst, p, args.max_iter)
    nan = torch.isnan(q_cpu).any(-1)
    nan_fixed = torch.isnan(q_fixed).any(-1)
    ok = ~nan
    # residual in float64, independently: g(q) = the forward fit of (dst -> src) at q
    g_q = tps_warp(dst.double(), src.double(), points=q_cpu.double().nan_to_num(), inverse="fit")
    resid = torch.linalg.vector_norm(g_q.points - p.double(), dim=-1)
    # roots where the warp folds over
    o = dst.double().mean(1, keepdim=True)
    g = T._fit(dst.double() - o, src.double() - o, 0.0)
    _, jac = T._apply_with_jacobian(g, dst.double() - o, q_cpu.double().nan_to_num() - o)
    folded_root = ok & (torch.linalg.det(jac) <= 0)
    flat = ~folds[:, None].expand_as(nan)
    both = ok & ~nan_fixed & flat
    diff = (q_cpu - q_fixed).abs().amax(-1)[both]
    plain = plain_newton(src.double(), dst.double(), p.double())
    return dict(
        noise=noise,
        warps=args.warps,
        folding=int(folds.sum()),
        points=p.shape[0] * p.shape[1],
        resid=quantiles(resid[ok]),
        resid_flat=float(resid[ok & flat].max()),
        iters=quantiles(iters[ok & flat].double()),
        nan=int(nan.sum()),
        nan_flat=int((nan & flat).sum()),
        nan_warps=int(nan.any(1).sum()),
        nan_warps_fold=int((nan.any(1) & folds).sum()),
        nan_same=bool((nan == nan_fixed).all()),
        folded_root=int(folded_root.sum()),
        diff=float(diff.max()) if diff.numel() else 0.0,
        plain_bad=int(((plain > 1e-6) | ~torch.isfinite(plain))[~folds].sum()),
        plain_bad_warps=int(((plain > 1e-6) | ~torch.isfinite(plain))[~folds].any(1).sum()),
        warned=len(caught),
        seconds=time.perf_counter() - t0,
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--warps", type=int, default=5000)
    parser.add_argument("--points", type=int, default=64)
    parser.add_argument("--noise", type=float, nargs="+", default=[0.08, 0.12])
    parser.add_argument("--dtype", default="float64", choices=["float32", "float64"])
    parser.add_argument("--max-iter", type=int, default=20)
    parser.add_argument("--threads", type=int, default=None)
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    print(
        f"torch {torch.__version__}, {args.dtype}, max_iter {args.max_iter}, "
        f"load average {os.getloadavg()[0]:.2f}",
        flush=True,
    )
    rows = [study(noise, args) for noise in args.noise]
    print()
    print(
        "| noise_scale | warps (folding) | points | residual median / 99% / 99.9% / max "
        "| iterations median / 99% / 99.9% / max (non-folding) | NaN points: on folding "
        "warps / on non-folding | roots where det J <= 0 | CPU vs no-sync path | "
        "plain Newton (before): unconverged points (warps), non-folding |"
    )
    print("|---|---|---:|---|---|---|---:|---:|---|")
    for r in rows:
        res = " / ".join(f"{v:.1e}" for v in r["resid"])
        its = " / ".join(f"{v:.0f}" for v in r["iters"])
        print(
            f"| {r['noise']} | {r['warps']} ({r['folding']}) | {r['points']} | {res} | {its} "
            f"| {r['nan'] - r['nan_flat']} (in {r['nan_warps_fold']} warps) / {r['nan_flat']} "
            f"| {r['folded_root']} | max diff {r['diff']:.1e}, same NaN: {r['nan_same']} "
            f"| {r['plain_bad']} ({r['plain_bad_warps']}) |"
        )
    for r in rows:
        print(
            f"noise {r['noise']}: {r['nan']} NaN points in {r['nan_warps']} warps, of which "
            f"{r['nan_warps_fold']} fold on [-2, 2]^2; largest residual on non-folding warps "
            f"{r['resid_flat']:.2e}; {r['warned']} warning(s); {r['seconds']:.0f} s"
        )


if __name__ == "__main__":
    main()
