"""Train the demo LM: a tiny GPT-2 that writes image and action tokens through the joint vocabulary.

    zoo train configs/lm/tiny-interleaved.yaml       # writes checkpoints/lm-tiny-interleaved

The LightningModule owns the loss (next-id cross-entropy, pads ignored), the optimiser (AdamW, no
decay on biases, norms and embeddings) and the schedule (linear warm-up, cosine to 10%); the model
itself is `zoo.llm.MultimodalLM`, which knows nothing of training. `ExportLM` measures the trained
LM with `zoo.llm.evaluate` (sampling from it and decoding with the zoo tokenizers; `train_judge` here
trains its image judge) and writes the checkpoint with its card.
"""

from __future__ import annotations

import json
import platform
import time
from pathlib import Path
from typing import Any

import lightning.pytorch as pl
import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from recipes.base import Recipe
from recipes.export import announce, run_folder
from recipes.lm_data import InterleavedData
from zoo.llm import MultimodalLM
from zoo.llm.evaluate import (ACTION, IMAGE, JUDGE, ShapeJudge, describe_judge, judge_accuracy, load_judge, measure,
                              reconstruct)


class InterleavedLM(Recipe):
    """Next-id training of a `MultimodalLM` built (at setup) for the datamodule's vocabulary.

    Args:
        n_layer, n_embd, n_head, n_positions, dropout: the GPT-2 config.
        lr, betas: AdamW's peak learning rate and betas; weight_decay on weight matrices only (not the embeddings).
        warmup_steps: linear warm-up, times a cosine decay to `min_lr_ratio * lr` at `trainer.max_steps`, or
            at `budget_seconds` of training if that comes first (set `trainer.max_time` to match), so a
            run cut by the clock on a busy machine still ends its schedule (`recipes.base.warmup_cosine`).
        threads: torch CPU threads (None: leave as is).
        init_from: start from the weights of a saved LM (anything `zoo.load` takes: a run folder such as
            "runs/lm-tiny-interleaved-base", or a registered name such as "lm-tiny-interleaved") to continue its training; its vocabulary, text tokenizer and
            architecture must be the ones this run builds (ValueError otherwise).
    """

    def __init__(self, n_layer: int = 4, n_embd: int = 256, n_head: int = 4, n_positions: int = 160,
                 dropout: float = 0.1, lr: float = 1e-3, weight_decay: float = 0.1, warmup_steps: int = 100,
                 min_lr_ratio: float = 0.1, budget_seconds: float | None = None, threads: int | None = 1,
                 init_from: str | None = None, betas: tuple[float, float] = (0.9, 0.95)) -> None:
        super().__init__()
        if threads:
            torch.set_num_threads(threads)  # the machines are shared: one thread per training by default
        self.save_hyperparameters()
        self.lm: MultimodalLM | None = None
        self.start_time: float | None = None

    no_decay_keys = ("wte", "wpe")

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
        self.init_model(self.lm.model.train(), ema=False)  # a submodule, so Lightning moves and optimises it

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


def initial_weights(source: str | Path, lm: MultimodalLM) -> dict[str, Tensor]:
    """The state dict of the saved LM `source` (anything `zoo.load` takes: a run folder, a registered name),
    checked to fit `lm`."""
    saved = MultimodalLM.from_pretrained(source)
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


# ----------------------------------------------------------------------------------------- the judge's training


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

    from zoo.data.images import images_to_tensor, shape_scenes

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



# ----------------------------------------------------------------------------------------- export


class ExportLM(pl.Callback):
    """At the end of `fit`, measure the LM by sampling and write it (weights, vocabulary, text tokenizer, card)
    into `directory` (`zoo train` sets it to the run folder, runs/<name>/), else `<trainer.default_root_dir>/<name>`."""

    def __init__(self, directory: str | None = None, name: str = "lm", recipe: str = "", action_samples: int = 4,
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
        directory = run_folder(self.directory or Path(trainer.default_root_dir) / self.name)
        export_lm(pl_module.lm, directory, name=self.name, dm=trainer.datamodule, recipe=self.recipe,
                  seconds=time.time() - self.start, global_step=trainer.global_step, val=val,
                  action_samples=self.action_samples, image_prompts=self.image_prompts, judge=self.judge,
                  judge_steps=self.judge_steps, guidance=self.guidance)
        announce(directory)


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
    judge_file = Path(directory) / JUDGE
    lm.save_pretrained(directory, card=lm_card(name, lm, dm, summary, recipe, seconds), summary=summary,
                       dtype=torch.float16, files={JUDGE: judge_file.read_bytes()} if judge_file.is_file() else None)
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
It is not in `zoo list`; load it with `zoo.load("{name}")` once shipped (a `zoo.llm.MultimodalLM`).

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


def remeasure(config: str | Path, judge_steps: int = 800, keep_judge: bool = False,
              directory: str | Path | None = None) -> dict[str, Any]:
    """Measure an LM trained by `config` again (a new judge, the current protocol) without training it.

    The LM, its training time and its validation losses are read from the checkpoint directory that the
    config's ExportLM callback wrote; the judge beside it is trained afresh unless `keep_judge`. Samples
    are drawn at the ExportLM's `guidance` scale.
    """
    import yaml

    from recipes.train import RUNS

    cfg = yaml.safe_load(Path(config).read_text())
    export = next(cb["init_args"] for cb in cfg["trainer"]["callbacks"] if cb["class_path"].endswith("ExportLM"))
    directory = Path(directory or export.get("directory") or RUNS / export["name"])
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
