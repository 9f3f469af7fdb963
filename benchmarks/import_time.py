"""Start-up costs a user pays: `import zoo`, `zoo.list_tokenizers()` and the first `zoo.load`, each in a fresh process.

    python benchmarks/import_time.py [--runs 5] [--against OTHER_CHECKOUT --label COMMIT ...]

Each run starts a new interpreter (PYTHONPATH = the tree measured, one thread); with `--against` (once or more,
each with its `--label`), the trees alternate run by run so that load on a shared machine hits them alike, and
the table gives the ratio of the best runs. Writes the `import-time` section of BENCHMARKS.md.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.report import ROOT, machine, table, write_section  # noqa: E402

PROBE = """
import json, sys, time
t0 = time.perf_counter()
import zoo
t1 = time.perf_counter()
zoo.list_tokenizers()
t2 = time.perf_counter()
torch_after_list = "torch" in sys.modules
zoo.load(sys.argv[1])
t3 = time.perf_counter()
print(json.dumps({"import zoo": t1 - t0, "list_tokenizers()": t2 - t1, "first zoo.load": t3 - t2,
                  "torch imported by list": torch_after_list}))
"""


def probe(tree: Path, name: str) -> dict:
    env = {**os.environ, "PYTHONPATH": str(tree), "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    out = subprocess.run([sys.executable, "-c", PROBE, name], cwd=tree, env=env, capture_output=True, text=True,
                         timeout=600)
    if out.returncode != 0:
        raise RuntimeError(out.stderr[-2000:])
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--name", default="beast-lasa")
    parser.add_argument("--against", type=Path, action="append", default=[], help="another checkout to compare with")
    parser.add_argument("--label", action="append", default=[], help="what that checkout is (e.g. a commit id)")
    args = parser.parse_args()
    if len(args.label) != len(args.against):
        parser.error(f"give one --label per --against ({len(args.against)} checkouts, {len(args.label)} labels)")
    trees = {"this tree": ROOT} | {label: tree.resolve() for label, tree in zip(args.label, args.against)}
    runs: dict[str, list[dict]] = {k: [] for k in trees}
    for _ in range(args.runs):
        for label, tree in trees.items():  # interleaved
            runs[label].append(probe(tree, args.name))
    keys = ["import zoo", "list_tokenizers()", "first zoo.load"]
    best = {label: {k: min(r[k] for r in rs) for k in keys} for label, rs in runs.items()}
    header = ["", *[f"{k} (s, best of {args.runs})" for k in keys], "torch imported by list"]
    rows = [[label, *[round(best[label][k], 3) for k in keys], any(r["torch imported by list"] for r in runs[label])]
            for label in trees]
    for label in args.label:
        rows.append([f"ratio this / {label}", *[round(best["this tree"][k] / best[label][k], 2) for k in keys], ""])
    load = os.getloadavg()[0]
    text = "\n\n".join([
        "## Start-up: import, list, first load",
        f"`python benchmarks/import_time.py --runs {args.runs}"
        + "".join(f" --against <checkout of {label}> --label {label}" for label in args.label)
        + f"`; one fresh process per run, first load of `{args.name}`; {machine()}; load average {load:.1f} after.",
        table(header, rows),
    ])
    print(text)
    write_section("import-time", text)


if __name__ == "__main__":
    main()
