"""Quality vs training time of the image fine-tuning runs (issue 20, item 3), read from their goal_curve.csv.

    python -m benchmarks.goal_curves runs/karl-tiny-nat32-real runs/flextok-tiny-nat32-real/steps1 ...

`recipes.goals.GoalCurve` wrote each file during training: PSNR (and mean tokens) on held-out sets per source
(`zoo.data.images.source_val_sets`: photo crops of photos no builder trains on, val faces, shapes, flat colours,
gradients, textures) at each budget, against the step and the CPU seconds of the training process. This script
only reads those files (no model runs, seconds): per run, a table of PSNR per source and budget at a few points
of the run, the goals of issue 20 that the curve can show (flat colours >= 30 dB at the smallest budget;
photos at 8 tokens >= mean colour + 2 dB; flat images at most a third of the tokens of photos at one
`quality=`), how far each is at the end, and a figure of PSNR vs CPU minutes. Thumbnail and JPEG baselines at
equal bits need the models: `benchmarks/real_inputs.py`.
"""

from __future__ import annotations

import argparse
import csv
import sys
from collections import defaultdict
from pathlib import Path

from benchmarks.report import FIGURES, table, write_section

FLAT_GOAL_DB = 30.0
MEAN_MARGIN_DB = 2.0
FLAT_TOKEN_SHARE = 1 / 3
SECTION = "real-inputs-training"


def read_curve(path: Path) -> list[dict[str, object]]:
    """Rows of a goal_curve.csv (a file, or the folder holding it), numbers parsed."""
    path = path / "goal_curve.csv" if path.is_dir() else path
    if not path.is_file():
        raise ValueError(f"{path} is not a goal_curve.csv written by recipes.goals.GoalCurve")
    with path.open() as f:
        rows = list(csv.DictReader(f))
    if not rows:
        raise ValueError(f"{path} has a header but no measurements yet")
    return [{**r, "step": int(r["step"]), "cpu_s": float(r["cpu_s"]), "wall_s": float(r["wall_s"]),
             "psnr": float(r["psnr"]), "tokens": float(r["tokens"])} for r in rows]


def mean_colour_db(n: int = 48) -> dict[str, float]:
    """PSNR of each held-out source's own mean colour (24 bits), on the sets GoalCurve measures (n per source)."""
    from zoo import metrics
    from zoo.data.images import images_to_tensor, source_val_sets

    out = {}
    for source, arrays in source_val_sets(n).items():
        x = images_to_tensor(arrays["images"])
        out[source] = float(metrics.psnr(x.mean((2, 3), keepdim=True).expand_as(x), x).mean())
    return out


def budget_tokens(budget: str, rows: list[dict[str, object]] = ()) -> float | None:
    """The fixed token count of a budget label: "num_tokens=8" → 8; a fixed ratio ("ratio=16", CAT) → the tokens
    its `rows` record, the same for every image; None for adaptive ones ("quality=...")."""
    key, _, value = budget.partition("=")
    if key == "num_tokens":
        return float(value)
    if key == "ratio" and value.isdigit():
        counts = {float(r["tokens"]) for r in rows if r["budget"] == budget}
        return counts.pop() if len(counts) == 1 else None
    return None


CLOCKS = {"cpu": ("cpu_s", "CPU-min"), "wall": ("wall_s", "GPU-min")}  # the time a run is read against


def summarise(label: str, rows: list[dict[str, object]], baseline: dict[str, float], points: int = 5,
              clock: str = "cpu") -> tuple[str, list[list[object]]]:
    """A markdown table (PSNR per source x budget at `points` steps of the run) and the goal rows.

    `clock`: "cpu" reads the process CPU seconds (a CPU run's budget), "wall" the wall seconds (a GPU run's)."""
    key, unit = CLOCKS[clock]
    steps = sorted({r["step"] for r in rows})
    picked = sorted({steps[round(i * (len(steps) - 1) / max(points - 1, 1))] for i in range(points)})
    at = {(r["step"], r["source"], r["budget"]): r for r in rows}
    minutes = {s: min(r[key] for r in rows if r["step"] == s) / 60 for s in picked}
    budgets = list(dict.fromkeys(r["budget"] for r in rows))
    sources = list(dict.fromkeys(r["source"] for r in rows))
    header = ["source", "budget"] + [f"step {s} ({minutes[s]:.1f} {unit})" for s in picked]
    body = []
    for source in sources:
        for budget in budgets:
            cells = []
            for s in picked:
                r = at.get((s, source, budget))
                cells.append("" if r is None else f"{r['psnr']:.2f}" + ("" if budget_tokens(budget, rows) else f" / {r['tokens']:.1f} t"))
            body.append([source, budget] + cells)
    first, last = picked[0], picked[-1]
    goals: list[list[object]] = []

    def psnr(step: int, source: str, budget: str) -> float | None:
        r = at.get((step, source, budget))
        return None if r is None else float(r["psnr"])

    fixed = sorted((b for b in budgets if budget_tokens(b, rows)), key=lambda b: budget_tokens(b, rows))
    if fixed and "flat" in sources:
        b = fixed[0]
        start, end = psnr(first, "flat", b), psnr(last, "flat", b)
        goals.append([label, f"flat colours at {b} >= {FLAT_GOAL_DB:g} dB", f"{start:.2f}", f"{end:.2f}",
                      f"{end - FLAT_GOAL_DB:+.2f} dB"])
    k8 = next((b for b in fixed if budget_tokens(b, rows) == 8), None)
    if k8 and "photos" in sources:
        goal = baseline["photos"] + MEAN_MARGIN_DB
        start, end = psnr(first, "photos", k8), psnr(last, "photos", k8)
        goals.append([label, f"photos at {k8} >= mean colour ({baseline['photos']:.2f}) + {MEAN_MARGIN_DB:g} dB",
                      f"{start:.2f}", f"{end:.2f}", f"{end - goal:+.2f} dB"])
    for b in (b for b in budgets if b.startswith("quality=")):
        share = [at[(s, "flat", b)]["tokens"] / max(at[(s, "photos", b)]["tokens"], 1e-9) for s in (first, last)]
        goals.append([label, f"tokens of flat / photos at {b} <= {FLAT_TOKEN_SHARE:.2f}", f"{share[0]:.2f}",
                      f"{share[1]:.2f}", f"{FLAT_TOKEN_SHARE - share[1]:+.2f}"])
    return table(header, body), goals


def card_notes(runs: dict[str, Path], history: str, limitations: str = "", clock: str = "cpu") -> str:
    """The part of a fine-tuned checkpoint's card that tells its run history and curve.

    Args:
        runs: label → goal_curve.csv (or its folder) of the run that made the checkpoint (e.g. "8 Euler steps").
        history: what the checkpoint was trained from, on what, and for how long.
        limitations: what it still misses, in words.
        clock: "cpu" or "wall" (`summarise`).
    """
    baseline = mean_colour_db()
    goals, tables = [], []
    for label, path in runs.items():
        text, rows = summarise(label, read_curve(Path(path)), baseline, points=3, clock=clock)
        goals += rows
        tables.append(f"{label}:\n\n{text}")
    return "\n\n".join([
        "## History",
        history,
        "## Held-out quality vs training time",
        "PSNR (dB) per held-out source (48 images each: crops of photos no builder trains on, val faces, shapes, "
        "flat colours, gradients, textures), as `recipes.goals.GoalCurve` measured it while the run trained "
        f"(start = the previous checkpoint). Mean colour (24 bits): "
        + ", ".join(f"{k} {v:.2f} dB" for k, v in baseline.items() if k != "flat") + ".",
        table(["run", "goal", "start", "end", "margin"], goals),
        *tables,
        *(["## Limitations (read this before using it)", limitations] if limitations else []),
        "Against thumbnail and JPEG baselines at equal bits: BENCHMARKS.md, real inputs (`benchmarks/real_inputs.py`).",
    ])


def figure(curves: dict[str, list[dict[str, object]]], path: Path, clock: str = "cpu") -> None:
    """PSNR vs training minutes (`summarise`'s clock), one panel per run, a line per (source, smallest and largest
    fixed budget)."""
    key, unit = CLOCKS[clock]
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(curves), figsize=(5.5 * len(curves), 4), squeeze=False)
    for ax, (label, rows) in zip(axes[0], curves.items()):
        fixed = sorted({r["budget"] for r in rows if budget_tokens(r["budget"], rows)}, key=lambda b: budget_tokens(b, rows))
        shown = [fixed[0], fixed[-1]] if len(fixed) > 1 else fixed
        series = defaultdict(list)
        for r in rows:
            if r["budget"] in shown:
                series[(r["source"], r["budget"])].append((r[key] / 60, r["psnr"]))
        colours = dict(zip(dict.fromkeys(r["source"] for r in rows), plt.rcParams["axes.prop_cycle"].by_key()["color"]))
        for (source, budget), xy in series.items():
            xs, ys = zip(*sorted(xy))
            ax.plot(xs, ys, "-" if budget == shown[-1] else "--", color=colours[source], marker=".",
                    label=f"{source} {budget}")
        ax.axhline(FLAT_GOAL_DB, color="k", lw=0.6, ls=":")
        ax.set(title=label, xlabel=f"{unit}utes of training", ylabel="PSNR (dB), held out")
        ax.legend(fontsize=6, ncol=2)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("runs", nargs="+", type=Path, help="goal_curve.csv files or the folders holding them")
    parser.add_argument("--points", type=int, default=5, help="steps shown per run (first and last included)")
    parser.add_argument("--no-write", dest="write", action="store_false", help="print only; BENCHMARKS.md untouched")
    parser.add_argument("--figures", type=Path, default=FIGURES)
    parser.add_argument("--note", default="", help="a paragraph after the command: what each run started from, what shipped")
    parser.add_argument("--clock", choices=sorted(CLOCKS), default="cpu",
                        help="cpu: process CPU time (runs on a shared CPU); wall: wall time (runs on a GPU)")
    parser.add_argument("--section", default=SECTION, help="BENCHMARKS.md section to write")
    parser.add_argument("--name", default="goal_curves", help="the figure's file name, without .png")
    args = parser.parse_args(argv)
    shown = [a for a in (sys.argv[1:] if argv is None else argv) if a != args.note] if args.note else \
        list(sys.argv[1:] if argv is None else argv)  # the note is printed below the command, not in it
    command = "python -m benchmarks.goal_curves" + "".join(f" {a}" for a in shown) + (' "<the paragraph below>"' if args.note else "")
    baseline = mean_colour_db()
    curves = {str(p): read_curve(p) for p in args.runs}
    parts, goals = [], []
    for label, rows in curves.items():
        text, rows_goals = summarise(label, rows, baseline, args.points, args.clock)
        parts.append(f"### {label}\n\nPSNR (dB) on held-out images per source; adaptive budgets also give mean tokens (t).\n\n{text}")
        goals += rows_goals
    figure_path = args.figures / f"{args.name}.png"
    figure(curves, figure_path, args.clock)
    where = ("CPU minutes of the training process, which shared 2 cores with other jobs" if args.clock == "cpu" else
             "wall minutes of the training process on the GPU")
    body = "\n\n".join([
        "## Fine-tuning on real-input data" + (" on a GPU" if args.clock == "wall" else "")
        + ": quality vs training time (issue 20, item 3)",
        f"`{command}` (reads the runs' goal_curve.csv, written by `recipes.goals.GoalCurve` while they trained: "
        f"48 held-out images per source; {where}).",
        *([args.note] if args.note else []),
        "Mean colour (24 bits) per source: " + ", ".join(f"{k} {v:.2f} dB" for k, v in baseline.items()) + ".",
        "Goals the curves show (first and last measurement; margin > 0 = reached):\n\n"
        + table(["run", "goal", "start", "end", "margin"], goals),
        *parts,
        f"![PSNR vs {CLOCKS[args.clock][1]}utes](benchmarks/figures/{figure_path.name})",
    ])
    print(body)
    if args.write:
        write_section(args.section, body)


if __name__ == "__main__":
    main()
