"""EnCodec: Meta's neural audio codec, 24 kHz mono (causal) and 48 kHz stereo, with its released weights.

Paper: Défossez, Copet, Synnaeve, Adi, "High Fidelity Neural Audio Compression" (2022),
https://arxiv.org/abs/2210.13438; official code facebookresearch/encodec (MIT), also in transformers
(`EncodecModel`). Our own implementation of the released architecture, proven exact against both at
random init (tests/test_encodec.py).

Architecture: a SEANet encoder (a kernel-7 convolution, then per level one residual unit with a 1x1
shortcut and a strided convolution doubling the channels, strides 2·4·5·8 = 320; a 2-layer skip LSTM; a
kernel-7 convolution to 128 dimensions), a residual VQ of up to 32 codebooks of 1024 entries, and the
mirrored decoder with transposed convolutions. Bitrate = frame rate · 10 bits · codebooks.

- `encodec-24khz`: mono, causal convolutions with reflection padding, 75 frames/s, 1.5 / 3 / 6 / 12 / 24
  kbps (2 / 4 / 8 / 16 / 32 codebooks). Long files run in pieces of `chunk_seconds` with the LSTM state
  and a few frames of history carried across (`zoo.audio.streaming`): the ids equal a whole-file pass,
  and memory is bounded by the piece. `encode_stream()` / `decode_stream()` take pieces of any size.
- `encodec-48khz`: stereo, non-causal convolutions each followed by a one-group GroupNorm, 150 frames/s,
  3 / 6 / 12 / 24 kbps (2 / 4 / 8 / 16 codebooks). As released, it codes 1 s segments that overlap by
  1%, each divided by its own RMS (kept as `meta["scales"]`, which decode multiplies back) and decoded
  segments are cross-faded linearly. Exact per segment, so long files run segment by segment with
  bounded memory (the skip LSTM takes up to `SEGMENT_BATCH` segments as one batch, its convolutions one
  segment at a time); it does not stream.

`decode` returns the original number of samples and does not clamp (neither does the release).
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, Iterable

import torch
from torch import Tensor, nn

from zoo.audio.rvq import CodebookRate, rate_summary, rvq_decode, rvq_encode
from zoo.audio.released import RVQCodec, hf_config, read_safetensors
from zoo.audio.streaming import Stack, check_seanet, seanet_layers
from zoo.audio.weights import fold_weight_norm
from zoo.hub import register_family, register_release
from zoo.tokenizer import InputContract, Tokens, TokenSpec, check_budget, check_weights


@dataclass
class EncodecConfig(CodebookRate):
    """Args (names as in the official SEANet):
        sample_rate: Hz of the input and output.
        channels: audio channels (1 mono, 2 stereo).
        num_filters: width of the full-rate level; doubles after each downsampling.
        ratios: up-sampling ratios in decoder order; the encoder downsamples by them reversed.
        dimension: latent and codebook width.
        num_residual_layers: residual units per level (dilations dilation_base^j).
        residual_kernel_size / kernel_size / last_kernel_size: of the residual, first and last convolutions.
        dilation_base: growth of the dilation across a level's residual units.
        compress: a residual unit's hidden width is dim / compress.
        lstm_layers: layers of the skip LSTM after the encoder's last level and before the decoder's first.
        true_skip: identity shortcuts instead of 1x1 convolutions.
        causal: causal convolutions (24 kHz) or centred ones (48 kHz).
        pad_mode: padding of every convolution ("reflect" in both releases).
        group_norm: a one-group GroupNorm after every convolution (48 kHz's "time_group_norm").
        num_codebooks / codebook_size: Q and K of the residual VQ.
        normalize: divide each segment by its RMS before encoding (48 kHz).
        segment: seconds per independently coded segment (48 kHz: 1.0), None for whole files.
        overlap: fraction of a segment that overlaps the next.
        chunk_seconds: piece length when a causal model runs a long file.
        max_seconds: longest input `encode` accepts.
    """

    sample_rate: int = 24000
    channels: int = 1
    num_filters: int = 32
    ratios: tuple[int, ...] = (8, 5, 4, 2)
    dimension: int = 128
    num_residual_layers: int = 1
    residual_kernel_size: int = 3
    kernel_size: int = 7
    last_kernel_size: int = 7
    dilation_base: int = 2
    compress: int = 2
    lstm_layers: int = 2
    true_skip: bool = False
    causal: bool = True
    pad_mode: str = "reflect"
    group_norm: bool = False
    num_codebooks: int = 32
    codebook_size: int = 1024
    normalize: bool = False
    segment: float | None = None
    overlap: float = 0.01
    chunk_seconds: float = 10.0
    max_seconds: float = 3600.0

    def __post_init__(self) -> None:
        self.ratios = tuple(self.ratios)
        seanet = check_seanet(self, num_codebooks=(1, 1024), codebook_size=(2, 1 << 20), overlap=(0, 0.5),
                              segment=(0.01, 3600), chunk_seconds=(0, 86_400), max_seconds=(0, 7 * 86_400))
        # the SEANet, its skip LSTMs, the codebooks
        check_weights(self, seanet + 8 * self.lstm_layers * self.dimension**2
                      + self.num_codebooks * self.codebook_size * self.dimension)
        if self.codebook_size < 2 or self.codebook_size & (self.codebook_size - 1):
            raise ValueError(f"codebook_size must be a power of two, got {self.codebook_size}")
        if self.channels not in (1, 2):
            raise ValueError(f"channels must be 1 or 2, got {self.channels}")
        if self.segment is not None and self.causal:
            raise ValueError("segmented coding (segment=...) is the non-causal 48 kHz scheme; set causal=False")
        if not self.chunk_seconds * self.frame_rate >= 1:
            raise ValueError(f"chunk_seconds must cover a frame (1/{self.frame_rate} s), got {self.chunk_seconds}")

    @property
    def hop(self) -> int:
        return math.prod(self.ratios)

    @property
    def frame_rate(self) -> int:
        return math.ceil(self.sample_rate / self.hop)

    @property
    def segment_length(self) -> int | None:
        return None if self.segment is None else int(self.segment * self.sample_rate)

    @property
    def segment_stride(self) -> int | None:
        n = self.segment_length
        return None if n is None else max(1, int((1 - self.overlap) * n))

    @classmethod
    def from_name(cls, name: str, **overrides: Any) -> "EncodecConfig":
        if name not in PRESETS:
            raise ValueError(f"{name!r} is not a supported config name; known: {sorted(PRESETS)}")
        return cls(**{**PRESETS[name], **overrides})


PRESETS: dict[str, dict[str, Any]] = {
    "24khz": dict(),  # the defaults: encodec_24khz, 14.9 M parameters
    "48khz": dict(sample_rate=48000, channels=2, causal=False, group_norm=True, num_codebooks=16,
                  normalize=True, segment=1.0),
}


class EnCodec(RVQCodec):
    """EnCodec. wav: (B, C, S) in [-1, 1] at `sample_rate` -> ids (B, T, q), T = ceil(S / hop) (24 kHz)."""

    family = "encodec"
    config_class = EncodecConfig
    encode_knobs: ClassVar[tuple[str, ...]] = ("bitrate", "num_codebooks", "sample_rate", "chunk_seconds")
    decode_options: ClassVar[tuple[str, ...]] = ("num_samples", "chunk_seconds")

    @classmethod
    def listing(cls, config: EncodecConfig) -> dict[str, Any]:
        """What `zoo list` shows of a checkpoint of this config (`zoo.hub` module docstring): the codebooks of the
        bitrates it was released for."""
        low, top = _released_codebooks(config)[0], config.num_codebooks
        note = (f" (bitrate={config.kbps(low):g}-{config.kbps(top):g})"
                + (f", {config.segment:g} s segments" if config.segment else ""))
        return rate_summary(config, min_codebooks=low, note=note)

    def __init__(self, config: EncodecConfig) -> None:
        super().__init__(config)
        c = config
        self.encoder = Stack(seanet_layers(c, decoder=False, fast=True))
        self.decoder = Stack(seanet_layers(c, decoder=True, fast=True))
        self.register_buffer("codebooks", torch.zeros(c.num_codebooks, c.codebook_size, c.dimension))

    @property
    def spec(self) -> TokenSpec:
        c = self.config
        segments = 1 if c.segment is None else c.max_seconds / c.segment_stride * c.sample_rate
        return TokenSpec(
            modality="audio", vocab_size=c.codebook_size, num_codebooks=c.num_codebooks,
            max_tokens=int(c.max_seconds * c.frame_rate + segments),
            input=InputContract(layout=f"B {c.channels} S", value_range=(-1.0, 1.0), sample_rate=c.sample_rate),
        )

    # -- encode ----------------------------------------------------------------------------------------

    def _quantize(self, z: Tensor, q: int) -> Tensor:
        """(B, D, T) -> (B, T, q)."""
        return rvq_encode(z.transpose(1, 2), self.codebooks, q)

    def _dequantize(self, ids: Tensor) -> Tensor:
        """(B, T, q) -> (B, D, T)."""
        return rvq_decode(ids, self.codebooks).transpose(1, 2)

    @torch.no_grad()
    def encode(self, wav: Tensor, *, bitrate: float | None = None, num_codebooks: int | None = None,
               sample_rate: int | None = None, chunk_seconds: float | None = None) -> Tokens:
        """Encode waveforms into codes.

        Args:
            wav: (B, C, S) float in [-1, 1] at `sample_rate`, any S >= 1.
            bitrate: kbit/s, a whole number of codebooks (`config.bitrates`); the releases name 1.5-24 kbps.
            num_codebooks: q in [1, Q] instead of a bitrate; default all Q.
            sample_rate: the rate of `wav`, checked against the model's.
            chunk_seconds: piece length for long inputs (causal model; default `config.chunk_seconds`).
        Returns:
            Tokens with ids (B, T, q) and meta["num_samples"]; 48 kHz adds meta["scales"] (B, segments).
        """
        c = self.config
        wav = self._check_audio(wav, sample_rate)
        q = self.codebooks_for(bitrate, num_codebooks)
        if c.segment is None:
            return self._tokens(self._encode_causal(wav, q, chunk_seconds), wav.shape[-1])
        segments = [wav[..., s:s + c.segment_length] for s in range(0, wav.shape[-1], c.segment_stride)]
        scales = [self._segment_scale(x) for x in segments] if c.normalize else None
        parts = []
        for run in runs([x.shape[-1] for x in segments], SEGMENT_BATCH):
            xs = (segments[i] / scales[i][:, None, None] if scales else segments[i] for i in run)
            parts += [self._quantize(z, q) for z in self.encoder.run_many(xs)]
        meta = {"scales": torch.stack(scales, dim=1)} if scales else {}
        return self._tokens(torch.cat(parts, dim=1), wav.shape[-1], **meta)

    @staticmethod
    def _segment_scale(x: Tensor) -> Tensor:
        """A segment's RMS over time of its channel mean plus 1e-8, as released: (B, C, n) -> (B,)."""
        return x.mean(dim=1, keepdim=True).pow(2).mean(dim=2, keepdim=True).sqrt().view(-1) + 1e-8

    # -- decode ----------------------------------------------------------------------------------------

    @torch.no_grad()
    def decode(self, tokens: Tokens, *, num_samples: int | None = None, chunk_seconds: float | None = None) -> Tensor:
        """Codes -> waveforms (B, C, S).

        Args:
            tokens: from `encode`; ids (B, T, q) with any q <= Q.
            num_samples: output length S; default the length recorded at encode time, else T · hop.
            chunk_seconds: piece length for long inputs (causal model).
        """
        c = self.config
        ids, length = self._ids_and_length(tokens, num_samples)
        if c.segment is not None:
            return self._decode_segments(ids, tokens.meta.get("scales"), length)
        length = ids.shape[1] * c.hop if length is None else check_budget(length, 1, ids.shape[1] * c.hop,
                                                                          "num_samples")
        return self._decode_causal(ids, length, chunk_seconds)

    def segment_frames(self, num_samples: int) -> list[int]:
        """Frames of each coded segment of a `num_samples` input (48 kHz)."""
        c = self.config
        return [math.ceil(min(c.segment_length, num_samples - s) / c.hop)
                for s in range(0, num_samples, c.segment_stride)]

    def _decode_segments(self, ids: Tensor, scales: Tensor | None, length: int | None) -> Tensor:
        c = self.config
        if length is None:
            raise ValueError("48 kHz tokens need meta['num_samples'] (or num_samples=) to find their segments")
        frames = self.segment_frames(length)
        if sum(frames) != ids.shape[1]:
            raise ValueError(f"{ids.shape[1]} frames do not match {length} samples ({sum(frames)} frames in "
                             f"{len(frames)} segments)")
        if c.normalize and (scales is None or scales.shape[1] != len(frames)):
            raise ValueError(f"48 kHz tokens need meta['scales'] with {len(frames)} segment scales, got "
                             f"{None if scales is None else tuple(scales.shape)}")
        def segments():  # runs of segments of one length go through `run_many` together
            starts = [0, *itertools.accumulate(frames)]
            for run in runs(frames, SEGMENT_BATCH):
                ys = self.decoder.run_many(self._dequantize(ids[:, starts[i]:starts[i + 1]]) for i in run)
                for i, y in zip(run, ys):
                    yield y * scales[:, i, None, None].to(y) if c.normalize else y

        return overlap_add(segments(), c.segment_stride, length)

    # -- released weights ------------------------------------------------------------------------------

    @staticmethod
    def is_release(path: str | Path) -> bool:
        """An official torch-hub `.th` state dict, or a transformers `EncodecModel` folder (config.json)."""
        path = Path(path)
        return _official_file(path) is not None or hf_config(path, "encodec") is not None

    @classmethod
    def from_release(cls, path: str | Path) -> "EnCodec":
        """Convert a release: `encodec_24khz-d7cc33bc.th` / `encodec_48khz-7e698e3e.th` (read once with
        torch.load(weights_only=True)), or a transformers folder (facebook/encodec_24khz, _48khz)."""
        path = Path(path)
        hf = hf_config(path, "encodec")
        if hf is not None:
            config, state = _config_from_hf(hf), read_safetensors(path)
        elif (file := _official_file(path)) is not None:
            state = {_official_to_hf(k): v for k, v in torch.load(file, map_location="cpu", weights_only=True).items()}
            config = _config_from_weights(state)
        else:
            raise ValueError(f"{str(path)!r} is not an EnCodec release: expected an official encodec_*.th file or "
                             "a transformers folder whose config.json has model_type 'encodec'")
        model = cls(config)
        model.load_state_dict(_to_ours(state, config), strict=True)
        return model.eval()


SEGMENT_BATCH = 16  # 48 kHz segments whose skip LSTM runs as one batch (`Stack.run_many`)


def runs(lengths: list[int], size: int) -> list[range]:
    """Consecutive indices of equal `lengths` in runs of at most `size`: [9, 9, 9, 4], 2 -> [0, 1], [2], [3]."""
    out: list[range] = []
    start = 0
    for i in range(1, len(lengths) + 1):
        if i == len(lengths) or lengths[i] != lengths[start] or i - start == size:
            out.append(range(start, i))
            start = i
    return out


def overlap_add(frames: Iterable[Tensor], stride: int, length: int) -> Tensor:
    """Cross-fade segments (B, C, n_i) placed every `stride` samples with triangular weights, normalised by
    the summed weights (EnCodec's linear overlap-add); `length` is the total. Each segment is added into the
    output as it comes, and what lies before the next segment's start is final and normalised then, so besides
    the output only one segment and the weights of one segment's span are held."""
    out = norm = weight = None
    done = 0  # out[..., :done] is final
    for i, frame in enumerate(frames):
        n, start = frame.shape[-1], i * stride
        if out is None:  # the weights follow the first (full-length) segment, as released
            t = torch.linspace(0, 1, n + 2, device=frame.device, dtype=frame.dtype)[1:-1]
            weight = 0.5 - (t - 0.5).abs()
            total = max(length, stride * ((length - 1) // stride) + n) if length > 0 else n
            out = frame.new_zeros(*frame.shape[:-1], total)
            norm = frame.new_zeros(0)  # summed weights of out[..., done:]
        out[..., start:start + n].add_(weight[:n] * frame)
        final = min(start + stride, total)  # no later segment reaches before its start
        if max(start + n, final) - done > norm.numel():
            norm = torch.cat([norm, norm.new_zeros(max(start + n, final) - done - norm.numel())])
        norm[start - done:start - done + n] += weight[:n]
        out[..., done:final].div_(norm[:final - done].clamp(min=torch.finfo(norm.dtype).tiny))
        norm, done = norm[final - done:], final
    if done < total:  # the last segment's tail, and samples past it that no segment reached (zero)
        norm = torch.cat([norm, norm.new_zeros(total - done - norm.numel())])
        out[..., done:].div_(norm.clamp(min=torch.finfo(norm.dtype).tiny))
    return out[..., :length]


# ----------------------------------------------------------------------------------------- conversion


def _official_file(path: Path) -> Path | None:
    """The official torch-hub state dict `path` is, or the one file of that name in the folder `path`."""
    def official(p: Path) -> bool:
        return p.suffix == ".th" and p.name.startswith("encodec_") and "_lm_" not in p.name and p.is_file()

    if path.is_dir():
        found = [p for p in path.glob("encodec_*.th") if official(p)]
        return found[0] if len(found) == 1 else None
    return path if official(path) else None


def _official_to_hf(key: str) -> str:
    """An official encodec state-dict key in transformers' naming (the layer indices are the same)."""
    for old, new in ((".model.", ".layers."), (".conv.conv.", ".conv."), (".convtr.convtr.", ".conv."),
                     (".conv.norm.", ".norm."), (".convtr.norm.", ".norm."), ("quantizer.vq.layers.", "quantizer.layers."),
                     ("._codebook.", ".codebook.")):
        key = key.replace(old, new)
    return key


def _to_ours(state: dict[str, Tensor], config: EncodecConfig) -> dict[str, Tensor]:
    """transformers-named weights -> ours: weight norm folded (`zoo.audio.weights`), codebooks stacked."""
    out = {k: v.float() for k, v in fold_weight_norm(state).items() if not k.startswith("quantizer.")}
    out["codebooks"] = torch.stack([state[f"quantizer.layers.{i}.codebook.embed"].float()
                                    for i in range(config.num_codebooks)])
    return out


def _config_from_hf(hf: dict[str, Any]) -> EncodecConfig:
    if hf.get("trim_right_ratio", 1.0) != 1.0:
        raise ValueError(f"trim_right_ratio={hf['trim_right_ratio']} is not supported (the releases use 1.0)")
    if hf.get("codebook_dim", hf["hidden_size"]) != hf["hidden_size"]:
        raise ValueError("codebook_dim must equal hidden_size (no projection in EnCodec's quantizer)")
    ratios = tuple(hf["upsampling_ratios"])
    frame_rate = math.ceil(hf["sampling_rate"] / math.prod(ratios))
    num_q = int(1000 * hf["target_bandwidths"][-1] // (frame_rate * 10))
    return EncodecConfig(
        sample_rate=hf["sampling_rate"], channels=hf["audio_channels"], num_filters=hf["num_filters"], ratios=ratios,
        dimension=hf["hidden_size"], num_residual_layers=hf["num_residual_layers"],
        residual_kernel_size=hf["residual_kernel_size"], kernel_size=hf["kernel_size"],
        last_kernel_size=hf["last_kernel_size"], dilation_base=hf["dilation_growth_rate"], compress=hf["compress"],
        lstm_layers=hf["num_lstm_layers"], true_skip=not hf["use_conv_shortcut"], causal=hf["use_causal_conv"],
        pad_mode=hf["pad_mode"], group_norm=hf["norm_type"] == "time_group_norm", num_codebooks=num_q,
        codebook_size=hf["codebook_size"], normalize=hf["normalize"], segment=hf.get("chunk_length_s"),
        overlap=hf.get("overlap") or 0.01,
    )


def _config_from_weights(state: dict[str, Tensor]) -> EncodecConfig:
    """The architecture of an official state dict (transformers naming), read from its shapes; what weights
    cannot tell (causality, rate, segments) follows the release they belong to: group norm = 48 kHz."""
    def weight(prefix: str) -> Tensor:
        return state[f"{prefix}.weight_v"] if f"{prefix}.weight_v" in state else state[f"{prefix}.weight"]

    first = weight("encoder.layers.0.conv")
    layers = sorted({int(k.split(".")[2]) for k in state if k.startswith("encoder.layers.")})
    strided = [i for i in layers if f"encoder.layers.{i}.conv.weight_v" in state or f"encoder.layers.{i}.conv.weight" in state]
    strided = strided[1:-1]  # between the first and last convolutions
    ratios = tuple(weight(f"encoder.layers.{i}.conv").shape[-1] // 2 for i in reversed(strided))
    blocks = [i for i in layers if any(k.startswith(f"encoder.layers.{i}.block.") for k in state)]
    lstm = sum(1 for k in state if k.startswith("encoder.") and ".lstm.weight_ih_l" in k)
    last = weight(f"encoder.layers.{layers[-1]}.conv")
    hidden = weight(f"encoder.layers.{blocks[0]}.block.1.conv") if blocks else None
    group_norm = "encoder.layers.0.norm.weight" in state
    preset = PRESETS["48khz" if group_norm else "24khz"]
    return EncodecConfig(**{
        **preset, "channels": first.shape[1], "num_filters": first.shape[0], "kernel_size": first.shape[-1],
        "ratios": ratios, "dimension": last.shape[0], "last_kernel_size": last.shape[-1],
        "num_residual_layers": len(blocks) // max(len(ratios), 1),
        "residual_kernel_size": hidden.shape[-1] if hidden is not None else 3,
        "compress": first.shape[0] // hidden.shape[0] if hidden is not None else 2,
        "lstm_layers": lstm, "true_skip": not any(".shortcut." in k for k in state), "group_norm": group_norm,
        "num_codebooks": sum(1 for k in state if k.endswith(".codebook.embed")),
        "codebook_size": state["quantizer.layers.0.codebook.embed"].shape[0],
    })


# the codebooks of the bandwidths each release was trained for (1.5/3/6/12/24 kbps at 24 kHz, 3/6/12/24 at 48 kHz;
# the codebooks its `zoo list` row gives)
RELEASED_CODEBOOKS = {24000: (2, 4, 8, 16, 32), 48000: (2, 4, 8, 16)}


def _released_codebooks(config: EncodecConfig) -> tuple[int, ...]:
    return RELEASED_CODEBOOKS.get(config.sample_rate, tuple(range(1, config.num_codebooks + 1)))


# ----------------------------------------------------------------------------------------- released weights
# `zoo.load(name)` downloads these files, converts them once with `EnCodec.from_release` and caches our checkpoint.
# The official torch-hub files (https://dl.fbaipublicfiles.com/encodec/v0/encodec_24khz-d7cc33bc.th and
# encodec_48khz-7e698e3e.th; the name carries the first 8 hex digits of their sha256) convert too, by path.

_LICENCE = (
    "Code: MIT (facebookresearch/encodec, relicensed from CC-BY-NC 4.0 on 2023-04-26, commit 349b729). Weights: "
    "their licence is an open question upstream (facebookresearch/encodec issues #49 and #69 ask and are unanswered; "
    "audiocraft ships its EnCodec-based weights under CC-BY-NC 4.0); check before commercial use."
)


def _description(config: EncodecConfig) -> str:
    """The card of the release of preset `config`: its rates and codebooks as the preset gives them."""
    c, qs = config, _released_codebooks(config)
    layout = {1: "mono", 2: "stereo"}[c.channels]
    segments = (f", {c.segment:g} s segments" if c.segment else "") + (" with their own RMS scale" if c.normalize else "")
    coding = "causal and streaming" if c.causal else "non-causal" + segments
    return (f"EnCodec {c.sample_rate / 1000:g} kHz {layout}, {coding} (Défossez et al. 2022); 14.9 M parameters; "
            f"{c.frame_rate:g} frames/s x {qs[0]}-{qs[-1]} codebooks of {c.codebook_size}: "
            f"{'/'.join(f'{c.kbps(q):g}' for q in qs)} kbps. {_LICENCE}")


def _summary(preset: str) -> dict[str, Any]:
    config = EncodecConfig.from_name(preset)
    return {**EnCodec.listing(config), "description": _description(config)}


RELEASES: dict[str, dict[str, Any]] = {
    "encodec-24khz": dict(
        # the commit embeddings-benchmark/mteb pins for this repo (mteb/models/encodec_model.py, ModelMeta
        # revision=); other public code pins the same one. Not confirmed against the hub, out of reach from here
        family="encodec", hf_repo="facebook/encodec_24khz", revision="c1dbe2ae3f1de713481a3b3e7c47f357092ee040",
        files=("config.json", "model.safetensors"), license="MIT",
        license_url="https://github.com/facebookresearch/encodec/blob/main/LICENSE", non_commercial=False,
        summary=_summary("24khz"),
    ),
    "encodec-48khz": dict(
        family="encodec", hf_repo="facebook/encodec_48khz", revision=None,
        files=("config.json", "model.safetensors"), license="MIT",
        license_url="https://github.com/facebookresearch/encodec/blob/main/LICENSE", non_commercial=False,
        summary=_summary("48khz"),
    ),
}


# ----------------------------------------------------------------------------------------- registration

register_family(EnCodec, presets=PRESETS)
for _name, _release in RELEASES.items():
    register_release(_name, **_release)
