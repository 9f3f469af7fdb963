"""Start-up: import time of each family module beyond torch, and of the `zoo list` and `zoo info` commands.

    python benchmarks/startup.py [--runs 3]

Each figure is the best of `--runs` fresh processes. Module rows time `import <module>` after
`import torch` inside one process (so torch's own import is not counted); command rows time the whole
process against `python -c pass` measured alongside. `import zoo` and a first `zoo.load`, against an
older checkout, are benchmarks/import_time.py's. Writes the "startup" section of BENCHMARKS.md.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.report import table, write_section  # noqa: E402

MODULES = ("zoo", "zoo.hub", "zoo.tokenizer", "zoo.image.flextok", "zoo.image.karl", "zoo.image.cat", "zoo.video.larp",
           "zoo.audio.codec", "zoo.audio.dac", "zoo.audio.encodec", "zoo.audio.mimi", "zoo.action.beast",
           "zoo.action.baselines", "zoo.reduce")
COMMANDS = {
    "python -c pass": [sys.executable, "-c", "pass"],
    "python -c 'import torch'": [sys.executable, "-c", "import torch"],
    "zoo list": [sys.executable, "-m", "zoo.cli", "list"],
    "zoo info codec-small-speech16k": [sys.executable, "-m", "zoo.cli", "info", "codec-small-speech16k"],
}


def module_time(module: str) -> float | None:
    code = f"import time, torch; t = time.perf_counter(); import {module}; print(time.perf_counter() - t)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    return float(out.stdout) if out.returncode == 0 else None


def command_time(cmd: list[str]) -> float:
    t = time.perf_counter()
    subprocess.run(cmd, capture_output=True, check=True)
    return time.perf_counter() - t


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--no-write", action="store_true")
    args = parser.parse_args()
    load_before = os.getloadavg()[0]
    mods: dict[str, float | None] = {}
    cmds: dict[str, float] = {}
    for _ in range(args.runs):  # interleaved rounds: drift hits every row alike
        for m in MODULES:
            t = module_time(m)
            mods[m] = None if t is None else min(t, mods.get(m) or float("inf"))
        for name, cmd in COMMANDS.items():
            cmds[name] = min(command_time(cmd), cmds.get(name, float("inf")))
    load_after = os.getloadavg()[0]
    body = "\n".join([
        "## Start-up: family imports, `zoo list`, `zoo info`",
        "",
        f"`python benchmarks/startup.py --runs {args.runs}`: best of {args.runs} fresh processes each, on "
        f"{os.cpu_count()} cores, load average {load_before:.1f} before and {load_after:.1f} after (a shared machine: "
        "compare rows with `python -c pass` measured in the same rounds). Family modules import the heavy libraries "
        "they build with (timm, vector-quantize-pytorch, transformers) on first build, not at import. First loads: "
        "the \"Start-up: import, list, first load\" section (benchmarks/import_time.py).",
        "",
        table(["module", "import beyond torch (s)"],
              [[f"`{m}`", "not installed" if t is None else round(t, 3)] for m, t in mods.items()]),
        "",
        table(["command", "wall (s)"], [[f"`{k}`", round(v, 2)] for k, v in cmds.items()]),
    ])
    print(body)
    if not args.no_write:
        write_section("startup", body)


if __name__ == "__main__":
    main()
