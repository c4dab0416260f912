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

Every table reads one way (:func:`speedup_table`): for each case and each peer, the
**speed-up of torch-artic** (peer time / torch-artic time; > 1 means torch-artic is
faster) and its **memory saving** (peer peak / torch-artic peak), under a header with
the machine, the thread count and the load average. A run started on a loaded machine
(1-minute load average above :data:`QUIET_LOAD` before it starts) is marked
``LOADED`` in every table, and :func:`save` refuses to record it unless asked
(``--allow-load``): load slows Python-heavy peers more than native kernels and
inflates the ratios.
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

QUIET_LOAD = 1.5
"""A run whose 1-minute load average is above this when it starts is LOADED. A benchmark
running alone keeps the 1-minute average near its own thread count (about 1 after the
previous script of a 1-thread series), so 1.5 separates "this series alone" from "another
job on the second core"."""


@dataclass
class Result:
    op: str
    case: str
    impl: str
    median_ms: float
    iqr_ms: float
    peak_mib: float
    repeats: int
    load: float = 0.0  # 1-minute load average when the case started


@dataclass
class Run:
    """What a benchmark run records about its circumstances (see :func:`begin`)."""

    machine: str
    threads: int | None
    load_start: float
    loaded: bool
    allow_load: bool = False

    def header(self, results: list[Result] = ()) -> str:
        peak = max([self.load_start, *(r.load for r in results)])
        state = "LOADED: not for the record" if self.loaded else "quiet"
        threads = self.threads if self.threads else f"all ({os.cpu_count()})"
        return (
            f"{self.machine}; threads: {threads}; load average at start "
            f"{self.load_start:.2f}, at most {peak:.2f} ({state})"
        )


def load_average() -> float:
    """The 1-minute load average (0 where the OS does not report one)."""
    try:
        return os.getloadavg()[0]
    except OSError:
        return 0.0


def add_arguments(parser) -> None:
    """The options every benchmark script takes."""
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=1, help="torch threads (default 1)")
    parser.add_argument("--json", default=None, help="also write the results as JSON here")
    parser.add_argument(
        "--allow-load",
        action="store_true",
        help="record (--json) even if the machine was loaded when the run started",
    )


def begin(args) -> Run:
    """Print the run's header line and return its :class:`Run` (check the load first)."""
    threads = getattr(args, "threads", None)
    load = load_average()
    run = Run(machine(), threads, load, load > QUIET_LOAD, getattr(args, "allow_load", False))
    print(run.header(), flush=True)
    if run.loaded:
        print(
            f"  ! load average {load:.2f} > {QUIET_LOAD}: other jobs are running; the ratios "
            "will be inflated (Python-heavy peers slow down more than native kernels)",
            flush=True,
        )
    return run


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
    load = load_average()
    ctx = mp.get_context("spawn")
    parent, child = ctx.Pipe(duplex=False)
    proc = ctx.Process(target=_child, args=(child, factory, args, repeats, warmup, device, threads))
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
    res = Result(op, case, impl, statistics.median(payload), q[2] - q[0], peak, len(payload), load)
    print(
        f"  {op:<28} {case:<34} {impl:<18} {res.median_ms:10.3f} ms "
        f"(iqr {res.iqr_ms:.3f})  peak {res.peak_mib:9.1f} MiB",
        flush=True,
    )
    return res


def interleaved(steps: dict, repeats: int, *, warmup: int = 3, sync=None) -> dict:
    """Time the callables ``steps`` (name -> step) in this process, round-robin with the
    order rotating each round, so that a machine shared with other jobs slows them all
    alike. Returns, per name, ``{"wall": [...], "cpu": [...]}``: the wall time and this
    thread's CPU time of each round's call, in ms (index r: round r, so entries of two
    names at the same index were measured back to back). ``sync`` (e.g.
    ``torch.cuda.synchronize``) runs before and after each call."""
    sync = sync or (lambda: None)
    names = list(steps)
    for step in steps.values():
        for _ in range(warmup):
            step()
    out = {name: {"wall": [], "cpu": []} for name in names}
    for r in range(repeats):
        for name in names[r % len(names) :] + names[: r % len(names)]:
            sync()
            w0, c0 = time.perf_counter(), time.thread_time()
            steps[name]()
            sync()
            out[name]["wall"].append((time.perf_counter() - w0) * 1e3)
            out[name]["cpu"].append((time.thread_time() - c0) * 1e3)
    return out


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


def speedup_table(results: list[Result], ours: str, title: str, run: Run) -> str:
    """A Markdown table, one row per (op, case, peer): torch-artic's time and peak memory
    (the impl named ``ours``), the peer's, the **speed-up** (peer / ours: > 1 means
    torch-artic is faster) and the **memory saving** (peer / ours: > 1 means it needs
    less)."""
    mine = {(r.op, r.case): r for r in results if r.impl == ours}
    lines = [
        f"### {title}",
        "",
        run.header(results),
        "",
        f"| op | case | vs | {ours} ms | peer ms | speed-up | {ours} MiB | peer MiB "
        "| memory saving |",
        "|---|---|---|---:|---:|---:|---:|---:|---:|",
    ]
    for r in results:
        m = mine.get((r.op, r.case))
        if r.impl == ours or m is None:
            continue
        mem = f"{r.peak_mib / m.peak_mib:.1f}x" if m.peak_mib > 0.05 else "-"
        lines.append(
            f"| {r.op} | {r.case} | {r.impl} | {m.median_ms:.3f} | {r.median_ms:.3f} "
            f"| {r.median_ms / m.median_ms:.1f}x | {m.peak_mib:.1f} | {r.peak_mib:.1f} | {mem} |"
        )
    return "\n".join(lines)


def times_table(results: list[Result], title: str, run: Run) -> str:
    """A Markdown table of times and peaks only (for costs that are not a comparison with
    a peer, e.g. one op's variants against each other)."""
    lines = [f"### {title}", "", run.header(results), ""]
    lines += ["| op | case | impl | median ms | peak MiB |", "|---|---|---|---:|---:|"]
    for r in results:
        lines.append(f"| {r.op} | {r.case} | {r.impl} | {r.median_ms:.3f} | {r.peak_mib:.1f} |")
    return "\n".join(lines)


def save(results: list[Result], path: str, run: Run | None = None) -> None:
    """Write results (and the run's circumstances) as JSON; a LOADED run is refused
    unless the run allows it (``--allow-load``)."""
    if run is not None and run.loaded and not run.allow_load:
        print(f"  ! not writing {path}: the run was LOADED (use --allow-load to keep it)")
        return
    payload = {"machine": machine(), "results": [asdict(r) for r in results]}
    if run is not None:
        payload["run"] = asdict(run)
    with open(path, "w") as f:
        json.dump(payload, f, indent=1)
