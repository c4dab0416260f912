"""Benchmark: the per-step cost of each BalancedMTL strategy on the thesis's chapter-4 model.

One training step of ``examples/keypoints_mtl.py`` (hourglass detector, reconstruction,
distractor and middle-frame heads, concentration constraint; batch 32 + 32 warped frames of
16x16 digits, default sizes): draw a batch, compute the four task losses, ``zero_grad``,
``BalancedMTL.backward`` (``mtl(losses).backward()`` for the loss strategies), Adam step.
The baseline, ``sum``, is the plain ``sum(losses).backward()``. Implementations:

- ``exp``, ``log``, ``uncertainty``, ``fixed``, ``dwa``: the loss strategies;
- ``mgda_ub``, ``pcgrad``: balanced at the detector's heatmaps ``[64, 7, 16, 16]`` (one
  extra backward through the heads only);
- ``mgda (params)``, ``pcgrad (params)``: the papers' parameter-level versions, balanced at
  the detector's parameters (one backward through the whole model per task, then one more).

Every impl gets the same data and initialisation; each step draws a fresh batch. The
per-step overhead is small against the noise of a shared machine, so by default all impls
are built in one process and timed **interleaved**, round-robin (the order rotating each
round), and the median wall time (and the median thread CPU time) per step is reported with
the 1-minute load average before and after. ``--isolated`` also times each impl alone in a
fresh subprocess (``benchmarks.harness.measure``, with its peak-memory column). Run from the
repository root::

    python -m benchmarks.bench_mtl [--threads 1] [--repeats 60] [--isolated] [--json r.json]
"""

from __future__ import annotations

import argparse
import json
import statistics

from benchmarks.harness import (
    add_arguments,
    begin,
    interleaved,
    load_average,
    machine,
    measure,
    save,
    times_table,
)

IMPLS = (
    "sum",
    "exp",
    "log",
    "uncertainty",
    "fixed",
    "dwa",
    "mgda_ub",
    "pcgrad",
    "mgda (params)",
    "pcgrad (params)",
)


def _example():
    """``examples/keypoints_mtl.py`` as a module (examples/ is not a package)."""
    import importlib.util
    from pathlib import Path

    path = Path(__file__).resolve().parents[1] / "examples" / "keypoints_mtl.py"
    spec = importlib.util.spec_from_file_location("keypoints_mtl", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def make_step(impl: str):
    """Factory (runs in the benchmark subprocess): model, data, optimiser + one train step."""
    import torch

    import torch_artic as ta

    ex = _example()
    args = ex.make_parser().parse_args([])
    x, _ = ex.load_digits_upsampled(args.size)
    x_train = x[torch.randperm(x.shape[0], generator=torch.Generator().manual_seed(0))][
        : ex.N_TRAIN
    ]
    torch.manual_seed(0)
    model = ex.Model(args)
    names = [*ex.TASKS, "concentration"]
    strategy = {"mgda (params)": "mgda_ub", "pcgrad (params)": "pcgrad"}.get(impl, impl)
    mtl = None if impl == "sum" else ta.BalancedMTL(names, strategy=strategy)
    params = [*model.parameters(), *(mtl.parameters() if mtl is not None else [])]
    opt = torch.optim.Adam(params, lr=args.lr)
    g = torch.Generator().manual_seed(1)
    order = torch.Generator().manual_seed(2)
    detector = list(model.detector.parameters())

    def step():
        idx = torch.randint(0, x_train.shape[0], (args.batch,), generator=g)
        losses, h = ex.task_losses(model, x_train[idx], ex.TASKS, args, g)
        opt.zero_grad()
        if mtl is None:
            sum(losses.values()).backward()
        else:
            shared = detector if impl.endswith("(params)") else h
            mtl.backward(losses, shared=shared, generator=order)
        opt.step()

    return step


def time_interleaved(impls, repeats: int, threads: int) -> dict:
    """Time every impl in this process, interleaved (:func:`benchmarks.harness.interleaved`).
    Returns, per impl, the median and inter-quartile range of the wall time and the median
    thread CPU time of one step (ms)."""
    import torch

    torch.set_num_threads(threads)
    times = interleaved({impl: make_step(impl) for impl in impls}, repeats)
    out = {}
    for impl, t in times.items():
        q = statistics.quantiles(t["wall"], n=4)
        out[impl] = {
            "median_ms": statistics.median(t["wall"]),
            "iqr_ms": q[2] - q[0],
            "cpu_ms": statistics.median(t["cpu"]),
            "repeats": repeats,
        }
    return out


def overhead_table(res: dict, title: str) -> str:
    """Markdown: per impl, wall and CPU time per step and the overhead against ``sum``."""
    base = res["sum"]
    lines = [
        f"### {title}",
        "",
        "| strategy | wall ms / step (median) | IQR ms | CPU ms / step (median) "
        "| time vs sum | overhead vs sum (ms) |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for impl, r in res.items():
        lines.append(
            f"| {impl} | {r['median_ms']:.1f} | {r['iqr_ms']:.1f} | {r['cpu_ms']:.1f} "
            f"| {r['median_ms'] / base['median_ms']:.2f}x "
            f"| {r['median_ms'] - base['median_ms']:+.1f} |"
        )
    return "\n".join(lines)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=60)
    parser.add_argument("--impls", nargs="+", default=list(IMPLS), choices=IMPLS)
    parser.add_argument(
        "--isolated",
        action="store_true",
        help="also time each impl alone in a fresh subprocess (harness.measure: peak memory)",
    )
    add_arguments(parser)
    args = parser.parse_args(argv)
    impls = list(dict.fromkeys(["sum", *args.impls]))

    run = begin(args)
    load0 = load_average()
    res = time_interleaved(impls, args.repeats, args.threads)
    load1 = load_average()
    loads = f"load average {load0:.2f} -> {load1:.2f} (1 min)"
    print()
    title = (
        f"BalancedMTL strategies vs plain sum, chapter-4 model, {args.threads} thread(s), "
        f"{args.repeats} interleaved steps each ({machine()}; {loads})"
    )
    print(overhead_table(res, title), flush=True)
    results = []
    if args.isolated:
        for impl in impls:
            r = measure(
                "keypoints_mtl train step",
                "batch 32+32, 16x16, 4 tasks, cpu",
                impl,
                make_step,
                impl,
                repeats=args.repeats,
                warmup=3,
                threads=args.threads,
            )
            if r is not None:
                results.append(r)
        print()
        print(times_table(results, "each strategy alone in a subprocess", run))
    if args.json:
        if results:
            save(results, args.json, run)
        if not (run.loaded and not run.allow_load):
            with open(args.json + ".interleaved.json", "w") as f:
                json.dump({"machine": machine(), "loadavg": [load0, load1], "interleaved": res}, f)


if __name__ == "__main__":
    main()
