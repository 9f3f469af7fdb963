"""Benchmark the demo LM (checkpoints/lm-tiny-interleaved): does text steer the zoo's tokens?

    OMP_NUM_THREADS=1 python benchmarks/llm.py [--checkpoint DIR] [--quick]

Samples from the LM, decodes with the tokenizers its vocabulary names, and measures (see
`recipes/lm.py`): image captions matched by the shape judge, action shape names matched by the nearest
demonstration. Also sweeps the classifier-free guidance scale and the sampling temperature, times
generation, and draws the picture grids
benchmarks/figures/llm_images.png and llm_actions.png. Writes the "llm" section of BENCHMARKS.md.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.report import FIGURES, best_time, machine, table, write_section  # noqa: E402
from zoo import hub  # noqa: E402
from zoo.data.images import shape_scenes  # noqa: E402
from zoo.demo import DEMO_LM  # noqa: E402
from zoo.llm import MultimodalLM  # noqa: E402
from zoo.llm.evaluate import (ACTION, IMAGE, JUDGE, describe_judge, evaluate_actions, evaluate_images,  # noqa: E402
                              load_judge, measure)


def plot_actions(result: dict, demos: np.ndarray, names: list[str], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    shapes, traj = result["shapes"], result["trajectories"]  # (S, samples, T, 2)
    match = result["per_sample_match"].reshape(len(shapes), -1)
    cols = 6
    rows = -(-len(shapes) // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(2.2 * cols, 2.2 * rows))
    for ax, shape, gen, ok in zip(axes.flat, shapes, traj, match):
        for d in demos[np.array(names) == shape]:
            ax.plot(d[:, 0], d[:, 1], color="0.75", lw=2)
        for g, m in zip(gen, ok):
            ax.plot(g[:, 0], g[:, 1], color="tab:blue" if m else "tab:red", lw=1)
        ax.set_title(f"{shape} ({ok.sum()}/{len(ok)})", fontsize=8)
        ax.set_xticks([]), ax.set_yticks([])
        ax.set_aspect("equal", adjustable="datalim")
    for ax in list(axes.flat)[len(shapes):]:
        ax.axis("off")
    fig.suptitle("LM samples from a LASA shape name (blue: nearest demo is of that shape; red: not); grey: the demos",
                 fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)


def plot_images(result: dict, path: Path, rows: int = 12) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    real, recon, gen, captions = result["real"], result["recon"], result["images"], result["captions"]
    samples = result.get("extra", [])  # more samples of the same captions, (k, n, 3, H, W)
    cols = 3 + len(samples)
    fig, axes = plt.subplots(rows, cols, figsize=(1.3 * cols + 3.2, 1.3 * rows))
    for r in range(rows):
        tiles = [real[r], recon[r], gen[r], *[s[r] for s in samples]]
        for c, t in enumerate(tiles):
            ax = axes[r, c]
            ax.imshow(t.permute(1, 2, 0).clamp(0, 1).numpy(), interpolation="nearest")
            ax.set_xticks([]), ax.set_yticks([])
            if r == 0:
                ax.set_title(["val image", "its tokens, decoded"][c] if c < 2 else f"LM sample {c - 1}", fontsize=8)
        axes[r, -1].text(1.08, 0.5, captions[r], transform=axes[r, -1].transAxes, fontsize=8, va="center")
    fig.tight_layout()
    fig.savefig(path, dpi=90, bbox_inches="tight")
    plt.close(fig)


GUIDANCE = (1.0, 2.0, 3.0, 4.0)


def guidance_sweep(lm: MultimodalLM, results: dict, judge: object, protocol: dict) -> list[str]:
    """The card's prompts and seed at every guidance scale in GUIDANCE, and the image match on the next
    val captions (not the ones the scale was picked on): a markdown subsection."""

    names = [e.name for e in lm.vocab.entries]
    rows = []
    if ACTION in names:
        from zoo.data.actions import load_lasa

        beast = lm.vocab.load_tokenizer(ACTION)
        x, shapes = load_lasa("train", beast.config.num_steps)
    if IMAGE in names:
        n = protocol["image_prompts"]
        scenes = shape_scenes("val", 2 * n, protocol["image_levels"])
        later = {k: v[n:] for k, v in scenes.items()}  # val captions n..2n-1
        tok = lm.vocab.load_tokenizer(IMAGE)
    for g in GUIDANCE:
        row = [g]
        if IMAGE in names:
            m = results[IMAGE]["metrics"] if g == protocol["guidance"] else evaluate_images(
                lm, tok, judge, scenes, n=protocol["image_prompts"], temperature=protocol["temperature"],
                seed=protocol["seed"], guidance=g)["metrics"]
            row += [f"{m[k]:.1%}" for k in ("image_match", "image_kind", "image_colour", "image_count",
                                            "image_match_wrong_caption")]
            row.append(f"{evaluate_images(lm, tok, judge, later, n=n, temperature=protocol['temperature'], seed=protocol['seed'], guidance=g)['metrics']['image_match']:.1%}")
        if ACTION in names:
            a = results[ACTION]["metrics"] if g == protocol["guidance"] else evaluate_actions(
                lm, beast, x, shapes, samples=protocol["action_samples"], temperature=protocol["temperature"],
                seed=protocol["seed"], scale=False, guidance=g)["metrics"]
            row += [f"{a['action_shape_match_dtw']:.1%}", a["action_dtw_to_named_mm"]]
        rows.append(row)
    header = ["guidance"]
    if IMAGE in names:
        header += ["image match (all three)", "kind", "colour", "count", "match vs wrong caption",
                   "image match, the next val captions"]
    if ACTION in names:
        header += ["action shape match (DTW)", "DTW to nearest named-shape demo (mm)"]
    return ["", "### Classifier-free guidance",
            "Sampling logits `uncond + s * (cond - uncond)`, with uncond the LM's next-id logits after the empty "
            "prompt `<bos> <|entry:begin|>` that condition dropout trained (`zoo.llm.MultimodalLM.generate(..., "
            f"guidance=s)`); the same prompts and seed as above, temperature {protocol['temperature']}. "
            f"The card's scale, {protocol['guidance']}, was picked on these val prompts; 'the next val captions' are "
            "the following val-seed scenes, which the pick did not see.",
            "", table(header, rows)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checkpoint", default=DEMO_LM, help="an LM folder or registered name")
    parser.add_argument("--quick", action="store_true", help="smaller protocol (for a smoke run); does not write BENCHMARKS.md")
    args = parser.parse_args()
    torch.set_num_threads(1)
    lm = MultimodalLM.from_pretrained(args.checkpoint)
    protocol = dict(lm.summary.get("protocol", {}))
    protocol.setdefault("image_levels", [0])
    if args.quick:
        protocol.update(action_samples=1, image_prompts=16)
    names = [e.name for e in lm.vocab.entries]
    start = time.time()
    judge = load_judge(hub.locate(args.checkpoint) / JUDGE)
    protocol.setdefault("guidance", 1.0)
    keys = ("action_samples", "image_prompts", "image_levels", "temperature", "seed", "guidance")
    results = measure(lm, judge=judge, **{k: protocol[k] for k in keys if k in protocol})
    FIGURES.mkdir(parents=True, exist_ok=True)
    md = [f"Command: `OMP_NUM_THREADS=1 python benchmarks/llm.py`. Machine: {machine()}.",
          f"Checkpoint: `checkpoints/{Path(args.checkpoint).name}` — {lm.summary.get('description', '')}",
          f"Trained {lm.summary.get('train_seconds', 0) / 60:.0f} min ({lm.summary.get('global_step', '?')} steps); "
          f"{lm.summary.get('params', 0) / 1e6:.2f} M parameters. Sampling: temperature {protocol['temperature']}, "
          f"seed {protocol['seed']}, classifier-free guidance scale {protocol['guidance']}, constrained to the vocabulary's "
          "grammar (`zoo.llm.ConstrainedLogits`)."]

    if ACTION in names:
        from zoo.data.actions import load_lasa

        a = results[ACTION]["metrics"]
        x, shapes = load_lasa("train", lm.vocab.load_tokenizer(ACTION).config.num_steps)
        plot_actions(results[ACTION], x, shapes, FIGURES / "llm_actions.png")
        beast = lm.vocab.load_tokenizer(ACTION)
        sweep = []
        for t in (0.5, 0.7, 1.0):
            m = a if t == protocol["temperature"] else evaluate_actions(
                lm, beast, x, shapes, samples=protocol["action_samples"], temperature=t, seed=protocol["seed"],
                scale=False, guidance=protocol["guidance"])["metrics"]
            sweep.append([t, f"{m['action_shape_match_dtw']:.1%}", f"{m['action_shape_match_mse']:.1%}",
                          m["action_dtw_to_named_mm"], m["action_dtw_to_other_mm"]])
        md += ["", "### Actions: LASA shape name → BEAST tokens",
               f"Prompt: each of the 24 LASA training-shape names, {protocol['action_samples']} samples each "
               f"({a['action_prompts']} trajectories), decoded by `{lm.vocab.entry(ACTION).tokenizer}`. A sample matches "
               "when the nearest of the 168 training demonstrations (DTW over 50 resampled steps; or MSE) is of the "
               "named shape; chance is 1/24 = 4.2%. DTW is the mean distance along the warping path, in mm.",
               "", table(["temperature", "shape match (DTW)", "shape match (MSE)", "DTW to nearest named-shape demo (mm)",
                          "DTW to nearest other-shape demo (mm)"], sweep),
               "", f"For scale: a demonstration's DTW to the nearest other demonstration of its own shape is "
               f"{a['action_demo_to_demo_dtw_mm']:.2f} mm. Every sampled segment was complete: {a['action_complete']:.0%}. "
               "Samples lying closer to a training demonstration than demonstrations lie to each other means the LM "
               "reproduces (memorises) its 144 training demonstrations rather than inventing new ones of the shape.",
               "", "![LM action samples](benchmarks/figures/llm_actions.png)"]

    if IMAGE in names:
    
        im = results[IMAGE]
        m = im["metrics"]
        scenes = shape_scenes("val", protocol["image_prompts"], protocol["image_levels"])
        tok = lm.vocab.load_tokenizer(IMAGE)
        sweep = []
        extra = []
        for t in (0.5, 0.7, 1.0):
            r = im if t == protocol["temperature"] else evaluate_images(
                lm, tok, judge, scenes, n=protocol["image_prompts"], temperature=t, seed=protocol["seed"],
                guidance=protocol["guidance"])
            mm = r["metrics"]
            sweep.append([t, f"{mm['image_match']:.1%}", f"{mm['image_kind']:.1%}", f"{mm['image_colour']:.1%}",
                          f"{mm['image_count']:.1%}", f"{mm['image_match_wrong_caption']:.1%}"])
        for s in (1, 2, 3):
            extra.append(evaluate_images(lm, tok, judge, scenes, n=12, temperature=protocol["temperature"],
                                         seed=protocol["seed"] + s, guidance=protocol["guidance"])["images"])
        im["extra"] = extra
        plot_images(im, FIGURES / "llm_images.png")
        e = lm.vocab.entry(IMAGE)
        md += ["", "### Images: caption → image tokens",
               f"Prompt: the captions of the first {m['image_prompts']} val-seed shape scenes (levels "
               f"{protocol['image_levels']}), one sample each, {e.max_tokens} tokens of `{e.tokenizer}` "
               f"(each code written as digits {list(e.digits)}), decoded and judged by "
               f"`{JUDGE}` (beside the LM: a small CNN trained on train-seed scenes; its val accuracy: "
               f"{describe_judge(lm.summary.get('judge', {}).get('val_accuracy', {}))}). Match = kind, colour and count all right. 'wrong caption' scores the same "
               "samples against the previous caption's labels: what an LM that ignored its prompt would get.",
               "", f"At guidance {protocol['guidance']}:",
               "", table(["temperature", "match (all three)", "kind", "colour", "count", "match vs wrong caption"], sweep),
               "", table(["the judge on", "all three right"],
                         [["the real val images", f"{m['judge_on_real']:.1%}"],
                          [f"their reconstructions from {e.max_tokens} tokens", f"{m['judge_on_reconstructions']:.1%}"],
                          ["LM samples", f"{m['image_match']:.1%}"]]),
               "", f"The LM cannot draw better than its image tokenizer lets it: the judge names "
               f"{m['judge_on_reconstructions']:.0%} of the tokenizer's own reconstructions right (chance is about "
               f"1/5 x 1/8 = 2.5% at level 0, where the count is always one), against {m['judge_on_real']:.0%} of the "
               "real images. The judge is trained on real scenes and on these reconstructions (half of each batch): "
               "trained on real scenes only, it named the kind of just 30% of the 16-token reconstructions, so it "
               "measured the tokenizer's blur, not the LM. "
               + ("The gap between the LM's samples and that ceiling is the LM's own: "
                  f"{m['image_kind']:.0%} of its samples show the captioned kind, {m['image_colour']:.0%} the colour."
                  if m['judge_on_reconstructions'] - m['image_match'] > 0.2 else
                  "The LM's samples come close to that ceiling."),
               "", "![LM image samples](benchmarks/figures/llm_images.png)"]

    md += guidance_sweep(lm, results, judge, protocol)

    entry = ACTION if ACTION in names else IMAGE
    texts = ["Angle"] * 16 if entry == ACTION else ["a red circle on a black background"] * 16
    budget = len(lm.vocab.entry(entry).slots) * lm.vocab.entry(entry).max_tokens + 1
    speed = []
    for g in sorted({1.0, protocol["guidance"], 3.0}):
        seconds = best_time(lambda: lm.generate(texts, entry, seed=0, guidance=g), repeat=3)
        what = "one pass" if g == 1.0 else "prompted and empty-prompt rows in one batch"
        speed.append([f"generate 16 {entry} segments ({budget} ids each, KV cache, grammar mask), guidance {g} ({what})",
                      f"{seconds:.2f} s ({16 * budget / seconds:.0f} ids/s)"])
    md += ["", "### Speed", table(["what", "best of 3"], speed)]
    md += ["", f"Measured in {time.time() - start:.0f} s."]
    text = "\n".join(md)
    if args.quick:
        print(text)
    else:
        write_section("llm", "## Plugging tokens into an LLM (demo LM)\n\n" + text)
        print(text)


if __name__ == "__main__":
    main()
