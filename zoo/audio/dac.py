"""DAC, the Descript Audio Codec (Kumar et al., 2023, "High-Fidelity Audio Compression with Improved RVQGAN",
https://arxiv.org/abs/2306.06546; code and weights MIT, https://github.com/descriptinc/descript-audio-codec),
with its released 16 kHz, 24 kHz and 44.1 kHz models.

Architecture (read from the official code; ours is written for inference):
- encoder: conv7 (1 -> C) then, per stride s, three residual units (dilations 1, 3, 9) at width w, Snake
  and a strided conv (kernel 2s, padding ceil(s/2)) to 2w; Snake and conv3 to the latent width D.
- residual unit: x + conv1(Snake(conv7_dilated(Snake(x)))); Snake(x) = x + sin²(αx) / (α + 1e-9), one α
  per channel.
- quantizer: residual VQ of Q factorised codebooks: a 1x1 in_proj to 8 dims, the nearest code by cosine
  (both sides L2-normalised), the raw (unnormalised) code vector through a 1x1 out_proj back to D.
- decoder: conv7 (D -> 1536) then, per stride s, Snake, a transposed conv (kernel 2s, padding ceil(s/2))
  halving the width, three residual units; Snake, conv7 to one channel, tanh.
Every convolution was trained with weight normalisation; the converters fold it into plain weights.

Lengths, as in the reference: the input is padded with zeros on the right to a multiple of the hop, so
T = ceil(S / hop) frames. The decoder's transposed convolutions with an odd stride (5, in the 16 and 24 kHz
models) lose one sample each, so T frames decode to T·hop - 8 samples there; `decode` returns the S
samples the input had, trimming as the reference does and filling the few samples the decoder does not
make (at most 8, only when S > T·hop - 8) with zeros.

Long inputs run in chunks of `chunk_seconds` with enough context on each side to cover the receptive field
of the (non-causal) convolutions, so chunked and whole-file results are the same up to float rounding
(exact, not merely seam-free; tested) and memory stays bounded. Without autograd each chunk runs as an
inference plan (`zoo.nn.seanet.Tiled`): the stride-1 layers of one rate window by window, so activations
stay in cache, with Snake computed in three passes instead of the reference's six, and the transposed
convolutions as polyphase convolutions (`zoo.nn.seanet.conv_transpose_polyphase`; torch's own takes a slow path).

Release formats `from_release` converts: the official pickle (`weights_16khz.pth` etc.: state_dict with
weight_g/weight_v and metadata.kwargs, read once with torch.load(weights_only=True)) and the transformers
folders (`descript/dac_16khz` etc.: config.json with model_type "dac" and model.safetensors, weight norm
folded or kept as weight_g/weight_v or parametrizations), or that folder's safetensors file alone.
"""

from __future__ import annotations

import json
import math
import re
import zipfile
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any, Callable, ClassVar

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from zoo.audio.rvq import CodebookRate, codebooks_for, nearest, rate_summary
from zoo.audio.weights import fold_weight_norm
from zoo.hub import register_family, register_release
from zoo.nn.cache import cached_on, without_cached
from zoo.nn.seanet import Resample, Tiled, chunk_spans, conv_by_taps, receptive_field
from zoo.tokenizer import (InputContract, Tokenizer, Tokens, TokenSpec, check_budget, check_fields, check_input,
                           check_tokens, check_weights)


@dataclass
class DACConfig(CodebookRate):
    """Args (the official metadata.kwargs under our names):
        sample_rate: Hz of the input and output waveforms.
        encoder_dim: C, width of the encoder's first level (doubles after each stride).
        encoder_rates: encoder strides; hop = their product.
        latent_dim: D, width of the latent frames; None = encoder_dim · 2^len(encoder_rates).
        decoder_dim: width of the decoder's first level (halves after each stride).
        decoder_rates: decoder strides (product = hop).
        num_codebooks: Q, the residual VQ depth (the largest bitrate).
        codebook_size: entries per codebook.
        codebook_dim: dimension the codes live in (the in_proj/out_proj bottleneck).
        chunk_seconds: inputs longer than this run chunk by chunk (bounded memory, same result).
        max_seconds: longest input `encode` accepts in one call.
    """

    sample_rate: int = 16000
    encoder_dim: int = 64
    encoder_rates: tuple[int, ...] = (2, 4, 5, 8)
    latent_dim: int | None = None
    decoder_dim: int = 1536
    decoder_rates: tuple[int, ...] = (8, 5, 4, 2)
    num_codebooks: int = 12
    codebook_size: int = 1024
    codebook_dim: int = 8
    chunk_seconds: float = 10.0
    max_seconds: float = 4 * 3600.0

    def __post_init__(self) -> None:
        self.encoder_rates, self.decoder_rates = tuple(self.encoder_rates), tuple(self.decoder_rates)
        check_fields(self, sample_rate=(1, 384_000), encoder_dim=(1, 4096), encoder_rates=(1, 64), latent_dim=(1, 16384),
                     decoder_dim=(1, 16384), decoder_rates=(1, 64), num_codebooks=(1, 1024), codebook_size=(2, 1 << 20),
                     codebook_dim=(1, 4096), chunk_seconds=(0, 86_400), max_seconds=(0, 7 * 86_400))
        if not 1 <= len(self.encoder_rates) <= 16:
            raise ValueError(f"encoder_rates holds 1 to 16 strides, got {self.encoder_rates}")
        if self.latent_dim is None:
            self.latent_dim = self.encoder_dim * 2 ** len(self.encoder_rates)
        # the decoder's first levels dominate: about 30·decoder_dim² weights; plus the codebooks
        check_weights(self, 30 * self.decoder_dim**2 + 8 * (self.encoder_dim * 2 ** len(self.encoder_rates))**2
                      + self.num_codebooks * self.codebook_size * self.codebook_dim)
        if math.prod(self.encoder_rates) != math.prod(self.decoder_rates):
            raise ValueError(f"encoder_rates {self.encoder_rates} and decoder_rates {self.decoder_rates} "
                             "must have the same product (the hop)")
        if self.decoder_dim % 2 ** len(self.decoder_rates):
            raise ValueError(f"decoder_dim {self.decoder_dim} must be divisible by 2^{len(self.decoder_rates)}")
        for name in ("sample_rate", "encoder_dim", "decoder_dim", "num_codebooks", "codebook_size", "codebook_dim"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.chunk_seconds <= 0 or self.max_seconds <= 0:
            raise ValueError(f"chunk_seconds and max_seconds must be > 0, got {self.chunk_seconds}, {self.max_seconds}")

    @property
    def hop(self) -> int:
        return math.prod(self.encoder_rates)

    @property
    def frame_rate(self) -> float:
        """Frames per second (86.13 at 44.1 kHz: not always a whole number)."""
        return self.sample_rate / self.hop

    @classmethod
    def from_name(cls, name: str, **overrides: Any) -> "DACConfig":
        if name not in PRESETS:
            raise ValueError(f"{name!r} is not a supported DAC config name; known: {sorted(PRESETS)}")
        return cls(**{**PRESETS[name], **overrides})


# ----------------------------------------------------------------------------------------- blocks
# Module names follow the official release (encoder.block.N..., decoder.model.N..., quantizer.quantizers.N),
# so its state dict maps onto ours once weight norm is folded.


def snake(x: Tensor, alpha: Tensor) -> Tensor:
    """x + sin²(αx) / (α + 1e-9), per channel: x (B, C, T), alpha (1, C, 1). Three passes, one buffer."""
    s = torch.mul(x, alpha).sin_().square_()
    return torch.addcmul(x, s, (alpha + 1e-9).reciprocal())


class Snake(nn.Module):
    def __init__(self, channels: int) -> None:
        super().__init__()
        self.alpha = nn.Parameter(torch.ones(1, channels, 1))

    def forward(self, x: Tensor) -> Tensor:
        return snake(x, self.alpha)


class ResidualUnit(nn.Module):
    """x + conv1x1(Snake(conv7 dilated(Snake(x)))), width kept."""

    def __init__(self, channels: int, dilation: int) -> None:
        super().__init__()
        self.block = nn.Sequential(
            Snake(channels), nn.Conv1d(channels, channels, 7, dilation=dilation, padding=3 * dilation),
            Snake(channels), nn.Conv1d(channels, channels, 1),
        )

    def forward(self, x: Tensor) -> Tensor:
        return x + self.block(x)


class EncoderBlock(nn.Module):
    """Three residual units at `channels`, then Snake and a strided conv to 2·channels."""

    def __init__(self, channels: int, stride: int) -> None:
        super().__init__()
        self.block = nn.Sequential(
            *(ResidualUnit(channels, d) for d in (1, 3, 9)), Snake(channels),
            nn.Conv1d(channels, 2 * channels, 2 * stride, stride=stride, padding=math.ceil(stride / 2)),
        )

    def forward(self, x: Tensor) -> Tensor:
        return self.block(x)


class DecoderBlock(nn.Module):
    """Snake, a transposed conv from `channels` to channels/2 (x stride), three residual units."""

    def __init__(self, channels: int, stride: int) -> None:
        super().__init__()
        out = channels // 2
        self.block = nn.Sequential(
            Snake(channels),
            nn.ConvTranspose1d(channels, out, 2 * stride, stride=stride, padding=math.ceil(stride / 2)),
            *(ResidualUnit(out, d) for d in (1, 3, 9)),
        )

    def forward(self, x: Tensor) -> Tensor:
        return self.block(x)


class _Plan(nn.Module):
    """A conv stack whose inference (autograd off) runs as cached `Tiled` stages with copied weights,
    rebuilt whenever a parameter changes; with autograd it runs module by module."""

    def layers(self) -> list[nn.Module]:
        raise NotImplementedError

    def forward(self, x: Tensor) -> Tensor:
        if torch.is_grad_enabled():
            for layer in self.layers():
                x = layer(x)
            return x
        for stage in self._plan():
            x = stage(x)
        return x

    def _plan(self) -> list[Tiled]:
        def make(params: tuple[Tensor, ...]) -> list[Tiled]:
            on_cpu = params[0].device.type == "cpu"  # windows help CPU caches, not GPUs
            return inference_plan(self.layers(), window=_WINDOW if on_cpu else 2**62)

        return cached_on(self, self.parameters(), make, "_stages")

    def __getstate__(self) -> dict:
        return without_cached(self.__dict__, "_stages")  # rebuilt, not copied


class Encoder(_Plan):
    """Waveform (B, 1, S), S a multiple of the hop -> latents (B, D, S / hop)."""

    def __init__(self, c: DACConfig) -> None:
        super().__init__()
        widths = [c.encoder_dim * 2**i for i in range(len(c.encoder_rates) + 1)]
        self.block = nn.Sequential(
            nn.Conv1d(1, widths[0], 7, padding=3),
            *(EncoderBlock(w, s) for w, s in zip(widths, c.encoder_rates)),
            Snake(widths[-1]), nn.Conv1d(widths[-1], c.latent_dim, 3, padding=1),
        )

    def layers(self) -> list[nn.Module]:
        return _flatten(self.block)


class Decoder(_Plan):
    """Latents (B, D, T) -> waveform (B, 1, T·hop - shortfall) in (-1, 1)."""

    def __init__(self, c: DACConfig) -> None:
        super().__init__()
        widths = [c.decoder_dim // 2**i for i in range(len(c.decoder_rates) + 1)]
        self.model = nn.Sequential(
            nn.Conv1d(c.latent_dim, widths[0], 7, padding=3),
            *(DecoderBlock(w, s) for w, s in zip(widths, c.decoder_rates)),
            Snake(widths[-1]), nn.Conv1d(widths[-1], 1, 7, padding=3), nn.Tanh(),
        )

    def layers(self) -> list[nn.Module]:
        return _flatten(self.model)

    def output_length(self, frames: int) -> int:
        """Samples T frames decode to (torch's transposed-conv length formula, layer by layer)."""
        n = frames
        for m in self.model.modules():
            if isinstance(m, nn.ConvTranspose1d):
                (k,), (s,), (p,) = m.kernel_size, m.stride, m.padding
                n = (n - 1) * s - 2 * p + k
        return n


def _flatten(seq: nn.Sequential) -> list[nn.Module]:
    """Layers in execution order, with the encoder/decoder blocks opened up (residual units kept whole)."""
    out: list[nn.Module] = []
    for m in seq:
        out += _flatten(m.block) if isinstance(m, (EncoderBlock, DecoderBlock)) else [m]
    return out


class VectorQuantize(nn.Module):
    """One factorised codebook: in_proj (D -> d), nearest code by cosine, out_proj (d -> D)."""

    def __init__(self, dim: int, codebook_size: int, codebook_dim: int) -> None:
        super().__init__()
        self.in_proj = nn.Conv1d(dim, codebook_dim, 1)
        self.out_proj = nn.Conv1d(codebook_dim, dim, 1)
        self.codebook = nn.Embedding(codebook_size, codebook_dim)

    def quantize(self, residual: Tensor) -> tuple[Tensor, Tensor]:
        """residual (B, D, T) -> (ids (B, T), this codebook's contribution (B, D, T))."""
        z = self.in_proj(residual)  # (B, d, T)
        e = F.normalize(z.transpose(1, 2).reshape(-1, z.shape[1]), dim=-1)  # (B·T, d)
        # nearest by the squared distance of the unit vectors, as the reference writes it (same rounding)
        ids = nearest(e, F.normalize(self.codebook.weight, dim=-1)).view(z.shape[0], z.shape[2])  # (B, T)
        q = self.codebook.weight[ids].transpose(1, 2)  # (B, d, T), the raw code vectors
        # z + (q - z) is q up to rounding: what the reference's straight-through estimator computes
        return ids, self.out_proj(z + (q - z))

    def dequantize(self, ids: Tensor) -> Tensor:
        """ids (B, T) -> (B, D, T)."""
        return self.out_proj(self.codebook.weight[ids].transpose(1, 2))


class ResidualVQ(nn.Module):
    def __init__(self, c: DACConfig) -> None:
        super().__init__()
        self.quantizers = nn.ModuleList(
            VectorQuantize(c.latent_dim, c.codebook_size, c.codebook_dim) for _ in range(c.num_codebooks)
        )

    def quantize(self, z: Tensor, num_codebooks: int) -> Tensor:
        """Latents (B, D, T) -> ids (B, T, q), greedily codebook after codebook on the residual."""
        ids = []
        for vq in self.quantizers[:num_codebooks]:
            index, contribution = vq.quantize(z)
            z = z - contribution
            ids.append(index)
        return torch.stack(ids, dim=-1)

    def dequantize(self, ids: Tensor) -> Tensor:
        """ids (B, T, q) -> the sum of the first q codebooks' contributions (B, D, T)."""
        z = 0.0
        for i in range(ids.shape[-1]):
            z = z + self.quantizers[i].dequantize(ids[..., i])
        return z


# ----------------------------------------------------------------------------------------- inference


_WINDOW = 2**20  # activations per window (channels x samples), 4 MB: a window's layers stay in L3


def inference_plan(layers: list[nn.Module], window: int) -> list[Tiled]:
    """`layers` as `Tiled` stages: each a transposed conv (if any), the stride-1 layers after it and the
    strided conv that ends them (if any), run in windows of about `window` activations (channels x time)."""
    stages: list[Tiled] = []
    up, run, width = None, [], 1
    for module in layers:
        if isinstance(module, nn.ConvTranspose1d):
            if up is not None or run:
                stages.append(Tiled(run, max(window // width, 256), up=up))
            up, run, width = Resample(module), [], module.out_channels
        elif isinstance(module, nn.Conv1d) and module.stride[0] > 1:
            width = max(width, module.in_channels)
            stages.append(Tiled(run, max(window // width, 256), up=up, down=Resample(module)))
            up, run, width = None, [], 1
        else:
            run.append(valid_layer(module))
            width = max([width] + [max(m.in_channels, m.out_channels) for m in module.modules() if isinstance(m, nn.Conv1d)])
    if up is not None or run:
        stages.append(Tiled(run, max(window // width, 256), up=up))
    return stages


def valid_layer(module: nn.Module) -> tuple[Callable[[Tensor], Tensor], int]:
    """A stride-1 layer as (f, reach): f maps a window (B, C, L) to its L - 2·reach central outputs."""
    if isinstance(module, Snake):
        return partial(_snake, alpha=module.alpha.detach().clone(),
                       inv=(module.alpha.detach() + 1e-9).reciprocal()), 0
    if isinstance(module, nn.Tanh):
        return torch.Tensor.tanh_, 0
    if isinstance(module, ResidualUnit):
        act1, conv7, act2, conv1 = module.block
        f1, f2 = valid_layer(conv7)[0], valid_layer(act2)[0]
        alpha, inv = act1.alpha.detach().clone(), (act1.alpha.detach() + 1e-9).reciprocal()
        weight, bias = conv1.weight.detach()[..., 0].clone(), conv1.bias.detach().clone()
        reach = conv7.padding[0]

        def residual(x: Tensor) -> Tensor:
            y = f2(f1(_snake(x, alpha, inv)), inplace=True)
            out = torch.baddbmm(x[..., reach:x.shape[-1] - reach], weight.expand(x.shape[0], -1, -1), y)
            return out.add_(bias[:, None])

        return residual, reach
    if isinstance(module, nn.Conv1d) and module.stride[0] == 1:
        (k,), (dilation,) = module.kernel_size, module.dilation
        weight, bias = module.weight.detach().clone(), module.bias.detach().clone()
        if min(module.in_channels, module.out_channels) == 1:  # the first and last convs: one product per tap
            return partial(conv_by_taps, weight=weight, bias=bias, dilation=dilation), module.padding[0]
        return partial(F.conv1d, weight=weight, bias=bias, dilation=dilation), module.padding[0]
    raise TypeError(f"no inference path for {type(module).__name__}")


def _snake(x: Tensor, alpha: Tensor, inv: Tensor, inplace: bool = False) -> Tensor:
    """`snake` with 1 / (α + 1e-9) precomputed; in place on x when allowed (x not needed afterwards)."""
    s = torch.mul(x, alpha).sin_().square_()
    return x.addcmul_(s, inv) if inplace else torch.addcmul(x, s, inv)


# ----------------------------------------------------------------------------------------- the tokenizer


class DAC(Tokenizer):
    """Descript Audio Codec. wav (B, 1, S) in [-1, 1] at `sample_rate` -> ids (B, T, q), T = ceil(S / hop)."""

    family = "dac"
    config_class = DACConfig
    encode_knobs: ClassVar[tuple[str, ...]] = ("bitrate", "num_codebooks")
    decode_options: ClassVar[tuple[str, ...]] = ("num_samples",)

    @classmethod
    def listing(cls, config: DACConfig) -> dict[str, Any]:
        """What `zoo list` shows of a checkpoint of this config (`zoo.hub` module docstring)."""
        return rate_summary(config)

    def __init__(self, config: DACConfig) -> None:
        super().__init__(config)
        c = config
        self.encoder = Encoder(c)
        self.quantizer = ResidualVQ(c)
        self.decoder = Decoder(c)
        # frames of context each chunk needs on both sides so that its central frames are exact
        self.encoder_context = math.ceil(receptive_field(self.encoder, input_rate=1) / c.hop) + 1
        self.decoder_context = math.ceil(receptive_field(self.decoder, input_rate=c.hop) / c.hop) + 1

    # -- the contract ----------------------------------------------------------------------------------

    @property
    def sample_rate(self) -> int:
        return self.config.sample_rate

    @property
    def channels(self) -> int:
        return 1

    @property
    def frame_rate(self) -> float:
        return self.config.frame_rate

    @property
    def spec(self) -> TokenSpec:
        c = self.config
        return TokenSpec(
            modality="audio",
            vocab_size=c.codebook_size,
            num_codebooks=c.num_codebooks,
            max_tokens=math.ceil(c.max_seconds * c.frame_rate),
            latent_dim=c.latent_dim,
            input=InputContract(layout="B 1 S", value_range=(-1.0, 1.0), sample_rate=c.sample_rate),
        )

    def codebooks_for(self, bitrate: float | None = None, num_codebooks: int | None = None) -> int:
        """q for a bitrate in kbit/s or an explicit q; default all Q. DAC's rule differs from EnCodec's: the most
        codebooks whose rate fits within the bitrate (6 kbps -> 12 codebooks at 16 kHz), as its release does."""
        return codebooks_for(self.config, bitrate, num_codebooks, within=True)

    # -- encode / decode -------------------------------------------------------------------------------

    def _chunks(self, num_frames: int, context: int) -> list[tuple[int, int, int, int]]:
        return chunk_spans(num_frames, max(int(self.config.chunk_seconds * self.config.frame_rate), 1), context)

    @torch.no_grad()
    def encode(self, wav: Tensor, *, bitrate: float | None = None, num_codebooks: int | None = None) -> Tokens:
        """Waveforms -> codes.

        Args:
            wav: (B, 1, S) float in [-1, 1] at `sample_rate`, any S >= 1.
            bitrate: kbit/s; the most codebooks whose rate fits (e.g. 6 -> 12 codebooks at 16 kHz).
            num_codebooks: q in [1, Q] instead of a bitrate; default all Q.
        Returns:
            Tokens with ids (B, T, q), T = ceil(S / hop), and meta["num_samples"] = S.
        """
        c = self.config
        wav = check_input(wav, self.spec.input, "audio")
        if wav.shape[-1] > c.max_seconds * c.sample_rate:
            raise ValueError(f"audio is {wav.shape[-1] / c.sample_rate:.0f} s long; encode at most "
                             f"{c.max_seconds:g} s per call (split it, or raise config.max_seconds)")
        q = self.codebooks_for(bitrate, num_codebooks)
        num_samples = wav.shape[-1]
        wav = F.pad(wav, (0, -num_samples % c.hop)).to(self.device, self.dtype)
        hop, frames = c.hop, wav.shape[-1] // c.hop
        ids = []
        for start, stop, lo, hi in self._chunks(frames, self.encoder_context):
            z = self.encoder(wav[..., lo * hop:hi * hop])  # (B, D, hi - lo)
            ids.append(self.quantizer.quantize(z[..., start - lo:stop - lo], q))
        ids = torch.cat(ids, dim=1)  # (B, T, q)
        b = ids.shape[0]
        return Tokens(ids=ids, lengths=torch.full((b,), frames, device=ids.device),
                      meta={"num_samples": torch.full((b,), num_samples, device=ids.device)})

    @torch.no_grad()
    def decode(self, tokens: Tokens, *, num_samples: int | None = None) -> Tensor:
        """Codes -> waveforms (B, 1, S) in [-1, 1].

        Args:
            tokens: from `encode`; ids (B, T, q) with any q <= Q (fewer codebooks, lower quality).
            num_samples: S; default the length recorded at encode time, else what T frames decode to.
        """
        c = self.config
        check_tokens(tokens, self.spec)
        ids = tokens.ids
        if ids is None or ids.ndim != 3 or ids.shape[-1] < 1:
            raise ValueError(f"DAC ids must be (B, T, q), got {None if ids is None else tuple(ids.shape)}")
        if bool((tokens.lengths != ids.shape[1]).any()):
            raise ValueError(f"DAC tokens are never padded: lengths must all be {ids.shape[1]}, "
                             f"got {tokens.lengths.tolist()}")
        length = num_samples if num_samples is not None else self._recorded_samples(tokens)
        check_budget(length, 1, ids.shape[1] * c.hop, "num_samples")
        z = self.quantizer.dequantize(ids.to(self.device))  # (B, D, T)
        hop, out = c.hop, []
        for start, stop, lo, hi in self._chunks(ids.shape[1], self.decoder_context):
            y = self.decoder(z[..., lo:hi])  # (B, 1, (hi - lo)·hop - shortfall)
            out.append(y[..., (start - lo) * hop:(stop - lo) * hop])
        wav = torch.cat(out, dim=-1)[..., :length]
        return F.pad(wav, (0, length - wav.shape[-1]))  # the decoder's few missing samples, if asked for

    def _recorded_samples(self, tokens: Tokens) -> int:
        n = tokens.meta.get("num_samples")
        if n is None or n.numel() == 0:
            return self.decoder.output_length(tokens.width)
        if bool((n != n[0]).any()):
            raise ValueError(f"tokens record different lengths {n.unique().tolist()}; pass num_samples=")
        return int(n[0])

    @property
    def dtype(self) -> torch.dtype:
        return self.quantizer.quantizers[0].codebook.weight.dtype

    # -- released weights ------------------------------------------------------------------------------

    @staticmethod
    def is_release(path: str | Path) -> bool:
        """True for an official DAC pickle, a transformers DAC folder, or its safetensors file (cheap: names,
        config.json and file headers, no weights read)."""
        path = _official_file(Path(path))
        try:
            if path.is_dir():
                return _hf_config(path) is not None
            if path.suffix == ".safetensors":
                return _hf_config(path.parent) is not None or _is_dac_state(_safetensors_keys(path))
            if path.suffix == ".pth" and zipfile.is_zipfile(path):
                with zipfile.ZipFile(path) as z:
                    pickle = next((n for n in z.namelist() if n.endswith("data.pkl")), None)
                    head = z.read(pickle) if pickle else b""
                return b"encoder_rates" in head and b"quantizer.quantizers.0.codebook.weight" in head
        except (OSError, ValueError, zipfile.BadZipFile):
            return False
        return False

    @classmethod
    def from_release(cls, path: str | Path) -> "DAC":
        """Convert a released model: the official `.pth`, a transformers folder, or its safetensors file."""
        path = _official_file(Path(path))
        if not path.exists():
            raise ValueError(f"no DAC release at {str(path)!r}")
        if path.is_file() and path.suffix == ".pth":
            config, state = _read_official(path)
        else:
            config, state = _read_transformers(path)
        model = cls(config)
        state = fold_weight_norm(state)
        missing, unexpected = sorted(model.state_dict().keys() - state.keys()), sorted(state.keys() - model.state_dict().keys())
        if missing or unexpected:
            raise ValueError(f"{path} does not match a DAC of config {config}: missing {missing[:5]}"
                             f"{'…' if len(missing) > 5 else ''}, unexpected {unexpected[:5]}{'…' if len(unexpected) > 5 else ''}")
        model.load_state_dict(state, strict=True)
        return model.eval()


# ----------------------------------------------------------------------------------------- conversion


def _official_file(path: Path) -> Path:
    """A folder that holds one official .pth and no transformers files stands for that file."""
    if path.is_dir() and not (path / "model.safetensors").exists():
        pth = sorted(path.glob("*.pth"))
        if len(pth) == 1:
            return pth[0]
    return path


def _read_official(path: Path) -> tuple[DACConfig, dict[str, Tensor]]:
    """The official pickle {state_dict, metadata: {kwargs}}, read once without executing code."""
    try:
        raw = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # noqa: BLE001 - torch raises many kinds for a damaged or unsafe pickle
        raise ValueError(f"{path} is not a readable DAC release (torch.load(weights_only=True) failed: {e})") from e
    if not isinstance(raw, dict) or "state_dict" not in raw or "kwargs" not in raw.get("metadata", {}):
        raise ValueError(f"{path} is not an official DAC file: expected {{state_dict, metadata: {{kwargs}}}}, "
                         f"got keys {sorted(raw) if isinstance(raw, dict) else type(raw).__name__}")
    kw = raw["metadata"]["kwargs"]
    try:
        config = DACConfig(
            sample_rate=int(kw["sample_rate"]), encoder_dim=int(kw["encoder_dim"]),
            encoder_rates=tuple(kw["encoder_rates"]), latent_dim=kw.get("latent_dim"),
            decoder_dim=int(kw["decoder_dim"]), decoder_rates=tuple(kw["decoder_rates"]),
            num_codebooks=int(kw["n_codebooks"]), codebook_size=int(kw["codebook_size"]),
            codebook_dim=_single_codebook_dim(kw["codebook_dim"]),
        )
    except KeyError as e:
        raise ValueError(f"{path}: metadata.kwargs lacks {e}; has {sorted(kw)}") from e
    return config, dict(raw["state_dict"])


def _single_codebook_dim(d: Any) -> int:
    if isinstance(d, (list, tuple)):
        if len(set(d)) != 1:
            raise ValueError(f"codebooks of different dimensions {d} are not supported")
        d = d[0]
    return int(d)


def _read_transformers(path: Path) -> tuple[DACConfig, dict[str, Tensor]]:
    """A transformers DacModel folder (config.json + model.safetensors) or the safetensors file alone."""
    from safetensors.torch import load_file

    weights = path / "model.safetensors" if path.is_dir() else path
    if not weights.is_file():
        raise ValueError(f"{path} has no model.safetensors")
    try:
        raw = load_file(str(weights))
    except Exception as e:  # noqa: BLE001 - safetensors raises its own error types
        raise ValueError(f"{weights} is not a readable safetensors file: {e}") from e
    hf = _hf_config(weights.parent)
    n_levels = 1 + max((int(m.group(1)) for k in raw if (m := re.match(r"encoder\.block\.(\d+)\.", k))), default=-1)
    state = {_from_transformers_name(k, n_levels): v for k, v in raw.items()}
    config = _config_from_state(state, n_levels, hf)
    return config, state


def _hf_config(folder: Path) -> dict[str, Any] | None:
    """The transformers config.json of a DAC folder, or None."""
    file = folder / "config.json"
    if not file.is_file():
        return None
    try:
        config = json.loads(file.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError):
        return None
    return config if isinstance(config, dict) and config.get("model_type") == "dac" else None


def _safetensors_keys(path: Path) -> list[str]:
    with open(path, "rb") as f:
        n = int.from_bytes(f.read(8), "little")
        if not 0 < n < 100_000_000:
            return []
        return [k for k in json.loads(f.read(n)) if k != "__metadata__"]


def _is_dac_state(keys: list[str]) -> bool:
    return "quantizer.quantizers.0.codebook.weight" in keys and any(k.startswith("decoder.block.0.conv_t1") for k in keys)


_UNIT = {"snake1": 0, "conv1": 1, "snake2": 2, "conv2": 3}


def _from_transformers_name(key: str, n: int) -> str:
    """transformers' DacModel parameter name -> the official (our) one; n = number of strides."""
    top = {"encoder.conv1": "encoder.block.0", "encoder.snake1": f"encoder.block.{n + 1}",
           "encoder.conv2": f"encoder.block.{n + 2}", "decoder.conv1": "decoder.model.0",
           "decoder.snake1": f"decoder.model.{n + 1}", "decoder.conv2": f"decoder.model.{n + 2}"}
    for old, new in top.items():
        if key.startswith(old + "."):
            return new + key[len(old):]
    m = re.match(r"(encoder|decoder)\.block\.(\d+)\.(res_unit(\d)\.)?(\w+)\.(.+)$", key)
    if m is None:
        return key  # quantizer.quantizers.N.* are named alike
    side, block, _, unit, layer, rest = m.groups()
    outer = f"encoder.block.{int(block) + 1}.block" if side == "encoder" else f"decoder.model.{int(block) + 1}.block"
    if unit is not None:  # encoder units are block.0-2, decoder units block.2-4 (after snake and conv_t)
        return f"{outer}.{int(unit) - 1 + (2 if side == 'decoder' else 0)}.block.{_UNIT[layer]}.{rest}"
    index = {("encoder", "snake1"): 3, ("encoder", "conv1"): 4, ("decoder", "snake1"): 0, ("decoder", "conv_t1"): 1}
    if (side, layer) not in index:
        raise ValueError(f"unknown transformers DAC parameter {key!r}")
    return f"{outer}.{index[side, layer]}.{rest}"


def _config_from_state(state: dict[str, Tensor], n: int, hf: dict[str, Any] | None) -> DACConfig:
    """The architecture from the tensor shapes; the sample rate from config.json or the known releases."""
    def shape(prefix: str) -> tuple[int, ...]:
        for suffix in ("weight", "weight_v", "parametrizations.weight.original1"):
            if f"{prefix}.{suffix}" in state:
                return tuple(state[f"{prefix}.{suffix}"].shape)
        raise ValueError(f"not a DAC state dict: no weight for {prefix}")

    if n < 1 or "quantizer.quantizers.0.codebook.weight" not in state:
        raise ValueError("not a DAC state dict: no encoder blocks or no codebooks")
    rates = tuple(shape(f"encoder.block.{i + 1}.block.4")[-1] // 2 for i in range(n))
    dec_rates = tuple(shape(f"decoder.model.{i + 1}.block.1")[-1] // 2 for i in range(n))
    size, dim = state["quantizer.quantizers.0.codebook.weight"].shape
    arch = dict(encoder_dim=shape("encoder.block.0")[0], encoder_rates=rates, latent_dim=shape("encoder.block.{}".format(n + 2))[0],
                decoder_dim=shape("decoder.model.0")[0], decoder_rates=dec_rates,
                num_codebooks=sum(1 for k in state if k.endswith(".codebook.weight")),
                codebook_size=size, codebook_dim=dim)
    if hf is not None and "sampling_rate" in hf:
        return DACConfig(sample_rate=int(hf["sampling_rate"]), **arch)
    for preset in PRESETS.values():
        if all(preset[k] == v for k, v in arch.items() if k in preset):
            return DACConfig(**{**arch, "sample_rate": preset["sample_rate"]})
    raise ValueError(f"a DAC state dict of an unknown architecture {arch} and no config.json beside it to give "
                     "its sample rate; pass the folder with config.json")


# ----------------------------------------------------------------------------------------- presets

# From the official training configs (conf/final/*.yml) and the released weights' metadata.kwargs.
PRESETS: dict[str, dict[str, Any]] = {
    "16khz": dict(sample_rate=16000, encoder_dim=64, encoder_rates=(2, 4, 5, 8), decoder_dim=1536,
                  decoder_rates=(8, 5, 4, 2), num_codebooks=12, codebook_size=1024, codebook_dim=8),
    "24khz": dict(sample_rate=24000, encoder_dim=64, encoder_rates=(2, 4, 5, 8), decoder_dim=1536,
                  decoder_rates=(8, 5, 4, 2), num_codebooks=32, codebook_size=1024, codebook_dim=8),
    "44khz": dict(sample_rate=44100, encoder_dim=64, encoder_rates=(2, 4, 8, 8), decoder_dim=1536,
                  decoder_rates=(8, 8, 4, 2), num_codebooks=9, codebook_size=1024, codebook_dim=8),
}


# ----------------------------------------------------------------------------------------- released weights
# `zoo.load(name)` downloads these files, converts them once with `DAC.from_release` and caches our checkpoint.
# Revisions: commits of the hub repos as pinned by a third-party loader (kadirnar/voicehub); this machine
# cannot reach the hub to confirm them.

_LICENSE = dict(license="MIT", license_url="https://github.com/descriptinc/descript-audio-codec/blob/main/LICENSE")
RELEASES: dict[str, dict[str, Any]] = {
    "dac-16khz": dict(hf_repo="descript/dac_16khz", revision="7c2fc5e759f1f501aefc6e7a0265cc57f5d17ba7", preset="16khz",
                      parameters="74M"),
    "dac-24khz": dict(hf_repo="descript/dac_24khz", revision="6ba020b5ba7d9d8076fb90db7e67f27e31980f6e", preset="24khz",
                      parameters="75M"),
    "dac-44khz": dict(hf_repo="descript/dac_44khz", revision="c1bc521685adf9cfe247bc39a5ca58917eda1ac4", preset="44khz",
                      parameters="74M"),
}


def _description(config: DACConfig, parameters: str) -> str:
    """The card of the release of preset `config`: its rates and codebooks as the preset gives them."""
    c = config
    return (f"DAC {c.sample_rate / 1000:g} kHz (Descript, MIT): {c.frame_rate:.3g} frames/s, {c.num_codebooks} codebooks "
            f"of {c.codebook_size}, {c.kbps(1):.3g}-{c.kbps(c.num_codebooks):.3g} kbps; {parameters} parameters")


# ----------------------------------------------------------------------------------------- registrations

register_family(DAC, presets=PRESETS)
for _name, _release in RELEASES.items():
    _config = DACConfig.from_name(_release["preset"])
    register_release(_name, "dac", files=("config.json", "model.safetensors"), hf_repo=_release["hf_repo"],
                     revision=_release["revision"],
                     summary={**DAC.listing(_config), "description": _description(_config, _release["parameters"])},
                     **_LICENSE)
