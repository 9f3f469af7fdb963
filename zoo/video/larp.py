"""LARP: videos as a short sequence of holistic tokens, shaped for an autoregressive prior.

Paper: "LARP: Tokenizing Videos with a Learned Autoregressive Generative Prior" (Wang et al., ICLR
2025, https://arxiv.org/abs/2410.21264). Official code: hywang66/LARP (read, not copied).

The encoder is one transformer over the spatio-temporal patches of a clip and N learned holistic
queries; each query's output is projected to a small code vector and quantised by SVQ, the
stochastic vector quantiser of the paper: code and codebook are L2-normalised, and the token is
*sampled* from softmax(cos(z, e_v) / τ) while training, or taken as the argmax (the nearest code)
otherwise. The decoder is a transformer over the kept tokens and one query per output patch, which
it maps back to pixels. During training a small autoregressive transformer
(`recipes.larp.ARPrior`) reads the quantised tokens and predicts each next token; its loss flows back into
the encoder, so the tokens become easier to model. The prior is not part of `LARP`: it is discarded
after training and never exported.

What we do beyond the official code (asked for by its users, or needed here):
- any number of tokens up to N: queries are causal among themselves (query i sees every patch and
  queries 0..i; patches see only patches), and training decodes a random prefix of the tokens
  (nested token dropout, as in FlexTok/"One-D-Piece"), so `encode(video, num_tokens=n)` returns
  exactly the first n tokens of a full encode and every prefix decodes. `causal_queries=False` gives
  the official full attention (then a prefix is cut from a full encode);
- the argmax is the default everywhere outside training, and sampling is the explicit `sample=True`
  of `encode` (the official code samples in eval too unless a flag is set);
- small presets that train on a CPU, and the codebook usage the recipe logs (perplexity);
- for a short CPU budget, two linear paths beside attention, as in `zoo.image.karl`: learned token
  mixing (patches → queries in the encoder, kept tokens → patch queries in the decoder, MLP-Mixer
  style) and a zero-initialised linear read-out of the kept codes to pixels (rank `linear_rank` per
  patch). With attention alone a 40-minute run learned only each clip's colour: the same PSNR at 1
  and at 32 tokens, below the clip's own mean colour. The official-shape presets leave both out;
- the recipe may take SVQ's argmax for the first part of training before it samples (`argmax_until`
  in `recipes/larp.py`).

Released weights: `LARP.from_release(folder)` converts the official LARP-L tokenizer
(hywang66/LARP-L-long-tokenizer on the Hugging Face hub: `config.json` of constructor arguments +
`model.safetensors`, as PyTorchModelHubMixin writes them): 16x128x128 clips in [0, 1], 4x8x8 patches,
1024 queries, an 8192 x 16 codebook, 768-wide 12-deep encoder and decoder. Five switches make our model
the official one: its 3D position table (`pos_table="official"`), no norm after the encoder, eps 1e-6 in
the decoder's output norm, no q/k/v bias, and pixels kept in [0, 1]. The release was trained without
nested dropout, so it decodes from all 1024 tokens only (`nested_dropout=False`: `encode` refuses fewer).
The state dict also carries the training-only prior (`prior_model.*`); the converter drops it. Presets
"larp-l", "larp-b", "larp-s" spell that shape and its smaller siblings (hywang66/LARP issue #11).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from einops import rearrange, repeat
from torch import Tensor, nn

from zoo.nn import Transformer, kept_codes, sincos_pos_embed_2d
from zoo.nn.transformer import key_padding_mask, prefix_causal_mask
from zoo.files import read_release
from zoo.hub import register_family, register_release, token_summary
from zoo.tokenizer import (InputContract, Tokenizer, Tokens, TokenSpec, budget_lengths, check_fields, check_input,
                           check_tokens, check_weights, length_mask, transformer_weights)


@dataclass
class LARPConfig:
    """Args:
        frames: T, frames per clip; a multiple of `temporal_patch`.
        image_size: side S of the (square) frames; a multiple of `patch_size`.
        in_channels: C of the input (3 for RGB).
        temporal_patch, patch_size: a patch is temporal_patch x patch_size x patch_size pixels.
        max_tokens: N, the most tokens a clip can have (one per learned query).
        dim, encoder_depth, decoder_depth, heads: the two transformers (same width).
        mlp_ratio: MLP width / dim.
        codebook_size: V, the vocabulary.
        code_dim: d of the L2-normalised codes (the official code uses 16).
        temperature: τ of SVQ's sampling softmax over cosine similarities (official: 0.03).
        causal_queries: query i attends to queries 0..i only, so prefixes encode exactly (ours);
            False gives the official full attention among queries.
        token_mixing: two learned linear paths beside attention (ours, as KARL's): patches → queries
            in the encoder, kept tokens → patch queries in the decoder.
        linear_rank: r of the linear read-out of the kept codes straight to pixels (ours): codes
            (N·d) → r numbers per patch → the patch's pixels; 0 = none.
        conv_channels: c of a small per-frame conv front-end and back-end around the transformers (ours):
            the encoder patches c conv features at half resolution instead of raw pixels, and the decoder adds
            a conv upsampler's output to its linear patch read-out; 0 = none (raw linear patches).
        nested_dropout: trained with nested token dropout, so every prefix of the tokens decodes (ours);
            False (imported releases): `encode` refuses `num_tokens` below N.
        pos_table: "zoo" (a quarter of the channels for time, the rest for (h, w)) or "official" (the
            official sum of a full-width 2D table over (h, w) and a full-width 1D table over time).
        encoder_norm: a LayerNorm after the encoder (official: none).
        norm_eps: eps of the LayerNorms after the encoder and decoder (official decoder: 1e-6).
        qkv_bias: biases on the attention's q/k/v projections (official: none).
        signed_pixels: the networks see pixels mapped to [-1, 1] (ours); False: in [0, 1] as given (official).
    """

    frames: int = 16
    image_size: int = 32
    in_channels: int = 3
    temporal_patch: int = 4
    patch_size: int = 8
    max_tokens: int = 32
    dim: int = 128
    encoder_depth: int = 4
    decoder_depth: int = 4
    heads: int = 4
    mlp_ratio: float = 4.0
    codebook_size: int = 1024
    code_dim: int = 16
    temperature: float = 0.03
    causal_queries: bool = True
    token_mixing: bool = True
    linear_rank: int = 64
    conv_channels: int = 0
    nested_dropout: bool = True
    pos_table: str = "zoo"
    encoder_norm: bool = True
    norm_eps: float = 1e-5
    qkv_bias: bool = True
    signed_pixels: bool = True

    renamed_fields: ClassVar[dict[str, str]] = {"num_tokens": "max_tokens"}  # checkpoints before the budget contract

    def __post_init__(self) -> None:
        check_fields(self, frames=(1, 1024), image_size=(1, 4096), in_channels=(1, 256), temporal_patch=(1, 64),
                     patch_size=(1, 256), max_tokens=(1, 65536), dim=(1, 8192), encoder_depth=(0, 128),
                     decoder_depth=(0, 128), heads=(1, 256), mlp_ratio=(0, 64), codebook_size=(2, 1 << 20),
                     code_dim=(1, 4096), temperature=(0, 1e6), linear_rank=(0, 4096), conv_channels=(0, 4096),
                     norm_eps=(0, 1))
        check_weights(self, transformer_weights((self.dim, self.encoder_depth), (self.dim, self.decoder_depth)), "transformer weights")
        if self.temporal_patch < 1 or self.frames % self.temporal_patch:
            raise ValueError(f"frames={self.frames} must be a multiple of temporal_patch={self.temporal_patch}")
        if self.patch_size < 1 or self.image_size % self.patch_size:
            raise ValueError(f"image_size={self.image_size} must be a multiple of patch_size={self.patch_size}")
        if self.max_tokens < 1:
            raise ValueError(f"max_tokens must be >= 1, got {self.max_tokens}")
        if self.dim % self.heads or self.dim % 8:
            raise ValueError(f"dim={self.dim} must be divisible by heads={self.heads} and by 8 (3D sin-cos positions)")
        if self.codebook_size < 2 or self.code_dim < 1:
            raise ValueError(f"codebook_size must be >= 2 and code_dim >= 1, got {self.codebook_size}, {self.code_dim}")
        if not self.temperature > 0:
            raise ValueError(f"temperature must be > 0, got {self.temperature}")
        if self.linear_rank < 0:
            raise ValueError(f"linear_rank must be >= 0 (0 = no linear read-out), got {self.linear_rank}")
        if self.conv_channels < 0 or self.conv_channels % 2:
            raise ValueError(f"conv_channels must be 0 (no conv) or a positive even number, got {self.conv_channels}")
        if self.conv_channels and self.patch_size % 2:
            raise ValueError(f"the conv front-end halves the frames: patch_size={self.patch_size} must be even")
        if self.pos_table not in ("zoo", "official"):
            raise ValueError(f"pos_table must be 'zoo' or 'official', got {self.pos_table!r}")
        if not self.norm_eps > 0:
            raise ValueError(f"norm_eps must be > 0, got {self.norm_eps}")

    @property
    def grid(self) -> tuple[int, int, int]:
        """(t, h, w): patches along time, height and width."""
        n = self.image_size // self.patch_size
        return self.frames // self.temporal_patch, n, n

    @property
    def num_patches(self) -> int:
        return math.prod(self.grid)

    @classmethod
    def from_name(cls, name: str, **overrides: Any) -> "LARPConfig":
        if name not in PRESETS:
            raise ValueError(f"{name!r} is not a supported config name; known: {sorted(PRESETS)}")
        return cls(**{**PRESETS[name], **overrides})


# ----------------------------------------------------------------------------------------- blocks


def sincos_pos_embed_3d(dim: int, grid: tuple[int, int, int]) -> Tensor:
    """Fixed (t·h·w, dim) position table: a quarter of the channels for time, the rest for (h, w)."""
    t, h, w = grid
    dt = dim // 4
    omega = 1.0 / 10000 ** (torch.arange(dt // 2, dtype=torch.float64) / (dt // 2))
    angles = torch.arange(t, dtype=torch.float64)[:, None] * omega[None]  # (t, dt/2)
    time = torch.cat([angles.sin(), angles.cos()], dim=1).float()  # (t, dt)
    space = sincos_pos_embed_2d(dim - dt, (h, w))  # (h·w, dim - dt)
    return torch.cat([repeat(time, "t d -> (t s) d", s=h * w), repeat(space, "s d -> (t s) d", t=t)], dim=1)


def official_pos_embed_3d(dim: int, grid: tuple[int, int, int]) -> Tensor:
    """The official LARP table (t·h·w, dim): a full-width 1D sin-cos over time added to a full-width 2D one.

    The 2D part is MAE's: the first half of the channels encodes the column, the second the row; each
    half is [sin, cos] of position x 1/10000^(i/(d/2)). Computed in float64 and rounded once, like the
    official numpy code.
    """
    t, h, w = grid

    def sincos(d: int, pos: Tensor) -> Tensor:  # pos (M,) -> (M, d)
        omega = 1.0 / 10000 ** (torch.arange(d // 2, dtype=torch.float64) / (d / 2))
        angles = pos[:, None] * omega[None]
        return torch.cat([angles.sin(), angles.cos()], dim=1)

    rows, cols = torch.meshgrid(torch.arange(h, dtype=torch.float64), torch.arange(w, dtype=torch.float64), indexing="ij")
    space = torch.cat([sincos(dim // 2, cols.flatten()), sincos(dim // 2, rows.flatten())], dim=1)  # (h·w, dim)
    time = sincos(dim, torch.arange(t, dtype=torch.float64))  # (t, dim)
    return (time[:, None] + space[None]).reshape(t * h * w, dim).float()


class SVQ(nn.Module):
    """Stochastic vector quantiser over an L2-normalised codebook (LARP §3.2).

    z: (B, n, d) → (codes (B, n, d) unit vectors with a straight-through gradient to z, ids (B, n),
    z normalised (B, n, d)). The recipe forms the codebook and commitment losses from codes and z.
    Sampling draws ids from softmax(cos / τ) with vector-quantize-pytorch's Gumbel-max sampler; without
    it the id is the argmax (nearest code in angle).
    """

    def __init__(self, codebook_size: int, code_dim: int, temperature: float) -> None:
        super().__init__()
        self.temperature = temperature
        self.embed = nn.Parameter(torch.empty(codebook_size, code_dim))
        nn.init.kaiming_uniform_(self.embed)

    @property
    def codebook(self) -> Tensor:
        """(V, d), unit rows."""
        return F.normalize(self.embed, dim=-1)

    def logits(self, z: Tensor) -> Tensor:
        """z: (..., d) → cosine similarity to every code (..., V), divided by τ."""
        return F.normalize(z, dim=-1) @ self.codebook.t() / self.temperature

    def lookup(self, ids: Tensor) -> Tensor:
        """ids: (...) → unit codes (..., d)."""
        return F.embedding(ids, self.codebook)

    def forward(self, z: Tensor, sample: bool) -> tuple[Tensor, Tensor, Tensor]:
        from vector_quantize_pytorch.vector_quantize_pytorch import gumbel_sample  # heavy: einx, torch._dynamo

        z = F.normalize(z.float(), dim=-1)
        ids, _ = gumbel_sample(self.logits(z), temperature=1.0, stochastic=sample, training=sample)
        codes = self.lookup(ids)
        return z + (codes - z).detach(), ids, z


class FrameConv(nn.Module):
    """2D convs applied to every frame of a clip: (B, C, T, H, W) → (B, C', T, H', W')."""

    def __init__(self, *layers: nn.Module) -> None:
        super().__init__()
        self.net = nn.Sequential(*layers)

    def forward(self, x: Tensor) -> Tensor:
        y = self.net(rearrange(x, "b c t h w -> (b t) c h w"))
        return rearrange(y, "(b t) c h w -> b c t h w", b=x.shape[0])


def conv_front_end(in_channels: int, channels: int) -> FrameConv:
    """Pixels (B, C, T, S, S) → c features at half resolution (B, c, T, S/2, S/2), for the patch embedding."""
    return FrameConv(nn.Conv2d(in_channels, channels, 3, padding=1), nn.GELU(),
                     nn.Conv2d(channels, channels, 4, stride=2, padding=1), nn.GELU(),
                     nn.Conv2d(channels, channels, 3, padding=1))


def conv_back_end(channels: int, out_channels: int) -> FrameConv:
    """Features (B, c, T, S/2, S/2) → pixels (B, C, T, S, S); the last conv starts at zero, so a new back-end adds nothing."""
    last = nn.Conv2d(channels // 2, out_channels, 3, padding=1)
    nn.init.zeros_(last.weight)
    nn.init.zeros_(last.bias)
    return FrameConv(nn.GELU(), nn.Conv2d(channels, channels, 3, padding=1), nn.GELU(),
                     nn.ConvTranspose2d(channels, channels // 2, 4, stride=2, padding=1), nn.GELU(), last)


# ----------------------------------------------------------------------------------------- the tokenizer


class LARP(Tokenizer):
    """LARP. x: (B, 3, T, S, S) in [0, 1] → ids (B, n) in [0, V), any n in 1..N per clip."""

    family = "larp"
    config_class = LARPConfig
    encode_knobs = ("num_tokens", "sample")
    decode_options = ()

    @classmethod
    def listing(cls, config: LARPConfig) -> dict[str, Any]:
        """What `zoo list` shows of a checkpoint of this config (`zoo.hub` module docstring): without nested
        dropout it encodes all `max_tokens` only."""
        n = config.max_tokens
        return token_summary("video", config.codebook_size, n, min_tokens=1 if config.nested_dropout else n)

    def __init__(self, config: LARPConfig) -> None:
        super().__init__(config)
        c = config
        patch_pixels = c.in_channels * c.temporal_patch * c.patch_size**2
        table = official_pos_embed_3d if c.pos_table == "official" else sincos_pos_embed_3d
        self.register_buffer("pos", table(c.dim, c.grid), persistent=False)  # (P, dim)
        # encoder: patches (of pixels, or of conv features at half resolution) + N queries → N codes
        patch_features = c.conv_channels * c.temporal_patch * (c.patch_size // 2) ** 2 if c.conv_channels else patch_pixels
        if c.conv_channels:
            self.conv_in = conv_front_end(c.in_channels, c.conv_channels)
            self.conv_out = conv_back_end(c.conv_channels, c.in_channels)
            self.to_features = nn.Linear(c.dim, patch_features)
        self.patch_embed = nn.Linear(patch_features, c.dim)
        self.queries = nn.Parameter(torch.randn(c.max_tokens, c.dim) * 0.02)
        self.encoder = Transformer(c.dim, c.encoder_depth, c.heads, c.mlp_ratio, qkv_bias=c.qkv_bias,
                                   final_norm=c.encoder_norm, norm_eps=c.norm_eps)
        self.to_code = nn.Linear(c.dim, c.code_dim)
        self.svq = SVQ(c.codebook_size, c.code_dim, c.temperature)
        # decoder: n tokens + P patch queries → P patches
        self.from_code = nn.Linear(c.code_dim, c.dim)
        self.token_pos = nn.Parameter(torch.randn(c.max_tokens, c.dim) * 0.02)
        self.patch_query = nn.Parameter(torch.randn(c.dim) * 0.02)
        self.decoder = Transformer(c.dim, c.decoder_depth, c.heads, c.mlp_ratio, qkv_bias=c.qkv_bias,
                                   norm_eps=c.norm_eps)
        self.to_pixels = nn.Linear(c.dim, patch_pixels)
        if c.token_mixing:  # learned token mixing (MLP-Mixer style), a linear path beside attention
            self.patch_to_query = nn.Parameter(torch.randn(c.max_tokens, c.num_patches) / c.num_patches**0.5)
            self.token_to_patch = nn.Parameter(torch.randn(c.num_patches, c.max_tokens) / c.max_tokens**0.5)
        if c.linear_rank:  # codes → pixels, zero at init: it learns a PCA-like basis early, attention the rest
            self.linear_codes = nn.Linear(c.max_tokens * c.code_dim, c.num_patches * c.linear_rank)
            nn.init.zeros_(self.linear_codes.weight)
            nn.init.zeros_(self.linear_codes.bias)
            self.linear_pixels = nn.Linear(c.linear_rank, patch_pixels)

    # -- the contract ----------------------------------------------------------------------------------

    @property
    def spec(self) -> TokenSpec:
        c = self.config
        return TokenSpec(
            modality="video",
            vocab_size=c.codebook_size,
            num_codebooks=1,
            max_tokens=c.max_tokens,
            latent_dim=c.code_dim,
            input=InputContract(layout=f"B {c.in_channels} T H W", value_range=(0.0, 1.0),
                                sizes={"T": c.frames, "H": c.image_size, "W": c.image_size}),
        )

    def lengths_from_budget(self, num_tokens: int | Tensor | None, batch: int, device: torch.device) -> Tensor:
        """num_tokens: None (all N), an int, or a LongTensor [B] → lengths (B,) in 1..N."""
        return budget_lengths(num_tokens, batch, self.config.max_tokens, device)

    def _check_prefix(self, lengths: Tensor) -> None:
        n_max = self.config.max_tokens
        if not self.config.nested_dropout and int(lengths.min()) < n_max:
            raise ValueError(f"this LARP was trained without nested token dropout (e.g. the official release): it decodes "
                             f"from all {n_max} tokens only; got num_tokens={int(lengths.min())}. Leave num_tokens unset")

    # -- modelling steps (used by encode/decode and by the training recipe) ------------------------------

    def patchify(self, x: Tensor) -> Tensor:
        """x: (B, C, T, S', S'), pixels or conv features → (B, P, C·pt·p'·p') on the (t, h, w) grid, p' = S'/grid."""
        c = self.config
        p = x.shape[-1] // c.grid[2]
        return rearrange(x, "b c (t pt) (h p1) (w p2) -> b (t h w) (pt p1 p2 c)", pt=c.temporal_patch, p1=p, p2=p)

    def unpatchify(self, patches: Tensor, channels: int | None = None) -> Tensor:
        """(B, P, C·pt·p'·p') → (B, C, T, S', S'); C is the input's channels unless given."""
        c = self.config
        t, h, w = c.grid
        channels = channels or c.in_channels
        p = math.isqrt(patches.shape[-1] // (channels * c.temporal_patch))
        return rearrange(patches, "b (t h w) (pt p1 p2 c) -> b c (t pt) (h p1) (w p2)",
                         t=t, h=h, w=w, pt=c.temporal_patch, p1=p, p2=p)

    def encode_latents(self, x: Tensor, num_tokens: int) -> Tensor:
        """x: (B, C, T, S, S) in network units ([-1, 1]; [0, 1] without signed_pixels) → pre-quantisation codes (B, n, code_dim) of the first n queries."""
        c = self.config
        p = c.num_patches
        n = num_tokens if c.causal_queries else c.max_tokens  # with full attention every query sees all
        if c.conv_channels:
            x = self.conv_in(x)  # (B, c, T, S/2, S/2)
        patches = self.patch_embed(self.patchify(x)) + self.pos  # (B, P, dim)
        queries = repeat(self.queries[:n], "n d -> b n d", b=x.shape[0])
        if c.token_mixing:  # query i mixes patches only, so causality among queries holds
            queries = queries + torch.einsum("np,bpd->bnd", self.patch_to_query[:n], patches)
        mask = prefix_causal_mask(p, n, x.device) if c.causal_queries else None
        h = self.encoder(torch.cat([patches, queries], dim=1), mask)
        return self.to_code(h[:, p:p + num_tokens])

    def quantize(self, x: Tensor, num_tokens: int, sample: bool = False) -> tuple[Tensor, Tensor, Tensor]:
        """x: (B, C, T, S, S) in network units → (codes (B, n, d), ids (B, n), z (B, n, d) normalised).

        Differentiable: codes carry a straight-through gradient to the encoder.
        """
        return self.svq(self.encode_latents(x, num_tokens), sample)

    def decode_codes(self, codes: Tensor, lengths: Tensor | None = None) -> Tensor:
        """codes: (B, n, d) unit vectors; lengths: (B,) kept tokens per clip (None: all n) → (B, C, T, S, S) in network units."""
        c = self.config
        b, n = codes.shape[:2]
        lengths = torch.full((b,), n, device=codes.device) if lengths is None else lengths
        kept = length_mask(lengths, n)  # (B, n)
        tokens = self.from_code(codes) + self.token_pos[:n]  # (B, n, dim)
        queries = (self.patch_query + self.pos).expand(b, -1, -1)  # (B, P, dim)
        if c.token_mixing:  # dropped tokens mix in nothing
            queries = queries + torch.einsum("pn,bnd->bpd", self.token_to_patch[:, :n], tokens * kept[..., None])
        mask = None
        if bool((lengths < n).any()):
            mask = key_padding_mask(torch.cat([kept, kept.new_ones(b, c.num_patches)], dim=1))
        h = self.decoder(torch.cat([tokens, queries], dim=1), mask)
        patches = self.to_pixels(h[:, n:])  # (B, P, C·pt·p·p)
        if c.linear_rank:
            basis = rearrange(self.linear_codes(kept_codes(codes, lengths, c.max_tokens)), "b (p r) -> b p r",
                              r=c.linear_rank)
            patches = patches + self.linear_pixels(basis)
        x = self.unpatchify(patches)  # (B, C, T, S, S)
        if c.conv_channels:
            x = x + self.conv_out(self.unpatchify(self.to_features(h[:, n:]), c.conv_channels))
        return x

    # -- encode / decode -------------------------------------------------------------------------------

    @torch.no_grad()
    def encode(self, x: Tensor, *, num_tokens: int | Tensor | None = None, sample: bool = False) -> Tokens:
        """Encode clips.

        Args:
            x: (B, 3, T, S, S) float in [0, 1] (the sizes of `spec.input`).
            num_tokens: tokens per clip, an int in 1..N or a LongTensor [B] (per clip); default N. A model
                trained without nested dropout (`nested_dropout=False`, the official release) takes N only.
            sample: draw each token from SVQ's softmax over the codebook, as in training (uses the global
                RNG; seed it with `torch.manual_seed` to repeat). Default False: the argmax, deterministic.
        Returns:
            Tokens with ids (B, max n) (zeros past each length), lengths (B,) and latents, the unit
            codes (B, max n, code_dim) (zeros past each length).
        """
        if not isinstance(sample, bool):
            raise ValueError(f"sample must be True or False, got {sample!r}")
        x = check_input(x, self.spec.input, "videos").to(self.device)
        lengths = self.lengths_from_budget(num_tokens, x.shape[0], x.device)
        self._check_prefix(lengths)
        codes, ids, _ = self.quantize(x * 2 - 1 if self.config.signed_pixels else x, int(lengths.max()), sample)
        keep = length_mask(lengths, ids.shape[1])
        return Tokens(ids=ids.long() * keep, lengths=lengths, latents=codes * keep[..., None])

    # -- released weights ------------------------------------------------------------------------------

    @staticmethod
    def is_release(path: str | Path) -> bool:
        """A folder (or its model.safetensors) as the official LARP tokenizer is published: a config.json
        of constructor arguments naming `bottleneck_token_num` and `bottleneck`, beside model.safetensors."""
        return read_release(path, "config.json", "model.safetensors", _RELEASE_KEYS) is not None

    @classmethod
    def from_release(cls, path: str | Path) -> "LARP":
        """Convert the official tokenizer (a folder with config.json + model.safetensors) into a `LARP`."""
        found = read_release(path, "config.json", "model.safetensors", _RELEASE_KEYS)
        if found is None:
            raise ValueError(f"{path} is not an official LARP tokenizer release: expected a folder with config.json "
                             "(constructor arguments with 'bottleneck_token_num' and 'bottleneck') and model.safetensors")
        folder, args = found
        from safetensors.torch import load_file

        config = release_config(args)
        state = load_file(str(folder / "model.safetensors"), device="cpu")
        tok = cls(config)
        tok.load_state_dict(release_state_dict(state, config), strict=True)
        # the official position tables ride in its state dict: ours must be the same
        for key in ("encoder_patch_pe", "decoder_patch_query_embed"):
            if key in state and not torch.allclose(state[key].reshape(tok.pos.shape).float(), tok.pos, atol=1e-5):
                raise ValueError(f"the release's {key} is not the official 3D sin-cos table this converter assumes")
        return tok.eval()

    @torch.no_grad()
    def decode(self, tokens: Tokens) -> Tensor:
        """Decode tokens (ids (B, n) with lengths; any prefix of an encode is valid) → (B, 3, T, S, S) in [0, 1]."""
        check_tokens(tokens, self.spec)
        if tokens.ids is None:
            raise ValueError("LARP decodes ids (B, n); these tokens carry only latents")
        c = self.config
        lengths = tokens.lengths.to(self.device)
        if int(lengths.min()) < 1 or int(lengths.max()) > c.max_tokens:
            raise ValueError(f"token lengths must lie in [1, {c.max_tokens}], got {tokens.lengths.tolist()}")
        self._check_prefix(lengths)
        n = int(lengths.max())
        ids = tokens.ids[:, :n].to(self.device)
        ids = ids * length_mask(lengths, n)  # padding → a valid id
        x = self.decode_codes(self.svq.lookup(ids), lengths)
        return ((x + 1) / 2 if c.signed_pixels else x).clamp(0, 1)


# ----------------------------------------------------------------------------------------- checkpoint conversion

_RELEASE_KEYS = ("bottleneck_token_num", "bottleneck")  # what marks the official config.json

# defaults of the official LARPTokenizer constructor (hywang66/LARP models/larp_tokenizer.py), for configs
# that store only the arguments that were passed
_RELEASE_DEFAULTS: dict[str, Any] = dict(
    bottleneck_token_num=1024, input_size=128, frame_num=16, temporal_patch_size=4, patch_size=8,
    decoder_temporal_patch_size=4, decoder_patch_size=8, in_channels=3, transformer_name="transformer_encoder_parallel",
    encoder_name=None, decoder_name=None, encoder_hidden_size=768, decoder_hidden_size=768, encoder_num_heads=12,
    decoder_num_heads=12, encoder_depth=6, decoder_depth=6, learned_encoder_patch_pe=False,
    learned_encoder_latent_query_embed=True, learned_decoder_latent_pe=False, learned_decoder_patch_query_embed=False,
    use_encoder_patch_token_type_embed=False, use_encoder_latent_query_token_type_embed=False,
    use_decoder_latent_token_type_embed=False, use_decoder_patch_query_token_type_embed=False,
)


def release_config(args: dict[str, Any]) -> LARPConfig:
    """The official constructor arguments (config.json) → our config, refusing variants we do not map."""
    a = {**_RELEASE_DEFAULTS, **args}

    def need(ok: bool, what: str) -> None:
        if not ok:
            raise ValueError(f"this LARP release is a variant the converter does not map: {what}")

    for name in ("encoder_name", "decoder_name"):
        need(str(a[name]).lower() in ("none", "no", "null", "", a["transformer_name"]), f"{name}={a[name]!r}")
    need(a["transformer_name"] == "transformer_encoder_parallel", f"transformer_name={a['transformer_name']!r}")
    need(a["encoder_hidden_size"] == a["decoder_hidden_size"] and a["encoder_num_heads"] == a["decoder_num_heads"],
         "encoder and decoder of different widths or heads")
    need(a["decoder_temporal_patch_size"] == a["temporal_patch_size"] and a["decoder_patch_size"] == a["patch_size"],
         "decoder patches differ from encoder patches")
    need(a["temporal_patch_size"] > 1, "temporal_patch_size=1 (per-frame 2D patches)")
    need(not a["learned_encoder_patch_pe"] and not a["learned_decoder_patch_query_embed"],
         "learned patch position embeddings")
    need(a["learned_encoder_latent_query_embed"], "fixed (not learned) encoder queries")
    bottleneck = a["bottleneck"]["args"]
    reg = bottleneck.get("regularizer") or {}
    reg_args = reg.get("args", {})
    need(str(bottleneck.get("norm", "none")).lower() in ("none", "no", "null"), f"bottleneck norm {bottleneck.get('norm')!r}")
    need(reg.get("name") == "vq" and reg_args.get("l2_normalized") and reg_args.get("stochastic", False),
         f"regularizer {reg.get('name')!r} (expected the stochastic L2-normalised 'vq')")
    need(reg_args.get("stochastic_temperature", 1.0) > 0, "a learned SVQ temperature")
    return LARPConfig.from_name(
        "larp-l", frames=a["frame_num"], image_size=a["input_size"], in_channels=a["in_channels"],
        temporal_patch=a["temporal_patch_size"], patch_size=a["patch_size"], max_tokens=a["bottleneck_token_num"],
        dim=a["encoder_hidden_size"], encoder_depth=a["encoder_depth"], decoder_depth=a["decoder_depth"],
        heads=a["encoder_num_heads"], codebook_size=reg_args["codebook_size"], code_dim=bottleneck["bottleneck_dim"],
        temperature=reg_args.get("stochastic_temperature", 1.0))


def release_state_dict(state: dict[str, Tensor], config: LARPConfig) -> dict[str, Tensor]:
    """The official state dict → ours. The training-only prior (`prior_model.*`) is dropped; token-type
    embeddings, constants added to every patch / query / token, fold into the bias or table they join."""
    c = config
    state = {k: v for k, v in state.items() if not k.startswith("prior_model.")}
    out: dict[str, Tensor] = {}
    w = state.pop("x_embedder.proj.weight")  # Conv3d (dim, C, pt, p, p) → Linear over (pt p1 p2 c)
    out["patch_embed.weight"] = rearrange(w, "d c pt p1 p2 -> d (pt p1 p2 c)")
    out["patch_embed.bias"] = state.pop("x_embedder.proj.bias").clone()
    if "encoder_patch_token_type_embed" in state:
        out["patch_embed.bias"] += state.pop("encoder_patch_token_type_embed").reshape(-1)
    out["queries"] = state.pop("encoder_latent_query_embed").reshape(c.max_tokens, c.dim).clone()
    if "encoder_latent_query_token_type_embed" in state:
        out["queries"] += state.pop("encoder_latent_query_token_type_embed").reshape(1, -1)
    out["token_pos"] = state.pop("decoder_latent_pe").reshape(c.max_tokens, c.dim).clone()
    if "decoder_latent_token_type_embed" in state:
        out["token_pos"] += state.pop("decoder_latent_token_type_embed").reshape(1, -1)
    query_type = state.pop("decoder_patch_query_token_type_embed", None)
    out["patch_query"] = torch.zeros(c.dim) if query_type is None else query_type.reshape(-1)
    for ours, theirs in (("to_code", "bottleneck.in_linear"), ("from_code", "bottleneck.out_linear"),
                         ("decoder.norm", "final_layer.norm_final"), ("to_pixels", "final_layer.linear")):
        for p in ("weight", "bias"):
            out[f"{ours}.{p}"] = state.pop(f"{theirs}.{p}")
    out["svq.embed"] = state.pop("bottleneck.regularizer.embedding.weight")
    for key in ("encoder_patch_pe", "decoder_patch_query_embed"):  # fixed tables, rebuilt (and checked) by from_release
        state.pop(key, None)
    for key in list(state):  # the two stacks: timm Blocks under the same names
        for part in ("encoder", "decoder"):
            if key.startswith(f"{part}.blocks."):
                out[key] = state.pop(key)
    if state:
        raise ValueError(f"unexpected tensors in the LARP release: {sorted(state)[:8]}")
    return out


# ----------------------------------------------------------------------------------------- presets

_OFFICIAL = dict(frames=16, image_size=128, max_tokens=1024, dim=768, encoder_depth=12, decoder_depth=12, heads=12,
                 codebook_size=8192, code_dim=16, temperature=0.03, causal_queries=False, token_mixing=False,
                 linear_rank=0, nested_dropout=False, pos_table="official", encoder_norm=False, norm_eps=1e-6,
                 qkv_bias=False, signed_pixels=False)

PRESETS: dict[str, dict[str, Any]] = {
    # ours, trained here: 16 frames of 32x32, 64 patches of 4x8x8, up to 32 tokens of a 1024 vocabulary
    "tiny": {},
    # smaller still, for tests and smoke runs
    "micro": dict(max_tokens=8, dim=64, encoder_depth=1, decoder_depth=1, heads=2, codebook_size=64, code_dim=8),
    # the official tokenizer (cfgs/larp_tokenizer.yaml): 16x128x128 in [0, 1], 1024 tokens, full attention among
    # queries, its switches on; L, B and S differ only in width/depth/heads (hywang66/LARP issue #11)
    "larp-l": _OFFICIAL,
    "larp-b": {**_OFFICIAL, "encoder_depth": 8, "decoder_depth": 8},
    "larp-s": {**_OFFICIAL, "dim": 512, "encoder_depth": 6, "decoder_depth": 6, "heads": 8},
}


# ----------------------------------------------------------------------------------------- released weights
# `zoo.load(name)` downloads these files, converts them once with `LARP.from_release` and caches our checkpoint.

RELEASES: dict[str, dict[str, Any]] = {
    "larp-l-long": dict(
        family="larp",
        preset="larp-l",
        hf_repo="hywang66/LARP-L-long-tokenizer",
        revision=None,  # not pinned yet: this machine cannot reach the hub to read the commit
        files=("config.json", "model.safetensors"),
        license="MIT",
        license_url="https://github.com/hywang66/LARP/blob/main/LICENSE",
        non_commercial=False,
        parameters="173M",
    ),
}


def _description(config: LARPConfig, parameters: str) -> str:
    """The card of LARP-L-Long (preset `config`): its clip shape and tokens as the preset gives them."""
    c, n = config, config.max_tokens
    return ("LARP-L-Long video tokenizer (Wang et al., ICLR 2025), converted from hywang66/LARP-L-long-tokenizer: "
            f"{c.frames}x{c.image_size}x{c.image_size} clips in [0, 1] -> {n} tokens of an {c.codebook_size}-entry SVQ "
            f"codebook; {parameters} parameters (the training-only prior is dropped). It was trained without nested token "
            f"dropout, so it decodes from all {n} tokens only: `encode(num_tokens=n)` with n < {n} raises a ValueError. "
            "Code and weights: MIT.")


# ----------------------------------------------------------------------------------------- registration

register_family(LARP, presets=PRESETS)
for _name, _release in RELEASES.items():
    _config = LARPConfig.from_name(_release["preset"])
    register_release(_name, **{k: v for k, v in _release.items() if k not in ("parameters", "preset")},
                     summary={**LARP.listing(_config), "description": _description(_config, _release["parameters"])})
