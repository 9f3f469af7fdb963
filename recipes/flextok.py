"""Training FlexTok: rectified-flow loss, nested dropout of register prefixes, EMA, cosine LR.

The model (`zoo.image.flextok.FlexTok`) only encodes, quantises and denoises; this module owns the
noise, the time sampling, the loss, the prefix schedule, the optimiser and the weight average.

Per step, one prefix length k is drawn for the whole batch, log-uniformly in 1..K (each doubling of k
is equally likely, as in the paper's powers-of-two schedule, but every k occurs), so encoder and
decoder only run on N + k tokens; a fraction `p_uncond` of the samples keeps no register at all,
which trains the unconditional model of classifier-free guidance. `nested_dropout=False` trains a
fixed-length baseline (k = K always).

Loss (x-prediction, v-loss, as in JiT): z_t = (1 - t)·ε + t·x, t ~ logit-normal; the model predicts
x̂, and the loss is ‖(x̂ - z_t)/(1 - t) - (x - ε)‖², with 1 - t clipped at `t_eps` (so the weight on
‖x̂ - x‖² is at most 1/t_eps²).
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import Tensor

from recipes.base import Recipe, log_uniform_ints
from zoo import metrics
from zoo.image.flextok import FlexTok


class FlexTokModule(Recipe):
    """Args:
        preset: a `FlexTokConfig` preset name; `config` overrides its fields.
        nested_dropout: draw a prefix k per step (FlexTok); False trains at k = K (a fixed-length baseline).
        p_uncond: fraction of samples trained without registers (for guidance).
        lr, weight_decay, betas, warmup_steps: AdamW and its linear warmup.
        budget_seconds: cosine LR decay over whichever ends first, trainer.max_steps or this many seconds.
        ema_decay: weight average used for validation and export.
        t_mean, t_std: logit-normal time sampling. The default (-2, 1) puts ~40% of samples at t < 0.1,
            where the noisy image says nothing and the registers must carry the image: with a short
            CPU budget, the JiT-like (-0.8, 0.8) left the registers unused after 600 steps (decoding
            became unconditional generation, val PSNR 11.8 dB at every k).
        t_eps: clip of 1 - t in the v-loss.
        eval_tokens: prefix lengths reported on the card (clipped to K).
        eval_steps: Euler steps for validation and the card (default: the config's).
        check_images: the card also records PSNR at K on the first this many val images (the test re-measures it).
        readout_weight: weight of an MSE on the model's linear read-out of the kept codes alone (ours), which
            pushes the codes toward a linear (PCA-like) code of the image early in training.
        uniform_prefix: fraction of steps whose k is drawn uniformly in 1..K instead of log-uniformly (ours):
            log-uniform trains the long prefixes rarely (k >= K/2 in one step of six at K = 64).
        init_from: a FlexTok checkpoint to fine-tune (a folder, or anything `zoo.load` accepts); its config
            replaces `preset`/`config`.
    """

    def __init__(self, preset: str = "tiny", config: dict[str, Any] | None = None, nested_dropout: bool = True,
                 p_uncond: float = 0.1, lr: float = 5e-4, weight_decay: float = 0.01,
                 betas: tuple[float, float] = (0.9, 0.99), warmup_steps: int = 200,
                 budget_seconds: float | None = None, ema_decay: float = 0.999, t_mean: float = -2.0,
                 t_std: float = 1.0, t_eps: float = 0.25, eval_tokens: tuple[int, ...] = (1, 2, 4, 8, 16, 32, 64),
                 eval_steps: int | None = None, check_images: int = 64, readout_weight: float = 0.0,
                 uniform_prefix: float = 0.0, init_from: str | None = None) -> None:
        super().__init__()
        self.save_hyperparameters()
        self.init_preset(FlexTok, preset, config, init_from)

    # -- the loss -------------------------------------------------------------------------------------

    def sample_prefix(self) -> int:
        k_max = self.model.config.num_registers
        if not self.hparams.nested_dropout:
            return k_max
        if self.hparams.uniform_prefix > 0 and torch.rand(()).item() < self.hparams.uniform_prefix:
            return int(torch.randint(1, k_max + 1, ()))
        return int(log_uniform_ints(k_max))

    def losses(self, images: Tensor, k: int) -> dict[str, Tensor]:
        """images: (B, 3, S, S) in [0, 1]; k: kept registers → {"flow", "readout", "loss"} (scalars).

        "flow" is the v-loss; "readout" the MSE of the model's linear read-out of the k codes alone
        (0 when the model has none); "loss" = flow + readout_weight · readout.
        """
        hp = self.hparams
        x = images * 2 - 1
        b = x.shape[0]
        codes, _ = self.model.quantize(x, k)
        full = torch.full((b,), k, dtype=torch.long, device=x.device)
        lengths = torch.where(torch.rand(b, device=x.device) < hp.p_uncond, 0, full)
        t = torch.sigmoid(torch.randn(b, device=x.device) * hp.t_std + hp.t_mean)
        noise = torch.randn_like(x)
        tt = t[:, None, None, None]
        z = (1 - tt) * noise + tt * x
        x_hat = self.model.denoise(z, t, codes, lengths)
        v_hat = (x_hat - z) / (1 - tt).clamp_min(hp.t_eps)
        flow = (v_hat - (x - noise)).pow(2).mean()
        coarse = self.model.readout(codes, full)
        readout = (coarse - x).pow(2).mean() if coarse is not None else flow.new_zeros(())
        return {"flow": flow, "readout": readout, "loss": flow + hp.readout_weight * readout}

    def flow_loss(self, images: Tensor, k: int) -> Tensor:
        """images: (B, 3, S, S) in [0, 1]; k: kept registers → the scalar training loss."""
        return self.losses(images, k)["loss"]

    def training_step(self, batch: dict[str, Tensor], batch_idx: int) -> Tensor:
        k = self.sample_prefix()
        parts = self.losses(batch["image"], k)
        self.log("train/loss", parts["loss"], prog_bar=True)
        self.log("train/flow", parts["flow"])
        self.log("train/readout", parts["readout"])
        self.log("train/k", float(k))
        return parts["loss"]

    no_decay_keys = ("pos", "registers")

    # -- validation and the card ----------------------------------------------------------------------

    def _psnr(self, images: Tensor, k: int) -> Tensor:
        tok = self.tokenizer
        x_hat = tok.decode(tok.encode(images, num_tokens=k), steps=self.hparams.eval_steps, seed=0)
        return metrics.psnr(x_hat, images)

    def validation_step(self, batch: dict[str, Tensor], batch_idx: int) -> None:
        images = batch["image"]
        k_max = self.tokenizer.config.num_registers
        for k in sorted({min(8, k_max), k_max}):
            self.log(f"val/psnr_k{k}", self._psnr(images, k).mean(), batch_size=images.shape[0])

    def eval_tokens(self) -> list[int]:
        k_max = self.tokenizer.config.num_registers
        return sorted({min(k, k_max) for k in self.hparams.eval_tokens} | {k_max})

    @torch.no_grad()
    def card_metrics(self, datamodule: Any) -> dict[str, float]:
        """PSNR and SSIM on the mixed val set for each k (at `eval_steps` and with 1 Euler step, the decoder's
        mean estimate), and the PSNR at K on the first `check_images`."""
        images = datamodule.val_images().to(self.device)
        tok = self.tokenizer.eval()
        out: dict[str, float] = {}
        for k in self.eval_tokens():
            for steps, suffix in ((self.hparams.eval_steps, ""), (1, "_1step")):
                x_hat = torch.cat([tok.decode(tok.encode(chunk, num_tokens=k), steps=steps, seed=0)
                                   for chunk in images.split(64)])
                out[f"psnr_k{k}{suffix}"] = float(metrics.psnr(x_hat, images).mean())
                out[f"ssim_k{k}{suffix}"] = float(metrics.ssim(x_hat, images).mean())
        k_max = tok.config.num_registers
        out[f"check_psnr_k{k_max}_first{self.hparams.check_images}"] = float(self._psnr(images[: self.hparams.check_images], k_max).mean())
        out["val_images"] = float(len(images))
        out["decode_steps"] = float(self.hparams.eval_steps or tok.config.steps)
        self.last_card_metrics = out
        return out

    def card_summary(self) -> dict[str, Any]:
        tok = self.tokenizer
        c = tok.config
        kind = "FlexTok" if self.hparams.nested_dropout else "fixed-length baseline (no nested dropout)"
        return {
            "description": (f"{kind}: {c.image_size}x{c.image_size} RGB → 1..{c.num_registers} tokens of an FSQ "
                            f"vocabulary of {c.vocab_size} (levels {list(c.fsq_levels)}), rectified-flow decoder "
                            f"({c.steps} Euler step{'' if c.steps == 1 else 's'} by default). "
                            f"Encoder {c.encoder_dim}x{c.encoder_depth}, decoder {c.decoder_dim}x{c.decoder_depth}, "
                            f"patch {c.patch_size}."),
            "tokens": f"1-{c.num_registers}",
            "bits": round(c.num_registers * math.log2(c.vocab_size), 1),
            "headline": self.headline(),
        }

    def headline(self) -> str:
        m = getattr(self, "last_card_metrics", {})
        k_max = self.tokenizer.config.num_registers
        if f"psnr_k{k_max}" not in m:
            return ""
        ks = [k_max] + ([8] if k_max > 8 and "psnr_k8" in m else [])
        text = "PSNR " + ", ".join(f"{m[f'psnr_k{k}']:.2f} dB at k={k}" for k in ks)
        if int(m.get("decode_steps", 0)) == 1:  # the default decode is the 1-step one already
            text += " (1 Euler step)"
        elif all(f"psnr_k{k}_1step" in m for k in ks):
            text += f" ({int(m.get('decode_steps', 0))} Euler steps; " + " and ".join(f"{m[f'psnr_k{k}_1step']:.2f}" for k in ks) + " with 1)"
        return text + " (mixed val)"


def remeasure_card(directory: str, name: str, data: str, recipe: str, notes: str = "", **module_kwargs: Any) -> dict[str, float]:
    """Measure a saved FlexTok checkpoint again and rewrite its card (after a change to decoding).

    `python -c "from recipes.flextok import remeasure_card; remeasure_card('checkpoints/flextok-tiny-nat32', ...)"`
    keeps the weights and the recorded training time (train_log.json) and replaces the metrics.
    """
    import json
    from pathlib import Path

    from recipes.export import rewrite_card
    from recipes.image_data import ImageDataModule
    from zoo import hub

    tok = hub.load_dir(Path(directory))
    saved = json.loads((Path(directory) / "config.json").read_text())
    module = FlexTokModule(config=saved["config"], **module_kwargs)
    module.ema = tok
    return rewrite_card(module, directory, ImageDataModule(), name=name, data=data, recipe=recipe, notes=notes)
