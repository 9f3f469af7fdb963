"""Quality vs training time of a run of several stages (the video fine-tuning), from their GoalCurve files.

    python -m benchmarks.goal_curve runs/larp-tiny-motion32-real/goal_curve.csv runs/larp-tiny-motion32-real2/goal_curve.csv \
        --name larp_real_inputs_curve

`benchmarks/goal_curves.py` reads the same files for the image runs (one stage each, with the image goals); this
one joins stages. Stages are given in the order they ran; each later stage's step, wall and CPU seconds continue from the end of the one
before (its row at step 0 measures the same weights as the previous stage's last row, so it is dropped). Writes
`benchmarks/figures/<name>.png` (held-out PSNR per source vs CPU-minutes, one panel per budget) and `<name>.csv`
(the rows, with a `stage` column); with `--section KEY`, also a BENCHMARKS.md section: the figure and a table of
each source's PSNR before the first stage and after the last.
"""

from __future__ import annotations

import argparse
import csv
import shlex
import sys
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt

from benchmarks.goal_curves import read_curve
from benchmarks.report import FIGURES, table, write_section


def merge_stages(paths: list[Path]) -> list[dict[str, str | float]]:
    """The rows of every stage (`goal_curves.read_curve`), times and steps made cumulative, with a 1-based `stage`."""
    rows: list[dict[str, str | float]] = []
    offset = {"step": 0.0, "wall_s": 0.0, "cpu_s": 0.0}
    for stage, path in enumerate(paths, 1):
        own = read_curve(Path(path))
        if stage > 1:
            own = [r for r in own if r["step"] > 0]
        rows += [{**r, **{k: float(r[k]) + offset[k] for k in offset}, "stage": stage} for r in own]
        if rows:
            offset = {k: max(float(r[k]) for r in rows) for k in offset}
    return rows


def plot(rows: list[dict[str, str | float]], path: Path, title: str) -> None:
    budgets = list(dict.fromkeys(str(r["budget"]) for r in rows))
    sources = list(dict.fromkeys(str(r["source"]) for r in rows))
    fig, axes = plt.subplots(1, len(budgets), figsize=(4 * len(budgets), 3.6), sharey=True, squeeze=False)
    for ax, budget in zip(axes[0], budgets):
        for source in sources:
            pts = [(float(r["cpu_s"]) / 60, float(r["psnr"])) for r in rows if r["budget"] == budget and r["source"] == source]
            ax.plot(*zip(*pts), "o-", ms=3, label=source)
        for r in rows:  # stage boundaries
            if r["stage"] != rows[0]["stage"] and float(r["step"]) == min(float(q["step"]) for q in rows if q["stage"] == r["stage"]):
                ax.axvline(float(r["cpu_s"]) / 60, color="grey", lw=0.5)
        ax.set_title(budget)
        ax.set_xlabel("CPU-minutes of the run (training + these checks)")
        ax.grid(alpha=0.3)
    axes[0][0].set_ylabel("held-out PSNR (dB)")
    axes[0][-1].legend(fontsize=7)
    fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def section(rows: list[dict[str, str | float]], figure: Path, command: str, title: str, paths: list[Path]) -> str:
    budgets = list(dict.fromkeys(str(r["budget"]) for r in rows))
    start, end = min(float(r["step"]) for r in rows), max(float(r["step"]) for r in rows)
    at = {(r["source"], r["budget"], float(r["step"])): float(r["psnr"]) for r in rows}
    body = [[s, *(f"{at[s, b, start]:.2f} → {at[s, b, end]:.2f} ({at[s, b, end] - at[s, b, start]:+.2f})" for b in budgets)]
            for s in dict.fromkeys(str(r["source"]) for r in rows)]
    last = max(rows, key=lambda r: float(r["step"]))
    return f"""## {title}

`{command}` — from {", ".join(f"`{p}`" for p in paths)} ({len(paths)} stage(s), {int(end)} steps,
{float(last["wall_s"]) / 60:.0f} wall-minutes, {float(last["cpu_s"]) / 60:.0f} CPU-minutes of the training processes,
measurements included). PSNR on held-out clips per source, before the first stage → after the last:

{table(["source", *budgets], body)}

![quality vs training time](benchmarks/figures/{figure.name})
"""


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("csv", nargs="+", type=Path, help="goal_curve.csv of each stage, in the order they ran")
    parser.add_argument("--name", required=True, help="file name (no extension) under --figures")
    parser.add_argument("--title", default="held-out quality per source vs training time")
    parser.add_argument("--figures", type=Path, default=FIGURES)
    parser.add_argument("--section", help="also write this BENCHMARKS.md section")
    parser.add_argument("--note", default="", help="a paragraph the section ends with")
    args = parser.parse_args(argv)
    rows = merge_stages(args.csv)
    args.figures.mkdir(parents=True, exist_ok=True)
    plot(rows, args.figures / f"{args.name}.png", args.title)
    with (args.figures / f"{args.name}.csv").open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=["stage", "step", "wall_s", "cpu_s", "source", "budget", "psnr", "tokens"])
        writer.writeheader()
        writer.writerows({k: r[k] for k in writer.fieldnames} for r in rows)
    print(f"wrote {args.figures / args.name}.png and .csv ({len(rows)} rows)")
    if args.section:
        given = sys.argv[1:] if argv is None else argv
        shown = [a for i, a in enumerate(given) if a != "--note" and (i == 0 or given[i - 1] != "--note")]
        command = "python -m benchmarks.goal_curve " + shlex.join(shown)  # the note is the text below, not repeated
        write_section(args.section, section(rows, args.figures / f"{args.name}.png", command, args.title, args.csv)
                      + (f"\n{args.note}\n" if args.note else ""))


if __name__ == "__main__":
    main()
