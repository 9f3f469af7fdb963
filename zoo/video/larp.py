"""LARP: videos as a short sequence of holistic tokens, shaped for an autoregressive prior.

Paper: "LARP: Tokenizing Videos with a Learned Autoregressive Generative Prior" (Wang et al., ICLR
2025, https://arxiv.org/abs/2410.21264). Official code: hywang66/LARP (read, not copied).

The encoder is one transformer over the spatio-temporal patches of a clip and N learned holistic
queries; each query's output is projected to a small code vector and quantised by SVQ, the
stochastic vector quantiser of the paper: code and codebook are L2-normalised, and the token is
*sampled* from softmax(cos(z, e_v) / τ) while training, or taken as the argmax (the nearest code)
otherwise. The decoder is a transformer over the kept tokens and one query per output patch, which
it maps back to pixels. During training (see `recipes/larp.py`) a small autoregressive transformer
(`ARPrior`, below) reads the quantised tokens and predicts each next token; its loss flows back into
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

Layout note for importing the official release later: its tokenizer (cfgs/larp_tokenizer.yaml) takes
16x128x128 clips in 4x8x8 patches with 1024 queries, an 8192 x 16 L2-normalised codebook and 768-wide,
12-deep encoder and decoder; presets "larp-l", "larp-b" and "larp-s" spell that shape and its smaller
siblings (widths and depths from the authors' answer in hywang66/LARP issue #11), with `causal_queries=False`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from einops import rearrange, repeat
from torch import Tensor, nn
from vector_quantize_pytorch.vector_quantize_pytorch import gumbel_sample

from zoo.nn import Transformer, kept_codes, sincos_pos_embed_2d
from zoo.nn.transformer import key_padding_mask, prefix_causal_mask
from zoo.tokenizer import InputContract, Tokenizer, Tokens, TokenSpec, check_budget, check_input, check_tokens


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

    renamed_fields: ClassVar[dict[str, str]] = {"num_tokens": "max_tokens"}  # checkpoints before the budget contract

    def __post_init__(self) -> None:
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

    def __init__(self, config: LARPConfig) -> None:
        super().__init__(config)
        c = config
        patch_pixels = c.in_channels * c.temporal_patch * c.patch_size**2
        self.register_buffer("pos", sincos_pos_embed_3d(c.dim, c.grid), persistent=False)  # (P, dim)
        # encoder: patches (of pixels, or of conv features at half resolution) + N queries → N codes
        patch_features = c.conv_channels * c.temporal_patch * (c.patch_size // 2) ** 2 if c.conv_channels else patch_pixels
        if c.conv_channels:
            self.conv_in = conv_front_end(c.in_channels, c.conv_channels)
            self.conv_out = conv_back_end(c.conv_channels, c.in_channels)
            self.to_features = nn.Linear(c.dim, patch_features)
        self.patch_embed = nn.Linear(patch_features, c.dim)
        self.queries = nn.Parameter(torch.randn(c.max_tokens, c.dim) * 0.02)
        self.encoder = Transformer(c.dim, c.encoder_depth, c.heads, c.mlp_ratio)
        self.to_code = nn.Linear(c.dim, c.code_dim)
        self.svq = SVQ(c.codebook_size, c.code_dim, c.temperature)
        # decoder: n tokens + P patch queries → P patches
        self.from_code = nn.Linear(c.code_dim, c.dim)
        self.token_pos = nn.Parameter(torch.randn(c.max_tokens, c.dim) * 0.02)
        self.patch_query = nn.Parameter(torch.randn(c.dim) * 0.02)
        self.decoder = Transformer(c.dim, c.decoder_depth, c.heads, c.mlp_ratio)
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
        n_max = self.config.max_tokens
        if num_tokens is None:
            return torch.full((batch,), n_max, dtype=torch.long, device=device)
        if isinstance(num_tokens, Tensor):
            if num_tokens.shape != (batch,) or num_tokens.is_floating_point() or num_tokens.dtype == torch.bool:
                raise ValueError(f"num_tokens as a tensor must be integer with shape ({batch},), one per clip; "
                                 f"got {num_tokens.dtype} {tuple(num_tokens.shape)}")
            lo, hi = int(num_tokens.min()), int(num_tokens.max())
            if lo < 1 or hi > n_max:
                raise ValueError(f"num_tokens must lie in [1, {n_max}] for every clip, got values in [{lo}, {hi}]")
            return num_tokens.to(device=device, dtype=torch.long)
        n = check_budget(num_tokens, 1, n_max)
        return torch.full((batch,), n, dtype=torch.long, device=device)

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
        """x: (B, C, T, S, S) in [-1, 1] → pre-quantisation codes (B, n, code_dim) of the first n queries."""
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
        """x: (B, C, T, S, S) in [-1, 1] → (codes (B, n, d), ids (B, n), z (B, n, d) normalised).

        Differentiable: codes carry a straight-through gradient to the encoder.
        """
        return self.svq(self.encode_latents(x, num_tokens), sample)

    def decode_codes(self, codes: Tensor, lengths: Tensor | None = None) -> Tensor:
        """codes: (B, n, d) unit vectors; lengths: (B,) kept tokens per clip (None: all n) → (B, C, T, S, S), [-1, 1] units."""
        c = self.config
        b, n = codes.shape[:2]
        lengths = torch.full((b,), n, device=codes.device) if lengths is None else lengths
        kept = torch.arange(n, device=codes.device)[None] < lengths[:, None]  # (B, n)
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
            num_tokens: tokens per clip, an int in 1..N or a LongTensor [B] (per clip); default N.
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
        codes, ids, _ = self.quantize(x * 2 - 1, int(lengths.max()), sample)
        keep = torch.arange(ids.shape[1], device=x.device)[None] < lengths[:, None]
        return Tokens(ids=ids.long() * keep, lengths=lengths, latents=codes * keep[..., None])

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
        n = int(lengths.max())
        ids = tokens.ids[:, :n].to(self.device)
        ids = ids * (torch.arange(n, device=ids.device)[None] < lengths[:, None])  # padding → a valid id
        x = self.decode_codes(self.svq.lookup(ids), lengths)
        return ((x + 1) / 2).clamp(0, 1)


# ----------------------------------------------------------------------------------------- the prior (training only)


class ARPrior(nn.Module):
    """The learned autoregressive prior: a small causal transformer over quantised tokens (LARP §3.3).

    It reads unit codes (B, N, d) (with their straight-through gradient, so its loss reaches the
    encoder), and at position i predicts a unit vector for token i from a learned start token and
    tokens 0..i-1; logits over the vocabulary are its cosine similarities to the (detached) codebook
    divided by a temperature. Used only while training (`recipes/larp.py`); never exported.
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


# ----------------------------------------------------------------------------------------- presets

_OFFICIAL = dict(frames=16, image_size=128, max_tokens=1024, dim=768, encoder_depth=12, decoder_depth=12, heads=12,
                 codebook_size=8192, code_dim=16, temperature=0.03, causal_queries=False, token_mixing=False,
                 linear_rank=0)

PRESETS: dict[str, dict[str, Any]] = {
    # ours, trained here: 16 frames of 32x32, 64 patches of 4x8x8, up to 32 tokens of a 1024 vocabulary
    "tiny": {},
    # smaller still, for tests and smoke runs
    "micro": dict(max_tokens=8, dim=64, encoder_depth=1, decoder_depth=1, heads=2, codebook_size=64, code_dim=8),
    # shaped like the official tokenizer (cfgs/larp_tokenizer.yaml): 16x128x128, 1024 tokens, full attention among
    # queries; L, B and S differ only in width/depth/heads (hywang66/LARP issue #11), for importing the releases later
    "larp-l": _OFFICIAL,
    "larp-b": {**_OFFICIAL, "encoder_depth": 8, "decoder_depth": 8},
    "larp-s": {**_OFFICIAL, "dim": 512, "encoder_depth": 6, "decoder_depth": 6, "heads": 8},
}
