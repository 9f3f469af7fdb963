"""Shared by the benchmark scripts: machine facts, timing, and writing one section of BENCHMARKS.md."""

from __future__ import annotations

import fcntl
import os
import platform
import re
import time
from pathlib import Path
from typing import Callable

ROOT = Path(__file__).resolve().parent.parent
BENCHMARKS = ROOT / "BENCHMARKS.md"
FIGURES = ROOT / "benchmarks" / "figures"
HEADER = "# Benchmarks\n\nWritten by the scripts in `benchmarks/` (`make bench` runs them all); do not edit by hand.\n"


def _cpu_model() -> str:
    """The CPU's model name (/proc/cpuinfo): ratios against other code move with it, so every table names it."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


def machine() -> str:
    import torch

    text = (f"{platform.machine()} ({_cpu_model()}, torch kernels for {torch.backends.cpu.get_cpu_capability()}), "
            f"{os.cpu_count()} cores, torch {torch.__version__} with "
            f"{torch.get_num_threads()} threads, python {platform.python_version()}")
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else 0.0
    if load > 1.5:  # other jobs shared the cores: timings are slower than on an idle machine
        text += f"; load average {load:.1f} when measured (shared machine, so timings are pessimistic)"
    return text


def best_time(fn: Callable[[], object], repeat: int = 5, warmup: int = 1,
              clock: Callable[[], float] = time.perf_counter) -> float:
    """Best time of `repeat` runs after `warmup` runs, in seconds (shared machines drift); wall time by
    default, or e.g. `clock=time.thread_time` for the CPU time of this thread."""
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeat):
        t = clock()
        fn()
        times.append(clock() - t)
    return min(times)


def interleaved_best(runs: dict[str, Callable[[], object]], repeat: int) -> dict[str, dict[str, float]]:
    """Each of `runs` timed `repeat` times, interleaved run by run (a shared machine's drift hits them alike): the
    best wall and CPU time (this thread's) of each, {name: {"wall": s, "cpu": s}}."""
    times: dict[str, dict[str, list[float]]] = {k: {"wall": [], "cpu": []} for k in runs}
    for _ in range(repeat):
        for key, fn in runs.items():
            wall, cpu = time.perf_counter(), time.thread_time()
            fn()
            times[key]["cpu"].append(time.thread_time() - cpu)
            times[key]["wall"].append(time.perf_counter() - wall)
    return {k: {c: min(v) for c, v in t.items()} for k, t in times.items()}


def table(header: list[str], rows: list[list[object]]) -> str:
    def fmt(v: object) -> str:
        if isinstance(v, float):
            return f"{v:.4g}"
        return str(v)

    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(fmt(v) for v in r) + " |" for r in rows]
    return "\n".join(lines)


def read_section(name: str) -> str:
    """The body of section `name` of BENCHMARKS.md as `write_section` wrote it ("" when there is none)."""
    text = BENCHMARKS.read_text() if BENCHMARKS.exists() else ""
    found = re.search(re.escape(f"<!-- begin {name} -->") + "\n(.*?)\n" + re.escape(f"<!-- end {name} -->"), text, re.S)
    return found.group(1) if found else ""


def write_section(name: str, body: str) -> None:
    """Replace (or append) the section `name` of BENCHMARKS.md; other sections are kept. Safe across processes."""
    begin, end = f"<!-- begin {name} -->", f"<!-- end {name} -->"
    block = f"{begin}\n{body.strip()}\n{end}"
    lock = BENCHMARKS.with_suffix(".lock")
    with open(lock, "w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        text = BENCHMARKS.read_text() if BENCHMARKS.exists() else HEADER
        pattern = re.compile(re.escape(begin) + ".*?" + re.escape(end), re.S)
        text = pattern.sub(lambda _: block, text) if pattern.search(text) else text.rstrip() + "\n\n" + block + "\n"
        tmp = BENCHMARKS.with_suffix(".md.tmp")
        tmp.write_text(text)
        os.replace(tmp, BENCHMARKS)
