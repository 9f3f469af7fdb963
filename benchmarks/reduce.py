"""Token reduction on the host ViT: accuracy and throughput per reducer and keep ratio; VQToken on clips.

    OMP_NUM_THREADS=1 python benchmarks/reduce.py [--part all|host|vq|tokenizers|tome] [--val 1000] [--clips 600]
    OMP_NUM_THREADS=1 python benchmarks/reduce.py --part tome --rounds 5 --threads 1 2 --tome /path/to/facebookresearch/ToMe

Writes the `reduce` (host ViT), `reduce-vq` (clips), `reduce-tokenizers` (the image tokenizers'
encoder features) and `reduce-tome` (ToMe's schedule on timm ViT-S/16 against official ToMe) sections
of BENCHMARKS.md and benchmarks/figures/reduce_*.png. Official ToMe is not on PyPI: check it out of a clone,
e.g. `git --git-dir ToMe.git archive af95e4b | tar x -C /tmp/tome`, and pass `--tome /tmp/tome`.
"""

from __future__ import annotations

import argparse
import copy
import os
import sys
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from einops import rearrange
from torch import Tensor, nn

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.report import FIGURES, best_time, machine, table, write_section  # noqa: E402
from recipes.vit_host import shape_tensors  # noqa: E402
from zoo.data.images import build_image_dataset, images_to_tensor  # noqa: E402
from zoo.reduce import PrunePool, RandomDrop, ToMe, VQToken, VQTokenConfig, patch_timm  # noqa: E402
from zoo.reduce.base import Reducer  # noqa: E402
from zoo.reduce.host import HEADS, host_accuracy, load_host_classifier  # noqa: E402
from zoo.reduce.select import load_selector  # noqa: E402

KEEPS = (1.0, 0.75, 0.5, 0.3, 0.1)
FRAMES = 8


def reducers() -> dict[str, tuple[Reducer, tuple[int, ...], bool]]:
    """name -> (reducer, layers it reduces in, proportional attention)."""
    sel = load_selector()
    return {
        "random drop": (RandomDrop(), (0,), False),
        "ToMe": (ToMe(), (0,), True),
        "ToMe, blocks 0-2": (ToMe(), (0, 1, 2), True),
        "PPT prune/pool": (PrunePool("adaptive"), (0,), True),
        "PPT prune/pool, blocks 0-2": (PrunePool("adaptive"), (0, 1, 2), True),
        "learned selector": (sel, (sel.config.layer,), False),
        # farthest-point seeds as the codes (iters=0): 0, 1, 2 and 3 Lloyd iterations gave the same
        # accuracy here (98.3% of full at 50%), and each iteration costs time inside the ViT
        "VQToken (farthest-point codes)": (VQToken(VQTokenConfig(dim=sel.config.dim, max_codes=64, iters=0)),
                                           (0,), True),
    }


def token_share(keep: float, layers: tuple[int, ...], n: int = 64, depth: int = 6) -> float:
    """Tokens through the linear layers (qkv/proj = attention side, MLP side) vs the unreduced model.

    A noise-free proxy of compute (the N^2 attention term and the reducers' own cost are left out);
    the counts follow `ReduceState.reduce`: geometric steps over `layers` to `keep` of the n patches.
    """
    final = max(1, round(keep * n))
    tokens, used = n, 0.0
    for block in range(depth):
        used += 1 + tokens  # attention side (CLS + patches)
        if block in layers:
            step = layers.index(block) + 1
            tokens = final if step == len(layers) else max(1, round((final / n) ** (step / len(layers)) * n))
        used += 1 + tokens  # MLP side
    return used / (2 * depth * (1 + n))


@torch.no_grad()
def speedup(base: nn.Module, model: nn.Module, x: Tensor, rounds: int = 8) -> tuple[float, float]:
    """Best-time ratio base/model, the two timed alternately so that drift on a shared machine hits both."""
    tb, tm = [], []
    for _ in range(rounds):
        tb.append(best_time(lambda: base(x), repeat=1, warmup=1))
        tm.append(best_time(lambda: model(x), repeat=1, warmup=1))
    return min(tb) / min(tm), min(tm)


@torch.no_grad()
def accuracy(model: nn.Module, x: Tensor, labels: dict[str, Tensor]) -> dict[str, float]:
    logits: dict[str, list[Tensor]] = {h: [] for h in HEADS}
    for i in range(0, len(x), 250):
        for h, v in model(x[i:i + 250]).items():
            logits[h].append(v)
    return host_accuracy({h: torch.cat(v) for h, v in logits.items()}, labels)


@torch.no_grad()
def host_section(n_val: int, bench_batch: int) -> tuple[str, dict]:
    host = load_host_classifier()
    x, *y = shape_tensors("val", n_val).tensors
    labels = dict(zip(HEADS, y))
    full = accuracy(host, x, labels)
    level = torch.arange(len(x)) % 5  # shapes-only builds cycle the complexity levels 0..4
    per_level = []
    for lv in range(5):
        sel = level == lv
        a = accuracy(host, x[sel], {h: v[sel] for h, v in labels.items()})
        per_level.append([lv, int(sel.sum()), *(f"{a[k]:.3f}" for k in ("kind", "colour", "count", "all"))])
    level_md = table(["complexity level", "scenes", "kind", "colour", "count", "all three"], per_level)
    xb = x[:bench_batch]
    t_full = best_time(lambda: host(xb), repeat=3)
    rows, curves = [], {}
    setups = reducers()
    for name, (red, layers, prop) in setups.items():
        model = copy.deepcopy(host).eval()
        patch_timm(model.vit, red, keep=1.0, layers=layers, proportional=prop)
        curves[name] = []
        for keep in KEEPS:
            model.vit.zoo_reduce.keep = keep
            acc = accuracy(model, x, labels)
            speed, t = speedup(host, model, xb)
            curves[name].append((keep, acc["all"], acc["mean"], speed))
            rows.append([name, f"{keep:.0%}", f"{acc['all']:.3f}", f"{acc['all'] / max(full['all'], 1e-9):.1%}",
                         f"{acc['mean']:.3f}", f"{token_share(keep, layers):.0%}", f"{speed:.2f}x",
                         f"{bench_batch / t:.0f}"])
            print(rows[-1], flush=True)
    return table(["reducer", "patch tokens kept", "acc (all 3)", "vs full", "acc (mean of heads)",
                  "linear-layer tokens vs full", "throughput vs full", "images/s"], rows), {"full": full, "curves": curves, "t_full": t_full,
                                               "levels": level_md, "layers": setups}


def plot_host(res: dict) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    for name, pts in res["curves"].items():
        keeps = [p[0] * 100 for p in pts]
        axes[0].plot(keeps, [p[1] for p in pts], marker="o", label=name)
        axes[1].plot(keeps, [p[3] for p in pts], marker="o", label=name)
    axes[0].axhline(0.98 * res["full"]["all"], color="grey", ls="--", lw=1, label="98% of full")
    axes[1].axhline(1.7, color="grey", ls="--", lw=1, label="1.7x")
    for ax, title in zip(axes, ["host accuracy (kind, colour and count all right)", "throughput vs unreduced"]):
        ax.set_xlabel("% patch tokens kept")
        ax.set_title(title)
        ax.invert_xaxis()
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(FIGURES / "reduce_host.png", dpi=110)
    plt.close(fig)


@torch.no_grad()
def plot_maps(n_images: int = 6, keep: float = 0.3) -> None:
    """Which patches each reducer merged or kept (reduction in block 0, so maps are patch-exact)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    host = load_host_classifier()
    a = build_image_dataset("val", 5 * n_images, 32, ("shapes",))
    pick = np.arange(3, 5 * n_images, 5)[:n_images]  # complexity levels 3..4: textured scenes
    x = images_to_tensor(a["images"][pick])
    sel = load_selector()
    methods = {"ToMe": (ToMe(), True), "PPT prune/pool": (PrunePool("adaptive"), True),
               "learned selector": (sel, False), "random drop": (RandomDrop(), False)}
    g = host.config.image_size // host.config.patch_size
    fig, axes = plt.subplots(n_images, 1 + len(methods), figsize=(2 * (1 + len(methods)), 2 * n_images))
    patches = rearrange(x, "b c (h p) (w q) -> b (h w) (p q c)", p=host.config.patch_size, q=host.config.patch_size)
    for j, (name, (red, prop)) in enumerate(methods.items()):
        model = copy.deepcopy(host).eval()
        patch_timm(model.vit, red, keep=keep, layers=(0,), proportional=prop)
        model(x)
        last = model.vit.zoo_reduce.last
        src = last.source[:, 1:] - 1  # patch -> output patch-token index (CLS removed), -1 dropped
        onehot = last.source_matrix()[:, 1:, 1:]  # (B, M, N) patches per output token
        mean = onehot @ patches / onehot.sum(-1, keepdim=True).clamp(min=1)
        shown = last.unmerge(torch.cat([torch.zeros_like(mean[:, :1]), mean], 1))[:, 1:]  # each patch -> its group
        shown = shown * (src >= 0)[..., None] + 0.15 * (src < 0)[..., None]  # dropped patches dark
        img = rearrange(shown, "b (h w) (p q c) -> b h p w q c", h=g, p=host.config.patch_size, q=host.config.patch_size)
        img = rearrange(img, "b h p w q c -> b (h p) (w q) c").clamp(0, 1)
        for i in range(n_images):
            axes[i, j + 1].imshow(img[i].numpy(), interpolation="nearest")
            if i == 0:
                axes[i, j + 1].set_title(f"{name}\n{keep:.0%} kept", fontsize=8)
    for i in range(n_images):
        axes[i, 0].imshow(rearrange(x[i], "c h w -> h w c").numpy(), interpolation="nearest")
        if i == 0:
            axes[i, 0].set_title("image", fontsize=8)
    for ax in axes.flat:
        ax.set_axis_off()
    fig.tight_layout()
    fig.savefig(FIGURES / "reduce_maps.png", dpi=110)
    plt.close(fig)


# ----------------------------------------------------------------------------------------- VQToken on clips


def make_clips(split: str, n: int, seed: int = 0) -> tuple[Tensor, dict[str, Tensor]]:
    """n clips of FRAMES frames: a shape scene translated (wrapping around, so kind/colour/count stay).

    Returns (n, T, 3, 32, 32) in [0, 1] and the scene's labels.
    """
    x, *y = shape_tensors(split, n, seed=seed).tensors
    g = torch.Generator().manual_seed(seed + (0 if split == "train" else 1))
    v = torch.randint(-2, 3, (n, 2), generator=g)  # pixels per frame
    frames = [torch.stack([torch.roll(x[i], shifts=(int(v[i, 0]) * t, int(v[i, 1]) * t), dims=(1, 2))
                           for t in range(FRAMES)]) for i in range(n)]
    return torch.stack(frames), dict(zip(HEADS, y))


@torch.no_grad()
def clip_features(host: nn.Module, clips: Tensor) -> Tensor:
    """(n, T, 3, 32, 32) -> (n, T * 64, D): the host's patch tokens after its last block, frames flattened."""
    out = []
    for i in range(0, len(clips), 64):
        f = host.features(rearrange(clips[i:i + 64], "n t c h w -> (n t) c h w"), host.config.depth - 1, "block")
        out.append(rearrange(f[:, 1:], "(n t) p d -> n (t p) d", t=FRAMES))
    return torch.cat(out)


class Probe(nn.Module):
    """Attention pooling (one learned query, log-size bias) + linear heads over a set of tokens."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(dim)
        self.query = nn.Parameter(torch.zeros(dim))
        self.head = nn.Linear(dim, sum(len_ for len_ in (5, 8, 4)))

    def forward(self, tokens: Tensor, sizes: Tensor) -> dict[str, Tensor]:
        h = self.norm(tokens)
        logits = h @ self.query / h.shape[-1] ** 0.5 + sizes.clamp(min=1e-9).log()
        pooled = (logits.softmax(-1)[..., None] * h).sum(1)
        return dict(zip(HEADS, self.head(pooled).split([5, 8, 4], -1)))


def probe_accuracy(train: tuple[Tensor, Tensor, dict], val: tuple[Tensor, Tensor, dict], steps: int = 400) -> dict:
    torch.manual_seed(0)
    probe = Probe(train[0].shape[-1])
    opt = torch.optim.AdamW(probe.parameters(), lr=3e-3, weight_decay=0.01)
    n = len(train[0])
    for _ in range(steps):
        i = torch.randint(0, n, (128,))
        out = probe(train[0][i], train[1][i])
        loss = sum(F.cross_entropy(out[h], train[2][h][i]) for h in HEADS)
        opt.zero_grad()
        loss.backward()
        opt.step()
    with torch.no_grad():
        return host_accuracy(probe(val[0], val[1]), val[2])


def vq_encode(vq: VQToken, feats: Tensor, k: int | None) -> tuple[Tensor, Tensor]:
    codes, sizes = [], []
    for i in range(0, len(feats), 100):
        t = vq.encode(feats[i:i + 100], num_tokens=k)
        codes.append(t.meta["codes"])
        sizes.append(t.meta["code_sizes"])
    return torch.cat(codes), torch.cat(sizes)


def vq_section(n_train: int, n_val: int) -> tuple[str, list]:
    host = load_host_classifier()
    tr_clips, tr_y = make_clips("train", n_train, seed=1)
    va_clips, va_y = make_clips("val", n_val, seed=1)
    tr_f, va_f = clip_features(host, tr_clips), clip_features(host, va_clips)
    n_tok = tr_f.shape[1]
    ones = lambda f: torch.ones(f.shape[:2])  # noqa: E731
    rows, pts = [], []
    acc = probe_accuracy((tr_f, ones(tr_f), tr_y), (va_f, ones(va_f), va_y))
    rows.append(["all tokens", n_tok, "-", f"{acc['all']:.3f}", f"{acc['mean']:.3f}", "-"])
    dim = tr_f.shape[-1]
    variants: list[tuple[str, VQToken, int | None]] = [
        (f"VQToken K={k}", VQToken(VQTokenConfig(dim=dim, max_codes=k)), k) for k in (32, 16, 8, 4)]
    variants.append(("VQToken adaptive (elbow, K<=32)", VQToken(VQTokenConfig(dim=dim, max_codes=32, adaptive=True)), None))
    for name, vq, k in variants:
        t0 = time.perf_counter()
        tr = vq_encode(vq, tr_f, k)
        va = vq_encode(vq, va_f, k)
        ms = (time.perf_counter() - t0) / (n_train + n_val) * 1000
        acc = probe_accuracy((tr[0], tr[1], tr_y), (va[0], va[1], va_y))
        per_clip = (va[1] > 0).sum(1).float()
        rows.append([name, f"{per_clip.mean():.1f}", f"{per_clip.mean() / n_tok:.2%}", f"{acc['all']:.3f}",
                     f"{acc['mean']:.3f}", f"{ms:.1f}"])
        pts.append((name, float(per_clip.mean()), acc["all"]))
        print(rows[-1], flush=True)
    for k in (32, 8):
        red = ToMe()
        tr = red(tr_f, keep=k)
        va = red(va_f, keep=k)
        acc = probe_accuracy((tr.x, tr.sizes, tr_y), (va.x, va.sizes, va_y))
        rows.append([f"ToMe to {k} (comparison)", k, f"{k / n_tok:.2%}", f"{acc['all']:.3f}", f"{acc['mean']:.3f}", "-"])
        print(rows[-1], flush=True)
    return table(["tokens per clip", "tokens", "share of all", "probe acc (all 3)", "probe acc (mean)",
                  "ms per clip"], rows), pts


# ----------------------------------------------------------------------------------------- tokenizer encoders

TOKENIZERS = ("flextok-tiny-nat32", "karl-tiny-nat32", "cat-tiny-nat32")
TOKENIZER_KEEPS = (1.0, 0.5, 0.25)


def tokenizer_reducers(dim: int) -> dict[str, Reducer]:
    return {"random drop": RandomDrop(), "ToMe": ToMe(), "PPT prune/pool (norm importance)": PrunePool("adaptive"),
            "VQToken k-means": VQToken(VQTokenConfig(dim=dim, max_codes=256, iters=3))}


@torch.no_grad()
def encoder_features(tok: nn.Module, x: Tensor) -> Tensor:
    """(n, 3, 32, 32) -> (n, N, D): the tokenizer's `encoder_features`, in batches of 250."""
    return torch.cat([tok.encoder_features(x[i:i + 250]) for i in range(0, len(x), 250)])


def tokenizer_section(n_train: int, n_val: int) -> tuple[str, list[str]]:
    """A probe of kind/colour/count on each image tokenizer's encoder patch features, reduced or not."""
    import zoo

    train, val = shape_tensors("train", n_train, seed=2), shape_tensors("val", n_val, seed=2)
    tr_y, va_y = dict(zip(HEADS, train.tensors[1:])), dict(zip(HEADS, val.tensors[1:]))
    rows, used = [], []
    for name in TOKENIZERS:
        if name not in {r["name"] for r in zoo.list_tokenizers()}:
            print(f"{name}: not shipped, skipped", flush=True)
            continue
        tok = zoo.load(name).eval()
        if not hasattr(tok, "encoder_features"):
            print(f"{name}: no encoder_features, skipped", flush=True)
            continue
        used.append(name)
        tr_f, va_f = encoder_features(tok, train.tensors[0]), encoder_features(tok, val.tensors[0])
        n_tok, dim = tr_f.shape[1:]
        for rname, red in tokenizer_reducers(dim).items():
            for keep in TOKENIZER_KEEPS:
                if keep == 1.0 and rname != "random drop":
                    continue  # every reducer keeps everything at 1.0: one row per tokenizer
                count = max(1, round(keep * n_tok))
                t0 = time.perf_counter()
                tr, va = red(tr_f, keep=count), red(va_f, keep=count)
                ms = (time.perf_counter() - t0) / (n_train + n_val) * 1000
                acc = probe_accuracy((tr.x, tr.sizes, tr_y), (va.x, va.sizes, va_y))
                err = (va.unmerge(va.x) - va_f).pow(2).sum(-1).mean() / va_f.pow(2).sum(-1).mean()
                label = "all tokens" if keep == 1.0 else rname
                rows.append([name, label, f"{count}/{n_tok}", f"{acc['all']:.3f}", f"{acc['mean']:.3f}",
                             f"{float(err):.3f}", f"{ms:.2f}"])
                print(rows[-1], flush=True)
    md = table(["tokenizer", "reducer", "tokens kept", "probe acc (all 3)", "probe acc (mean)",
                "feature error after un-merge", "ms per image"], rows)
    return md, used


def tokenizer_body(args: argparse.Namespace, md: str, used: list[str], seconds: float) -> str:
    return f"""## Token reduction on the image tokenizers' encoders (`zoo.reduce`)

Features: the patch tokens after the last encoder block of each shipped image tokenizer
(`tok.encoder_features(x)`; {", ".join(f"`{u}`" for u in used)}), on {args.probe_train} train / {args.probe_val}
val shape scenes (seed 2). Each reducer runs on those tokens alone (no attention inside the encoder to
guide it: ToMe matches on the features themselves, prune/pool ranks by feature norm), then a probe (one
attention-pooling query with log-size bias + linear heads, 400 AdamW steps) is trained on the reduced
train tokens and scored on the reduced val tokens for the shape's kind, colour and count. "Feature error
after un-merge" is ||unmerge(reduce(f)) - f||^2 / ||f||^2 on val (1.0 for a dropped token). It says how
much of what a tokenizer's encoder sees survives the reduction, and is not the tokenizer's own
reconstruction quality. When the feature norms are flat (coefficient of variation below 0.5, as they are for
all three encoders here), PPT's adaptive policy pools instead of pruning, so its rows equal ToMe's.

{md}

Command: `OMP_NUM_THREADS=1 python benchmarks/reduce.py --part tokenizers --probe-train {args.probe_train} --probe-val {args.probe_val}`
({seconds / 60:.1f} min). Machine: {machine()}.
"""


def tome_tokens(r: int, n: int = 197, depth: int = 12, protect: int = 1) -> list[int]:
    """Tokens entering each block and leaving the last under ToMe's schedule (r clipped to half, as official)."""
    counts = [n]
    for _ in range(depth):
        counts.append(counts[-1] - min(r, (counts[-1] - protect) // 2))
    return counts


def tome_share(r: int, n: int = 197, depth: int = 12) -> float:
    """Tokens through qkv/proj (4 d^2 each) and the MLP (8 d^2) under ToMe's schedule vs unpatched (the N^2
    attention term and the merges left out): a noise-free proxy of the compute left."""
    counts = tome_tokens(r, n, depth)
    used = sum(4 * a + 8 * b for a, b in zip(counts[:-1], counts[1:]))  # attention at a tokens, MLP after the merge
    return used / (12 * n * depth)


def tome_models(rs: tuple[int, ...], tome_path: str | None) -> tuple[dict[str, nn.Module], dict]:
    """Unpatched ViT-S/16 (random init: speed does not depend on the weights), ours and official ToMe at each r,
    and how closely ours matches official (max |logit diff| and whether the token sizes are identical)."""
    import timm

    official = None
    if tome_path:
        sys.path.insert(0, tome_path)
        import tome as official  # facebookresearch/ToMe, run as it is

    torch.manual_seed(0)
    base = timm.create_model("vit_small_patch16_224", pretrained=False).eval()
    x = torch.randn(4, 3, 224, 224)
    configs: dict[str, nn.Module] = {"unpatched": base}
    agree = {}
    for r in rs:
        configs[f"zoo r={r}"] = ours = patch_timm(copy.deepcopy(base), ToMe(), r=r)
        if official is not None:
            ref = copy.deepcopy(base)
            official.patch.timm(ref)
            ref.r = r
            configs[f"official r={r}"] = ref
            with torch.inference_mode():
                a, b = ours(x), ref(x)
            agree[r] = (float((a - b).abs().max()), bool(torch.equal(ours.zoo_reduce.sizes, ref._tome_info["size"][..., 0])),
                        ours.zoo_reduce.sizes.shape[1])
    return configs, agree


def tome_timings(configs: dict[str, nn.Module], x: Tensor, rounds: int, threads: int) -> tuple[dict, list[float]]:
    """Seconds per forward of every configuration, `rounds` rounds each running all once in rotating order.

    1 thread: this thread's CPU time (time slices lost to other jobs on a shared machine do not count);
    more threads: wall time (the CPU time of one thread would miss the others' work).
    """
    torch.set_num_threads(threads)
    clock = time.thread_time if threads == 1 else time.perf_counter
    times: dict[str, list[float]] = {k: [] for k in configs}
    loads = [os.getloadavg()[0]]
    names = list(configs)
    with torch.inference_mode():
        for m in configs.values():
            m(x)
        for i in range(rounds):
            for k in names[i % len(names):] + names[:i % len(names)]:
                t = clock()
                configs[k](x)
                times[k].append(clock() - t)
            loads.append(os.getloadavg()[0])
    torch.set_num_threads(1)
    return times, loads


SHARED = "block math"  # what every implementation runs on the same tokens: the linear layers, GELU, LayerNorms


def tome_profile(model: nn.Module, x: Tensor, repeat: int = 3) -> dict[str, float]:
    """Seconds of one forward (1 thread, torch.profiler, the least disturbed of `repeat` runs) in: the shared block
    math (patch embedding, LayerNorms, qkv/proj/fc1/fc2 and GELU, head), attention (softmax(QK^T)V: PyTorch's fused
    kernel, or the official code's matmuls, softmax, scale and size bias, which also holds its mean of the keys),
    and the rest (the metric, matching, merging, residual adds, Python)."""
    from torch.profiler import ProfilerActivity, profile, record_function

    shared = [model.patch_embed, model.norm, model.head]
    for blk in model.blocks:
        shared += [blk.norm1, blk.attn.qkv, blk.attn.proj, blk.norm2, blk.mlp]
    ranges: list = []

    def enter(name: str):
        def hook(*_):
            ranges.append(record_function(name))
            ranges[-1].__enter__()
        return hook

    def leave(*_):
        ranges.pop().__exit__(None, None, None)

    handles = [h for m in shared for h in (m.register_forward_pre_hook(enter(SHARED)), m.register_forward_hook(leave))]
    handles += [h for blk in model.blocks  # official ToMe calls its attention module; ours calls SDPA directly
                for h in (blk.attn.register_forward_pre_hook(enter("attention")), blk.attn.register_forward_hook(leave))]
    best: dict[str, float] = {}
    with torch.inference_mode():
        model(x)
        for _ in range(repeat):
            with profile(activities=[ProfilerActivity.CPU]) as prof:
                cpu = time.thread_time()
                model(x)
                cpu = time.thread_time() - cpu
            out = {SHARED: 0.0, "attention": 0.0, "rest": 0.0}
            for e in prof.events():
                names, p = [e.name], e.cpu_parent
                while p is not None:
                    names.append(p.name)
                    p = p.cpu_parent
                if SHARED in names:
                    key = SHARED
                elif "attention" in names or "aten::scaled_dot_product_attention" in names:
                    key = "attention"
                else:
                    key = "rest"
                out[key] += e.self_cpu_time_total
            # the profiler's clock is the wall clock: keep its shares, scaled to this thread's CPU time
            total = sum(out.values())
            out = {k: v / total * cpu for k, v in out.items()}
            if not best or cpu < sum(best.values()):
                best = out
    for h in handles:
        h.remove()
    return best


def tome_section(rounds: int, rs: tuple[int, ...], batch: int, tome_path: str | None,
                 threads: tuple[int, ...]) -> tuple[str, dict]:
    """timm ViT-S/16 at 224 px, unpatched vs official ToMe vs `patch_timm(vit, ToMe(), r=r)`, interleaved rounds at
    each thread count (ratios are per round, of configurations measured back to back), then a profile of each."""
    import statistics

    configs, agree = tome_models(rs, tome_path)
    x = torch.randn(batch, 3, 224, 224)
    md, loads, med = [], [], {}
    for t in threads:
        times, ld = tome_timings(configs, x, rounds, t)
        loads += ld

        def ratio(slow: str, fast: str) -> str:
            rr = [a / b for a, b in zip(times[slow], times[fast])]
            return f"{statistics.median(rr):.2f}x [{min(rr):.2f}-{max(rr):.2f}]"

        rows = []
        for r in rs:
            row = [t, r, f"{statistics.median(times[f'zoo r={r}']):.2f}", ratio("unpatched", f"zoo r={r}")]
            if agree:
                row += [f"{statistics.median(times[f'official r={r}']):.2f}", ratio("unpatched", f"official r={r}"),
                        ratio(f"official r={r}", f"zoo r={r}")]
            rows.append(row)
        med[t] = statistics.median(times["unpatched"])
        header = ["threads", "r", "zoo s/batch", "zoo vs unpatched"]
        if agree:
            header += ["official s/batch", "official vs unpatched", "zoo vs official"]
        md.append(table(header, rows) if not md else "\n".join(table(header, rows).splitlines()[2:]))
    prof = {k: tome_profile(m, x) for k, m in configs.items()}
    return "\n".join(md), {"unpatched": med, "loads": loads, "agree": agree, "profile": prof}


def tome_linear_gflop(r: int | None, batch: int, n: int = 197, depth: int = 12, d: int = 384) -> float:
    """GFLOP of the qkv, proj, fc1 and fc2 layers of one ViT-S/16 forward under ToMe's schedule (None: unpatched)."""
    counts = tome_tokens(r, n, depth) if r else [n] * (depth + 1)
    return 2 * batch * sum(4 * d * d * a + 8 * d * d * b for a, b in zip(counts[:-1], counts[1:])) / 1e9


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--part", choices=("all", "host", "vq", "tokenizers", "tome"), default="all")
    p.add_argument("--tome", default=None, help="a checkout of facebookresearch/ToMe to time against (optional)")
    p.add_argument("--rounds", type=int, default=8)
    p.add_argument("--r", type=int, nargs="+", default=[8, 16])
    p.add_argument("--threads", type=int, nargs="+", default=[1, 2], help="thread counts the ToMe section times")
    p.add_argument("--probe-train", type=int, default=2000)
    p.add_argument("--probe-val", type=int, default=500)
    p.add_argument("--val", type=int, default=1000)
    p.add_argument("--batch", type=int, default=128)
    p.add_argument("--clips", type=int, default=600)
    p.add_argument("--val-clips", type=int, default=200)
    args = p.parse_args()
    torch.set_num_threads(1)
    FIGURES.mkdir(parents=True, exist_ok=True)
    if args.part in ("all", "host"):
        started = time.time()
        host_md, res = host_section(args.val, args.batch)
        plot_host(res)
        plot_maps()
        write_section("reduce", host_body(args, host_md, res, time.time() - started))
    if args.part in ("all", "vq"):
        started = time.time()
        vq_md, _ = vq_section(args.clips, args.val_clips)
        write_section("reduce-vq", vq_body(args, vq_md, time.time() - started))
    if args.part in ("all", "tokenizers"):
        started = time.time()
        md, used = tokenizer_section(args.probe_train, args.probe_val)
        write_section("reduce-tokenizers", tokenizer_body(args, md, used, time.time() - started))
    if args.part in ("all", "tome"):
        started = time.time()
        md, res = tome_section(args.rounds, tuple(args.r), 16, args.tome, tuple(args.threads))
        write_section("reduce-tome", tome_body(args, md, res, time.time() - started))


def tome_body(args: argparse.Namespace, md: str, res: dict, seconds: float) -> str:
    loads, prof, agree = res["loads"], res["profile"], res["agree"]
    official = f" --tome {args.tome}" if args.tome else ""
    schedule = "; ".join(f"r = {r}: {' -> '.join(map(str, tome_tokens(r)))}" for r in args.r)
    bounds = " and ".join(f"{tome_share(r):.0%} of the unpatched tokens at r = {r} (at most {1 / tome_share(r):.2f}x)"
                          for r in args.r)
    rows = []
    for name, p in prof.items():
        total = sum(p.values())
        r = int(name.split("=")[1]) if "=" in name else None
        rows.append([name, f"{total:.2f}", *(f"{p[k]:.2f} ({p[k] / total:.0%})" for k in (SHARED, "attention", "rest")),
                     f"{tome_linear_gflop(r, 16) / p[SHARED]:.0f}"])
    prof_md = table(["model", "profiled s", "block math", "attention", "metric, matching, merge, rest",
                     "block math GFLOP/s (linear layers only)"], rows)
    agree_md = "; ".join(f"r = {r}: max |logit diff| {a[0]:.1e}, token sizes {'identical' if a[1] else 'DIFFER'} "
                         f"({a[2]} tokens left)" for r, a in agree.items())
    verdict = ""
    if agree:
        lines = []
        for r in args.r:
            off, ours = prof[f"official r={r}"], prof[f"zoo r={r}"]
            total, shared = sum(off.values()), off[SHARED]
            outside_off, outside_ours = total - shared, sum(ours.values()) - ours[SHARED]
            lines.append(
                f"r = {r}: official ToMe takes {total:.2f} s, {shared:.2f} s ({shared / total:.0%}) of it in the block math "
                f"that any implementation of the same merges runs, so even with attention, matching and merging free "
                f"nothing can be more than {total / shared:.2f}x faster than it. Outside the block math ours takes "
                f"{outside_ours:.2f} s (attention {ours['attention']:.2f}, the rest {ours['rest']:.2f}) against "
                f"{outside_off:.2f} s (attention {off['attention']:.2f}, the rest {off['rest']:.2f}): at equal block "
                f"math that is {total / (shared + outside_ours):.2f}x. 1.3x would need everything outside the block "
                f"math to take {total / 1.3 - shared:.2f} s")
        verdict = ("\n\nWhy 1.3x over official ToMe is out of reach here (from the profile):\n\n"
                   + "\n".join(f"- {line}" for line in lines) + "\n")
    return f"""## ToMe's schedule on timm ViT-S/16 (`patch_timm(vit, ToMe(), r=r)`)

`vit_small_patch16_224` (random init: speed does not depend on the weights), batch 16, 224 px, forward
only. Every block merges r tokens, at most half of them ({schedule}), ours against
official ToMe (facebookresearch/ToMe at af95e4b, run from a checkout as it is) at the same r, so the same token
schedule, and the unpatched model; {args.rounds} rounds per thread count, each running every configuration once in
rotating order. 1 thread is timed by this thread's CPU time (time slices taken by other jobs do not count), 2 threads
by wall time. Ratios are per round: median [min-max]. Ours against official on 4 images: {agree_md or 'official not run'}.

{md}

The unpatched model takes {', '.join(f'{v:.2f} s ({t} thread{"s" if t > 1 else ""})' for t, v in res['unpatched'].items())} per batch.
Load average over the run: {min(loads):.1f}-{max(loads):.1f} (2 cores shared by other jobs).

Where the time goes (one forward each, 1 thread, torch.profiler; block math = patch embedding, LayerNorms, qkv,
proj, fc1, GELU, fc2 and head, run by every implementation on the same tokens; attention = softmax(QK^T)V, PyTorch's
fused kernel with a log-size bias for ours, matmuls + softmax + scale + bias in the official code; rest = mean of
the keys, matching, merging, residual adds, Python):

{prof_md}

Compute bound: merging in every block leaves, through the qkv/proj/MLP layers, {bounds}; the attention
term shrinks quadratically, so measured ratios over the unpatched model can pass it a little. Ours and official
ToMe merge the same tokens, so they run the same block math, and its linear layers already run at the rate in
the table's last column, most of this CPU's peak (AVX2, no AVX-512: 2 FMA units x 8 lanes x 2 FLOP x 2.45 GHz = 78 GFLOP/s per
core). So 1.5x over the unpatched model is within reach only where the schedule removes enough tokens:
{'; '.join(f"r = {r}: {'yes' if 1 / tome_share(r) >= 1.5 else 'no'} (bound {1 / tome_share(r):.2f}x)" for r in args.r)}.{verdict}
Command: `OMP_NUM_THREADS=1 python benchmarks/reduce.py --part tome --rounds {args.rounds} --r {' '.join(map(str, args.r))} --threads {' '.join(map(str, args.threads))}{official}`
({seconds / 60:.1f} min). Machine: {machine()}.
"""


def host_body(args: argparse.Namespace, host_md: str, res: dict, seconds: float) -> str:
    full = res["full"]
    at_half = {name: pts[KEEPS.index(0.5)] for name, pts in res["curves"].items()}
    layers = {name: v[1] for name, v in res["layers"].items()}
    verdict = "\n".join(
        f"- {name}: {p[1] / max(full['all'], 1e-9):.1%} of full accuracy "
        f"(accuracy goal {'met' if p[1] >= 0.98 * full['all'] else 'missed'}); measured {p[3]:.2f}x throughput, "
        f"compute bound {1 / token_share(0.5, layers[name]):.2f}x from the linear-layer tokens"
        for name, p in at_half.items())
    return f"""## Token reduction (`zoo.reduce`)

Host: `checkpoints/vit-host-shapes32` (timm ViT with a conv stem, 6 blocks, dim 96, 64 patch tokens + CLS)
on {args.val} val shape scenes; its unreduced accuracy is {full['all']:.3f} (kind, colour and count all right;
mean of the three heads {full['mean']:.3f}). Each reducer is patched into the host with `patch_timm` (fused
SDPA); "patch tokens kept" is the share of the 64 patch tokens left after the last reducing block (block 0
unless named: then the tokens shrink geometrically over blocks 0-2). Throughput: batch of {args.batch} images,
forward only, 1 thread; the patched and the unpatched host are timed alternately (8 rounds, each a
warm-up then a timed run) and the ratio of their best times is reported. The machine is shared with
other jobs, so these ratios drift by +-0.3x between runs; "linear-layer tokens vs full" is the
noise-free share of tokens that pass through the qkv/proj/MLP layers (the bulk of the compute at 65
tokens), leaving out the reducers' own cost.

Unreduced host accuracy per complexity level of the scenes (0 = one flat shape, 4 = many textured
shapes with text):

{res['levels']}

Goal at 50% tokens: >= 98% of full accuracy and >= 1.7x throughput. A reduction in block 0 of 6 leaves
55% of the linear-layer tokens, so the linear layers alone allow 1.82x there (1.62x over blocks 0-2); the
attention products shrink quadratically with the tokens, so a cheap reducer can measure a little above that.
{verdict}

{host_md}

![accuracy and throughput vs tokens kept](figures/reduce_host.png)

Which patches were merged or kept at 30% (reduction in block 0; merged patches shown in their group's
mean colour, dropped ones dark):

![reduction maps](figures/reduce_maps.png)

Command: `OMP_NUM_THREADS=1 python benchmarks/reduce.py --part host --val {args.val} --batch {args.batch}`
({seconds / 60:.1f} min). Machine: {machine()}.
"""


def vq_body(args: argparse.Namespace, vq_md: str, seconds: float) -> str:
    return f"""## VQToken on clips (`zoo.reduce.vq`)

{args.clips} train / {args.val_clips} val clips of {FRAMES} frames (a shape scene translated by a random
velocity, wrapping around, so kind/colour/count hold); features are the host ViT's patch tokens after its
last block ({FRAMES} x 64 = 512 per clip). A probe (one attention-pooling query with log-size bias + linear
heads, 400 AdamW steps) is trained on each token set of the train clips and scored on the val clips.

{vq_md}

Command: `OMP_NUM_THREADS=1 python benchmarks/reduce.py --part vq --clips {args.clips} --val-clips {args.val_clips}`
({seconds / 60:.1f} min). Machine: {machine()}.
"""


if __name__ == "__main__":
    main()
