"""Mimi: Kyutai's streaming speech codec (24 kHz, 12.5 frames/s, split residual VQ), the codec of Moshi.

Paper: Défossez et al., "Moshi: a speech-text foundation model for real-time dialogue" (2024),
https://arxiv.org/abs/2410.00037; official code kyutai-labs/moshi, also in transformers (`MimiModel`).
Our own implementation of the released architecture, proven exact against transformers at random init
(tests/test_mimi.py).

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
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from zoo.audio.rvq import rvq_decode, rvq_encode
from zoo.audio.released import RVQCodec, hf_config, read_safetensors
from zoo.audio.streaming import Conv, ConvTranspose, Stack, seanet_layers
from zoo.hub import register_family, register_release
from zoo.tokenizer import InputContract, Tokens, TokenSpec, check_budget


@dataclass
class MimiConfig:
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

    def kbps(self, num_codebooks: int) -> float:
        return self.frame_rate * num_codebooks * math.log2(self.codebook_size) / 1000


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
        self.encoder = Stack([*seanet_layers(c, decoder=False), Transformer(**transformer), down])
        self.decoder = Stack([up, Transformer(**transformer), *seanet_layers(c, decoder=True)])
        q = c.num_codebooks
        self.register_buffer("codebooks", torch.zeros(q, c.codebook_size, c.codebook_dim))
        self.input_proj = nn.ModuleList(nn.Conv1d(d, c.codebook_dim, 1, bias=False) for _ in range(2))  # semantic, acoustic
        self.output_proj = nn.ModuleList(nn.Conv1d(c.codebook_dim, d, 1, bias=False) for _ in range(2))

    @property
    def min_codebooks(self) -> int:  # codes start with the semantic codebooks
        return self.config.num_semantic

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
                parts.append(rvq_encode(x, self.codebooks[start:start + n], n, distance="cdist"))
        return torch.cat(parts, dim=-1)

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
        """A transformers `MimiModel` folder (config.json with model_type "mimi")."""
        return hf_config(Path(path), "mimi") is not None

    @classmethod
    def from_release(cls, path: str | Path) -> "Mimi":
        """Convert a transformers folder (kyutai/mimi, or `MimiModel.save_pretrained`)."""
        path = Path(path)
        hf = hf_config(path, "mimi")
        if hf is None:
            raise ValueError(f"{str(path)!r} is not a Mimi release: expected a transformers folder whose config.json "
                             "has model_type 'mimi' (the moshi-format tokenizer-*.safetensors is not converted yet)")
        state = read_safetensors(path)
        config = _config_from_hf(hf)
        model = cls(config)
        model.load_state_dict(_from_hf(state, config, len(model.encoder.layers) - 2), strict=True)
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


# ----------------------------------------------------------------------------------------- released weights

_CARD = ("Mimi (Kyutai, 2024; arXiv:2410.00037), the streaming speech codec of Moshi: 24 kHz mono, 12.5 frames/s, "
         "a split residual VQ of 1 semantic + 31 acoustic codebooks of 2048 (Moshi uses 8 = 1.1 kbps); 79.3 M "
         "parameters. Weights by Kyutai under CC-BY 4.0 (https://creativecommons.org/licenses/by/4.0/): "
         "attribute Kyutai when you use or share them.")

RELEASES: dict[str, dict[str, Any]] = {
    "mimi": dict(
        family="mimi", hf_repo="kyutai/mimi", revision=None,  # not pinned: the hub is out of reach from here
        files=("config.json", "model.safetensors"), license="CC-BY-4.0",
        license_url="https://creativecommons.org/licenses/by/4.0/", non_commercial=False,
        summary=dict(modality="audio", tokens="12.5 frames/s x 1-32 codebooks (Moshi: 8)", vocab="2048 x 32",
                     description=_CARD),
    ),
}

register_family(Mimi)
for _name, _release in RELEASES.items():
    register_release(_name, **_release)
