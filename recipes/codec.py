"""CodecModule: trains `zoo.audio.codec.Codec` with mel, waveform, commitment and adversarial losses.

As EnCodec (audiocraft's compression solver) and DAC train theirs:
- reconstruction: multi-scale log-mel L1 (`zoo.metrics.mel_distance`, DAC's mel loss) + waveform L1, and
  optionally (ours, off by default) a multi-scale compressed complex spectral L1 that sees phase;
- quantizer: the residual VQ's commitment term (EMA codebooks need no codebook loss), with
  quantizer dropout drawing the depth per batch so every bitrate is trained;
- adversarial: a multi-scale STFT discriminator (EnCodec's MS-STFT-D) with hinge losses and
  relative feature matching, switched on after `adversarial_start` batches of pure reconstruction.

Loss weights are set by name (`weights`); a zero-weight loss is still logged (except the complex
spectral one, which costs three STFTs and is computed only with a weight).

The scaffold is the base's (recipes/base.py): the codec from its preset or `init_from`, AdamW and the one
schedule over the budget (trainer.max_steps or `budget_seconds`). The discriminator is a second optimiser
whose parameter groups start at the `adversarial_start` batch (`start_step`), so its warmup and cosine
begin with the adversarial losses. Both optimisers are stepped here, by hand, once a batch each.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import Tensor, nn
from torch.nn.utils.parametrizations import weight_norm

from recipes.base import Recipe
from zoo import metrics
from zoo.audio.codec import Codec

DEFAULT_WEIGHTS = {"mel": 15.0, "l1": 1.0, "complex": 0.0, "commitment": 0.25, "adversarial": 1.0, "feature": 2.0}
DECODER_NAMES = {"seanet": "SEANet", "istft": "inverse-STFT (ConvNeXt at the frame rate)"}
COMPLEX_FFTS = (320, 640, 1280)  # 20, 40, 80 ms windows at 16 kHz


def complex_spectral_distance(estimate: Tensor, reference: Tensor, n_ffts: tuple[int, ...] = COMPLEX_FFTS,
                              power: float = 0.3) -> Tensor:
    """Mean |X̂_c - X_c| over STFT bins, X_c = |X|^power · e^{i∠X} (magnitude-compressed complex spectra), averaged
    over window lengths `n_ffts` (hop n / 4). Unlike the mel distance it sees phase: a reconstruction
    with the right magnitudes and random phases scores about sqrt(2) · mean |X_c|.

    Compressed complex spectral losses are common in speech enhancement (e.g. Braun & Tashev, 2021,
    https://arxiv.org/abs/2101.00858); the power keeps quiet bins from vanishing next to loud ones.
    """
    total = estimate.new_zeros(())
    for n in n_ffts:
        window = torch.hann_window(n, device=estimate.device)
        spectra = [torch.stft(w[:, 0], n, n // 4, window=window, return_complex=True) for w in (estimate, reference)]
        a, b = (x * (x.abs().square() + 1e-8) ** ((power - 1) / 2) for x in spectra)
        total = total + (a - b).abs().mean()
    return total / len(n_ffts)


# ----------------------------------------------------------------------------------------- discriminator


class STFTDiscriminator(nn.Module):
    """One scale of EnCodec's MS-STFT discriminator: 2D convs over the complex STFT (real, imag)."""

    def __init__(self, n_fft: int, channels: int = 16, dilations: tuple[int, ...] = (1, 2, 4)) -> None:
        super().__init__()
        self.n_fft = n_fft
        self.register_buffer("window", torch.hann_window(n_fft), persistent=False)
        convs = [nn.Conv2d(2, channels, (3, 9), padding=(1, 4))]
        for d in dilations:  # dilate over time, stride over frequency
            convs.append(nn.Conv2d(channels, channels, (3, 9), stride=(1, 2), dilation=(d, 1), padding=(d, 4)))
        convs.append(nn.Conv2d(channels, channels, (3, 3), padding=(1, 1)))
        self.convs = nn.ModuleList(weight_norm(c) for c in convs)
        self.out = weight_norm(nn.Conv2d(channels, 1, (3, 3), padding=(1, 1)))

    def forward(self, wav: Tensor) -> tuple[Tensor, list[Tensor]]:
        """wav: (B, 1, S) -> logits (B, 1, T, F') and the feature maps of every layer."""
        spec = torch.stft(wav[:, 0], self.n_fft, self.n_fft // 4, window=self.window, return_complex=True)
        x = rearrange(torch.view_as_real(spec), "b f t c -> b c t f")  # (B, 2, T, F)
        features = []
        for conv in self.convs:
            x = F.leaky_relu(conv(x), 0.2)
            features.append(x)
        return self.out(x), features


class MultiScaleSTFTDiscriminator(nn.Module):
    """STFT discriminators at several resolutions (n_fft 1024/512/256 at 16 kHz; EnCodec: 2048/1024/512 at 24 kHz)."""

    def __init__(self, n_ffts: tuple[int, ...] = (1024, 512, 256), channels: int = 16) -> None:
        super().__init__()
        self.scales = nn.ModuleList(STFTDiscriminator(n, channels) for n in n_ffts)

    def forward(self, wav: Tensor) -> list[tuple[Tensor, list[Tensor]]]:
        return [d(wav) for d in self.scales]


def discriminator_loss(real: list, fake: list) -> Tensor:
    """Hinge loss of the discriminator: mean relu(1 - D(x)) + relu(1 + D(x̂)), summed over scales."""
    return sum(F.relu(1 - r).mean() + F.relu(1 + f).mean() for (r, _), (f, _) in zip(real, fake))


def generator_losses(real: list, fake: list) -> tuple[Tensor, Tensor]:
    """Hinge adversarial loss relu(1 - D(x̂)) and relative feature matching |f(x) - f(x̂)| / mean|f(x)|."""
    adv = sum(F.relu(1 - f).mean() for f, _ in fake) / len(fake)
    feat, n = 0.0, 0
    for (_, fr), (_, ff) in zip(real, fake):
        for a, b in zip(fr, ff):
            feat = feat + (a.detach() - b).abs().mean() / (a.detach().abs().mean() + 1e-8)
            n += 1
    return adv, feat / n


# ----------------------------------------------------------------------------------------- the module


class CodecModule(Recipe):
    """Args:
        preset: a `CodecConfig` preset name ("small", "tiny").
        config: overrides of the preset's fields.
        weights: loss weights by name (keys of DEFAULT_WEIGHTS); missing keys keep the defaults.
        lr / betas / weight_decay: AdamW for both codec and discriminator (DAC: betas (0.8, 0.99)); weight decay
            on every parameter (AdamW's default 0.01, as the shipped codec was trained).
        min_lr_ratio: the cosine decays the learning rate to lr · min_lr_ratio at the end of the budget.
        budget_seconds: the run's time budget; the schedule follows it or trainer.max_steps, whichever is
            further along (trainer.max_steps counts both optimisers' steps: 2 a batch).
        warmup_steps: linear warm-up, in batches, of the codec's learning rate and, from `adversarial_start`, the
            discriminator's.
        adversarial_start: batches of pure reconstruction before the discriminator joins.
        disc_channels: width of the STFT discriminators.
        grad_clip: gradient norm clip of both models.
        val_codebooks: numbers of codebooks with which validation reconstructs.
        init_from: a codec checkpoint (a folder, or anything `zoo.load` accepts: "codec-small-speech16k")
            whose weights and codebooks the run continues from; its config replaces `preset`/`config`. Optimiser states and
            the discriminator start fresh (use trainer `--ckpt_path` to resume a Lightning checkpoint).
    """

    def __init__(self, preset: str = "small", config: dict[str, Any] | None = None,
                 weights: dict[str, float] | None = None, lr: float = 1e-3, betas: tuple[float, float] = (0.8, 0.99),
                 weight_decay: float = 0.01, min_lr_ratio: float = 0.1, budget_seconds: float | None = None,
                 warmup_steps: int = 100, adversarial_start: int = 1000, disc_channels: int = 16, grad_clip: float = 1.0,
                 val_codebooks: tuple[int, ...] = (3, 8), init_from: str | None = None) -> None:
        super().__init__()
        unknown = sorted(set(weights or {}) - set(DEFAULT_WEIGHTS))
        if unknown:
            raise ValueError(f"unknown loss weight(s) {unknown}; known: {sorted(DEFAULT_WEIGHTS)}")
        self.save_hyperparameters()
        self.automatic_optimization = False
        self.init_preset(Codec, preset, config, init_from, ema=False)
        self.discriminator = MultiScaleSTFTDiscriminator(channels=disc_channels)
        self.weights = {**DEFAULT_WEIGHTS, **(weights or {})}

    # -- optimisation ------------------------------------------------------------------------------------

    def decays(self, name: str, p: Tensor) -> bool:
        return True  # weight decay on every parameter (AdamW's default), as the shipped codec was trained

    def optimizer_groups(self) -> list[list[dict[str, Any]]]:
        """The codec's, then the discriminator's, whose phase starts at the `adversarial_start` batch."""
        return [self.param_groups(), self.param_groups(self.discriminator, start_step=self.hparams.adversarial_start)]

    def reconstruction_losses(self, wav: Tensor) -> tuple[Tensor, dict[str, Tensor]]:
        """wav: (B, 1, L), L a multiple of the hop -> (reconstruction, losses by name)."""
        out = self.tokenizer(wav)
        sr = self.tokenizer.config.sample_rate
        return out.audio, {
            "mel": metrics.mel_distance(out.audio, wav, sr).mean(),
            "l1": (out.audio - wav).abs().mean(),
            "complex": complex_spectral_distance(out.audio, wav) if self.weights["complex"] else wav.new_zeros(()),
            "commitment": out.commitment,
        }

    def training_step(self, batch: Tensor, batch_idx: int) -> Tensor:
        opt_g, opt_d = self.optimizers()
        w, h = self.weights, self.hparams
        wav = batch
        y, losses = self.reconstruction_losses(wav)
        adversarial = self.global_step // 2 >= h.adversarial_start and (w["adversarial"] > 0 or w["feature"] > 0)
        if adversarial:
            # discriminator step on the detached reconstruction
            d_loss = discriminator_loss(self.discriminator(wav), self.discriminator(y.detach()))
            opt_d.zero_grad(set_to_none=True)
            self.manual_backward(d_loss)
            self.clip_gradients(opt_d, gradient_clip_val=h.grad_clip, gradient_clip_algorithm="norm")
            opt_d.step()
            self.log("train/discriminator", d_loss)
            losses["adversarial"], losses["feature"] = generator_losses(self.discriminator(wav), self.discriminator(y))
        else:  # zero-weight or not yet started: still logged
            losses["adversarial"] = losses["feature"] = wav.new_zeros(())
        total = sum(w[k] * v for k, v in losses.items())
        opt_g.zero_grad(set_to_none=True)
        self.manual_backward(total)
        self.clip_gradients(opt_g, gradient_clip_val=h.grad_clip, gradient_clip_algorithm="norm")
        opt_g.step()
        if not adversarial:
            opt_d.step()  # keeps Lightning's step counter even (two optimizers) and is a no-op without grads
        for sched in self.lr_schedulers():  # once a batch: the discriminator's LR is zero before its start
            sched.step()
        self.log_dict({f"train/{k}": v for k, v in losses.items()}, prog_bar=False)
        self.log("train/total", total, prog_bar=True)
        return total

    # -- validation ----------------------------------------------------------------------------------

    def validation_step(self, batch: Tensor, batch_idx: int, dataloader_idx: int = 0) -> None:
        kind = list(self.trainer.datamodule.val_sets)[dataloader_idx]
        for q in self.hparams.val_codebooks:
            kbps = self.tokenizer.config.kbps(q)
            tokens = self.tokenizer.encode(batch, num_codebooks=q)
            y = self.tokenizer.decode(tokens)
            self.log(f"val/{kind}_mel_{kbps:g}kbps", metrics.mel_distance(y, batch).mean(), add_dataloader_idx=False)
            self.log(f"val/{kind}_sisdr_{kbps:g}kbps", metrics.si_sdr(y, batch).mean(), add_dataloader_idx=False)

    # -- the card ------------------------------------------------------------------------------------

    @torch.no_grad()
    def card_metrics(self, datamodule: Any) -> dict[str, float]:
        """Quality per bitrate on held-out speech (STOI, PESQ, SI-SDR, mel) and music (SI-SDR, mel)."""
        self._card_metrics = measure(self.tokenizer, {k: datamodule.val_batch(k) for k in datamodule.val_sets})
        self._card_data = dict(datamodule.hparams)  # for card_summary when no trainer holds the data (`remeasure`)
        return self._card_metrics

    def card_summary(self) -> dict[str, Any]:
        c = self.tokenizer.config
        h = (self.trainer.datamodule.hparams if self._trainer is not None and self.trainer.datamodule
             else getattr(self, "_card_data", {}))
        return {
            # the held-out set the card's metrics were measured on, so a test can measure it again
            "val_set": {"n_clips": h.get("val_speech_clips"), "clip_seconds": h.get("clip_seconds"),
                        "val_seconds": h.get("val_seconds"), "seed": h.get("seed")},
            "description": f"Neural audio codec (SEANet encoder, {DECODER_NAMES[c.decoder]} decoder, residual VQ) for "
                           f"{c.sample_rate // 1000} kHz mono speech "
                           f"(and music); {c.frame_rate} frames/s, {c.num_codebooks} codebooks of {c.codebook_size}, "
                           f"{c.bitrates[0]:g}-{c.bitrates[-1]:g} kbps from one model. Loss weights: "
                           + ", ".join(f"{k} {v:g}" for k, v in self.weights.items())
                           + (f"; adversarial losses from batch {self.hparams.adversarial_start}"
                              if self.weights["adversarial"] > 0 or self.weights["feature"] > 0 else "; no adversarial losses")
                           + (f"; trained for {self.global_step // 2} batches." if self.global_step else "."),
            "tokens": f"{c.frame_rate}/s x 1-{c.num_codebooks} codebooks",
            "bits": f"{c.kbps(1):g} kbps per codebook",
            **({"headline": f"STOI {m['speech_stoi_1.5kbps']:.3f} at 1.5 kbps (held-out speech)"}
               if "speech_stoi_1.5kbps" in (m := getattr(self, "_card_metrics", {})) else {}),
        }


def measure(codec: Codec, batches: dict[str, Tensor], bitrates: tuple[float, ...] | None = None) -> dict[str, float]:
    """Mean quality of `codec` per bitrate on each batch (B, 1, S): STOI/PESQ on speech, SI-SDR and mel on all."""
    codec.eval()
    out: dict[str, float] = {}
    for kind, wav in batches.items():
        for kbps in bitrates or codec.config.bitrates:
            y = codec.decode(codec.encode(wav, bitrate=kbps))
            out[f"{kind}_mel_{kbps:g}kbps"] = float(metrics.mel_distance(y, wav).mean())
            out[f"{kind}_sisdr_{kbps:g}kbps"] = float(metrics.si_sdr(y, wav).mean())
            if kind == "speech":
                out[f"{kind}_stoi_{kbps:g}kbps"] = float(metrics.stoi(y, wav).mean())
                out[f"{kind}_pesq_{kbps:g}kbps"] = float(metrics.pesq(y, wav).nanmean())
    return out
