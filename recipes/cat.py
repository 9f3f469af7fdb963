"""Training CAT in one run, two phases: the nested autoencoder, then the ratio estimator.

The model (`zoo.image.cat.CAT`) only encodes, quantises, decodes and estimates; this module owns the
losses, the phases, the optimiser, the schedule and the weight average.

Phase 1 (the first `ae_fraction` of the budget): every step encodes the batch once through the shared
trunk and decodes it at every ratio; the loss is the sum over ratios of MSE + `l1_weight`·L1 on
[-1, 1] pixels, plus `kl_weight`·KL for the continuous variant (FSQ has none). The weights are
averaged (EMA) as in recipes/flextok.py.

Phase 2 (the rest): the averaged autoencoder is frozen, and the estimator learns to predict, from the
averaged trunk's features, the PSNR that autoencoder reaches on this image at each ratio (L1 in dB,
targets clipped at `max_psnr`, where a few flat images are near lossless). The estimator is averaged too.
One Lightning optimiser holds both groups; the base's schedule (recipes/base.py, groups with a `phase`)
gives each a linear warmup and a cosine over its own phase and zero LR outside it, and only the active phase
has gradients. Phase boundaries follow whichever is further along: trainer.max_steps or `budget_seconds`.

`init_from=<checkpoint folder>` with `ae_fraction=0` runs phase 2 alone on a saved autoencoder (a
second-stage config, e.g. to give the estimator more time without retraining the autoencoder).
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import torch
from einops import rearrange
from torch import Tensor

from recipes.base import Recipe, ema_decay, update_average
from zoo.evaluate import cat_ratio_psnr
from zoo.image.cat import CAT


class CATModule(Recipe):
    """Args:
        preset: a `CATConfig` preset name; `config` overrides its fields.
        lr, weight_decay, betas, warmup_steps: AdamW and the linear warmup of the autoencoder phase.
        estimator_lr: AdamW LR of the estimator phase.
        budget_seconds: the run's time budget (both phases); None: trainer.max_steps alone.
        ae_fraction: share of the budget given to the autoencoder; the rest trains the estimator.
        ema_decay: weight average used for validation, the estimator's targets and export.
        l1_weight, kl_weight: loss weights besides the MSE (kl applies to quantizer="kl").
        max_psnr: clip of the estimator's PSNR targets.
        eval_qualities: the eps (MSE) reported on the card for ratio='auto'.
        check_images: the card also reports PSNR on the first `check_images` val images (tests use it).
        init_from: a CAT checkpoint to start from (a folder, or anything `zoo.load` accepts; its config replaces `preset`/`config`); with
            `ae_fraction=0` the run only (re)trains the estimator on that frozen autoencoder.
    """

    def __init__(self, preset: str = "tiny", config: dict[str, Any] | None = None, lr: float = 1e-3,
                 weight_decay: float = 0.01, betas: tuple[float, float] = (0.9, 0.99), warmup_steps: int = 100,
                 estimator_lr: float = 1e-3, budget_seconds: float | None = None, ae_fraction: float = 0.85,
                 ema_decay: float = 0.999, l1_weight: float = 0.1, kl_weight: float = 1e-4, max_psnr: float = 50.0,
                 eval_qualities: tuple[float, ...] = (0.01, 0.004, 0.002, 0.001, 0.0005),
                 check_images: int = 64, init_from: str | None = None) -> None:
        super().__init__()
        if not (0 <= ae_fraction < 1 if init_from else 0 < ae_fraction < 1):
            raise ValueError(f"ae_fraction must lie in (0, 1) (or [0, 1) with init_from), got {ae_fraction}")
        self.save_hyperparameters()
        self.init_preset(CAT, preset, config, init_from)

    # -- phases and schedule ----------------------------------------------------------------------------

    @property
    def phase(self) -> int:
        return 1 if self.progress() < self.hparams.ae_fraction else 2

    def param_groups(self) -> list[dict[str, Any]]:
        """The autoencoder (two groups: weight decay on matrices) trains over the first `ae_fraction` of the budget,
        the estimator (its own LR, weight decay on every parameter, a 20-step warmup) over the rest."""
        hp = self.hparams
        autoencoder = [m for name, m in self.model.named_children() if name != "estimator"]
        return [*super().param_groups(*autoencoder, phase=(0.0, hp.ae_fraction)),
                {"params": list(self.model.estimator.parameters()), "weight_decay": hp.weight_decay,
                 "lr": hp.estimator_lr, "phase": (hp.ae_fraction, 1.0), "warmup_steps": 20}]

    # -- phase 1: the autoencoder ---------------------------------------------------------------------

    def ae_losses(self, images: Tensor) -> dict[str, Tensor]:
        """images: (B, 3, S, S) in [0, 1] → {"loss", and per ratio r: "mse_r", "l1_r", "kl_r"}."""
        hp, model = self.hparams, self.model
        x = images * 2 - 1
        raws = model.raw_latents(model.features(x))
        out: dict[str, Tensor] = {}
        total = x.new_zeros(())
        for level, (r, raw) in enumerate(zip(model.config.ratios, raws)):
            z, _, logvar = model.latent(raw, sample=True)
            x_hat = model.decode_latent(z, level)
            mse, l1 = (x_hat - x).pow(2).mean(), (x_hat - x).abs().mean()
            kl = x.new_zeros(())
            if logvar is not None:  # z was sampled around the mean: the KL needs the mean itself
                mean = rearrange(raw, "b d h w -> b (h w) d").chunk(2, dim=-1)[0]
                kl = 0.5 * (mean.pow(2) + logvar.exp() - 1 - logvar).mean()
            out.update({f"mse_r{r}": mse, f"l1_r{r}": l1, f"kl_r{r}": kl})
            total = total + mse + hp.l1_weight * l1 + hp.kl_weight * kl
        out["loss"] = total
        return out

    # -- phase 2: the estimator -----------------------------------------------------------------------

    def estimator_loss(self, images: Tensor) -> dict[str, Tensor]:
        target = cat_ratio_psnr(self.ema, images).clamp(max=self.hparams.max_psnr)
        with torch.no_grad():
            features = self.ema.features(images * 2 - 1)
        pred = self.model.estimator(features)
        err = (pred - target).abs()
        return {"loss": err.mean(), **{f"est_l1_r{r}": err[:, i].mean() for i, r in enumerate(self.model.config.ratios)}}

    # -- the step, EMA --------------------------------------------------------------------------------

    def training_step(self, batch: dict[str, Tensor], batch_idx: int) -> Tensor:
        phase = self.phase
        self.model.train()
        out = self.ae_losses(batch["image"]) if phase == 1 else self.estimator_loss(batch["image"])
        for k, v in out.items():
            self.log(f"train/{k}", v, prog_bar=k == "loss")
        self.log("train/phase", float(phase))
        return out["loss"]

    def on_train_batch_end(self, *args: Any) -> None:
        if self.hparams.budget_seconds and self.progress() >= 1:  # both phases are done: stop, export
            self.trainer.should_stop = True

    @torch.no_grad()
    def update_ema(self) -> None:
        """Phase 1 averages the autoencoder; phase 2 leaves it frozen and averages the estimator."""
        decay = ema_decay(self.hparams.ema_decay, self.global_step)
        if self.phase == 1:
            pairs = [(e, p) for (n, e), p in zip(self.ema.named_parameters(), self.model.parameters())
                     if not n.startswith("estimator.")]
        else:
            pairs = list(zip(self.ema.estimator.parameters(), self.model.estimator.parameters()))
            decay = min(decay, 0.99)  # a short phase: a shorter average
        update_average((e for e, _ in pairs), (p for _, p in pairs), decay)

    # -- validation and the card ----------------------------------------------------------------------

    def validation_step(self, batch: dict[str, Tensor], batch_idx: int) -> None:
        images = batch["image"]
        true = cat_ratio_psnr(self.ema, images)
        pred = self.ema.predict_psnr(images)
        for i, r in enumerate(self.ema.config.ratios):
            self.log(f"val/psnr_r{r}", true[:, i].mean(), batch_size=images.shape[0])
            self.log(f"val/est_l1_r{r}", (pred[:, i] - true[:, i].clamp(max=self.hparams.max_psnr)).abs().mean(),
                     batch_size=images.shape[0])

    @torch.no_grad()
    def card_metrics(self, datamodule: Any) -> dict[str, float]:
        """On the mixed val set: PSNR per fixed ratio, PSNR and mean tokens of 'auto' at each eps,
        the estimator's mean absolute error, and PSNR on the first `check_images` images."""
        return measure(self.tokenizer.eval(), datamodule.val_images().to(self.device),
                       self.hparams.eval_qualities, self.hparams.check_images, self.hparams.max_psnr, self)

    def card_summary(self) -> dict[str, Any]:
        c = self.tokenizer.config
        tokens = "/".join(str(c.num_tokens(r)) for r in c.ratios)
        kind = (f"FSQ ids, vocabulary {c.vocab_size} (levels {list(c.fsq_levels)})" if c.quantizer == "fsq"
                else f"continuous KL latents of {c.latent_dim} channels")
        return {
            "description": (f"CAT: {c.image_size}x{c.image_size} RGB → {tokens} tokens (ratios {list(c.ratios)}) of "
                            f"{kind}; one nested convolutional autoencoder (widths {list(c.channels)}) and a learned "
                            f"estimator of the PSNR at each ratio, so `encode(x, ratio='auto', quality=mse)` picks "
                            f"the coarsest ratio that meets the target."),
            "tokens": f"{tokens} (ratios {'/'.join(map(str, c.ratios))}, per image)",
            "bits": round(c.num_tokens(c.ratios[0]) * math.log2(c.vocab_size), 1) if c.vocab_size else 0,
            "headline": self.headline(),
        }

    def headline(self) -> str:
        m = getattr(self, "last_card_metrics", {})
        c = self.tokenizer.config
        eps = c.default_quality
        if f"auto_psnr_q{eps:g}" not in m:
            return ""
        return (f"auto (eps {eps:g}): {m[f'auto_psnr_q{eps:g}']:.2f} dB at {m[f'auto_tokens_q{eps:g}']:.1f} tokens; "
                f"fixed {c.num_tokens(c.ratios[0])} tokens: {m[f'psnr_r{c.ratios[0]}']:.2f} dB (mixed val)")


@torch.no_grad()
@torch.no_grad()
def measure(tok: CAT, images: Tensor, qualities: tuple[float, ...], check_images: int = 64,
            max_psnr: float = 50.0, module: CATModule | None = None) -> dict[str, float]:
    """The card's numbers for `tok` on `images` (B, 3, S, S) in [0, 1]: see `CATModule.card_metrics`."""
    c = tok.config
    qualities = sorted({*qualities, c.default_quality}, reverse=True)
    true = torch.cat([cat_ratio_psnr(tok, chunk) for chunk in images.split(64)])  # (N, R)
    pred = torch.cat([tok.predict_psnr(chunk) for chunk in images.split(64)])
    out: dict[str, float] = {}
    for i, r in enumerate(c.ratios):
        out[f"psnr_r{r}"] = float(true[:, i].mean())
        out[f"tokens_r{r}"] = float(c.num_tokens(r))
    for eps in qualities:
        levels = tok.choose_levels(pred, eps)
        psnr = true.gather(1, levels[:, None]).squeeze(1)
        out[f"auto_psnr_q{eps:g}"] = float(psnr.mean())
        out[f"auto_tokens_q{eps:g}"] = float(torch.tensor([c.num_tokens(c.ratios[i]) for i in levels.tolist()]).float().mean())
    out["estimator_mae_db"] = float((pred - true.clamp(max=max_psnr)).abs().mean())
    n = min(check_images, len(images))
    out[f"check_psnr_r{c.ratios[0]}_first{n}"] = float(true[:n, 0].mean())
    out[f"check_auto_psnr_first{n}"] = float(true[:n].gather(1, tok.choose_levels(pred[:n], c.default_quality)[:, None]).mean())
    out["val_images"] = float(len(images))
    if module is not None:
        module.last_card_metrics = out
    return out


def remeasure_card(directory: str, name: str, data: str, recipe: str, notes: str = "",
                   default_quality: float | None = None, **module_kwargs: Any) -> dict[str, float]:
    """Measure a saved CAT checkpoint again and rewrite its card, optionally with a new `default_quality`.

    `python -c "from recipes.cat import remeasure_card; remeasure_card('checkpoints/cat-tiny-nat32', ...)"`
    keeps the weights and the recorded training time (train_log.json) and replaces the metrics.
    """
    import dataclasses

    from recipes.export import rewrite_card
    from recipes.image_data import ImageDataModule
    from zoo import hub

    tok = hub.load_dir(Path(directory))
    if default_quality is not None:
        tok.config = dataclasses.replace(tok.config, default_quality=default_quality)
    module = CATModule(config=dataclasses.asdict(tok.config), **module_kwargs)
    module.ema = tok
    return rewrite_card(module, directory, ImageDataModule(), name=name, data=data, recipe=recipe, notes=notes)
