"""Train the demo LM: a tiny GPT-2 that writes image and action tokens through the joint vocabulary.

    zoo train configs/lm/tiny-interleaved.yaml       # writes checkpoints/lm-tiny-interleaved

The LightningModule owns the loss (next-id cross-entropy, pads ignored), the optimiser (AdamW, no
decay on biases, norms and embeddings) and the schedule (linear warm-up, cosine to 10%); the model
itself is `zoo.llm.MultimodalLM`, which knows nothing of training. `ExportLM` measures the trained
LM by sampling from it and decoding with the zoo tokenizers, and writes the checkpoint with its card:

- actions: for every LASA training shape, sample trajectories from its name, decode with BEAST, and
  ask which demonstration (of all 24 shapes x 7) is nearest by DTW (and by MSE): the shape matches
  when that demonstration is of the named shape (chance 1/24);
- images: for val-seed captions, sample image tokens, decode with the image tokenizer, and ask a
  judge classifier (`ShapeJudge`, a small CNN trained here on train-seed scenes and shipped beside the
  LM as judge.safetensors) for the main object's kind, colour and count; the image matches when all
  three agree with the caption. The same judge on the real images and on their tokenizer
  reconstructions gives the ceilings.
"""

from __future__ import annotations

import inspect
import json
import math
import platform
import time
from pathlib import Path
from typing import Any

import lightning.pytorch as pl
import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from recipes.lm_data import ACTION, IMAGE, InterleavedData
from zoo.llm import MultimodalLM, Vocabulary
from zoo.tokenizer import Tokens


class InterleavedLM(pl.LightningModule):
    """Next-id training of a `MultimodalLM` built (at setup) for the datamodule's vocabulary.

    Args:
        n_layer, n_embd, n_head, n_positions, dropout: the GPT-2 config.
        lr: peak learning rate; weight_decay on weight matrices only.
        warmup_steps: linear warm-up, then cosine decay to `min_lr_ratio * lr` at `trainer.max_steps`, or
            at `budget_seconds` of training if that comes first (set `trainer.max_time` to match), so a
            run cut by the clock on a busy machine still ends its schedule.
        threads: torch CPU threads (None: leave as is).
        init_from: start from the weights of a saved LM (a folder, or the name of one under checkpoints/,
            e.g. "lm-tiny-interleaved") to continue its training; its vocabulary, text tokenizer and
            architecture must be the ones this run builds (ValueError otherwise).
    """

    def __init__(self, n_layer: int = 4, n_embd: int = 256, n_head: int = 4, n_positions: int = 160,
                 dropout: float = 0.1, lr: float = 1e-3, weight_decay: float = 0.1, warmup_steps: int = 100,
                 min_lr_ratio: float = 0.1, budget_seconds: float | None = None, threads: int | None = 1,
                 init_from: str | None = None) -> None:
        super().__init__()
        if threads:
            torch.set_num_threads(threads)  # the machines are shared: one thread per training by default
        self.save_hyperparameters()
        self.lm: MultimodalLM | None = None
        self.fit_start = time.time()

    def on_train_start(self) -> None:
        self.fit_start = time.time()

    def setup(self, stage: str) -> None:
        if self.lm is None:
            self.build(self.trainer.datamodule)

    def build(self, dm: InterleavedData) -> None:
        """Make the model for the datamodule's vocabulary (Lightning calls this at setup)."""
        dm.setup()
        h = self.hparams
        if dm.max_length > h.n_positions:
            raise ValueError(f"sequences reach {dm.max_length} ids but n_positions={h.n_positions}; raise it")
        self.lm = MultimodalLM.build(dm.vocab, dm.text_tokenizer, n_layer=h.n_layer, n_embd=h.n_embd, n_head=h.n_head,
                                     n_positions=h.n_positions, dropout=h.dropout)
        if h.init_from:
            self.lm.model.load_state_dict(initial_weights(h.init_from, self.lm), strict=True)
        self.model = self.lm.model.train()  # a submodule, so Lightning moves and optimises it

    def losses(self, ids: Tensor) -> dict[str, Tensor]:
        """ids: (B, N) right-padded sequences → mean next-id loss overall and on each entry's codes."""
        vocab = self.lm.vocab
        mask = ids != vocab.pad
        logits = self.model(input_ids=ids, attention_mask=mask.long()).logits[:, :-1]  # (B, N-1, V)
        target = ids[:, 1:]
        nll = F.cross_entropy(logits.transpose(1, 2).float(), target, reduction="none")  # (B, N-1)
        valid = mask[:, 1:]
        out = {"loss": nll[valid].mean()}
        for e in vocab.entries:
            r = vocab.range(e.name)
            codes = valid & (target >= r.codes) & (target < r.stop)
            if codes.any():
                out[f"loss_{e.name}_codes"] = nll[codes].mean()
        return out

    def training_step(self, ids: Tensor, batch_idx: int) -> Tensor:
        losses = self.losses(ids)
        self.log_dict({f"train/{k}": v for k, v in losses.items()}, prog_bar=True, batch_size=len(ids))
        return losses["loss"]

    def validation_step(self, ids: Tensor, batch_idx: int) -> None:
        losses = self.losses(ids)
        self.log_dict({f"val/{k}": v for k, v in losses.items()}, batch_size=len(ids))

    def configure_optimizers(self) -> Any:
        h = self.hparams
        decay = [p for n, p in self.model.named_parameters() if p.ndim >= 2 and "wte" not in n and "wpe" not in n]
        rest = [p for n, p in self.model.named_parameters() if not (p.ndim >= 2 and "wte" not in n and "wpe" not in n)]
        opt = torch.optim.AdamW([{"params": decay, "weight_decay": h.weight_decay}, {"params": rest, "weight_decay": 0.0}],
                                lr=h.lr, betas=(0.9, 0.95))
        total = max(self.trainer.max_steps, h.warmup_steps + 1)

        def factor(step: int) -> float:
            if step < h.warmup_steps:
                return (step + 1) / h.warmup_steps
            t = (step - h.warmup_steps) / (total - h.warmup_steps)
            if h.budget_seconds:
                t = max(t, (time.time() - self.fit_start) / h.budget_seconds)
            t = min(t, 1.0)
            return h.min_lr_ratio + (1 - h.min_lr_ratio) * 0.5 * (1 + math.cos(math.pi * t))

        return {"optimizer": opt, "lr_scheduler": {"scheduler": torch.optim.lr_scheduler.LambdaLR(opt, factor),
                                                   "interval": "step"}}


def initial_weights(source: str | Path, lm: MultimodalLM) -> dict[str, Tensor]:
    """The state dict of the saved LM `source` (folder or checkpoints/ name), checked to fit `lm`."""
    from zoo.hub import REPO_CHECKPOINTS

    path = Path(source) if Path(source).is_dir() else REPO_CHECKPOINTS / str(source)
    if not path.is_dir():
        raise ValueError(f"init_from={str(source)!r} is neither a folder nor a checkpoint under {REPO_CHECKPOINTS}")
    saved = MultimodalLM.from_pretrained(path)
    if saved.vocab.to_dict() != lm.vocab.to_dict():
        raise ValueError(f"init_from={str(source)!r} has the vocabulary {saved.vocab.ranges()}, this run builds "
                         f"{lm.vocab.ranges()}: the same vocabulary is required to continue training")
    if saved.text_tokenizer.get_vocab() != lm.text_tokenizer.get_vocab():
        raise ValueError(f"init_from={str(source)!r} has another text tokenizer ({len(saved.text_tokenizer)} words, "
                         f"this run {len(lm.text_tokenizer)}): the same one is required")
    keys = ("vocab_size", "n_positions", "n_embd", "n_layer", "n_head")
    want, got = ({k: getattr(m.model.config, k) for k in keys} for m in (lm, saved))
    if want != got:
        raise ValueError(f"init_from={str(source)!r} is a GPT-2 with {got}, this run builds {want}")
    return saved.model.state_dict()


# ----------------------------------------------------------------------------------------- measuring


def evaluate_actions(lm: MultimodalLM, beast: Any, demos: np.ndarray, names: list[str], *, samples: int = 4,
                     temperature: float = 1.0, seed: int = 0, dtw_steps: int = 50, scale: bool = True,
                     guidance: float = 1.0) -> dict[str, Any]:
    """Sample `samples` trajectories per shape name and find the nearest demonstration.

    Args:
        demos: (n, T, 2) every demonstration of the shapes (the reference set); names: their shapes.
        scale: also measure the demonstrations' own spread (each one's DTW to its nearest sibling).
        guidance: the classifier-free guidance scale of `MultimodalLM.generate`.
    Returns:
        metrics (accuracy by DTW and by MSE, mean DTW to the named shape's nearest demo and the
        same for a held-in demo, for scale) and "trajectories" (shapes x samples, T, 2), "prompts".
    """
    from zoo.metrics import dtw_distances

    shapes = sorted(set(names))
    prompts = [s for s in shapes for _ in range(samples)]
    segments = lm.generate(prompts, ACTION, temperature=temperature, seed=seed, guidance=guidance)
    complete = [s.complete for s in segments]
    tokens = Tokens(ids=torch.stack([s.ids for s in segments]), lengths=torch.tensor([len(s.ids) for s in segments]))
    gen = beast.decode(tokens, num_steps=demos.shape[1]).float()  # (P, T, 2)
    ref = torch.from_numpy(demos).float()
    names_arr = np.array(names)
    sub = np.linspace(0, demos.shape[1] - 1, dtw_steps).round().astype(int)
    p, n = len(gen), len(ref)
    dtw = dtw_distances(gen[:, sub].repeat_interleave(n, 0), ref[:, sub].repeat(p, 1, 1)).view(p, n)
    mse = (gen[:, None] - ref[None]).pow(2).mean((2, 3))  # (P, n)
    named = torch.from_numpy(names_arr[None, :] == np.array(prompts)[:, None])  # (P, n)
    by_dtw = names_arr[dtw.argmin(1).numpy()] == np.array(prompts)
    by_mse = names_arr[mse.argmin(1).numpy()] == np.array(prompts)
    dtw_named = dtw.masked_fill(~named, math.inf).min(1).values
    dtw_other = dtw.masked_fill(named, math.inf).min(1).values
    spread = {}
    if scale:  # each demonstration's DTW to the nearest other demonstration of its own shape
        own = torch.from_numpy(names_arr[:, None] == names_arr[None, :]) & ~torch.eye(n, dtype=torch.bool)
        dd = dtw_distances(ref[:, sub].repeat_interleave(n, 0), ref[:, sub].repeat(n, 1, 1)).view(n, n)
        spread["action_demo_to_demo_dtw_mm"] = float(dd.masked_fill(~own, math.inf).min(1).values.mean())
    return {
        "metrics": {
            "action_shape_match_dtw": float(by_dtw.mean()),
            "action_shape_match_mse": float(by_mse.mean()),
            "action_dtw_to_named_mm": float(dtw_named.mean()),
            "action_dtw_to_other_mm": float(dtw_other.mean()),
            **spread,
            "action_complete": float(np.mean(complete)),
            "action_prompts": len(prompts),
        },
        "trajectories": gen.view(len(shapes), samples, *gen.shape[1:]).numpy(),
        "shapes": shapes,
        "per_sample_match": by_dtw,
    }


def evaluate_images(lm: MultimodalLM, image_tok: Any, judge: Any, scenes: dict[str, np.ndarray], *, n: int = 128,
                    temperature: float = 1.0, seed: int = 0, decode_seed: int = 0, guidance: float = 1.0) -> dict[str, Any]:
    """Sample an image for each of the first `n` val captions, decode it, and ask the judge.

    Returns:
        metrics: image_match (kind, colour and count all right), per-head accuracies, the judge on
        the real images and on their tokenizer reconstructions (ceilings), and on generated images
        scored against another caption's labels (the chance level of an LM that ignores its caption);
        and "images" (n, 3, H, W), "captions".
    """
    from zoo.data.images import images_to_tensor

    e = lm.vocab.entry(IMAGE)
    captions = [str(c) for c in scenes["captions"][:n]]
    labels = {"kind": torch.from_numpy(scenes["label_kind"][:n]), "colour": torch.from_numpy(scenes["label_colour"][:n]),
              "count": torch.from_numpy(scenes["label_count"][:n]) + 1}
    segments = lm.generate(captions, IMAGE, temperature=temperature, seed=seed, guidance=guidance)
    ids = torch.stack([s.ids for s in segments])
    tokens = Tokens(ids=ids, lengths=torch.full((len(ids),), ids.shape[1]))
    with torch.no_grad():
        # flow decoders (FlexTok) take a seed; deterministic decoders (KARL, CAT) do not
        seeded = {"seed": decode_seed} if "seed" in image_tok.decode_options else {}
        gen = image_tok.decode(tokens, **seeded).clamp(0, 1)
        real = images_to_tensor(scenes["images"][:n])
        recon = reconstruct(image_tok, real, e.encode_kwargs or {"num_tokens": e.max_tokens}, seed=decode_seed)

    def score(images: Tensor, target: dict[str, Tensor]) -> dict[str, float]:
        pred = judge.predict(images)
        right = {h: pred[h].cpu() == target[h] for h in ("kind", "colour", "count")}
        return {**{h: float(r.float().mean()) for h, r in right.items()},
                "all": float(torch.stack(list(right.values())).all(0).float().mean())}

    shift = {h: v.roll(1) for h, v in labels.items()}
    g, r, c, s = score(gen, labels), score(real, labels), score(recon, labels), score(gen, shift)
    return {
        "metrics": {
            "image_match": g["all"], "image_kind": g["kind"], "image_colour": g["colour"], "image_count": g["count"],
            "judge_on_real": r["all"], "judge_on_reconstructions": c["all"], "image_match_wrong_caption": s["all"],
            "image_prompts": n,
        },
        "images": gen, "real": real, "recon": recon, "captions": captions,
    }


# ----------------------------------------------------------------------------------------- the judge


class ShapeJudge(torch.nn.Module):
    """A small CNN that names a shape scene's main object: kind, colour and count (the host ViT's API).

    Ours because the shared host ViT (`zoo.reduce.host`) was too weak on kinds when we needed it; it is
    trained by `train_judge` on train-seed scenes of the LM's levels and saved beside the LM (judge.safetensors).
    images: (B, 3, 32, 32) in [0, 1].
    """

    HEADS = {"kind": 5, "colour": 8, "count": 4}

    def __init__(self, width: int = 16) -> None:
        super().__init__()
        w = width
        layers: list[torch.nn.Module] = []
        for cin, cout in ((3, w), (w, 2 * w), (2 * w, 4 * w)):  # 32 -> 16 -> 8 -> 4
            layers += [torch.nn.Conv2d(cin, cout, 3, padding=1), torch.nn.BatchNorm2d(cout), torch.nn.GELU(),
                       torch.nn.Conv2d(cout, cout, 3, padding=1), torch.nn.BatchNorm2d(cout), torch.nn.GELU(),
                       torch.nn.MaxPool2d(2)]
        self.features = torch.nn.Sequential(*layers)
        self.head = torch.nn.Linear(4 * w * 16, sum(self.HEADS.values()))

    def forward(self, images: Tensor) -> dict[str, Tensor]:
        logits = self.head(self.features(images * 2 - 1).flatten(1))
        return dict(zip(self.HEADS, logits.split(list(self.HEADS.values()), dim=-1)))

    @torch.no_grad()
    def predict(self, images: Tensor) -> dict[str, Tensor]:
        """kind, colour: LongTensor [B]; count: LongTensor [B] in 1..4."""
        self.eval()
        out = {h: v.argmax(-1) for h, v in self(images.float()).items()}
        out["count"] = out["count"] + 1
        return out


def train_judge(path: str | Path, levels: Any = (0, 1), n: int = 20000, steps: int = 800, batch_size: int = 64,
                seed: int = 0, tokenizer: Any = None, encode_kwargs: dict[str, Any] | None = None) -> dict[str, Any]:
    """Train `ShapeJudge` on train-seed scenes of `levels`, save it to `path`, return its val accuracy.

    With `tokenizer` (the LM's image tokenizer) half of every batch are its reconstructions of the
    training scenes at the LM's budget `encode_kwargs`, so the judge names the blurred shapes the LM can
    draw at all; trained on sharp scenes only, it named the kind of 30% of CAT's 16-token
    reconstructions of val scenes it names 100% of when sharp. The val accuracy is then also
    measured on reconstructions ("recon_*" keys).
    """
    from safetensors.torch import save_file

    from recipes.lm_data import shape_scenes
    from zoo.data.images import images_to_tensor

    torch.manual_seed(seed)
    train = shape_scenes("train", n, levels, seed=1)  # seed 1: not the scenes the LM trains on
    val = shape_scenes("val", 1000, levels, seed=1)
    x, xv = images_to_tensor(train["images"]), images_to_tensor(val["images"])
    pool = x if tokenizer is None else torch.cat([x, reconstruct(tokenizer, x, encode_kwargs)])  # (n or 2n, 3, H, W)
    y = {"kind": torch.from_numpy(train["label_kind"]), "colour": torch.from_numpy(train["label_colour"]),
         "count": torch.from_numpy(train["label_count"])}
    judge = ShapeJudge()
    opt = torch.optim.AdamW(judge.parameters(), lr=2e-3, weight_decay=0.01)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=2e-3, total_steps=steps)
    judge.train()
    for _ in range(steps):
        idx = torch.randint(0, n, (batch_size,))
        source = torch.randint(0, len(pool) // n, (batch_size,))  # the real scene or its reconstruction
        xb = pool[source * n + idx]
        flip = torch.rand(batch_size) < 0.5  # mirror images keep every label
        xb = torch.where(flip[:, None, None, None], xb.flip(-1), xb)
        logits = judge(xb)
        loss = sum(F.cross_entropy(logits[h], y[h][idx]) for h in ShapeJudge.HEADS)
        opt.zero_grad()
        loss.backward()
        opt.step()
        sched.step()

    def accuracy(images: Tensor, prefix: str = "") -> dict[str, float]:
        pred = judge.predict(images)
        right = [pred["kind"].numpy() == val["label_kind"], pred["colour"].numpy() == val["label_colour"],
                 pred["count"].numpy() - 1 == val["label_count"]]
        return {f"{prefix}kind": float(right[0].mean()), f"{prefix}colour": float(right[1].mean()),
                f"{prefix}count": float(right[2].mean()), f"{prefix}all": float(np.logical_and.reduce(right).mean())}

    acc: dict[str, Any] = {**accuracy(xv), "levels": list(levels), "steps": steps}
    if tokenizer is not None:
        acc.update(accuracy(reconstruct(tokenizer, xv, encode_kwargs), "recon_"))
        acc["encode_kwargs"] = dict(encode_kwargs or {})
    save_file({k: v.contiguous() for k, v in judge.state_dict().items()}, str(path),
              metadata={"val_accuracy": json.dumps(acc)})
    Path(path).chmod(0o644)  # safetensors writes 0600; the judge ships beside the LM
    return acc


@torch.no_grad()
def reconstruct(tokenizer: Any, images: Tensor, encode_kwargs: dict[str, Any] | None = None,
                batch_size: int = 500, seed: int = 0) -> Tensor:
    """images: (B, 3, H, W) in [0, 1] → the tokenizer's reconstructions at the budget `encode_kwargs`.

    Flow decoders (FlexTok) get `seed`, so a reconstruction is reproducible; deterministic decoders
    (KARL, CAT) take none."""
    seeded = {"seed": seed} if "seed" in tokenizer.decode_options else {}
    return torch.cat([tokenizer.decode(tokenizer.encode(images[i:i + batch_size], **(encode_kwargs or {})),
                                       **seeded).clamp(0, 1)
                      for i in range(0, len(images), batch_size)])


JUDGE = "judge.safetensors"


def describe_judge(acc: dict[str, Any]) -> str:
    """'kind 94%, colour 97%, count 91%, all three 85% on 1000 val scenes of levels [0, 1]' (and on their
    reconstructions, when the judge was trained on reconstructions too)."""
    if not acc:
        return "not measured"
    text = (f"kind {acc['kind']:.0%}, colour {acc['colour']:.0%}, count {acc['count']:.0%}, all three {acc['all']:.0%} "
            f"on 1000 val scenes of levels {acc['levels']}")
    if "recon_all" in acc:
        text += (f"; trained on real scenes and on the image tokenizer's reconstructions of them at {acc['encode_kwargs']}, "
                 f"it gets all three right on {acc['recon_all']:.0%} of the val scenes' reconstructions")
    return text


def judge_accuracy(path: str | Path) -> dict[str, Any]:
    """The val accuracy `train_judge` stored in the judge file's metadata."""
    from safetensors import safe_open

    with safe_open(str(path), "pt") as f:
        return json.loads((f.metadata() or {}).get("val_accuracy", "{}"))


def load_judge(path: str | Path | None = None) -> Any:
    """The judge of generated images: our ShapeJudge at `path` (beside the LM), else the shared host ViT."""
    if path is not None and Path(path).is_file():
        from safetensors.torch import load_file

        judge = ShapeJudge()
        judge.load_state_dict(load_file(str(path)), strict=True)
        return judge.eval()
    from zoo.reduce.host import load_host_classifier

    return load_host_classifier()


def measure(lm: MultimodalLM, *, action_samples: int = 4, image_prompts: int = 128, image_levels: Any = (0,),
            temperature: float = 1.0, seed: int = 0, judge: Any = None, scale: bool = True,
            guidance: float = 1.0) -> dict[str, Any]:
    """Every card number of the LM, from samples decoded by the tokenizers its vocabulary names.

    The protocol (these arguments) is stored in the card's summary, so a test can measure again.

    Args:
        judge: the image judge (`load_judge(...)`); default the shared host ViT.
        guidance: the classifier-free guidance scale every sample is drawn with (1.0: none).
    """
    from recipes.lm_data import shape_scenes

    protocol = {"action_samples": action_samples, "image_prompts": image_prompts, "image_levels": list(image_levels),
                "temperature": temperature, "seed": seed, "guidance": guidance}
    out: dict[str, Any] = {"protocol": protocol}
    names = [e.name for e in lm.vocab.entries]
    if ACTION in names:
        from zoo.data.actions import load_lasa

        beast = lm.vocab.load_tokenizer(ACTION)
        x, shapes = load_lasa("train", beast.config.num_steps)
        out[ACTION] = evaluate_actions(lm, beast, x, shapes, samples=action_samples, temperature=temperature, seed=seed,
                                       scale=scale, guidance=guidance)
    if IMAGE in names:
        scenes = shape_scenes("val", image_prompts, image_levels)
        out[IMAGE] = evaluate_images(lm, lm.vocab.load_tokenizer(IMAGE), judge or load_judge(), scenes, n=image_prompts,
                                     temperature=temperature, seed=seed, guidance=guidance)
    return out


# ----------------------------------------------------------------------------------------- export


class ExportLM(pl.Callback):
    """At the end of `fit`, measure the LM by sampling and write it (weights, vocabulary, text tokenizer, card)."""

    def __init__(self, directory: str, name: str, recipe: str = "", action_samples: int = 4,
                 image_prompts: int = 128, judge: str | None = None, judge_steps: int = 800,
                 guidance: float = 1.0) -> None:
        self.directory, self.name, self.recipe, self.guidance = directory, name, recipe, guidance
        self.action_samples, self.image_prompts = action_samples, image_prompts
        self.judge, self.judge_steps = judge, judge_steps
        self.start = time.time()

    def on_fit_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self.start = time.time()

    def on_fit_end(self, trainer: pl.Trainer, pl_module: InterleavedLM) -> None:
        if not trainer.is_global_zero:
            return
        val = {k.split("/", 1)[1]: float(v) for k, v in trainer.callback_metrics.items() if k.startswith("val/")}
        export_lm(pl_module.lm, self.directory, name=self.name, dm=trainer.datamodule, recipe=self.recipe,
                  seconds=time.time() - self.start, global_step=trainer.global_step, val=val,
                  action_samples=self.action_samples, image_prompts=self.image_prompts, judge=self.judge,
                  judge_steps=self.judge_steps, guidance=self.guidance)


def export_lm(lm: MultimodalLM, directory: str | Path, *, name: str, dm: InterleavedData, recipe: str, seconds: float,
              global_step: int, val: dict[str, float], action_samples: int = 4, image_prompts: int = 128,
              judge: str | None = None, judge_steps: int = 800, guidance: float = 1.0) -> dict[str, Any]:
    """Save `lm` in float16, measure the saved weights by sampling (at classifier-free guidance scale
    `guidance`), and write the card; returns the summary."""
    lm.save_pretrained(directory, dtype=torch.float16)
    lm = MultimodalLM.from_pretrained(directory)
    judge_model, judge_acc = None, {}
    if IMAGE in [e.name for e in lm.vocab.entries]:
        path = Path(directory) / JUDGE
        if judge and Path(judge).is_file():
            path.write_bytes(Path(judge).read_bytes())
        elif not path.is_file():  # a judge already beside the LM (trained by an earlier run) is kept
            entry = lm.vocab.entry(IMAGE)
            train_judge(path, levels=sorted(dm.h.image_levels), steps=judge_steps,
                        tokenizer=lm.vocab.load_tokenizer(IMAGE),
                        encode_kwargs=entry.encode_kwargs or {"num_tokens": entry.max_tokens})
        judge_model, judge_acc = load_judge(path), judge_accuracy(path)
    results = measure(lm, action_samples=action_samples, image_prompts=image_prompts,
                      image_levels=dm.h.image_levels, judge=judge_model, guidance=guidance)
    metrics = {f"val_{k}": v for k, v in val.items()}
    for key in (ACTION, IMAGE):
        if key in results:
            metrics.update(results[key]["metrics"])
    summary = {"description": describe_lm(lm), "params": sum(p.numel() for p in lm.model.parameters()),
               "judge": {"file": JUDGE, "val_accuracy": judge_acc} if judge_acc else {},
               "train_seconds": seconds, "global_step": global_step, "protocol": results["protocol"],
               "metrics": metrics}
    lm.save_pretrained(directory, card=lm_card(name, lm, dm, summary, recipe, seconds), summary=summary,
                       dtype=torch.float16)
    (Path(directory) / "train_log.json").write_text(json.dumps(
        {"seconds": seconds, "global_step": global_step, "metrics": metrics}, indent=1))
    return summary


def describe_lm(lm: MultimodalLM) -> str:
    c = lm.model.config
    parts = [f"{e.name} ({e.tokenizer}, {e.max_tokens} tokens" + (f" in digits {list(e.digits)}" if e.digits else "") + ")"
             for e in lm.vocab.entries]
    return (f"A tiny GPT-2 ({c.n_layer} layers, width {c.n_embd}, {c.n_head} heads) over a joint vocabulary of "
            f"{lm.vocab.size} ids: {lm.vocab.text_size} words and " + ", ".join(parts) + ".")


def guidance_note(protocol: dict[str, Any]) -> str:
    """The card's sentence on classifier-free guidance ('' when the samples were drawn without it)."""
    s = protocol.get("guidance", 1.0)
    if s == 1.0:
        return ""
    return (f"\nEvery sample is drawn with classifier-free guidance at scale {s} (`MultimodalLM.generate(..., "
            f"guidance={s})`, against the empty prompt that condition dropout trained), the scale picked on these "
            "val prompts; `python benchmarks/llm.py` measures the other scales (BENCHMARKS.md).")


def lm_card(name: str, lm: MultimodalLM, dm: InterleavedData, summary: dict[str, Any], recipe: str, seconds: float) -> str:
    rows = "\n".join(f"| {k} | {v:.4g} |" if isinstance(v, float) else f"| {k} | {v} |"
                     for k, v in summary["metrics"].items())
    ranges = "\n".join(f"| {k} | [{a}, {b}) |" for k, (a, b) in lm.vocab.ranges().items())
    return f"""# {name}

{summary['description']} Not a tokenizer: a demonstration that the zoo's tokens plug into an LLM.
It is not in `zoo list`; load it with `zoo.llm.MultimodalLM.from_pretrained("checkpoints/{name}")`.

## Vocabulary (`vocabulary.json`)
| range | ids |
|---|---|
{ranges}

## Data
{dm.describe()}

## Recipe
{recipe if "`" in recipe else f"`{recipe}`"}; {seconds / 60:.1f} minutes, {summary['global_step']} steps on {platform.machine()} CPU
({torch.get_num_threads()} thread(s)), torch {torch.__version__}; {summary['params'] / 1e6:.2f} M parameters.

## Measured (sampling at temperature {summary['protocol']['temperature']}, seed {summary['protocol']['seed']}, classifier-free guidance {summary['protocol'].get('guidance', 1.0)})
Actions: {summary['protocol']['action_samples']} samples per training-shape name, decoded by BEAST; the shape
matches when the nearest of all 168 training demonstrations (DTW over 50 resampled steps, or MSE) is of
the named shape (chance 1/24). Images: one sample per val-seed caption, decoded by the image tokenizer and
judged by `judge.safetensors` (a small CNN trained on train-seed shape scenes; val accuracy
{describe_judge(summary.get('judge', {}).get('val_accuracy', {}))}); a match needs kind, colour and count all right.{guidance_note(summary['protocol'])}

| metric | value |
|---|---|
{rows}

## Licence
Weights: Apache-2.0, trained by the zoo recipe above on data built offline by `zoo.data`.
"""


def remeasure(config: str | Path, judge_steps: int = 800, keep_judge: bool = False) -> dict[str, Any]:
    """Measure an LM trained by `config` again (a new judge, the current protocol) without training it.

    The LM, its training time and its validation losses are read from the checkpoint directory that the
    config's ExportLM callback wrote; the judge beside it is trained afresh unless `keep_judge`. Samples
    are drawn at the ExportLM's `guidance` scale.
    """
    import yaml

    cfg = yaml.safe_load(Path(config).read_text())
    export = next(cb["init_args"] for cb in cfg["trainer"]["callbacks"] if cb["class_path"].endswith("ExportLM"))
    directory = Path(export["directory"])
    log = json.loads((directory / "train_log.json").read_text())
    val = {k[len("val_"):]: v for k, v in log["metrics"].items() if k.startswith("val_")}
    if not keep_judge:
        (directory / JUDGE).unlink(missing_ok=True)
    return export_lm(MultimodalLM.from_pretrained(directory), directory, name=export["name"],
                     dm=InterleavedData(**cfg["data"]["init_args"]), recipe=export.get("recipe", ""),
                     seconds=log["seconds"], global_step=log["global_step"], val=val,
                     action_samples=export.get("action_samples", 4), image_prompts=export.get("image_prompts", 128),
                     judge_steps=judge_steps, guidance=export.get("guidance", 1.0))


if __name__ == "__main__":
    import argparse

    parser = argparse.ArgumentParser(description="Measure a trained LM again (new judge) without training it.")
    parser.add_argument("config", help="the LM's training config, e.g. configs/lm/tiny-interleaved.yaml")
    parser.add_argument("--judge-steps", type=int, default=800)
    parser.add_argument("--keep-judge", action="store_true", help="keep the judge beside the LM (do not retrain it)")
    args = parser.parse_args()
    print(json.dumps(remeasure(args.config, args.judge_steps, args.keep_judge)["metrics"], indent=1))
