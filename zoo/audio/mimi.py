"""Mimi: Kyutai's streaming speech codec (24 kHz, 12.5 frames/s, split residual VQ), the codec of Moshi.

Paper: Défossez et al., "Moshi: a speech-text foundation model for real-time dialogue" (2024),
https://arxiv.org/abs/2410.00037; official code kyutai-labs/moshi, also in transformers (`MimiModel`).
Our own implementation of the released architecture, proven exact at random init against transformers
(tests/test_mimi.py) and against Kyutai's moshi code (tests/test_mimi_moshi.py, a fixture recorded by
scripts/make_mimi_moshi_fixture.py). Both release formats convert: the transformers folder (`mimi`, kyutai/mimi)
and the original moshi-format file (`mimi-moshiko`, tokenizer-e351c8d8-checkpoint125.safetensors).

Architecture: EnCodec's causal SEANet (strides 4·5·6·8 = 960, 64 filters, identity shortcuts, zero padding,
no LSTM; `zoo.audio.streaming`) to 512 dimensions at 25 Hz; a causal transformer (8 layers, 8 heads, RoPE,
LayerScale, attention over the last 250 frames); a learned strided convolution to 12.5 Hz (replicate
padding); a split residual VQ: one "semantic" codebook and up to 31 "acoustic" ones, 2048 entries each,
both quantizing the same latent through their own 1x1 projections to 256 dimensions (the acoustic ones
residually). The decoder mirrors it: a depthwise transposed convolution to 25 Hz, a causal transformer, the
SEANet decoder. Moshi uses 8 codebooks (1.1 kbps).

Everything is causal: long files run in pieces of `chunk_seconds` with the transformer's keys and values
(its last 250 frames) and a few frames of convolution history carried, equal to a whole-file pass; an
`encode_stream()` / `decode_stream()` takes pieces of any size.

Two places where the reference implementations differ from each other (ours follows the first of each):
- a partial last frame: transformers pads each convolution's input on the right; moshi zero-pads the waveform
  to whole frames first. Only the last frame's codes can differ; `encode(F.pad(wav, (0, -S % 1920)))` gives
  moshi's.
- streaming: moshi's streaming mode keeps a ring of exactly `context` keys that already holds the piece's
  new steps, so past 250 steps (10 s) the first steps of each piece attend to fewer frames than in its own
  whole-file pass; our streams equal the whole-file pass (and transformers, and moshi's whole-file pass).
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import Tensor, nn

from zoo.audio.rvq import CodebookRate, cdist_table, rate_summary, rvq_decode, rvq_encode
from zoo.audio.released import RVQCodec, hf_config, read_safetensors
from zoo.audio.streaming import Conv, ConvTranspose, Stack, check_seanet, seanet_layers
from zoo.audio.weights import fold_weight_norm
from zoo.hub import register_family, register_release
from zoo.nn.cache import cached_on
from zoo.tokenizer import InputContract, Tokens, TokenSpec, check_budget, check_weights


@dataclass
class MimiConfig(CodebookRate):
    """Args: the SEANet fields as in `EncodecConfig`; then
        num_layers / num_heads / ffn_dim / context: the transformers (each side), attention over the last
            `context` frames at 25 Hz.
        rope_period: RoPE's max period.
        downsample: stride of the learned conv from the SEANet rate to the frame rate.
        num_codebooks / num_semantic / codebook_size / codebook_dim: the split RVQ.
    """

    sample_rate: int = 24000
    channels: int = 1
    num_filters: int = 64
    ratios: tuple[int, ...] = (8, 6, 5, 4)
    dimension: int = 512
    num_residual_layers: int = 1
    residual_kernel_size: int = 3
    kernel_size: int = 7
    last_kernel_size: int = 3
    dilation_base: int = 2
    compress: int = 2
    num_layers: int = 8
    num_heads: int = 8
    ffn_dim: int = 2048
    context: int = 250
    rope_period: float = 10000.0
    downsample: int = 2
    num_codebooks: int = 32
    num_semantic: int = 1
    codebook_size: int = 2048
    codebook_dim: int = 256
    chunk_seconds: float = 10.0
    max_seconds: float = 3600.0
    # fixed by the architecture (kept as fields so the SEANet builder reads one shape of config)
    lstm_layers: int = 0
    true_skip: bool = True
    causal: bool = True
    pad_mode: str = "constant"
    group_norm: bool = False

    def __post_init__(self) -> None:
        self.ratios = tuple(self.ratios)
        seanet = check_seanet(self, num_layers=(0, 128), num_heads=(1, 256), ffn_dim=(1, 65536), context=(1, 1 << 20),
                              rope_period=(1, 1e9), downsample=(1, 64), num_codebooks=(2, 1024), num_semantic=(1, 1024),
                              codebook_size=(2, 1 << 20), codebook_dim=(1, 16384), chunk_seconds=(0, 86_400),
                              max_seconds=(0, 7 * 86_400))
        # two transformers of about (4·dim² + 2·dim·ffn) per layer, the SEANet, the codebooks
        check_weights(self, 2 * self.num_layers * (4 * self.dimension**2 + 2 * self.dimension * self.ffn_dim) + seanet
                      + self.num_codebooks * self.codebook_size * self.codebook_dim)
        if self.dimension % self.num_heads:
            raise ValueError(f"dimension {self.dimension} must be a multiple of num_heads {self.num_heads}")
        if not 1 <= self.num_semantic < self.num_codebooks:
            raise ValueError(f"num_semantic must lie in [1, num_codebooks), got {self.num_semantic}")

    @property
    def hop(self) -> int:
        return math.prod(self.ratios) * self.downsample

    @property
    def frame_rate(self) -> float:
        return self.sample_rate / self.hop


class TransformerLayer(nn.Module):
    """Pre-norm block: x + s1 · Attn(LN(x)), then x + s2 · MLP(LN(x)); GELU MLP, no biases in the linears."""

    def __init__(self, dim: int, heads: int, ffn: int) -> None:
        super().__init__()
        self.heads = heads
        self.input_layernorm = nn.LayerNorm(dim, eps=1e-5)
        self.post_attention_layernorm = nn.LayerNorm(dim, eps=1e-5)
        self.q_proj, self.k_proj, self.v_proj, self.o_proj = (nn.Linear(dim, dim, bias=False) for _ in range(4))
        self.fc1, self.fc2 = nn.Linear(dim, ffn, bias=False), nn.Linear(ffn, dim, bias=False)
        self.attn_scale, self.mlp_scale = nn.Parameter(torch.ones(dim)), nn.Parameter(torch.ones(dim))

    def forward(self, x: Tensor, cos: Tensor, sin: Tensor, past: tuple[Tensor, Tensor] | None, context: int
                ) -> tuple[Tensor, tuple[Tensor, Tensor]]:
        """x: (B, T, D); cos/sin: (T, Dh) of the new positions; past: keys and values (B, H, P, Dh) of the last
        frames. Returns y and the keys/values to keep (the last `context` - 1 positions)."""
        b, t, d = x.shape
        h = self.input_layernorm(x)

        def heads(z: Tensor) -> Tensor:
            return z.view(b, t, self.heads, -1).transpose(1, 2)  # (B, H, T, Dh)

        q, k, v = heads(self.q_proj(h)), heads(self.k_proj(h)), heads(self.v_proj(h))
        q, k = rope(q, cos, sin), rope(k, cos, sin)
        p = 0
        if past is not None:
            p = past[0].shape[2]
            k, v = torch.cat([past[0], k], dim=2), torch.cat([past[1], v], dim=2)
        i = torch.arange(p, p + t, device=x.device)[:, None]
        j = torch.arange(p + t, device=x.device)[None]
        mask = (j <= i) & (j > i - context)  # causal, over the last `context` frames
        a = F.scaled_dot_product_attention(q, k, v, attn_mask=mask)
        x = x + self.attn_scale * self.o_proj(a.transpose(1, 2).reshape(b, t, d))
        x = x + self.mlp_scale * self.fc2(F.gelu(self.fc1(self.post_attention_layernorm(x))))
        keep = max(context - 1, 0)
        return x, (k[:, :, -keep:] if keep else k[:, :, :0], v[:, :, -keep:] if keep else v[:, :, :0])


def rope(x: Tensor, cos: Tensor, sin: Tensor) -> Tensor:
    """Rotary position embedding, halves convention: x · cos + rotate_half(x) · sin. x: (B, H, T, Dh)."""
    x1, x2 = x.chunk(2, dim=-1)
    return x * cos + torch.cat([-x2, x1], dim=-1) * sin


class Transformer(nn.Module):
    """Mimi's causal transformer over (B, D, T) frames; `state` = (frames seen, keys/values per layer)."""

    recurrent = True

    def __init__(self, dim: int, layers: int, heads: int, ffn: int, context: int, period: float) -> None:
        super().__init__()
        self.layers = nn.ModuleList(TransformerLayer(dim, heads, ffn) for _ in range(layers))
        self.context, self.head_dim = context, dim // heads
        self.register_buffer("inv_freq", 1.0 / period ** (torch.arange(0, self.head_dim, 2).float() / self.head_dim),
                             persistent=False)

    def forward(self, x: Tensor, state: Any = None) -> tuple[Tensor, Any]:
        offset, pasts = state if state is not None else (0, [None] * len(self.layers))
        t = x.shape[-1]
        freqs = torch.arange(offset, offset + t, device=x.device).float()[:, None] * self.inv_freq[None]
        emb = torch.cat([freqs, freqs], dim=-1)
        cos, sin = emb.cos().to(x.dtype), emb.sin().to(x.dtype)
        h = x.transpose(1, 2)
        new = []
        for layer, past in zip(self.layers, pasts):
            h, kv = layer(h, cos, sin, past, self.context)
            new.append(kv)
        return h.transpose(1, 2), (offset + t, new)


def _torch_kernels(layer: nn.Module) -> None:
    """Run `layer`'s convolutions on torch's own kernels at inference (turn off their fast path)."""
    for m in layer.modules():
        if isinstance(m, (Conv, ConvTranspose)):
            m.fast = False


class Mimi(RVQCodec):
    """Mimi. wav: (B, 1, S) in [-1, 1] at 24 kHz -> ids (B, T, q), T = ceil(S / 1920) (12.5 frames/s)."""

    family = "mimi"
    config_class = MimiConfig
    encode_knobs: ClassVar[tuple[str, ...]] = ("bitrate", "num_codebooks", "sample_rate", "chunk_seconds")
    decode_options: ClassVar[tuple[str, ...]] = ("num_samples", "chunk_seconds")

    def __init__(self, config: MimiConfig) -> None:
        super().__init__(config)
        c = config
        d = c.dimension
        transformer = dict(dim=d, layers=c.num_layers, heads=c.num_heads, ffn=c.ffn_dim, context=c.context,
                           period=c.rope_period)
        down = Conv(d, d, 2 * c.downsample, c.downsample, causal=True, pad_mode="replicate", bias=False)
        up = ConvTranspose(d, d, 2 * c.downsample, c.downsample, causal=True, groups=d, bias=False)
        # The encoder keeps torch's kernels: with the fast ones (`seanet_layers`) the release architecture's codes
        # flipped at near-ties against transformers' (5 of 9376 ids over 8 random inputs, 0 on torch's). The decoder
        # takes them below its top level; at the top (first convolution and residual units) rounding is amplified by
        # every layer after it (10 s at the release architecture: 2.0e-5 from transformers on torch's kernels,
        # 5.6e-5 all fast). Both sides run their wide middle resampling convolutions as `two_tap` products
        # (`two_tap_pays`), closer to exact arithmetic than torch's kernels: 10 s decoded from the reference's codes
        # is 3.9-4.1e-5 from a float64 run of transformers, where transformers itself is 4.0-4.5e-5 and torch's
        # kernels in our layers 4.2-4.5e-5; no id flipped over 500 frames (4 inputs of 10 s).
        seanet = seanet_layers(c, decoder=True, fast=True)
        ups = [i for i, m in enumerate(seanet) if isinstance(m, ConvTranspose)]
        for layer in seanet[:ups[1] if len(ups) > 1 else len(seanet)]:
            _torch_kernels(layer)
        self.encoder = Stack([*seanet_layers(c, decoder=False), Transformer(**transformer), down])
        self.decoder = Stack([up, Transformer(**transformer), *seanet])
        q = c.num_codebooks
        self.register_buffer("codebooks", torch.zeros(q, c.codebook_size, c.codebook_dim))
        self.input_proj = nn.ModuleList(nn.Conv1d(d, c.codebook_dim, 1, bias=False) for _ in range(2))  # semantic, acoustic
        self.output_proj = nn.ModuleList(nn.Conv1d(c.codebook_dim, d, 1, bias=False) for _ in range(2))

    @property
    def min_codebooks(self) -> int:  # codes start with the semantic codebooks
        return self.config.num_semantic

    @classmethod
    def listing(cls, config: MimiConfig) -> dict[str, Any]:
        """What `zoo list` shows of a checkpoint of this config (`zoo.hub` module docstring)."""
        return rate_summary(config, min_codebooks=config.num_semantic)

    @property
    def spec(self) -> TokenSpec:
        c = self.config
        return TokenSpec(modality="audio", vocab_size=c.codebook_size, num_codebooks=c.num_codebooks,
                         max_tokens=int(c.max_seconds * c.frame_rate) + 1,
                         input=InputContract(layout="B 1 S", value_range=(-1.0, 1.0), sample_rate=c.sample_rate))

    def _quantize(self, z: Tensor, q: int) -> Tensor:
        """(B, D, T) -> (B, T, q): the semantic codebooks and the acoustic ones, each through its projection."""
        s = self.config.num_semantic
        parts = []
        for i, (start, n) in enumerate(((0, s), (s, q - s))):
            if n:
                x = self.input_proj[i](z).transpose(1, 2)
                parts.append(rvq_encode(x, self.codebooks[start:start + n], n, distance="cdist",
                                        tables=self._cdist_tables()[start:start + n]))
        return torch.cat(parts, dim=-1)

    def _cdist_tables(self) -> Tensor:
        """The codebooks' side of torch.cdist's distance (`cdist_table`), cached until the codebooks change."""
        return cached_on(self, self.codebooks, cdist_table, "_tables")

    def _dequantize(self, ids: Tensor) -> Tensor:
        """(B, T, q) -> (B, D, T)."""
        s = self.config.num_semantic
        out = self.output_proj[0](rvq_decode(ids[..., :s], self.codebooks[:s]).transpose(1, 2))
        if ids.shape[-1] > s:
            out = out + self.output_proj[1](rvq_decode(ids[..., s:], self.codebooks[s:]).transpose(1, 2))
        return out

    @torch.no_grad()
    def encode(self, wav: Tensor, *, bitrate: float | None = None, num_codebooks: int | None = None,
               sample_rate: int | None = None, chunk_seconds: float | None = None) -> Tokens:
        """Encode waveforms into codes.

        Args:
            wav: (B, 1, S) float in [-1, 1] at 24 kHz, any S >= 1.
            bitrate: kbit/s, a whole number of codebooks (0.1375 kbps each; Moshi uses 8 = 1.1 kbps).
            num_codebooks: q in [1, 32] instead; default all.
            sample_rate: the rate of `wav`, checked against 24 kHz.
            chunk_seconds: piece length for long inputs (default `config.chunk_seconds`).
        Returns:
            Tokens with ids (B, T, q) (the semantic codebook first) and meta["num_samples"].
        """
        wav = self._check_audio(wav, sample_rate)
        q = self.codebooks_for(bitrate, num_codebooks)
        return self._tokens(self._encode_causal(wav, q, chunk_seconds), wav.shape[-1])

    @torch.no_grad()
    def decode(self, tokens: Tokens, *, num_samples: int | None = None, chunk_seconds: float | None = None) -> Tensor:
        """Codes (B, T, q), q >= 1 (the semantic codebook first) -> waveforms (B, 1, S), not clamped."""
        c = self.config
        ids, length = self._ids_and_length(tokens, num_samples)
        length = check_budget(ids.shape[1] * c.hop if length is None else length, 1, ids.shape[1] * c.hop, "num_samples")
        return self._decode_causal(ids, length, chunk_seconds)

    # -- released weights ------------------------------------------------------------------------------

    @staticmethod
    def is_release(path: str | Path) -> bool:
        """A transformers `MimiModel` folder (config.json with model_type "mimi"), or the moshi-format codec file
        (`tokenizer-*.safetensors` whose header has moshi's split-RVQ keys) or a folder holding one."""
        path = Path(path)
        return hf_config(path, "mimi") is not None or _moshi_file(path) is not None

    @classmethod
    def from_release(cls, path: str | Path) -> "Mimi":
        """Convert a release, as downloaded:

        - transformers: a folder with config.json (model_type "mimi") and safetensors (kyutai/mimi, or
          `MimiModel.save_pretrained`);
        - moshi (the original): `tokenizer-e351c8d8-checkpoint125.safetensors` from kyutai/moshiko-pytorch-bf16
          (and Kyutai's other moshi-format repos), or the folder holding it. The architecture is the release's
          (`MimiConfig()`) unless a moshi config.json beside it names a mimi config (`mimi_config_name`), as
          moshi's `CheckpointInfo` reads it; weight-normed (training) checkpoints are folded; bf16 -> float32.
        """
        path = Path(path)
        hf = hf_config(path, "mimi")
        if hf is not None:
            state, config = read_safetensors(path), _config_from_hf(hf)
        elif (file := _moshi_file(path)) is not None:
            from safetensors.torch import load_file

            config = _config_from_moshi(_moshi_mimi_config(file.parent))
            state = _moshi_to_hf(load_file(str(file), device="cpu"), config.num_heads)
        else:
            raise ValueError(f"{str(path)!r} is not a Mimi release: expected a transformers folder whose config.json "
                             "has model_type 'mimi', or moshi's tokenizer-*.safetensors (or a folder holding it)")
        model = cls(config)
        ours = _from_hf(state, config, len(model.encoder.layers) - 2)
        shapes = {k: v.shape for k, v in model.state_dict().items()}
        wrong = sorted(set(shapes) ^ set(ours)) + [k for k in shapes if k in ours and ours[k].shape != shapes[k]]
        if wrong:
            raise ValueError(f"{str(path)!r} does not fit the Mimi architecture {config}: missing, extra or mis-shaped "
                             f"weights {wrong[:6]}{' ...' if len(wrong) > 6 else ''}")
        model.load_state_dict(ours, strict=True)
        return model.eval()


def _config_from_hf(hf: dict[str, Any]) -> MimiConfig:
    checks = {"use_causal_conv": True, "pad_mode": "constant", "use_conv_shortcut": False, "trim_right_ratio": 1.0,
              "hidden_act": "gelu", "attention_bias": False}
    for key, want in checks.items():
        if hf.get(key, want) != want:
            raise ValueError(f"Mimi config {key}={hf[key]!r} is not supported (the release has {want!r})")
    d, heads = hf["hidden_size"], hf["num_attention_heads"]
    if hf.get("num_key_value_heads", heads) != heads or hf.get("head_dim", d // heads) != d // heads:
        raise ValueError("grouped-query attention or a custom head_dim is not part of the Mimi release")
    if hf.get("upsample_groups", d) != d or hf.get("codebook_dim", hf["vector_quantization_hidden_dimension"]) != \
            hf["vector_quantization_hidden_dimension"]:
        raise ValueError("upsample_groups must equal hidden_size and codebook_dim the VQ hidden dimension")
    ratios = tuple(hf["upsampling_ratios"])
    seanet_rate = hf["sampling_rate"] / math.prod(ratios)
    frame_rate = hf.get("_frame_rate") or hf.get("frame_rate") or 12.5
    rope = hf.get("rope_parameters") or {}
    return MimiConfig(
        sample_rate=hf["sampling_rate"], channels=hf["audio_channels"], num_filters=hf["num_filters"], ratios=ratios,
        dimension=d, num_residual_layers=hf["num_residual_layers"], residual_kernel_size=hf["residual_kernel_size"],
        kernel_size=hf["kernel_size"], last_kernel_size=hf["last_kernel_size"], dilation_base=hf["dilation_growth_rate"],
        compress=hf["compress"], num_layers=hf["num_hidden_layers"], num_heads=heads, ffn_dim=hf["intermediate_size"],
        context=hf["sliding_window"], rope_period=rope.get("rope_theta", hf.get("rope_theta", 10000.0)),
        downsample=round(seanet_rate / frame_rate), num_codebooks=hf["num_quantizers"],
        num_semantic=hf["num_semantic_quantizers"], codebook_size=hf["codebook_size"],
        codebook_dim=hf["vector_quantization_hidden_dimension"],
    )


def _from_hf(state: dict[str, Tensor], c: MimiConfig, n_seanet: int) -> dict[str, Tensor]:
    """transformers names (either layout: `encoder.encoder_seanet.*` since 5.x, `encoder.*` /
    `encoder_transformer.*` before) -> ours; codebooks = embed_sum / max(cluster_usage, 1e-5)."""
    old_to_new = (("encoder_transformer.", "encoder.encoder_transformer."), ("decoder_transformer.", "decoder.decoder_transformer."),
                  ("downsample.", "encoder.downsample."), ("upsample.", "decoder.upsample."))
    if any(k.startswith("encoder.layers.") for k in state):  # the older layout
        renamed = {}
        for k, v in state.items():
            for old, new in (("encoder.layers.", "encoder.encoder_seanet.layers."),
                             ("decoder.layers.", "decoder.decoder_seanet.layers."), *old_to_new):
                if k.startswith(old):
                    k = new + k[len(old):]
                    break
            renamed[k] = v
        state = renamed
    out: dict[str, Tensor] = {}
    layer_names = {"self_attn.q_proj": "q_proj", "self_attn.k_proj": "k_proj", "self_attn.v_proj": "v_proj",
                   "self_attn.o_proj": "o_proj", "mlp.fc1": "fc1", "mlp.fc2": "fc2",
                   "self_attn_layer_scale.scale": "attn_scale", "mlp_layer_scale.scale": "mlp_scale"}
    groups = {"semantic": [], "acoustic": []}
    for k, v in state.items():
        v = v.float()
        if k.startswith("encoder.encoder_seanet.layers."):
            out["encoder.layers." + k[len("encoder.encoder_seanet.layers."):]] = v
        elif k.startswith("decoder.decoder_seanet.layers."):
            i, rest = k[len("decoder.decoder_seanet.layers."):].split(".", 1)
            out[f"decoder.layers.{int(i) + 2}.{rest}"] = v
        elif k == "encoder.downsample.conv.weight":
            out[f"encoder.layers.{n_seanet + 1}.conv.weight"] = v
        elif k == "decoder.upsample.conv.weight":
            out["decoder.layers.0.conv.weight"] = v
        elif ".encoder_transformer.layers." in k or ".decoder_transformer.layers." in k:
            side = "encoder" if ".encoder_transformer." in k else "decoder"
            index = n_seanet if side == "encoder" else 1
            i, rest = k.split("_transformer.layers.", 1)[1].split(".", 1)
            for theirs, ours in layer_names.items():
                if rest.startswith(theirs):
                    rest = ours + rest[len(theirs):]
                    break
            rest = rest.removesuffix(".scale") if rest.startswith(("attn_scale", "mlp_scale")) else rest
            out[f"{side}.layers.{index}.layers.{i}.{rest}"] = v
        elif k.startswith("quantizer."):
            which = "semantic" if "semantic_residual" in k else "acoustic"
            j = 0 if which == "semantic" else 1
            if k.endswith("input_proj.weight"):
                out[f"input_proj.{j}.weight"] = v
            elif k.endswith("output_proj.weight"):
                out[f"output_proj.{j}.weight"] = v
            elif k.endswith("codebook.embed_sum"):
                i = int(k.split(".layers.")[1].split(".")[0])
                usage = state[k.replace("embed_sum", "cluster_usage")].float()
                groups[which].append((i, v / usage.clamp(min=1e-5)[:, None]))
    codebooks = [e for _, e in sorted(groups["semantic"])] + [e for _, e in sorted(groups["acoustic"])]
    if len(codebooks) != c.num_codebooks:
        raise ValueError(f"found {len(codebooks)} codebooks, the config has {c.num_codebooks}")
    out["codebooks"] = torch.stack(codebooks)
    return out


# ----------------------------------------------------------------------------------------- the moshi format
# kyutai-labs/moshi (checked at e6a55d2, moshi 0.2.13): moshi/models/loaders.py (MIMI_NAME, _mimi_config,
# CheckpointInfo), models/compression.py, modules/{seanet,conv,resample,transformer,rope}.py, quantization/.

MOSHI_MAX_HEADER = 16 << 20  # bytes of a safetensors header we are willing to parse when sniffing


def _safetensors_keys(file: Path) -> list[str] | None:
    """The tensor names in a safetensors file's header (its first 8 + n bytes), or None if it is not one."""
    try:
        with open(file, "rb") as f:
            head = f.read(8)
            n = int.from_bytes(head, "little") if len(head) == 8 else 0
            if not 2 <= n <= MOSHI_MAX_HEADER:
                return None
            header = json.loads(f.read(n))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        return None
    return [k for k in header if k != "__metadata__"] if isinstance(header, dict) else None


def _is_moshi_mimi(file: Path) -> bool:
    keys = _safetensors_keys(file) if file.suffix == ".safetensors" and file.is_file() else None
    return bool(keys) and any(k.startswith("quantizer.rvq_first.") for k in keys) and \
        any(k.startswith("encoder.model.") for k in keys)


def _moshi_file(path: Path) -> Path | None:
    """The moshi-format Mimi file `path` is, or the one in the folder `path` (the one its moshi config.json
    names as `mimi_name`, else the only such file)."""
    if not path.is_dir():
        return path if _is_moshi_mimi(path) else None
    named = _moshi_repo_config(path).get("mimi_name")
    if isinstance(named, str) and "/" not in named and _is_moshi_mimi(path / named):
        return path / named
    found = [p for p in sorted(path.glob("*.safetensors")) if _is_moshi_mimi(p)]
    return found[0] if len(found) == 1 else None


def _moshi_repo_config(folder: Path) -> dict[str, Any]:
    """A moshi repo's config.json (the LM's config, which names its codec files), or {}."""
    file = folder / "config.json"
    try:
        config = json.loads(file.read_text()) if file.is_file() and file.stat().st_size < (1 << 20) else {}
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        return {}
    return config if isinstance(config, dict) and config.get("model_type") != "mimi" else {}


def _moshi_mimi_config(folder: Path) -> dict[str, Any]:
    """The mimi config a moshi repo names (`mimi_config_name`), or {} for the release's architecture."""
    name = _moshi_repo_config(folder).get("mimi_config_name")
    if name is None:
        return {}
    file = folder / str(name)
    if "/" in str(name) or not file.is_file() or file.stat().st_size > (1 << 20):
        raise ValueError(f"the moshi config.json in {folder} names mimi_config_name={name!r}, not a file beside it")
    try:
        config = json.loads(file.read_text())
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise ValueError(f"{file} is not a JSON mimi config: {e}") from None
    if not isinstance(config, dict):
        raise ValueError(f"{file} must hold a JSON object (seanet / transformer / quantizer), got {type(config).__name__}")
    return config


def _config_from_moshi(m: dict[str, Any]) -> MimiConfig:
    """moshi's mimi config (loaders._mimi_config layout) -> ours; missing fields are the release's."""
    d = MimiConfig()
    seanet, tr, qz = (m.get(k, {}) for k in ("seanet", "transformer", "quantizer"))
    if not all(isinstance(x, dict) for x in (seanet, tr, qz)):
        raise ValueError("a moshi mimi config has objects 'seanet', 'transformer' and 'quantizer'")
    fixed = [(seanet, "causal", True), (seanet, "pad_mode", "constant"), (seanet, "true_skip", True),
             (seanet, "activation", "ELU"), (seanet, "activation_params", {"alpha": 1.0}),
             (seanet, "final_activation", None), (tr, "causal", True), (tr, "gating", "none"), (tr, "norm", "layer_norm"),
             (tr, "positional_embedding", "rope"), (tr, "conv_layout", True), (tr, "kv_repeat", 1)]
    for part, key, want in fixed:
        if part.get(key, want) != want:
            raise ValueError(f"moshi mimi config {key}={part[key]!r} is not supported (the Mimi release has {want!r})")
    if tr.get("layer_scale", 0.01) is None:
        raise ValueError("moshi mimi config layer_scale=None is not supported (the Mimi release has LayerScale)")
    dim = seanet.get("dimension", d.dimension)
    widths = {"transformer d_model": tr.get("d_model", dim), "transformer input_dimension": tr.get("input_dimension", dim),
              "quantizer input_dimension": qz.get("input_dimension", dim),
              "quantizer output_dimension": qz.get("output_dimension", dim)}
    widths.update({f"transformer output_dimensions[{i}]": w for i, w in enumerate(tr.get("output_dimensions", [dim]))})
    if any(w != dim for w in widths.values()) or len(tr.get("output_dimensions", [dim])) != 1:
        raise ValueError(f"the Mimi release runs its transformers and quantizer at the SEANet width {dim}; got {widths}")
    sample_rate, ratios = m.get("sample_rate", d.sample_rate), tuple(seanet.get("ratios", d.ratios))
    frame_rate = m.get("frame_rate", d.frame_rate)
    if not all(isinstance(r, int) and r > 0 for r in ratios) or not isinstance(frame_rate, (int, float)) or frame_rate <= 0:
        raise ValueError(f"moshi mimi config ratios must be positive integers and frame_rate positive, got {ratios}, "
                         f"{frame_rate!r}")
    downsample = sample_rate / math.prod(ratios) / frame_rate
    if downsample != int(downsample) or downsample < 1:
        raise ValueError(f"the SEANet rate {sample_rate / math.prod(ratios):g} Hz must be a whole multiple of the "
                         f"frame rate {frame_rate:g} Hz")
    return MimiConfig(
        sample_rate=sample_rate, channels=m.get("channels", seanet.get("channels", d.channels)),
        num_filters=seanet.get("n_filters", d.num_filters), ratios=ratios, dimension=dim,
        num_residual_layers=seanet.get("n_residual_layers", d.num_residual_layers),
        residual_kernel_size=seanet.get("residual_kernel_size", d.residual_kernel_size),
        kernel_size=seanet.get("kernel_size", d.kernel_size), last_kernel_size=seanet.get("last_kernel_size", d.last_kernel_size),
        dilation_base=seanet.get("dilation_base", d.dilation_base), compress=seanet.get("compress", d.compress),
        num_layers=tr.get("num_layers", d.num_layers), num_heads=tr.get("num_heads", d.num_heads),
        ffn_dim=tr.get("dim_feedforward", d.ffn_dim), context=tr.get("context", d.context),
        rope_period=tr.get("max_period", d.rope_period), downsample=int(downsample),
        num_codebooks=qz.get("n_q", d.num_codebooks), num_semantic=qz.get("n_q_semantic", d.num_semantic),
        codebook_size=qz.get("bins", d.codebook_size), codebook_dim=qz.get("dimension", d.codebook_dim),
    )


def _moshi_to_hf(state: dict[str, Tensor], num_heads: int) -> dict[str, Tensor]:
    """moshi key names -> transformers' (the older layout `_from_hf` reads), as transformers'
    convert_mimi_checkpoint_to_pytorch.py maps them: weight norm folded, the fused attention projection split
    into q, k, v with q and k reordered from moshi's interleaved RoPE pairs to the halves convention."""
    out: dict[str, Tensor] = {}
    for k, v in fold_weight_norm(state).items():
        new = k
        for theirs, ours in (("conv.conv.conv.", "conv."), ("convtr.convtr.convtr.", "conv."), ("conv.conv.", "conv."),
                             ("convtr.convtr.", "conv."), ("encoder.model.", "encoder.layers."),
                             ("decoder.model.", "decoder.layers."), ("_transformer.transformer.", "_transformer."),
                             ("quantizer.rvq_first.vq.", "quantizer.semantic_residual_vector_quantizer."),
                             ("quantizer.rvq_first.", "quantizer.semantic_residual_vector_quantizer."),
                             ("quantizer.rvq_rest.vq.", "quantizer.acoustic_residual_vector_quantizer."),
                             ("quantizer.rvq_rest.", "quantizer.acoustic_residual_vector_quantizer."),
                             ("._codebook.", ".codebook."), ("embedding_sum", "embed_sum"), (".linear1.", ".mlp.fc1."),
                             (".linear2.", ".mlp.fc2."), (".norm1.", ".input_layernorm."),
                             (".norm2.", ".post_attention_layernorm."), (".layer_scale_1.", ".self_attn_layer_scale."),
                             (".layer_scale_2.", ".mlp_layer_scale."), ("self_attn.out_projs.0.", "self_attn.o_proj."),
                             ("self_attn.out_proj.", "self_attn.o_proj.")):
            new = new.replace(theirs, ours)
        fused = next((s for s in ("self_attn.in_proj_weight", "self_attn.in_proj.weight", "self_attn.in_projs.0.weight")
                      if new.endswith(s)), None)
        if fused is not None:
            prefix = new[:-len(fused)] + "self_attn."
            q, kk, vv = v.chunk(3, dim=0)
            out[prefix + "q_proj.weight"] = _halves(q, num_heads)
            out[prefix + "k_proj.weight"] = _halves(kk, num_heads)
            out[prefix + "v_proj.weight"] = vv
        elif new.endswith(("._initialized", ".initialized")):
            continue
        elif new.startswith(("encoder.layers.", "decoder.layers.", "encoder_transformer.layers.", "decoder_transformer.layers.",
                             "downsample.conv.weight", "upsample.conv.weight", "quantizer.semantic_residual_vector_quantizer.",
                             "quantizer.acoustic_residual_vector_quantizer.")):
            out[new] = v
        else:
            raise ValueError(f"moshi Mimi weight {k!r} is not part of the released architecture")
    return out


def _halves(w: Tensor, heads: int) -> Tensor:
    """Rows of a q or k projection (heads · Dh, D) from interleaved RoPE pairs (x0, x1), (x2, x3) ... per head to
    the halves layout (x0, x2, ..., x1, x3, ...) that `rope` uses."""
    if w.shape[0] % (2 * heads):
        raise ValueError(f"a projection of {w.shape[0]} rows does not split into {heads} heads of even width")
    return rearrange(w, "(h p two) d -> (h two p) d", h=heads, two=2)


# ----------------------------------------------------------------------------------------- released weights

MOSHI_CODEBOOKS = 8  # the codebooks Moshi models (its `n_q`)


def _description(config: MimiConfig) -> str:
    """The card of a release of `config`: its rates and codebooks as the config gives them."""
    c = config
    return (f"Mimi (Kyutai, 2024; arXiv:2410.00037), the streaming speech codec of Moshi: {c.sample_rate / 1000:g} kHz "
            f"{({1: 'mono', 2: 'stereo'})[c.channels]}, {c.frame_rate:g} frames/s, a split residual VQ of {c.num_semantic} "
            f"semantic + {c.num_codebooks - c.num_semantic} acoustic codebooks of {c.codebook_size} (Moshi uses "
            f"{MOSHI_CODEBOOKS} = {c.kbps(MOSHI_CODEBOOKS):.3g} kbps); 79.3 M parameters. Weights by Kyutai under CC-BY 4.0 "
            "(https://creativecommons.org/licenses/by/4.0/): attribute Kyutai when you use or share them.")


_CARD = _description(MimiConfig())  # both releases are the default config
_LISTING = Mimi.listing(MimiConfig())
_LISTING["tokens"] += f" (Moshi: {MOSHI_CODEBOOKS})"

RELEASES: dict[str, dict[str, Any]] = {
    "mimi": dict(
        # the commit public code pins for kyutai/mimi (`MIMI_REPO = "kyutai/mimi"` beside this `MIMI_REVISION`, and
        # HF cache paths models--kyutai--mimi/snapshots/89091b3e.../model.safetensors, in several projects the
        # code index holds without naming their repositories); not confirmed against the hub, out of reach here
        family="mimi", hf_repo="kyutai/mimi", revision="89091b3e466eb6a9d11e537bf26b144f194978f7",
        files=("config.json", "model.safetensors"), license="CC-BY-4.0",
        license_url="https://creativecommons.org/licenses/by/4.0/", non_commercial=False,
        summary=dict(_LISTING, description=_CARD),
    ),
    # the original release: the codec file of Moshi's repo in moshi's own format (converted by `Mimi.from_release`);
    # the same weights as kyutai/mimi, so the same codes up to float rounding
    "mimi-moshiko": dict(
        # the commit of HF cache paths models--kyutai--moshiko-pytorch-bf16/snapshots/2bfc9ae6.../
        # tokenizer-e351c8d8-checkpoint125.safetensors in public code (one script pins REV=2bfc9ae6... for this
        # repo), repositories not named by the code index; not confirmed against the hub, out of reach here
        family="mimi", hf_repo="kyutai/moshiko-pytorch-bf16", revision="2bfc9ae6e89079a5cc7ed2a68436010d91a3d289",
        files=("tokenizer-e351c8d8-checkpoint125.safetensors",), license="CC-BY-4.0",
        license_url="https://creativecommons.org/licenses/by/4.0/", non_commercial=False,
        summary=dict(_LISTING, description=_CARD + " Converted from the moshi-format file of kyutai/moshiko-pytorch-bf16."),
    ),
}

register_family(Mimi)
for _name, _release in RELEASES.items():
    register_release(_name, **_release)
