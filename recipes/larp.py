"""Training LARP: reconstruction, SVQ and learned-prior losses, nested token dropout, EMA, cosine LR.

The model (`zoo.video.larp.LARP`) encodes, quantises and decodes; this module owns the losses, the
prior (`ARPrior`, below, trained jointly and discarded at export), the schedules and an
optional discriminator. Per step, with x a batch of clips in [-1, 1]:

- SVQ: all N tokens are encoded and *sampled* (softmax over cosine similarities, temperature τ) once
  `argmax_until` of the budget has passed, and take the argmax (nearest code, straight-through) before
  (ours: sampling from a random codebook feeds the decoder near-random neighbours while it learns);
  q_weight · (codebook_weight · ‖e - sg(z)‖² + commit_weight · ‖sg(e) - z‖²) on the unit vectors, as in
  the official code (weights 0.1, 1, 0.25).
- reconstruction: the decoder sees a prefix of n tokens, n log-uniform in 1..N for the whole batch
  (nested token dropout; `nested_dropout=False` always keeps N): mse_weight · MSE + l1_weight · L1.
- prior: the AR prior reads the N quantised tokens (with their straight-through gradient, so its loss
  reaches the encoder) and predicts each next token; cross-entropy over cosine-similarity logits /
  `prior_temperature`. Second round (scheduled sampling, as the official `mix_ss`): a fraction of
  the input tokens, rising linearly from 0 to `ss_max_ratio` over the first `ss_peak` of the budget,
  is replaced by tokens sampled from the first round's predictions, and the prior predicts again; the
  loss is the mean over both rounds, times `prior_weight`. With `prior_weight=0` (the ablation) the prior
  still trains, on detached tokens, so its NLL is logged for comparison but shapes nothing.
- dead codes (ours, not in the official code; vector-quantize-pytorch's `threshold_ema_dead_code` does the
  same for its EMA codebooks): each code's use is tracked as an exponential average of its count per
  batch; a code whose average falls below `restart_threshold` is moved onto one of the batch's encoder
  outputs. On a short CPU budget the prior loss otherwise pulls the tokens onto a handful of easily
  predicted codes within a few dozen steps (seen here: perplexity 1024 → 5).
- discriminator (off by default, `disc_weight=0`): a small 3D-conv patch discriminator with hinge
  losses, from `disc_start` (fraction of the budget).

Logged: the losses, train PSNR, the prior's top-1 accuracy, the scheduled-sampling ratio, and codebook
usage (perplexity of the sampled ids and the fraction of codes used).
"""

from __future__ import annotations

import math
from typing import Any

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import Tensor, nn

from recipes.base import Recipe
from zoo import metrics
from zoo.evaluate import budget_metrics
from zoo.nn import Transformer
from zoo.video.larp import LARP


class ARPrior(nn.Module):
    """The learned autoregressive prior: a small causal transformer over quantised tokens (LARP §3.3).

    It reads unit codes (B, N, d) (with their straight-through gradient, so its loss reaches the
    encoder), and at position i predicts a unit vector for token i from a learned start token and
    tokens 0..i-1; logits over the vocabulary are its cosine similarities to the (detached) codebook
    divided by a temperature. Trained jointly with the tokenizer and discarded at export.
    """

    def __init__(self, code_dim: int, max_tokens: int, dim: int = 128, depth: int = 2, heads: int = 4) -> None:
        super().__init__()
        self.start = nn.Parameter(torch.randn(dim) * 0.02)
        self.proj_in = nn.Linear(code_dim, dim)
        self.pos = nn.Parameter(torch.randn(max_tokens, dim) * 0.02)
        self.transformer = Transformer(dim, depth, heads)
        self.proj_out = nn.Linear(dim, code_dim)

    def forward(self, codes: Tensor, codebook: Tensor, temperature: float) -> Tensor:
        """codes: (B, N, d); codebook: (V, d) unit rows → logits (B, N, V) for tokens 0..N-1."""
        b, n = codes.shape[:2]
        inputs = torch.cat([self.start.expand(b, 1, -1), self.proj_in(codes[:, :-1])], dim=1) + self.pos[:n]
        causal = torch.ones(n, n, dtype=torch.bool, device=codes.device).tril()
        pred = F.normalize(self.proj_out(self.transformer(inputs, causal)), dim=-1)  # (B, N, d)
        return pred @ codebook.detach().t() / temperature


class VideoDiscriminator(nn.Module):
    """A small 3D-conv patch discriminator: (B, 3, T, S, S) in [-1, 1] → logits (B, 1, T/4, S/4, S/4)."""

    def __init__(self, channels: int = 32) -> None:
        super().__init__()
        self.net = nn.Sequential(
            nn.Conv3d(3, channels, 4, 2, 1), nn.LeakyReLU(0.2),
            nn.Conv3d(channels, 2 * channels, 4, 2, 1), nn.GroupNorm(8, 2 * channels), nn.LeakyReLU(0.2),
            nn.Conv3d(2 * channels, 1, 3, 1, 1),
        )

    def forward(self, x: Tensor) -> Tensor:
        return self.net(x)


class LARPModule(Recipe):
    """Args:
        preset: a `LARPConfig` preset name; `config` overrides its fields.
        nested_dropout: decode a random prefix of the tokens each step (so any n works); False keeps N.
        full_prefix: with nested dropout, the share of steps that decode all N tokens (the rest draw a log-uniform
            prefix, which alone gives n >= N/2 on only about a fifth of the steps at N=32).
        mse_weight, l1_weight: reconstruction losses.
        q_weight, codebook_weight, commit_weight: SVQ losses (official 0.1, 1.0, 0.25).
        argmax_until: fraction of the budget during which SVQ takes the argmax instead of sampling (0 = sample
            from the start, as the official code).
        prior_weight: weight of the prior's next-token loss in the tokenizer's objective (official 0.06; 0 = no prior).
        prior_temperature: logits = cos(prediction, code) / this (official 1.0, so the loss stays near log V and acts
            as a bounded pull of each token toward its prediction; smaller sharpens it).
        prior_dim, prior_depth, prior_heads: the AR prior's transformer.
        prior_rounds: 1 (teacher forcing only) or 2 (plus the scheduled-sampling round).
        ss_max_ratio, ss_peak: scheduled sampling replaces up to this fraction of the inputs, reached
            after this fraction of the budget (official 0.5, 0.3).
        restart_threshold: codes used less than this many times per batch (running average, decay
            `restart_decay`) are restarted on encoder outputs; 0 = never.
        disc_weight, disc_start, disc_channels: the optional adversarial loss (0 = off).
        lr, weight_decay, betas, warmup_steps, grad_clip: AdamW (tokenizer + prior), warmup, clipping.
        budget_seconds: cosine LR decay over whichever ends first, trainer.max_steps or this many seconds.
        ema_decay: weight average of the tokenizer used for validation and export.
        eval_tokens: numbers of tokens reported on the card (clipped to N).
        check_clips: the card also records the PSNR at N on the first this many val clips (for the test).
        init_from: a LARP checkpoint to fine-tune (a folder, or anything `zoo.load` accepts); its config replaces
            `preset`/`config`. The prior starts afresh (checkpoints do not keep it).
    """

    def __init__(self, preset: str = "tiny", config: dict[str, Any] | None = None, nested_dropout: bool = True,
                 full_prefix: float = 0.0,
                 mse_weight: float = 1.0, l1_weight: float = 0.2, q_weight: float = 0.1, codebook_weight: float = 1.0,
                 commit_weight: float = 0.25, argmax_until: float = 0.0, prior_weight: float = 0.06,
                 prior_temperature: float = 1.0, prior_dim: int = 128, prior_depth: int = 2, prior_heads: int = 4,
                 prior_rounds: int = 2, ss_max_ratio: float = 0.5, ss_peak: float = 0.3, restart_threshold: float = 0.02,
                 restart_decay: float = 0.95, disc_weight: float = 0.0, disc_start: float = 0.5,
                 disc_channels: int = 32, lr: float = 1e-3, weight_decay: float = 0.01,
                 betas: tuple[float, float] = (0.9, 0.99), warmup_steps: int = 100, grad_clip: float = 1.0,
                 budget_seconds: float | None = None, ema_decay: float = 0.999,
                 eval_tokens: tuple[int, ...] = (1, 2, 4, 8, 16, 32), check_clips: int = 16,
                 init_from: str | None = None) -> None:
        super().__init__()
        if prior_rounds not in (1, 2):
            raise ValueError(f"prior_rounds must be 1 or 2, got {prior_rounds}")
        if not 0 <= full_prefix <= 1:
            raise ValueError(f"full_prefix must be a share of the steps in [0, 1], got {full_prefix}")
        if not 0 <= argmax_until <= 1:
            raise ValueError(f"argmax_until must be a fraction of the budget in [0, 1], got {argmax_until}")
        if prior_weight < 0 or disc_weight < 0:
            raise ValueError(f"loss weights must be >= 0, got prior_weight={prior_weight}, disc_weight={disc_weight}")
        self.save_hyperparameters()
        self.automatic_optimization = False  # two optimisers when the discriminator is on
        self.init_preset(LARP, preset, config, init_from)
        c = self.model.config
        self.prior = ARPrior(c.code_dim, c.max_tokens, prior_dim, prior_depth, prior_heads)
        self.discriminator = VideoDiscriminator(disc_channels) if disc_weight > 0 else None
        self.register_buffer("code_use", torch.ones(c.codebook_size))  # running count per batch of each code
        self.batches = 0  # optimiser steps of the tokenizer (Lightning's global_step counts both optimisers)

    # -- the losses -----------------------------------------------------------------------------------

    def sample_prefix(self) -> int:
        n_max = self.model.config.max_tokens
        hp = self.hparams
        if not hp.nested_dropout or (hp.full_prefix > 0 and torch.rand(()).item() < hp.full_prefix):
            return n_max
        u = torch.rand(()).item() * math.log(n_max + 1)
        return min(n_max, max(1, int(math.exp(u))))  # log-uniform over 1..N

    def ss_ratio(self) -> float:
        hp = self.hparams
        return hp.ss_max_ratio * min(1.0, self.progress() / max(hp.ss_peak, 1e-8))

    def prior_loss(self, codes: Tensor, ids: Tensor) -> tuple[Tensor, Tensor]:
        """codes: (B, N, d) quantised tokens (straight-through); ids: (B, N) → (loss over the rounds, top-1 accuracy)."""
        hp = self.hparams
        codebook = self.model.svq.codebook
        logits = self.prior(codes, codebook, hp.prior_temperature)  # (B, N, V)
        losses = [F.cross_entropy(rearrange(logits, "b n v -> (b n) v"), ids.reshape(-1))]
        accuracy = (logits.argmax(-1) == ids).float().mean()
        if hp.prior_rounds == 2:
            with torch.no_grad():  # second round: some inputs become the prior's own samples
                sampled = torch.multinomial(logits.softmax(-1).flatten(0, 1), 1).view_as(ids)
                replace = torch.rand(ids.shape, device=ids.device)[..., None] < self.ss_ratio()
            mixed = torch.where(replace, self.model.svq.lookup(sampled).detach(), codes)
            logits2 = self.prior(mixed, codebook, hp.prior_temperature)
            losses.append(F.cross_entropy(rearrange(logits2, "b n v -> (b n) v"), ids.reshape(-1)))
        return torch.stack(losses).mean(), accuracy

    def losses(self, video: Tensor) -> tuple[dict[str, Tensor], Tensor, Tensor, dict[str, Tensor]]:
        """video: (B, 3, T, S, S) in [0, 1] → (losses by name, reconstruction in [-1, 1], ids (B, N), logs)."""
        hp = self.hparams
        x = video * 2 - 1
        n = self.sample_prefix()
        sample = self.progress() >= hp.argmax_until
        codes, ids, z = self.model.quantize(x, self.model.config.max_tokens, sample=sample)
        e = self.model.svq.lookup(ids)
        x_hat = self.model.decode_codes(codes[:, :n])
        out = {
            "mse": F.mse_loss(x_hat, x),
            "l1": F.l1_loss(x_hat, x),
            "codebook": F.mse_loss(e, z.detach()),
            "commit": F.mse_loss(z, e.detach()),
        }
        shaped = hp.prior_weight > 0  # otherwise the prior only watches: its loss does not reach the encoder
        out["prior"], accuracy = self.prior_loss(codes if shaped else codes.detach(), ids)
        logs = {"n": torch.tensor(float(n)), "prior_top1": accuracy, "z": z.detach(), "sampled": float(sample)}
        return out, x_hat, ids, logs

    def total(self, losses: dict[str, Tensor]) -> Tensor:
        hp = self.hparams
        return (hp.mse_weight * losses["mse"] + hp.l1_weight * losses["l1"]
                + hp.q_weight * (hp.codebook_weight * losses["codebook"] + hp.commit_weight * losses["commit"])
                + (hp.prior_weight or 1.0) * losses["prior"] + hp.disc_weight * losses.get("adversarial", 0.0))

    def training_step(self, batch: dict[str, Tensor], batch_idx: int) -> Tensor:
        hp = self.hparams
        opts, scheds = self.optimizers(), self.lr_schedulers()
        opts = opts if isinstance(opts, list) else [opts]
        scheds = scheds if isinstance(scheds, list) else [scheds]
        video = batch["video"]
        losses, x_hat, ids, logs = self.losses(video)
        adversarial = self.discriminator is not None and self.progress() >= hp.disc_start
        if adversarial:
            real = video * 2 - 1
            d_loss = F.relu(1 - self.discriminator(real)).mean() + F.relu(1 + self.discriminator(x_hat.detach())).mean()
            opts[1].zero_grad(set_to_none=True)
            self.manual_backward(d_loss)
            self.clip_gradients(opts[1], gradient_clip_val=hp.grad_clip, gradient_clip_algorithm="norm")
            opts[1].step()
            self.log("train/discriminator", d_loss)
            losses["adversarial"] = -self.discriminator(x_hat).mean()
        total = self.total(losses)
        opts[0].zero_grad(set_to_none=True)
        self.manual_backward(total)
        self.clip_gradients(opts[0], gradient_clip_val=hp.grad_clip, gradient_clip_algorithm="norm")
        opts[0].step()
        for s in scheds:
            s.step()
        self.batches += 1
        restarted = self.restart_dead_codes(ids, logs["z"])
        self.update_ema()
        usage = metrics.codebook_usage(ids, self.model.config.codebook_size)
        psnr = metrics.psnr(((x_hat.detach() + 1) / 2).clamp(0, 1), video).mean()
        self.log_dict({f"train/{k}": v for k, v in losses.items()})
        self.log_dict({"train/total": total, "train/psnr": psnr, "train/prior_top1": logs["prior_top1"],
                       "train/sampled": logs["sampled"], "train/n": logs["n"], "train/ss_ratio": self.ss_ratio(),
                       "train/perplexity": usage["perplexity"],
                       "train/codes_used": usage["used"], "train/restarted": float(restarted)})
        self.log("train/loss", total, prog_bar=True, logger=False)
        return total

    @torch.no_grad()
    def restart_dead_codes(self, ids: Tensor, z: Tensor) -> int:
        """ids: (B, N) this batch's tokens; z: (B, N, d) its unit encoder outputs → number of codes restarted."""
        hp = self.hparams
        counts = torch.bincount(ids.reshape(-1), minlength=self.code_use.numel()).to(self.code_use)
        self.code_use.lerp_(counts, 1 - hp.restart_decay)
        dead = torch.nonzero(self.code_use < hp.restart_threshold).squeeze(1)
        if hp.restart_threshold <= 0 or dead.numel() == 0:
            return 0
        pool = z.reshape(-1, z.shape[-1])
        pick = torch.randint(len(pool), (dead.numel(),), device=pool.device)
        self.model.svq.embed[dead] = pool[pick] + 0.01 * torch.randn_like(pool[pick])  # jitter: no two restarts coincide
        self.code_use[dead] = 1.0  # a grace period before the code can be restarted again
        return int(dead.numel())

    # -- EMA, optimiser, schedule ---------------------------------------------------------------------

    no_decay_keys = ("pos", "queries", "query", "start", "svq.embed")

    def ema_step(self) -> int:
        return self.batches

    def optimizer_groups(self) -> list[list[dict[str, Any]]]:
        """The tokenizer's and the prior's, then the discriminator's when it is on: one group, betas (0.5, 0.9),
        AdamW's default weight decay on every parameter, on the whole schedule from step 0."""
        groups = [self.param_groups(self.model, self.prior)]
        if self.discriminator is not None:
            groups.append([{"params": list(self.discriminator.parameters()), "betas": (0.5, 0.9)}])
        return groups

    # -- validation and the card ----------------------------------------------------------------------

    def eval_tokens(self) -> list[int]:
        n_max = self.tokenizer.config.max_tokens
        return sorted({min(k, n_max) for k in self.hparams.eval_tokens} | {n_max})

    def validation_step(self, batch: dict[str, Tensor], batch_idx: int) -> None:
        video = batch["video"]
        tok = self.tokenizer
        n_max = tok.config.max_tokens
        for n in sorted({min(8, n_max), n_max}):
            y = tok.decode(tok.encode(video, num_tokens=n))
            self.log(f"val/psnr_n{n}", metrics.psnr(y, video).mean(), batch_size=video.shape[0])

    @torch.no_grad()
    def card_metrics(self, datamodule: Any) -> dict[str, float]:
        """PSNR and SSIM on the val clips for each n, codebook usage at N, and the PSNR at N on the first `check_clips`."""
        videos = datamodule.val_videos().to(self.device)
        out = budget_metrics(self.tokenizer.eval(), videos, self.eval_tokens())
        n_max = self.tokenizer.config.max_tokens
        out[f"check_psnr_n{n_max}_first{self.hparams.check_clips}"] = budget_metrics(
            self.tokenizer, videos[: self.hparams.check_clips], [n_max])[f"psnr_n{n_max}"]
        out["val_clips"] = float(len(videos))
        self.last_card_metrics = out
        return out

    def card_summary(self) -> dict[str, Any]:
        c = self.tokenizer.config
        hp = self.hparams
        prior = (f"learned AR prior ({hp.prior_depth}x{hp.prior_dim}, weight {hp.prior_weight:g}, "
                 f"{hp.prior_rounds} round(s)) during training, discarded" if hp.prior_weight > 0
                 else "no prior loss (ablation)")
        return {
            "description": (f"LARP: {c.frames}x{c.image_size}x{c.image_size} RGB clips → 1..{c.max_tokens} holistic "
                            f"tokens of an SVQ codebook of {c.codebook_size} (L2-normalised, {c.code_dim}-d, τ={c.temperature:g}); "
                            f"patches {c.temporal_patch}x{c.patch_size}x{c.patch_size}, encoder and decoder "
                            f"{c.dim}x{c.encoder_depth}/{c.decoder_depth}; {prior}. Argmax tokens by default "
                            f"(`encode(..., sample=True)` samples)."),
            "tokens": f"1-{c.max_tokens}",
            "bits": round(c.max_tokens * math.log2(c.codebook_size), 1),
            "headline": self.headline(),
        }

    def headline(self) -> str:
        m = getattr(self, "last_card_metrics", {})
        n_max = self.tokenizer.config.max_tokens
        if f"psnr_n{n_max}" not in m:
            return ""
        text = f"PSNR {m[f'psnr_n{n_max}']:.2f} dB at n={n_max}"
        if n_max > 8 and "psnr_n8" in m:
            text += f", {m['psnr_n8']:.2f} dB at n=8"
        return text + " (val clips)"


