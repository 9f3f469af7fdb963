"""Action tokenizers: reconstruction vs tokens, throughput, and import/load time.

    .venv/bin/python benchmarks/actions.py

Fits BEAST, per-step binning and DCT+BPE on the training split of each dataset (LASA with dihedral
copies; generated 7-DoF reaching), measures MSE on the validation split (LASA: 6 held-out shapes),
and writes the "actions" section of BENCHMARKS.md plus benchmarks/figures/actions_mse_vs_tokens.png.
"""

from __future__ import annotations

import subprocess
import sys
import warnings

import numpy as np
import torch

sys.path.insert(0, str(__import__("pathlib").Path(__file__).resolve().parent.parent))

from benchmarks.report import FIGURES, ROOT, best_time, machine, table, write_section  # noqa: E402
from recipes.beast import load_split  # noqa: E402
from zoo.action.baselines import DCTBPE, Binning, BinningConfig, DCTBPEConfig  # noqa: E402
from zoo.action.beast import BEAST, BEASTConfig  # noqa: E402

STEPS = 100
CONTROL_POINTS = list(range(5, 21))
DCT_SCALES = [(1, 1024), (2, 1024), (5, 1024), (10, 1024), (20, 1024), (50, 2048), (100, 4096)]
DATASETS = {"LASA (2 dofs, mm)": ("lasa", "dihedral", ()), "reaching (7 dofs)": ("reaching", None, (6,))}


def mse(tok, x, **kw) -> tuple[float, float]:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        t = tok.encode(x, **kw)
        return float(t.lengths.float().mean()), float((tok.decode(t) - x).pow(2).mean())


def sweep(dataset: str, augment: str | None, grip: tuple[int, ...]) -> dict[str, list[tuple[float, float]]]:
    train = torch.from_numpy(load_split(dataset, "train", STEPS, augment))
    val = torch.from_numpy(load_split(dataset, "val", STEPS))
    d = train.shape[-1]
    beast = BEAST(BEASTConfig(num_dof=d, max_control_points=max(CONTROL_POINTS), gripper_dims=grip,
                              bound_margin=0.1, num_steps=STEPS)).fit(train)
    binning = Binning(BinningConfig(num_dof=d, num_steps=STEPS)).fit(train)
    curves = {
        "BEAST": [mse(beast, val, num_tokens=n * d) for n in CONTROL_POINTS],
        # continuous tokens are one per control point (lengths N); count them as N·D values, like the ids
        "BEAST (continuous)": [(n * d, mse(beast, val, num_tokens=n * d, continuous=True)[1]) for n in CONTROL_POINTS],
        "binning": [mse(binning, val, num_tokens=n * d) for n in CONTROL_POINTS] + [mse(binning, val)],
        "DCT+BPE": [],
    }
    for scale, vocab in DCT_SCALES:
        fast = DCTBPE(DCTBPEConfig(num_dof=d, num_steps=STEPS, scale=scale, vocab_size=vocab)).fit(train)
        curves["DCT+BPE"].append(mse(fast, val))
    speed = {}
    batch = val[torch.arange(256) % len(val)]
    fast = DCTBPE(DCTBPEConfig(num_dof=d, num_steps=STEPS, scale=10)).fit(train)
    for name, tok in (("BEAST", beast), ("binning", binning), ("DCT+BPE", fast)):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            t = tok.encode(batch)
            speed[name] = (256 / best_time(lambda: tok.encode(batch)), 256 / best_time(lambda: tok.decode(t)))
    return curves, speed, len(val)


def at_tokens(curve: list[tuple[float, float]], tokens: float) -> float:
    return next(e for n, e in curve if abs(n - tokens) < 1e-6)


def startup_times() -> tuple[float, float, float]:
    def run(code: str) -> float:
        out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, check=True)
        return float(out.stdout.strip().splitlines()[-1])

    imp = min(run("import time; t=time.perf_counter(); import zoo; print(time.perf_counter()-t)") for _ in range(5))
    warm = min(run("import torch, time, zoo; t=time.perf_counter(); zoo.load('beast-lasa'); print(time.perf_counter()-t)")
               for _ in range(5))
    cold = min(run("import time; t=time.perf_counter(); import zoo; zoo.load('beast-lasa'); print(time.perf_counter()-t)")
               for _ in range(5))
    return imp, warm, cold


def plot(results: dict) -> str:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(results), figsize=(5.5 * len(results), 4))
    for ax, (title, (curves, _, _)) in zip(axes, results.items()):
        for name, curve in curves.items():
            n, e = zip(*sorted(curve))
            ax.plot(n, e, "o-" if "continuous" not in name else "--", ms=3, label=name)
        ax.set_xscale("log"), ax.set_yscale("log")
        ax.set_xlabel("tokens per trajectory"), ax.set_ylabel("val MSE")
        ax.set_title(title), ax.grid(alpha=0.3), ax.legend(fontsize=8)
    fig.tight_layout()
    FIGURES.mkdir(parents=True, exist_ok=True)
    path = FIGURES / "actions_mse_vs_tokens.png"
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path.relative_to(ROOT).as_posix()


def main() -> None:
    torch.manual_seed(0)
    results = {title: sweep(*args) for title, args in DATASETS.items()}
    figure = plot(results)
    imp, warm, cold = startup_times()
    parts = ["## Actions: BEAST vs per-step binning vs DCT+BPE",
             f"`.venv/bin/python benchmarks/actions.py` on {machine()}. Fitted on each training split, measured on "
             "validation: LASA = 6 held-out shapes x 7 demos (positions in mm; bounds fitted on the 24 training shapes "
             "with their 8 dihedral copies), reaching = 64 generated 7-DoF motions from a disjoint seed stream. "
             "Trajectories resampled to 100 steps. Binning at a budget below T·D keeps budget/D evenly spaced steps and "
             "interpolates linearly; DCT+BPE's length is set by its scale (FAST's gamma), not by a budget.",
             f"![MSE vs tokens]({figure})"]
    for title, (curves, speed, n_val) in results.items():
        d = 2 if title.startswith("LASA") else 7
        rows = []
        for n in (5, 10, 15, 20):
            tokens = n * d
            b, c, k = at_tokens(curves["BEAST"], tokens), at_tokens(curves["BEAST (continuous)"], tokens), at_tokens(curves["binning"], tokens)
            rows.append([tokens, n, b, c, k, k / b])
        parts += [f"### {title}: val MSE at equal token counts ({n_val} val trajectories)",
                  table(["tokens", "control points per dof", "BEAST", "BEAST continuous", "binning", "binning / BEAST"], rows),
                  f"Binning at full resolution ({STEPS * d} tokens): MSE {curves['binning'][-1][1]:.4g}. "
                  "DCT+BPE (scale: mean tokens → MSE): " + ", ".join(
                      f"{s}: {n:.1f} → {e:.3g}" for (s, _), (n, e) in zip(DCT_SCALES, curves["DCT+BPE"])) + ".",
                  table(["tokenizer", "encode trajectories/s", "decode trajectories/s"],
                        [[name, enc, dec] for name, (enc, dec) in speed.items()]) + "\n\n(batch 256, best of 5 after a warm-up)"]
    parts += ["### Start-up",
              table(["what", "seconds (best of 5 fresh processes)"],
                    [["`import zoo` (torch stays unloaded)", imp],
                     ["`zoo.load('beast-lasa')` with torch already imported", warm],
                     ["`import zoo; zoo.load('beast-lasa')` in a fresh process (includes importing torch)", cold]])]
    write_section("actions", "\n\n".join(parts))
    print("\n\n".join(parts))


if __name__ == "__main__":
    main()
