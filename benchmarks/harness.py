"""Benchmark harness: median wall time and peak extra memory, one subprocess per case.

Each case is a *factory*: a module-level function ``factory(*args) -> step`` that
builds its inputs and returns a zero-argument callable doing the work to time (e.g.
forward + backward). :func:`measure` runs the factory in a freshly spawned Python
process, so every case starts from a clean allocator and its peak memory is its own:

- CPU: peak extra resident memory = ``ru_maxrss`` after the first call of ``step``
  minus ``ru_maxrss`` before it (inputs already allocated), in MiB;
- CUDA: ``torch.cuda.max_memory_allocated()`` during the first call minus the memory
  allocated before it.

Then ``warmup`` further calls, then ``repeats`` timed calls (CUDA synchronised);
the median and the inter-quartile range are reported. Threads: the subprocess uses
``torch.set_num_threads(threads)`` (default: all cores).
"""

from __future__ import annotations

import json
import multiprocessing as mp
import os
import platform
import resource
import statistics
import time
from dataclasses import asdict, dataclass


@dataclass
class Result:
    op: str
    case: str
    impl: str
    median_ms: float
    iqr_ms: float
    peak_mib: float
    repeats: int


def _child(conn, factory, args, repeats, warmup, device, threads):
    try:
        import torch

        if threads:
            torch.set_num_threads(threads)
        step = factory(*args)
        cuda = device.startswith("cuda")
        if cuda:
            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats()
            base = torch.cuda.memory_allocated()
        rss0 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        step()
        if cuda:
            torch.cuda.synchronize()
            peak = (torch.cuda.max_memory_allocated() - base) / 2**20
        else:
            peak = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - rss0) / 1024.0
        for _ in range(warmup):
            step()
        times = []
        for _ in range(repeats):
            if cuda:
                torch.cuda.synchronize()
            t0 = time.perf_counter()
            step()
            if cuda:
                torch.cuda.synchronize()
            times.append((time.perf_counter() - t0) * 1e3)
        conn.send(("ok", times, peak))
    except Exception as exc:  # reported by the parent
        conn.send(("error", repr(exc), 0.0))
    finally:
        conn.close()


def measure(
    op: str,
    case: str,
    impl: str,
    factory,
    *args,
    repeats: int = 15,
    warmup: int = 2,
    device: str = "cpu",
    threads: int | None = None,
) -> Result | None:
    """Time ``factory(*args)()`` in a spawned subprocess; ``None`` (and a message) on error."""
    ctx = mp.get_context("spawn")
    parent, child = ctx.Pipe(duplex=False)
    proc = ctx.Process(
        target=_child, args=(child, factory, args, repeats, warmup, device, threads)
    )
    proc.start()
    child.close()
    try:
        status, payload, peak = parent.recv()
    except EOFError:
        status, payload, peak = "error", "subprocess died (out of memory?)", 0.0
    proc.join()
    if status != "ok":
        print(f"  ! {op} {case} {impl}: {payload}", flush=True)
        return None
    q = statistics.quantiles(payload, n=4) if len(payload) >= 2 else [payload[0]] * 3
    res = Result(op, case, impl, statistics.median(payload), q[2] - q[0], peak, len(payload))
    print(
        f"  {op:<28} {case:<34} {impl:<18} {res.median_ms:10.3f} ms "
        f"(iqr {res.iqr_ms:.3f})  peak {res.peak_mib:9.1f} MiB",
        flush=True,
    )
    return res


def machine() -> str:
    """One line naming the machine the numbers came from."""
    import torch

    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "no GPU"
    return (
        f"{cpu}, {os.cpu_count()} cores, {gpu}; torch {torch.__version__}, "
        f"Python {platform.python_version()}"
    )


def ratio_table(results: list[Result], baseline_impl: str, title: str) -> str:
    """A Markdown table, one row per (op, case, impl): time and peak memory as multiples
    of the baseline impl's (``12.0x`` = twelve times the baseline's time or memory)."""
    base = {(r.op, r.case): r for r in results if r.impl == baseline_impl}
    lines = [
        f"### {title}",
        "",
        f"| op | case | impl | median ms | peak MiB | time vs {baseline_impl} "
        f"| peak memory vs {baseline_impl} |",
        "|---|---|---|---:|---:|---:|---:|",
    ]
    for r in results:
        b = base.get((r.op, r.case))
        sp = f"{r.median_ms / b.median_ms:.1f}x" if b else "-"
        mem = f"{r.peak_mib / b.peak_mib:.1f}x" if b and b.peak_mib > 0.05 else "-"
        lines.append(
            f"| {r.op} | {r.case} | {r.impl} | {r.median_ms:.3f} | {r.peak_mib:.1f} "
            f"| {sp} | {mem} |"
        )
    return "\n".join(lines)


def save(results: list[Result], path: str) -> None:
    """Write results (and the machine line) as JSON."""
    with open(path, "w") as f:
        json.dump({"machine": machine(), "results": [asdict(r) for r in results]}, f, indent=1)
