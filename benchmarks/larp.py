"""LARP benchmark: quality vs number of tokens, frames, codebook usage, speed, and what the prior buys → BENCHMARKS.md.

    OMP_NUM_THREADS=1 python -m benchmarks.larp

Quality on `zoo.data.video.val_clips(96)` (held out: val photos, val faces, val scene seeds). The prior
comparison needs the two runs of `configs/larp/compare-prior.yaml` and `configs/larp/compare-noprior.yaml`
(written to out/larp-compare/); without them that part is reported as not measured.

The prior's purpose, measured: for each of the two tokenizers (same architecture, data, seed and budget,
with and without the prior loss), encode the train clips and more val clips to argmax tokens, train the
*same* small AR transformer (`TokenGPT`, fixed recipe) on each one's train tokens (early-stopped on a
tenth of them held out), and report its next-token NLL on the val tokens, next to each tokenizer's PSNR.
"""

from __future__ import annotations

import copy
import json
import math
import time
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from benchmarks.report import FIGURES, ROOT, best_time, machine, table, write_section
from zoo import hub, metrics
from zoo.data.video import SOURCES, build_video_dataset, val_clips, videos_to_tensor
from zoo.evaluate import budget_metrics
from zoo.nn import Transformer

NAME = "larp-tiny-motion32"
COMPARE = ROOT / "out" / "larp-compare"
NS = (1, 2, 4, 8, 16, 32, 64, 128)  # those up to the checkpoint's N
COMMAND = "OMP_NUM_THREADS=1 python -m benchmarks.larp"


# ----------------------------------------------------------------------------------------- the AR model over ids


class TokenGPT(nn.Module):
    """A small causal transformer over token ids: logits (B, L, V) for ids[:, i] given a start token and ids[:, :i]."""

    def __init__(self, vocab: int, length: int, dim: int = 128, depth: int = 2, heads: int = 4, dropout: float = 0.1) -> None:
        super().__init__()
        self.vocab = vocab
        self.embed = nn.Embedding(vocab + 1, dim)  # id `vocab` is the start token
        self.pos = nn.Parameter(torch.randn(length, dim) * 0.02)
        self.drop = nn.Dropout(dropout)
        self.transformer = Transformer(dim, depth, heads)
        self.head = nn.Linear(dim, vocab)

    def forward(self, ids: Tensor) -> Tensor:
        b, n = ids.shape
        inputs = torch.cat([ids.new_full((b, 1), self.vocab), ids[:, :-1]], dim=1)
        causal = torch.ones(n, n, dtype=torch.bool, device=ids.device).tril()
        return self.head(self.transformer(self.drop(self.embed(inputs) + self.pos[:n]), causal))


def nll(model: TokenGPT, ids: Tensor) -> float:
    """Mean next-token NLL in nats over every position of ids (B, L)."""
    model.eval()
    with torch.no_grad():
        return float(F.cross_entropy(model(ids).flatten(0, 1), ids.reshape(-1)))


def fit_prior(train: Tensor, vocab: int, steps: int = 3000, batch: int = 64, seed: int = 0) -> tuple[TokenGPT, dict]:
    """Train TokenGPT on train ids (B, L), early-stopped on its last tenth; the same recipe for every tokenizer."""
    torch.manual_seed(seed)
    held = max(len(train) // 10, 1)
    fit, stop = train[:-held], train[-held:]
    model = TokenGPT(vocab, train.shape[1])
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3, weight_decay=0.05)
    best, best_state, best_step = math.inf, None, 0
    g = torch.Generator().manual_seed(seed)
    for step in range(1, steps + 1):
        model.train()
        idx = torch.randint(len(fit), (batch,), generator=g)
        loss = F.cross_entropy(model(fit[idx]).flatten(0, 1), fit[idx].reshape(-1))
        opt.zero_grad()
        loss.backward()
        opt.step()
        if step % 100 == 0:
            v = nll(model, stop)
            if v < best:
                best, best_state, best_step = v, copy.deepcopy(model.state_dict()), step
    model.load_state_dict(best_state)
    return model, {"early_stop_nll": best, "best_step": best_step}


def unigram_nll(train: Tensor, val: Tensor, vocab: int) -> float:
    """NLL of val ids under the train ids' add-one-smoothed histogram: the no-context baseline."""
    counts = torch.bincount(train.reshape(-1), minlength=vocab).double() + 1
    logp = (counts / counts.sum()).log()
    return float(-logp[val.reshape(-1)].mean())


def pca_psnr(train: Tensor, val: Tensor, ranks: tuple[int, ...], clips: int = 2000, seed: int = 0) -> dict[int, float]:
    """PSNR on val clips (B, 3, T, S, S) of their projection onto the top-k principal components of `clips` train
    clips, for each k in ranks: what k continuous numbers a clip give a linear code (a reference, not a tokenizer)."""
    torch.manual_seed(seed)  # svd_lowrank's random projection
    x = train[:clips].flatten(1)
    mean = x.mean(0)
    _, _, v = torch.svd_lowrank(x - mean, q=max(ranks) + 8, niter=2)
    out = {}
    for k in ranks:
        basis = v[:, :k]  # (pixels, k)
        y = ((val.flatten(1) - mean) @ basis @ basis.t() + mean).clamp(0, 1).view_as(val)
        out[k] = float(metrics.psnr(y, val).mean())
    return out


def tokens_of(tok, videos: Tensor, chunk: int = 64) -> Tensor:
    return torch.cat([tok.encode(v).ids for v in videos.split(chunk)])


# ----------------------------------------------------------------------------------------- figures


def strip_figure(videos: Tensor, recon: dict[str, Tensor], path: Path, frames: tuple[int, ...]) -> None:
    """For each clip: the original and each reconstruction as rows, the chosen frames as columns."""
    rows = [(f"clip {i} {name}", v[i]) for i in range(len(videos)) for name, v in [("input", videos), *recon.items()]]
    fig, axes = plt.subplots(len(rows), len(frames), figsize=(0.9 * len(frames) + 0.8, 0.9 * len(rows)))
    for r, (label, clip) in enumerate(rows):
        for j, t in enumerate(frames):
            ax = axes[r, j]
            ax.imshow(clip[:, t].permute(1, 2, 0).clamp(0, 1).numpy(), interpolation="nearest")
            ax.set_xticks([])
            ax.set_yticks([])
            if r == 0:
                ax.set_title(f"t={t}", fontsize=7)
            if j == 0:
                ax.set_ylabel(label, fontsize=6, rotation=0, ha="right", va="center")
    fig.tight_layout(pad=0.15)
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main(directory: Path = hub.REPO_CHECKPOINTS / NAME, n_val: int = 96) -> None:
    torch.set_num_threads(1)
    FIGURES.mkdir(parents=True, exist_ok=True)
    tok = hub.load(directory).eval()
    config = json.loads((directory / "config.json").read_text())
    log = json.loads((directory / "train_log.json").read_text())
    c = tok.config
    ns = [n for n in NS if n <= c.max_tokens]
    val = val_clips(n_val, c.frames, c.image_size)
    videos = videos_to_tensor(val["videos"])
    sections = []

    # -- quality vs number of tokens ------------------------------------------------------------------
    rows, curves, recon = [], {"psnr": [], "ssim": []}, {}
    for n in ns:
        y = torch.cat([tok.decode(tok.encode(v, num_tokens=n)) for v in videos.split(32)])
        psnr, ssim = metrics.psnr(y, videos), metrics.ssim_video(y, videos)
        by_source = [float(psnr[torch.from_numpy(val["source"] == s)].mean()) for s in range(len(SOURCES))]
        rows.append([n, round(n * math.log2(c.codebook_size)), float(psnr.mean()), float(ssim.mean()), *by_source])
        curves["psnr"].append(float(psnr.mean()))
        curves["ssim"].append(float(ssim.mean()))
        if n in (c.max_tokens, 32, 8, 2):
            recon[f"n={n}"] = y
    fig, axes = plt.subplots(1, 2, figsize=(8, 3.2))
    for ax, key, label in zip(axes, ("psnr", "ssim"), ("PSNR (dB)", "SSIM (mean over frames)")):
        ax.plot(ns, curves[key], "o-")
        ax.set_xscale("log", base=2)
        ax.set_xlabel("tokens n")
        ax.set_title(label, fontsize=10)
    fig.tight_layout()
    fig.savefig(FIGURES / "larp_quality.png", dpi=110)
    plt.close(fig)
    pick = [int(np.flatnonzero(val["source"] == s)[0]) for s in range(len(SOURCES))]  # one clip of each source
    step = max(c.frames // 8, 1)
    strip_figure(videos[pick], {k: v[pick] for k, v in recon.items()}, FIGURES / "larp_strip.png",
                 tuple(range(0, c.frames, step)))
    # what the numbers mean: trivial codes, the tokens of another clip, and SVQ's sampled tokens
    full = torch.cat([tok.encode(v).ids for v in videos.split(32)])
    lengths = torch.full((len(videos),), c.max_tokens)
    shuffled = type(tok.encode(videos[:1]))(ids=full.roll(1, dims=0), lengths=lengths)
    torch.manual_seed(0)
    sampled = torch.cat([tok.encode(v, sample=True).ids for v in videos.split(32)])
    agreement = float((sampled == full).float().mean())
    with torch.no_grad():
        z = F.normalize(torch.cat([tok.encode_latents(v * 2 - 1, c.max_tokens) for v in videos.split(32)]), dim=-1)
        top_cos = (z @ tok.svq.codebook.t()).topk(4, dim=-1).values.mean((0, 1)).tolist()
    train = build_video_dataset("train", 4000, c.frames, c.image_size)
    pca = pca_psnr(videos_to_tensor(train["videos"][:2000]), videos, tuple(sorted({4, 16, 32, c.max_tokens})))
    refs = [["the mean val clip (one clip for all)", float(metrics.psnr(videos.mean(0, keepdim=True).expand_as(videos), videos).mean())],
            ["each clip's own mean colour (3 numbers a clip)", float(metrics.psnr(videos.mean((2, 3, 4), keepdim=True).expand_as(videos), videos).mean())],
            ["each frame's own mean colour (3·T numbers a clip)", float(metrics.psnr(videos.mean((3, 4), keepdim=True).expand_as(videos), videos).mean())],
            *[[f"linear PCA of 2000 train clips, {k} continuous numbers a clip (not a tokenizer)", v] for k, v in pca.items()],
            [f"LARP, the {c.max_tokens} tokens of *another* clip", float(metrics.psnr(tok.decode(shuffled), videos).mean())],
            [f"LARP, {c.max_tokens} tokens sampled by SVQ (τ={c.temperature:g}) instead of argmax",
             float(metrics.psnr(tok.decode(type(shuffled)(ids=sampled, lengths=lengths)), videos).mean())]]
    sections.append(
        f"### Quality vs number of tokens ({n_val} val clips, argmax tokens)\n\n"
        + table(["n", "bits", "PSNR dB", "SSIM", *[f"PSNR {s}" for s in SOURCES]], rows)
        + f"\n\nEvery n comes from the same model and the same encode (a prefix of the {c.max_tokens} tokens). "
          "References on the same clips, to read the PSNR against:\n\n"
        + table(["reconstruction", "PSNR dB"], refs)
        + f"\n\nSVQ's sampled tokens agree with the argmax on {agreement:.1%} of positions. Mean cosine similarity of an "
          f"encoder output to its nearest codes, 1st to 4th: {', '.join(f'{v:.3f}' for v in top_cos)}; at τ={c.temperature:g} "
          f"a gap of 0.01 is a logit gap of {0.01 / c.temperature:.2f}, so the sampling (as in training) picks among those neighbours."
        "\n\n![quality vs n](benchmarks/figures/larp_quality.png)\n\n"
        f"Original and reconstructions at n = {', '.join(k[2:] for k in recon)} (frames t = 0, {step}, ..., "
        f"{c.frames - step}), one val clip of each source:\n\n![frames](benchmarks/figures/larp_strip.png)")

    # -- codebook usage -------------------------------------------------------------------------------
    train_ids = tokens_of(tok, videos_to_tensor(train["videos"]))
    val_ids = tokens_of(tok, videos)
    use_train = metrics.codebook_usage(train_ids, c.codebook_size)
    use_val = metrics.codebook_usage(val_ids, c.codebook_size)
    counts = torch.bincount(train_ids.reshape(-1), minlength=c.codebook_size).sort(descending=True).values
    fig, ax = plt.subplots(figsize=(4.5, 3.2))
    ax.plot(np.arange(1, c.codebook_size + 1), counts.numpy() / counts.sum().item())
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("code rank")
    ax.set_ylabel("frequency (train tokens)")
    fig.tight_layout()
    fig.savefig(FIGURES / "larp_codebook.png", dpi=110)
    plt.close(fig)
    per_position = [metrics.codebook_usage(train_ids[:, i], c.codebook_size)["perplexity"] for i in range(c.max_tokens)]
    sections.append(
        "### Codebook usage (argmax tokens)\n\n"
        + table(["split", "clips", "perplexity", "codes used"],
                [["train", len(train_ids), use_train["perplexity"], f"{use_train['used']:.1%}"],
                 ["val", len(val_ids), use_val["perplexity"], f"{use_val['used']:.1%}"]])
        + f"\n\nOf {c.codebook_size} codes. Perplexity per token position (train), first / middle / last: "
        f"{per_position[0]:.1f} / {per_position[len(per_position) // 2]:.1f} / {per_position[-1]:.1f}."
        "\n\n![code frequencies](benchmarks/figures/larp_codebook.png)")

    # -- speed ----------------------------------------------------------------------------------------
    batch = videos[:32]
    tokens = tok.encode(batch)
    short = tok.encode(batch, num_tokens=8)
    t_enc = best_time(lambda: tok.encode(batch))
    t_dec = best_time(lambda: tok.decode(tokens))
    t_dec8 = best_time(lambda: tok.decode(short))
    sections.append(
        "### Speed (batch 32, 1 thread; best of 5 after a warm-up)\n\n"
        + table(["step", "ms / batch", "clips/s", "frames/s"],
                [["encode (n=N)", t_enc * 1000, 32 / t_enc, 32 * c.frames / t_enc],
                 [f"decode n={c.max_tokens}", t_dec * 1000, 32 / t_dec, 32 * c.frames / t_dec],
                 ["decode n=8", t_dec8 * 1000, 32 / t_dec8, 32 * c.frames / t_dec8]]))

    # -- the prior's purpose --------------------------------------------------------------------------
    runs = {"with prior": COMPARE / "prior", "no prior": COMPARE / "noprior"}
    if all((d / "config.json").is_file() for d in runs.values()):
        more_val = build_video_dataset("val", 480, c.frames, c.image_size)  # more val tokens for a steadier NLL
        val_more = videos_to_tensor(more_val["videos"])
        train_v = videos_to_tensor(train["videos"])
        rows = []
        for name, d in runs.items():
            m = hub.load(d).eval()
            m_log = json.loads((d / "train_log.json").read_text())
            tr, va = tokens_of(m, train_v), tokens_of(m, val_more)
            ar, info = fit_prior(tr, m.config.codebook_size)
            q = budget_metrics(m, videos, [m.config.max_tokens, 8])
            ar_nll, uni = nll(ar, va), unigram_nll(tr, va, m.config.codebook_size)
            rows.append([name, m.config.max_tokens, m_log["global_step"], round(m_log["seconds"] / 60, 1), q[f"psnr_n{m.config.max_tokens}"],
                         q["psnr_n8"], ar_nll, ar_nll * m.config.max_tokens / math.log(2), uni, uni - ar_nll,
                         metrics.codebook_usage(va, m.config.codebook_size)["perplexity"], info["best_step"]])
        sections.append(
            "### What the prior buys: the same AR model on each tokenizer's tokens\n\n"
            f"Two tokenizers trained the same way (architecture, data, seed, batch, a budget of {rows[0][2]} steps) except the prior loss: "
            "`configs/larp/compare-prior.yaml` vs `configs/larp/compare-noprior.yaml`. Then one AR transformer (2 layers x 128, "
            "the same recipe and seed for both, early-stopped on a tenth of the train tokens) is trained on each one's argmax "
            "tokens of the 4000 train clips and scored on the tokens of 480 val clips. NLL in nats/token; bits/clip = NLL x N / ln 2; "
            "the unigram column is the NLL without context (train histogram), so NLL - unigram is what context buys.\n\n"
            + table(["tokenizer", "N", "steps", "minutes", "PSNR n=N", "PSNR n=8", "AR val NLL", "bits/clip",
                     "unigram NLL", "context gain", "val perplexity", "AR best step"], rows)
            + "\n\nRead the NLL together with the codebook perplexity: a tokenizer that uses fewer codes is trivially easier to "
              "model (its unigram NLL is lower too), so a lower NLL only says the prior helps where the PSNR and usage stay "
              "comparable; 'context gain' (unigram - AR NLL) is what the AR model gets from the previous tokens."
            + ("" if all(r[1] == c.max_tokens for r in rows) else
               f" These two runs keep the architecture of their configs (N = {rows[0][1]} tokens), not the shipped "
               f"checkpoint's (N = {c.max_tokens}); they were not re-run for it."))
    else:
        sections.append("### What the prior buys\n\nNot measured: train `configs/larp/compare-prior.yaml` and "
                        "`configs/larp/compare-noprior.yaml` first.")

    summary = config.get("summary", {})
    head = (f"`{NAME}`: {summary.get('description', '')} Trained {log['global_step']} steps in {log['seconds'] / 60:.0f} "
            f"minutes on {log.get('hardware', 'a CPU')}. Measured with: `{COMMAND}`. Machine: {machine()}; shared with other jobs, so absolute times drift. "
            f"Data: `zoo.data.video.val_clips({n_val})` (val photos, val faces, val scene seeds).")
    write_section("larp", "## LARP\n\n" + head + "\n\n" + "\n\n".join(sections))


if __name__ == "__main__":
    t0 = time.time()
    import sys

    if len(sys.argv) > 1:  # a dry run on another checkpoint: python -m benchmarks.larp DIR [N_VAL]
        main(Path(sys.argv[1]), int(sys.argv[2]) if len(sys.argv) > 2 else 96)
    else:
        main()
    print(f"done in {time.time() - t0:.0f} s")
