"""`zoo demo` / `make demo`: round-trip a real sample through every shipped tokenizer.

Prints a table (name, modality, tokens, bits per sample, reconstruction error, encode/decode speed)
and writes a picture of each round trip to `out/demo/<name>.png`.
"""

from __future__ import annotations

import math
import os
import time
import warnings
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch
from torch import Tensor

import zoo
from zoo import metrics


def _timed(fn: Callable[[], Any], repeat: int = 3) -> tuple[Any, float]:
    out, best = fn(), math.inf  # the first call warms up
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t)
    return out, best


# ----------------------------------------------------------------------------------------- samples per modality


def action_sample(tok: Any) -> tuple[Tensor, str]:
    from zoo.data import actions

    d = tok.spec.input.sizes.get("D")
    if d == 2:
        x, names = actions.load_lasa("val", 100)
        idx = [names.index(s) for s in sorted(set(names))]  # one demo of each held-out shape
        return torch.from_numpy(x[idx]), f"LASA val shapes {', '.join(sorted(set(names)))}"
    x = actions.reaching_split("val", 8, 100)[:, :, :d] if d else actions.reaching_split("val", 8, 100)
    return torch.from_numpy(x), "generated 7-DoF reaching motions (val seeds)"


def image_sample(tok: Any) -> tuple[Tensor, str]:
    from zoo.data.images import images_to_tensor, mixed_val_set

    size = tok.spec.input.sizes.get("H", 32)
    data = mixed_val_set(n=256, resolution=size)
    idx = np.linspace(0, len(data["images"]) - 1, 8).round().astype(int)
    return images_to_tensor(data["images"][idx]), "8 images of the mixed-complexity val set"


def audio_sample(tok: Any) -> tuple[Tensor, str]:
    from zoo.data.audio import build_audio_dataset

    data = build_audio_dataset("speech", "val", n_clips=2, clip_seconds=2.0)
    return torch.from_numpy(data["audio"][:2])[:, None], f"speech val clips ({', '.join(data['source'][:2])})"


def video_sample(tok: Any) -> tuple[Tensor, str]:
    from zoo.data.video import val_clips, videos_to_tensor

    sizes = tok.spec.input.sizes
    data = val_clips(n=96, frames=sizes.get("T", 16), resolution=sizes.get("H", 32))
    idx = np.linspace(0, len(data["videos"]) - 1, 6).round().astype(int)  # two clips of each source
    return videos_to_tensor(data["videos"][idx]), "6 val clips (bouncing shapes, camera moves, faces)"


SAMPLES = {"action": action_sample, "image": image_sample, "audio": audio_sample, "video": video_sample}


# ----------------------------------------------------------------------------------------- pictures per modality


def plot_action(x: Tensor, y: Tensor, path: Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    n = min(len(x), 6)
    if x.shape[-1] == 2:
        fig, axes = plt.subplots(1, n, figsize=(3 * n, 3), squeeze=False)
        for i, ax in enumerate(axes[0]):
            ax.plot(x[i, :, 0], x[i, :, 1], "k-", lw=2, label="original")
            ax.plot(y[i, :, 0], y[i, :, 1], "r--", lw=1.5, label="reconstruction")
            ax.set_aspect("equal")
            ax.set_xticks([]), ax.set_yticks([])
        axes[0, 0].legend(fontsize=7)
    else:
        d = x.shape[-1]
        fig, axes = plt.subplots(1, d, figsize=(2.2 * d, 2.4), squeeze=False)
        for j, ax in enumerate(axes[0]):
            ax.plot(x[0, :, j], "k-", lw=2)
            ax.plot(y[0, :, j], "r--", lw=1.5)
            ax.set_title(f"dof {j}", fontsize=8)
    fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def plot_image(x: Tensor, y: Tensor, path: Path, title: str) -> None:
    from PIL import Image

    rows = [torch.cat(list(v.clamp(0, 1)), dim=-1) for v in (x, y)]  # (3, H, n·W) each
    grid = torch.cat(rows, dim=-2).permute(1, 2, 0).numpy()
    img = Image.fromarray((grid * 255).round().astype(np.uint8))
    img.resize((img.width * 3, img.height * 3), Image.NEAREST).save(path)


def plot_audio(x: Tensor, y: Tensor, path: Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import soundfile as sf

    fig, axes = plt.subplots(2, 1, figsize=(8, 4))
    for ax, v, name in zip(axes, (x, y), ("original", "reconstruction")):
        ax.specgram(v[0, 0].numpy(), Fs=16000, NFFT=512, noverlap=384, cmap="magma")
        ax.set_title(name, fontsize=8)
    fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    sf.write(str(path.with_suffix(".orig.wav")), x[0, 0].numpy(), 16000)
    sf.write(str(path.with_suffix(".recon.wav")), y[0, 0].numpy(), 16000)


def plot_video(x: Tensor, y: Tensor, path: Path, title: str) -> None:
    """Each clip as two rows of frames (original above, reconstruction below)."""
    from PIL import Image

    rows = [torch.cat(list(v.clamp(0, 1).unbind(1)), dim=-1) for clip in zip(x, y) for v in clip]  # (3, H, T·W) each
    grid = torch.cat(rows, dim=-2).permute(1, 2, 0).numpy()
    img = Image.fromarray((grid * 255).round().astype(np.uint8))
    img.resize((img.width * 2, img.height * 2), Image.NEAREST).save(path)


PLOTS = {"action": plot_action, "image": plot_image, "audio": plot_audio, "video": plot_video}


def error_of(modality: str, x: Tensor, y: Tensor) -> str:
    if modality in ("image", "video"):
        return f"PSNR {float(metrics.psnr(y.clamp(0, 1), x).mean()):.2f} dB"
    if modality == "audio":  # a perceptual codec does not keep the waveform's phase: SNR would mislead
        return (f"STOI {float(metrics.stoi(y, x).mean()):.3f}, "
                f"mel dist {float(metrics.mel_distance(y, x).mean()):.3f}")
    return f"MSE {float(metrics.mse(y, x).mean()):.4g}"


# ----------------------------------------------------------------------------------------- the job


def run_demo(out: Path = Path("out/demo")) -> list[dict[str, Any]]:
    out.mkdir(parents=True, exist_ok=True)
    rows = []
    for entry in zoo.list_tokenizers():
        if not entry["shipped"]:
            continue  # released models download gigabytes; the demo runs what ships with the package
        name, modality = entry["name"], entry.get("modality")
        if modality not in SAMPLES:
            print(f"{name}: no demo sample for modality {modality!r}, skipped")
            continue
        tok = zoo.load(name)
        x, what = SAMPLES[modality](tok)
        with torch.no_grad(), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            tokens, t_enc = _timed(lambda: tok.encode(x))
            y, t_dec = _timed(lambda: tok.decode(tokens))
        n = tokens.batch_size
        mean_tokens = float(tokens.lengths.float().mean())
        bits = mean_tokens * tok.spec.bits_per_token
        PLOTS[modality](x, y, out / f"{name}.png", f"{name}: {what}")
        rows.append({"name": name, "modality": modality, "tokens": mean_tokens, "bits": bits,
                     "error": error_of(modality, x, y), "encode/s": n / t_enc, "decode/s": n / t_dec})
    header = ["name", "modality", "tokens", "bits/sample", "reconstruction", "encode samples/s", "decode samples/s"]
    table = [[r["name"], r["modality"], f"{r['tokens']:g}", f"{r['bits']:.0f}", r["error"],
              f"{r['encode/s']:.0f}", f"{r['decode/s']:.0f}"] for r in rows]
    widths = [max(len(str(v)) for v in col) for col in zip(header, *table)]
    for row in [header, *table]:
        print("  ".join(str(v).ljust(w) for v, w in zip(row, widths)).rstrip())
    print(f"\npictures of the round trips: {out}/")
    _lm_demo(out / "lm")
    return rows


def _lm_demo(out: Path) -> None:
    """Generations of the shipped demo LM through our tokens (needs the `llm` extra: transformers)."""
    from zoo import hub

    if not hub.is_registered(DEMO_LM):
        return
    try:
        print("\n" + lm_demo(out))
    except ImportError as e:
        print(f"\n(the demo LM needs the llm extra: pip install -e '.[llm]'; {e})")


# ----------------------------------------------------------------------------------------- the demo LM

DEMO_LM = "lm-tiny-interleaved"
DEMO_PROMPTS = {
    "image": ("a red circle on a black background", "a blue square on a white background",
              "a green triangle on a light grey background", "a yellow star on a dark grey background",
              "a purple cross on a white background", "an orange circle on a dark grey background"),
    "action": ("Angle", "GShape", "Snake", "WShape", "Leaf_1", "Sshape"),
}


def lm_demo(out_dir: str | os.PathLike, checkpoint: str | os.PathLike | None = None, samples: int = 4) -> str:
    """Generate through the shipped demo LM and decode with the zoo tokenizers; write a PNG per entry.

    For each entry of the LM's vocabulary, `samples` generations for each of a few prompts (captions
    for images, LASA shape names for actions), decoded and drawn in one row per prompt.

    Args:
        out_dir: where `llm_<entry>.png` files go.
        checkpoint: an LM folder or registered name (default: the shipped lm-tiny-interleaved).
    Returns:
        A short text report: the prompts, the files written, and the card's headline numbers.
    """
    from PIL import Image, ImageDraw

    from zoo.llm import MultimodalLM
    from zoo.tokenizer import Tokens

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    lm = MultimodalLM.from_pretrained(checkpoint or DEMO_LM)
    lines = [f"demo LM: {checkpoint or DEMO_LM} ({lm.vocab.size} ids: " + ", ".join(e.name for e in lm.vocab.entries) + ")"]
    cell = 96
    for e in lm.vocab.entries:
        prompts = DEMO_PROMPTS.get(e.modality)
        if not prompts:
            continue
        tok = lm.vocab.load_tokenizer(e.name)
        segments = lm.generate([p for p in prompts for _ in range(samples)], e.name, seed=0,
                               guidance=lm.summary.get("protocol", {}).get("guidance", 1.0))  # as the card measured
        tokens = Tokens(ids=torch.stack([s.ids for s in segments]), lengths=torch.tensor([len(s.ids) for s in segments]))
        x = tok.decode(tokens)
        sheet = Image.new("RGB", (cell * samples, cell * len(prompts)), "white")
        for i in range(len(x)):
            row, col = divmod(i, samples)
            if e.modality == "image":
                img = (x[i].clamp(0, 1).permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)
                tile = Image.fromarray(img).resize((cell, cell), Image.NEAREST)
            else:  # a 2-D trajectory, scaled into the tile, start marked
                xy = x[i, :, :2].numpy()
                lo, span = xy.min(0), max(float((xy.max(0) - xy.min(0)).max()), 1e-6)
                pts = [(8 + (p[0] - lo[0]) / span * (cell - 16), cell - 8 - (p[1] - lo[1]) / span * (cell - 16)) for p in xy]
                tile = Image.new("RGB", (cell, cell), "white")
                draw = ImageDraw.Draw(tile)
                draw.line(pts, fill=(40, 80, 220), width=2)
                draw.ellipse((pts[0][0] - 3, pts[0][1] - 3, pts[0][0] + 3, pts[0][1] + 3), fill=(220, 40, 40))
            sheet.paste(tile, (col * cell, row * cell))
        path = out / f"llm_{e.name}.png"
        sheet.save(path)
        lines.append(f"{e.name}: {samples} samples per row for {', '.join(map(repr, prompts))} -> {path}")
    metrics = lm.summary.get("metrics", {})
    headline = {k: metrics[k] for k in ("image_match", "action_shape_match_dtw") if k in metrics}
    if headline:
        lines.append("measured (card): " + ", ".join(f"{k} {v:.0%}" for k, v in headline.items()))
    return "\n".join(lines)
