"""Threads: each shipped tokenizer's encode + decode on 1, 2 and all threads, idle and beside a busy core.

    python benchmarks/threads.py [--rounds 3] [--names 'codec*']

PyTorch uses one intra-op thread per core by default. On a shared machine a model of many small ops
(the codec) used to run 5-20x slower on two threads than on one (issue 22); `zoo.nn.threads` fixed that.
This script checks every shipped tokenizer: in one process, the thread counts interleaved round by
round, best time per configuration; "busy" runs a second process that spins on one core. Ratios > 1
mean adding threads made the call slower. Writes the "threads" section of BENCHMARKS.md.
"""

from __future__ import annotations

import argparse
import warnings
import os
import subprocess
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.inputs import synthetic_input  # noqa: E402
from benchmarks.report import machine, table, write_section  # noqa: E402
import zoo  # noqa: E402

BATCH = {"image": 16, "video": 2, "action": 16, "audio": 1}


def busy_core() -> subprocess.Popen:
    """A process that keeps one core busy (what a data loader or a second job does to a user's model)."""
    return subprocess.Popen([sys.executable, "-c", "while True: pass"])


def measure(names: list[str], rounds: int, thread_counts: list[int], busy: bool) -> dict[tuple[str, int], float]:
    warnings.simplefilter("ignore")  # synthetic trajectories leave BEAST's fitted bounds: speed is what counts here
    spinner = busy_core() if busy else None
    try:
        best: dict[tuple[str, int], float] = {}
        toks = {name: zoo.load(name) for name in names}
        inputs = {name: synthetic_input(tok, BATCH.get(tok.spec.modality, 4)) for name, tok in toks.items()}
        for _ in range(rounds):
            for name, tok in toks.items():
                for n in thread_counts:  # interleaved: drift of the machine hits every count alike
                    torch.set_num_threads(n)
                    with torch.no_grad():
                        if _ == 0:
                            tok.decode(tok.encode(inputs[name]))  # warm-up (plans, caches)
                        t = time.perf_counter()
                        tok.decode(tok.encode(inputs[name]))
                    best[name, n] = min(best.get((name, n), float("inf")), time.perf_counter() - t)
        return best
    finally:
        if spinner is not None:
            spinner.kill()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--names", default="*", help="shell pattern over shipped names")
    parser.add_argument("--no-write", action="store_true", help="print, do not write BENCHMARKS.md")
    args = parser.parse_args()
    names = [r["name"] for r in zoo.list_tokenizers(args.names) if r["shipped"]]
    counts = sorted({1, 2, os.cpu_count() or 1})
    load_before = os.getloadavg()[0]
    results = {busy: measure(names, args.rounds, counts, busy) for busy in (False, True)}
    load_after = os.getloadavg()[0]
    rows, ratios = [], []
    for name in names:
        row = [f"`{name}`"]
        for busy in (False, True):
            one = results[busy][name, 1]
            row.append(round(one * 1000, 1))
            row += [round(results[busy][name, n] / one, 2) for n in counts if n != 1]
            ratios += [results[busy][name, n] / one for n in counts if n != 1]
        rows.append(row)
    header = ["tokenizer"]
    for cond in ("idle", "busy core"):
        header += [f"{cond}: 1 thread (ms)"] + [f"{cond}: {n} threads / 1 thread" for n in counts if n != 1]
    worst = max(ratios)
    body = "\n".join([
        "## Threads: encode + decode at 1, 2 and all threads (`zoo.nn.threads`)",
        "",
        f"`python benchmarks/threads.py --rounds {args.rounds}` on {machine()}; load average {load_before:.1f} "
        f"before, {load_after:.1f} after. Batch: images 16, clips 2, trajectories 16, audio one 10 s clip; "
        "synthetic inputs from each contract (`benchmarks/inputs.py`). Best of the rounds, thread counts interleaved "
        "in one process; \"busy core\": a second process spins on one core throughout. A ratio above 1 means more "
        "threads were slower.",
        "",
        table(header, rows),
        "",
        f"Worst ratio: {worst:.2f}.",
    ])
    print(body)
    if not args.no_write:
        write_section("threads", body)


if __name__ == "__main__":
    main()
