"""Codec: a neural audio codec (SEANet encoder, residual vector quantization, SEANet or inverse-STFT
decoder), 16 kHz mono.

Papers: SoundStream (Zeghidour et al., 2021, https://arxiv.org/abs/2107.03312), EnCodec (Défossez et
al., 2022, https://arxiv.org/abs/2210.13438; facebookresearch/encodec, audiocraft), DAC (Kumar et al.,
2023, https://arxiv.org/abs/2306.06546; descriptinc/descript-audio-codec).

A waveform (B, 1, S) is padded to a multiple of the hop (320 samples), encoded to latents (B, D, T)
at 50 frames/s, and quantised by a residual VQ of Q codebooks of 1024 entries (vector-quantize-pytorch,
EMA codebooks). The codebooks were trained with quantizer dropout, so the first q of them form a
coarser code: `encode(wav, num_codebooks=q)` or `encode(wav, bitrate=kbps)` (0.5 kbps per codebook)
picks the rate at inference, and one model serves every bitrate. `decode` returns exactly S samples.

Two decoders (`CodecConfig.decoder`): "seanet", the encoder's mirror up to the sample rate (EnCodec, DAC),
and "istft" (`zoo.nn.istft`, as Vocos makes audio): ConvNeXt blocks at 50 and 100 frames/s and an
inverse-STFT head, about 3x cheaper on CPU at better quality in our runs (codec-small-speech16k uses it).

Long inputs are encoded and decoded in chunks with enough context on both sides to cover the
(finite) receptive field of the non-causal convolutions (and the overlap-add), so chunked and whole-file results agree up
to floating-point rounding, memory stays bounded by the chunk size, and there are no seams.

The model knows nothing of training: `forward` returns the reconstruction and the quantizer's
commitment term (as audiocraft's QuantizedResult carries its penalty); losses, the discriminator and
optimisers live in recipes/codec.py.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import torch
from einops import rearrange
from torch import Tensor

from zoo.hub import register_family
from zoo.nn.istft import ISTFTDecoder
from zoo.audio.rvq import CodebookRate, codebooks_for, rate_summary
from zoo.nn.seanet import SEANetConfig, SEANetDecoder, SEANetEncoder, chunk_spans, receptive_field
from zoo.nn.threads import map_threads
from zoo.tokenizer import (InputContract, Tokenizer, Tokens, TokenSpec, check_budget, check_fields, check_input,
                           check_tokens, check_weights)


DECODERS = ("seanet", "istft")


@dataclass
class CodecConfig(CodebookRate):
    """Args:
        sample_rate: Hz of the input and output waveforms.
        channels: SEANet width at the full-rate level (doubles after each downsampling).
        max_channels: cap on SEANet widths.
        latent_dim: D, width of the latent frames and of the codebook vectors.
        strides: SEANet downsampling factors; hop = their product, frame rate = sample_rate / hop.
        dilations: dilations of the residual units at each SEANet level.
        num_codebooks: Q, residual VQ depth (the largest bitrate).
        codebook_size: entries per codebook (a power of two, so a code is a whole number of bits).
        codebook_decay: EMA decay of the codebook updates.
        dead_code_threshold: codes used less than this (EMA count) are replaced by batch vectors.
        chunk_seconds: audio longer than this is encoded/decoded chunk by chunk.
        max_seconds: longest input `encode` accepts.
        decoder: "seanet" (the encoder's mirror, transposed convolutions up to the sample rate) or
            "istft" (ConvNeXt blocks at the frame rate and an inverse-STFT head, `zoo.nn.istft`).
        decoder_dim / decoder_blocks / decoder_upsample: the "istft" decoder's width, blocks (at the
            frame rate, after upsampling) and STFT frames per latent frame.
    """

    sample_rate: int = 16000
    channels: int = 16
    max_channels: int = 256
    latent_dim: int = 64
    strides: tuple[int, ...] = (4, 4, 4, 5)
    dilations: tuple[int, ...] = (1, 3)
    num_codebooks: int = 8
    codebook_size: int = 1024
    codebook_decay: float = 0.99
    dead_code_threshold: float = 2.0
    chunk_seconds: float = 10.0
    max_seconds: float = 3600.0
    decoder: str = "seanet"
    decoder_dim: int = 256
    decoder_blocks: tuple[int, int] = (3, 3)
    decoder_upsample: int = 2

    def __post_init__(self) -> None:
        self.strides, self.dilations = tuple(self.strides), tuple(self.dilations)
        self.decoder_blocks = tuple(self.decoder_blocks)
        check_fields(self, sample_rate=(1, 384_000), channels=(1, 4096), max_channels=(1, 4096), latent_dim=(1, 4096),
                     strides=(1, 64), dilations=(1, 1024), num_codebooks=(1, 64), codebook_size=(2, 1 << 20),
                     codebook_decay=(0, 1), dead_code_threshold=(0, 1e9), chunk_seconds=(0, 86_400),
                     max_seconds=(0, 7 * 86_400), decoder_dim=(1, 8192), decoder_blocks=(0, 64),
                     decoder_upsample=(1, 64))
        if len(self.strides) > 16 or len(self.dilations) > 16:
            raise ValueError(f"strides and dilations hold at most 16 levels, got {len(self.strides)} and {len(self.dilations)}")
        check_weights(self, self.num_codebooks * self.codebook_size * self.latent_dim, "codebook entries")
        if self.decoder not in DECODERS:
            raise ValueError(f"decoder={self.decoder!r} is not supported; use one of {DECODERS}")
        if self.sample_rate < 1000:
            raise ValueError(f"sample_rate must be >= 1000 Hz, got {self.sample_rate}")
        if not self.strides or any(s < 1 for s in self.strides):
            raise ValueError(f"strides must be positive integers, got {self.strides}")
        if self.sample_rate % self.hop:
            raise ValueError(f"sample_rate {self.sample_rate} must be a multiple of the hop {self.hop} "
                             f"(product of strides {self.strides}) so the frame rate is a whole number")
        if self.num_codebooks < 1:
            raise ValueError(f"num_codebooks must be >= 1, got {self.num_codebooks}")
        if self.codebook_size < 2 or self.codebook_size & (self.codebook_size - 1):
            raise ValueError(f"codebook_size must be a power of two >= 2, got {self.codebook_size}")
        if not self.chunk_seconds * self.frame_rate >= 1:
            raise ValueError(f"chunk_seconds must cover at least one frame (1/{self.frame_rate} s), got {self.chunk_seconds}")

    @property
    def hop(self) -> int:
        return math.prod(self.strides)

    @property
    def frame_rate(self) -> int:
        return self.sample_rate // self.hop

    def seanet(self) -> SEANetConfig:
        return SEANetConfig(channels=self.channels, max_channels=self.max_channels, latent_dim=self.latent_dim,
                            strides=self.strides, dilations=self.dilations)

    @classmethod
    def from_name(cls, name: str, **overrides: Any) -> "CodecConfig":
        if name not in PRESETS:
            raise ValueError(f"{name!r} is not a supported config name; known: {sorted(PRESETS)}")
        return cls(**{**PRESETS[name], **overrides})


@dataclass
class CodecOutput:
    """What `Codec.forward` returns.

    Args:
        audio: (B, 1, S') reconstruction at the padded length S' (a multiple of the hop).
        codes: (B, T, Q) ids; -1 marks codebooks dropped by quantizer dropout in training.
        commitment: scalar, the quantizer's commitment term (the recipe weights it).
        latents: (B, D, T) encoder output before quantization.
    """

    audio: Tensor
    codes: Tensor
    commitment: Tensor
    latents: Tensor


class Codec(Tokenizer):
    """Neural audio codec. wav: (B, 1, S) in [-1, 1] at 16 kHz -> ids (B, T, Q), T = ceil(S / hop)."""

    family = "codec"
    config_class = CodecConfig
    encode_knobs = ("bitrate", "num_codebooks", "sample_rate", "chunk_seconds")
    decode_options = ("num_samples", "chunk_seconds")

    @classmethod
    def listing(cls, config: CodecConfig) -> dict[str, Any]:
        """What `zoo list` shows of a checkpoint of this config (`zoo.hub` module docstring)."""
        return rate_summary(config)

    def __init__(self, config: CodecConfig) -> None:
        super().__init__(config)
        from vector_quantize_pytorch import ResidualVQ  # imported on first build: it loads einx and torch._dynamo (seconds)
        c = config
        self.encoder = SEANetEncoder(c.seanet())
        if c.decoder == "istft":
            self.decoder = ISTFTDecoder(c.latent_dim, c.hop, c.decoder_dim, c.decoder_blocks, c.decoder_upsample)
        else:
            self.decoder = SEANetDecoder(c.seanet())
        self.quantizer = ResidualVQ(
            dim=c.latent_dim, num_quantizers=c.num_codebooks, codebook_size=c.codebook_size,
            decay=c.codebook_decay, kmeans_init=True, threshold_ema_dead_code=c.dead_code_threshold,
            quantize_dropout=True, commitment_weight=1.0,
        )
        # context (in frames) each chunk needs on both sides so its central frames are exact
        self.encoder_context = math.ceil(receptive_field(self.encoder, input_rate=1) / c.hop) + 1
        decoder_reach = receptive_field(self.decoder, input_rate=c.hop) + getattr(self.decoder, "output_reach", 0)
        self.decoder_context = math.ceil(decoder_reach / c.hop) + 1

    # -- the contract ----------------------------------------------------------------------------------

    @property
    def spec(self) -> TokenSpec:
        c = self.config
        return TokenSpec(
            modality="audio",
            vocab_size=c.codebook_size,
            num_codebooks=c.num_codebooks,
            max_tokens=int(c.max_seconds * c.frame_rate),
            latent_dim=c.latent_dim,
            input=InputContract(layout="B 1 S", value_range=(-1.0, 1.0), sample_rate=c.sample_rate),
        )

    def codebooks_for(self, bitrate: float | None = None, num_codebooks: int | None = None) -> int:
        """The number of codebooks q for a bitrate (kbit/s, one of `config.bitrates`) or an explicit q; default all."""
        return codebooks_for(self.config, bitrate, num_codebooks)

    # -- the model -------------------------------------------------------------------------------------

    def _pad(self, wav: Tensor) -> Tensor:
        """(B, 1, S) -> (B, 1, S') with zeros appended up to a multiple of the hop."""
        return torch.nn.functional.pad(wav, (0, -wav.shape[-1] % self.config.hop))

    def _quantize(self, z: Tensor, num_codebooks: int) -> Tensor:
        """Latents (B, D, T) -> ids (B, T, q): greedy nearest code in each of the first q codebooks.

        Written out rather than calling the quantizer's forward, which k-means-initialises an unused
        codebook from its input even in eval mode: inference must never change the model.
        """
        residual = rearrange(z, "b d t -> b t d")
        codebooks = self.quantizer.codebooks  # (Q, K, D)
        ids = []
        for codebook in codebooks[:num_codebooks]:
            index = torch.cdist(residual, codebook[None].expand(residual.shape[0], -1, -1)).argmin(-1)  # (B, T)
            residual = residual - codebook[index]
            ids.append(index)
        return torch.stack(ids, dim=-1)

    def _dequantize(self, ids: Tensor) -> Tensor:
        """ids (B, T, q) -> quantized latents (B, D, T), summing the first q codebooks."""
        return rearrange(self.quantizer.get_output_from_indices(ids), "b t d -> b d t")

    def forward(self, wav: Tensor, num_codebooks: int | None = None) -> CodecOutput:
        """Encode, quantize and decode in one pass (training and analysis).

        Args:
            wav: (B, 1, S) float, S a multiple of the hop.
            num_codebooks: in eval mode, quantize with this many codebooks (default all); in training
                the quantizer draws its own depth (quantizer dropout).
        """
        z = self.encoder(wav)  # (B, D, T)
        if self.training:
            quantized, codes, commit = self.quantizer(rearrange(z, "b d t -> b t d"))
            quantized = rearrange(quantized, "b t d -> b d t")
            commitment = commit.sum()
        else:
            codes = self._quantize(z, self.codebooks_for(num_codebooks=num_codebooks))
            quantized = self._dequantize(codes)
            commitment = (quantized - z).pow(2).mean()
        return CodecOutput(audio=self.decoder(quantized), codes=codes, commitment=commitment, latents=z)

    # -- encode / decode -------------------------------------------------------------------------------

    def _chunks(self, num_frames: int, chunk_seconds: float | None, context: int) -> list[tuple[int, int, int, int]]:
        seconds = self.config.chunk_seconds if chunk_seconds is None else chunk_seconds
        return chunk_spans(num_frames, max(int(seconds * self.config.frame_rate), 1), context)

    @torch.no_grad()
    def encode(self, wav: Tensor, *, bitrate: float | None = None, num_codebooks: int | None = None,
               sample_rate: int | None = None, chunk_seconds: float | None = None) -> Tokens:
        """Encode waveforms into codes.

        Args:
            wav: (B, 1, S) float in [-1, 1] at `config.sample_rate`, any S >= 1.
            bitrate: kbit/s, one of `config.bitrates` (0.5 kbps per codebook at 50 Hz).
            num_codebooks: q in [1, Q] instead of a bitrate; default all Q.
            sample_rate: the rate of `wav`, checked against the model's (resample first if it differs).
            chunk_seconds: chunk length for long inputs (default `config.chunk_seconds`).
        Returns:
            Tokens with ids (B, T, q), T = ceil(S / hop), and meta["num_samples"] = S.
        """
        c = self.config
        if sample_rate is not None and sample_rate != c.sample_rate:
            raise ValueError(f"audio sampled at {sample_rate} Hz; this codec expects {c.sample_rate} Hz "
                             f"(resample it first, e.g. torchaudio.functional.resample)")
        wav = check_input(wav, self.spec.input, "audio")
        if wav.shape[-1] > c.max_seconds * c.sample_rate:
            raise ValueError(f"audio is {wav.shape[-1] / c.sample_rate:.0f} s long; encode at most "
                             f"{c.max_seconds:g} s per call (split the file, or raise config.max_seconds)")
        q = self.codebooks_for(bitrate, num_codebooks)
        num_samples = wav.shape[-1]
        wav = self._pad(wav.to(self.device))
        hop, frames = c.hop, wav.shape[-1] // c.hop

        def encode_chunk(chunk: tuple[int, int, int, int]) -> Tensor:
            start, stop, lo, hi = chunk
            z = self.encoder(wav[..., lo * hop:hi * hop])  # (B, D, hi - lo)
            return self._quantize(z[..., start - lo:stop - lo], q)  # (B, stop - start, q)

        # chunks over a pool of threads, each op on one (zoo.nn.threads): same ids on any thread count
        ids = torch.cat(map_threads(encode_chunk, self._chunks(frames, chunk_seconds, self.encoder_context)), dim=1)
        b = ids.shape[0]
        return Tokens(ids=ids, lengths=torch.full((b,), frames, device=ids.device),
                      meta={"num_samples": torch.full((b,), num_samples, device=ids.device)})

    @torch.no_grad()
    def decode(self, tokens: Tokens, *, num_samples: int | None = None, chunk_seconds: float | None = None) -> Tensor:
        """Codes -> waveforms (B, 1, S) in [-1, 1].

        Args:
            tokens: from `encode`; ids (B, T, q) with any q <= Q (fewer codebooks, lower quality).
            num_samples: output length S; default the length recorded at encode time, else T · hop.
            chunk_seconds: chunk length for long inputs (default `config.chunk_seconds`).
        """
        c = self.config
        check_tokens(tokens, self.spec)
        ids = tokens.ids
        if ids is None or ids.ndim != 3 or not 1 <= ids.shape[-1] <= c.num_codebooks:
            shape = None if ids is None else tuple(ids.shape)
            raise ValueError(f"codec ids must be (B, T, q) with 1 <= q <= {c.num_codebooks}, got {shape}")
        if bool((tokens.lengths != ids.shape[1]).any()):
            raise ValueError(f"codec tokens are never padded: lengths must all be {ids.shape[1]}, got {tokens.lengths.tolist()}")
        length = num_samples if num_samples is not None else self._recorded_samples(tokens)
        check_budget(length, 1, ids.shape[1] * c.hop, "num_samples")
        ids = ids.to(self.device)
        z = self._dequantize(ids)  # (B, D, T), cheap: a lookup per frame
        hop = c.hop

        def decode_chunk(chunk: tuple[int, int, int, int]) -> Tensor:
            start, stop, lo, hi = chunk
            y = self.decoder(z[..., lo:hi])  # (B, 1, (hi - lo) · hop)
            return y[..., (start - lo) * hop:(stop - lo) * hop]

        out = map_threads(decode_chunk, self._chunks(ids.shape[1], chunk_seconds, self.decoder_context))
        return torch.cat(out, dim=-1)[..., :length].clamp(-1, 1)

    def _recorded_samples(self, tokens: Tokens) -> int:
        n = tokens.meta.get("num_samples")
        if n is None or n.numel() == 0:
            return tokens.width * self.config.hop
        if bool((n != n[0]).any()):
            raise ValueError(f"tokens record different lengths {n.unique().tolist()}; pass num_samples=")
        return int(n[0])


PRESETS: dict[str, dict[str, Any]] = {
    # ~1.2 M parameters; 50 Hz, 8 x 1024 codes (0.5 to 4 kbps); trains on one CPU thread
    "small": dict(channels=16, max_channels=256, latent_dim=64, strides=(4, 4, 4, 5), dilations=(1, 3),
                  num_codebooks=8, codebook_size=1024),
    # the SEANet encoder (one residual unit a level) and a frame-rate decoder with an inverse-STFT head
    "small-istft": dict(channels=16, max_channels=256, latent_dim=64, strides=(4, 4, 4, 5), dilations=(1,),
                        num_codebooks=8, codebook_size=1024, decoder="istft", decoder_dim=192,
                        decoder_blocks=(3, 3), decoder_upsample=2),
    # for tests: the same structure, a few thousand parameters
    "tiny": dict(channels=4, max_channels=16, latent_dim=8, strides=(4, 4, 4, 5), dilations=(1,),
                 num_codebooks=4, codebook_size=64),
}


# ----------------------------------------------------------------------------------------- registration

register_family(Codec, presets=PRESETS)
