"""Fuzzing counts: every public entry point under the thorough hypothesis profile (>= 1000 cases each).

    .venv/bin/python benchmarks/fuzz.py             # hypothesis counts, then the memory bombs
    .venv/bin/python benchmarks/fuzz.py --attacks   # the memory bombs only (section "fuzz-attacks")

Runs `HYPOTHESIS_PROFILE=fuzz pytest tests/test_fuzz.py --hypothesis-show-statistics` and writes the
"fuzz" section of BENCHMARKS.md: cases tried per entry point and what failed; then runs each memory-bomb
attack of issue 19 (`tests/test_fuzz.py` ATTACKS, BOUNDED) in a capped subprocess and records its outcome,
time and peak memory.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import tempfile
import time
from contextlib import nullcontext
from pathlib import Path

sys.path.insert(0, str(__import__("pathlib").Path(__file__).resolve().parent.parent))

from benchmarks.report import ROOT, machine, table, write_section  # noqa: E402

# Defects the fuzzers found in this code base, each fixed in the commit that added the check named here.
FOUND_AND_FIXED = [
    ("BEAST.decode", "an empty token batch crashed inside torch (max() of an empty tensor)", "zoo.tokenizer.check_tokens"),
    ("Binning.decode", "zero-length token rows crashed inside F.interpolate", "length check in Binning.decode"),
    ("zoo encode (CLI)", "an empty .npy file raised EOFError instead of an error message", "zoo.io._read_array"),
    ("zoo encode (CLI)", "a text file named .npy reported 'pickled data' (misleading)", "zoo.io._read_array"),
    ("FlexTok.decode", "an empty token batch crashed inside torch (min() of an empty tensor)", "check_tokens in FlexTok.decode"),
    ("Codec.decode", "an empty token batch crashed inside einops/torch (reshape of 0 elements)", "check_tokens in Codec.decode"),
]


def attacks_section() -> str:
    """The issue-19 attacks of tests/test_fuzz.py, each measured alone in a capped subprocess."""
    from tests.test_fuzz import (ATTACK_MB, ATTACKS, BOUNDED, BOUNDED_MB, HUB_ACCEPTED, HUB_ATTACKS, UNBOUNDED,
                                 hostile_hub, run_attacks)

    rows = []
    for kind, attacks, mem_mb, server in (("refused", ATTACKS, ATTACK_MB, nullcontext({})),
                                          ("refused", HUB_ATTACKS, ATTACK_MB, hostile_hub()),
                                          ("bounded", HUB_ACCEPTED, ATTACK_MB, hostile_hub()),
                                          ("bounded", BOUNDED, BOUNDED_MB, nullcontext({})),
                                          ("comparison", UNBOUNDED, 4096, nullcontext({}))):
        with tempfile.TemporaryDirectory() as tmp, server as env:
            results = run_attacks(attacks, mem_mb, Path(tmp), env=env)
        for name, (entry, _) in attacks.items():
            r = results.get(name, {"outcome": "not run (an earlier attack crashed)", "seconds": None, "peak_mb": None})
            ok = r["outcome"].startswith("ValueError") if kind == "refused" else r["outcome"] == "accepted"
            rows.append([name, entry, f"{mem_mb} MB", r["outcome"][:90].replace("|", "/"), r["seconds"], r["peak_mb"],
                         "n/a" if kind == "comparison" else "yes" if ok else "**no**"])
    timed = [r for r in rows if r[4] is not None]
    lines = ["## Memory bombs and large batches (issue 19)",
             f"`.venv/bin/python benchmarks/fuzz.py --attacks` on {machine()}. The attacks run one after another in a "
             "fresh process whose address space is capped (RLIMIT_AS) at what it held after importing torch and zoo "
             "plus the limit shown; seconds and peak MB are each attack's own (peak resident memory above what the "
             "process held before it, the peak reset between attacks). A refusal must be a ValueError; the bounded "
             "cases must finish under their cap (the load of the model included); the comparison row is the same "
             "batch in one piece, under a 4 GB cap. The hub rows run against a Hugging Face hub served on loopback "
             "(tests/test_fuzz.py `hostile_hub`) with the total download deadline cut to 1 s; each also requires "
             "that nothing is left in its cache.",
             table(["attack", "entry point", "cap", "outcome", "seconds", "peak MB", "as required"], rows)]
    if timed:
        worst_time, worst_mem = max(timed, key=lambda r: r[4]), max(timed, key=lambda r: r[5])
        lines.append(f"Worst time: {worst_time[0]} ({worst_time[4]:.2f} s); worst peak memory: {worst_mem[0]} "
                     f"({worst_mem[5]:.0f} MB); {sum(r[6] == 'yes' for r in rows)}/{sum(r[6] != 'n/a' for r in rows)} as required; "
                     f"load average {os.getloadavg()[0]:.1f}.")
    return "\n\n".join(lines)


def main() -> None:
    attacks = attacks_section()
    write_section("fuzz-attacks", attacks)
    print(attacks)
    if "--attacks" in sys.argv[1:]:
        return
    start = time.time()
    out = subprocess.run([sys.executable, "-m", "pytest", "tests/test_fuzz.py", "-p", "no:warnings", "-p", "no:cacheprovider",
                          "--hypothesis-show-statistics"], cwd=ROOT, capture_output=True, text=True,
                         env={**os.environ, "HYPOTHESIS_PROFILE": "fuzz"})
    text = out.stdout + out.stderr
    rows = []
    stats = text.split("Hypothesis Statistics", 1)[-1]
    for test, body in re.findall(r"tests/test_fuzz.py::(\S+):\n(.*?)(?=tests/test_fuzz.py::|\Z)", stats, re.S):
        counts = [tuple(map(int, m)) for m in re.findall(r"(\d+) passing, (\d+) failing, and (\d+) invalid", body)]
        passing, failing, invalid = (sum(c[i] for c in counts) for i in range(3))
        rows.append([test, passing + failing, failing, invalid])
    summary = re.findall(r"=+ (.*(?:passed|failed).*) =+", text)
    parts = ["## Fuzzing (hostile input)",
             f"`.venv/bin/python benchmarks/fuzz.py` on {machine()}: `HYPOTHESIS_PROFILE=fuzz` "
             "(max 1000 examples per entry point; a binary-input test may stop earlier when hypothesis exhausts "
             "its search space). A case passes when the entry point returns a well-formed result or raises a "
             "ValueError with a message; anything else (a crash inside torch, another exception, a NaN output, "
             "out-of-vocabulary ids accepted) fails. CI runs the same tests with 40 examples each.",
             table(["entry point (test)", "cases tried", "failing", "invalid (rejected by the strategy)"], rows),
             f"pytest: {summary[-1] if summary else 'no summary'}; {time.time() - start:.0f} s.",
             "### Defects found by fuzzing and fixed",
             table(["entry point", "what happened", "fixed in"], [list(r) for r in FOUND_AND_FIXED])]
    write_section("fuzz", "\n\n".join(parts))
    print("\n\n".join(parts))
    if out.returncode != 0:
        print(text[-4000:])
        raise SystemExit(out.returncode)


if __name__ == "__main__":
    main()
