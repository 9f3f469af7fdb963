"""KARL: one-pass adaptive image tokenization, halting once a target reconstruction error is met.

Paper: "Single-pass Adaptive Image Tokenization for Minimum Program Search" (Duggal et al., 2025,
https://arxiv.org/abs/2507.07995). Official code: ShivamDuggal4/karl (read, not copied).

A transformer encoder reads the image patches, an embedding of the desired reconstruction error ε
and K learned latent tokens; each latent becomes one token (FSQ-quantised,
https://arxiv.org/abs/2309.15505, or continuous). A halting head says which latent tokens are not
needed to reach ε; encode keeps the ones before the first halted token. A deterministic transformer
decoder rebuilds the patches from the kept tokens, every dropped token replaced by a learned mask
token. Training (recipes/karl.py) follows the paper's two phases per step: estimate the error an
image reaches under a random budget T, then condition on that error and learn to halt after T tokens
(upside-down RL: the error achieved becomes the command).

ε is the per-image mean squared error in [0, 1] pixel units, so a target ε means a PSNR of
-10·log10(ε) dB (ε = 0.001 ↔ 30 dB, 0.01 ↔ 20 dB).

What we do beyond (or differently from) the official code:
- the halting head reads the patch features only (patches never attend to ε or the latents) and
  predicts a decreasing curve c_0 > c_1 > ... > c_{K-1} of log errors; token j halts when
  σ(s·(log ε - c_j)) > `halt_threshold`. So for every image a looser ε never keeps more tokens
  (monotone by construction, not only on average), and the kept tokens are always a prefix;
- `encode(x, quality=ε)` returns the truncated tokens with per-sample `lengths` (never empty: the
  first token is always kept); `halt_threshold` is a config field and an encode keyword;
- ε alone is a poor allocator when images differ in what they can reach: one that cannot reach ε
  would spend all K tokens for fractions of a dB. So ε is first raised to 0.1 dB above what K
  tokens are predicted to reach: an image that cannot reach ε keeps the fewest tokens predicted
  within 0.1 dB of its best (`zoo.image.budget`, the rule `search=True` applies to measured errors),
  and `meta["quality_met"]` says, measured on the decoded tokens, whether ε was met. `min_gain_db`
  adds the rate-distortion stop: no token that buys less than that many dB on the image's predicted
  error curve, which the halting head already gives (on our val set even an oracle equal-error
  allocation needs more tokens than a fixed budget at the same mean PSNR);
- `encode(x, num_tokens=n)` (int or LongTensor [B]) also works: the encoder is conditioned on the ε
  that the halting head maps to n tokens for that image, so a fixed budget sees the conditions
  training saw;
- latent tokens are causal (token j sees tokens 0..j only), so a prefix does not depend on what is cut;
- for a short CPU budget, two linear paths beside the attention: learned token mixing (patches →
  latent slots in the encoder, token slots → patch queries in the decoder, as in MLP-Mixer) and a
  linear read-out of the kept codes to pixels. Attention alone spent the first ~500 steps of a
  40-minute budget reconstructing little more than each image's mean colour;
- no printed counts, no `.cuda()`: CPU and CUDA alike.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from collections.abc import Sequence
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from einops import rearrange, repeat
from torch import Tensor, nn

from zoo.image.budget import choose_budget, reachable_target, with_quality_met
from zoo.metrics import mse as image_mse
from zoo.nn import Patchify, TimestepEmbedding, Transformer, Unpatchify, kept_codes, sincos_pos_embed_2d
from zoo.nn.transformer import prefix_causal_mask
from zoo.hub import register_family
from zoo.tokenizer import (InputContract, Tokenizer, Tokens, TokenSpec, budget_lengths, check_budget, check_fields,
                           check_input, check_tokens, check_weights, length_mask,
                           transformer_weights)

QUANTIZERS = ("fsq", "none")


@dataclass
class KARLConfig:
    """Args:
        image_size: side S of the (square) input; a multiple of `patch_size`.
        in_channels: C of the input.
        patch_size: p; the image becomes (S/p)² patch tokens.
        max_tokens: K, the most tokens an image can have.
        encoder_dim, encoder_depth, encoder_heads: the encoder transformer.
        decoder_dim, decoder_depth, decoder_heads: the decoder transformer.
        mlp_ratio: MLP width / dim in both transformers.
        quantizer: "fsq" (ids in [0, prod(fsq_levels))) or "none" (continuous tokens of `latent_dim`).
        fsq_levels: FSQ levels per code dimension (quantizer "fsq").
        latent_dim: D of a continuous token (quantizer "none"); with "fsq" it is len(fsq_levels).
        quality_range: (low, high) target errors the ε embedding spans; ε outside is clipped for the
            embedding (halting still uses the exact ε, so monotonicity holds everywhere).
        default_quality: the ε `encode` uses when given neither `quality` nor `num_tokens`.
        halt_threshold: a token halts when its halting probability exceeds this; higher keeps more tokens.
        min_gain_db: also stop once further tokens buy less than this many dB each on the image's
            predicted error curve (`lengths_for_gain`), even if ε is not reached yet; 0 is the paper's
            rule (tokens until ε). Without it, images that cannot reach ε spend all K tokens.
    """

    image_size: int = 32
    in_channels: int = 3
    patch_size: int = 8
    max_tokens: int = 32
    encoder_dim: int = 128
    encoder_depth: int = 4
    encoder_heads: int = 4
    decoder_dim: int = 128
    decoder_depth: int = 4
    decoder_heads: int = 4
    mlp_ratio: float = 4.0
    quantizer: str = "fsq"
    fsq_levels: tuple[int, ...] = (7, 5, 5, 5, 5)
    latent_dim: int = 5
    quality_range: tuple[float, float] = (1e-4, 0.1)
    default_quality: float = 0.003
    halt_threshold: float = 0.5
    min_gain_db: float = 0.0

    renamed_fields: ClassVar[dict[str, str]] = {"num_tokens": "max_tokens"}  # checkpoints before the budget contract

    def __post_init__(self) -> None:
        self.fsq_levels = tuple(self.fsq_levels)
        self.quality_range = tuple(self.quality_range)
        check_fields(self, image_size=(1, 4096), in_channels=(1, 256), patch_size=(1, 256), max_tokens=(1, 16384),
                     encoder_dim=(1, 8192), encoder_depth=(0, 128), encoder_heads=(1, 256), decoder_dim=(1, 8192),
                     decoder_depth=(0, 128), decoder_heads=(1, 256), mlp_ratio=(0, 64), fsq_levels=(2, 1 << 16),
                     latent_dim=(1, 4096), quality_range=(0, 1e6), default_quality=(0, 1e6))
        check_weights(self, transformer_weights((self.encoder_dim, self.encoder_depth), (self.decoder_dim, self.decoder_depth)),
                      "transformer weights")
        self.fsq_levels = tuple(int(v) for v in self.fsq_levels)
        self.quality_range = tuple(float(v) for v in self.quality_range)
        if self.patch_size < 1 or self.image_size % self.patch_size:
            raise ValueError(f"image_size={self.image_size} must be a multiple of patch_size={self.patch_size}")
        if self.max_tokens < 1:
            raise ValueError(f"max_tokens must be >= 1, got {self.max_tokens}")
        for name in ("encoder", "decoder"):
            dim, heads = getattr(self, f"{name}_dim"), getattr(self, f"{name}_heads")
            if dim % heads or dim % 4:
                raise ValueError(f"{name}_dim={dim} must be divisible by {name}_heads={heads} and by 4")
        if self.quantizer not in QUANTIZERS:
            raise ValueError(f"quantizer must be one of {QUANTIZERS}, got {self.quantizer!r}")
        if self.quantizer == "fsq":
            if not self.fsq_levels or min(self.fsq_levels) < 2:
                raise ValueError(f"fsq_levels must be integers >= 2, got {self.fsq_levels}")
            self.latent_dim = len(self.fsq_levels)
        if self.latent_dim < 1:
            raise ValueError(f"latent_dim must be >= 1, got {self.latent_dim}")
        lo, hi = self.quality_range
        if not 0 < lo < hi:
            raise ValueError(f"quality_range must be (low, high) with 0 < low < high, got {self.quality_range}")
        if not (math.isfinite(self.default_quality) and self.default_quality > 0):
            raise ValueError(f"default_quality must be a finite positive error, got {self.default_quality}")
        if not 0 < self.halt_threshold < 1:
            raise ValueError(f"halt_threshold must lie in (0, 1), got {self.halt_threshold}")
        if not (math.isfinite(self.min_gain_db) and self.min_gain_db >= 0):
            raise ValueError(f"min_gain_db must be a finite number >= 0 (dB per token), got {self.min_gain_db}")

    @property
    def grid(self) -> tuple[int, int]:
        n = self.image_size // self.patch_size
        return n, n

    @property
    def num_patches(self) -> int:
        return self.grid[0] * self.grid[1]

    @property
    def vocab_size(self) -> int:
        return math.prod(self.fsq_levels) if self.quantizer == "fsq" else 0

    @classmethod
    def from_name(cls, name: str, **overrides: Any) -> "KARLConfig":
        if name not in PRESETS:
            raise ValueError(f"{name!r} is not a supported config name; known: {sorted(PRESETS)}")
        return cls(**{**PRESETS[name], **overrides})


# ----------------------------------------------------------------------------------------- the tokenizer


def extend_curve(curve: Tensor) -> Tensor:
    """(B, K) decreasing log errors c_0..c_{K-1} → (B, K + 1) with c_K continuing the last step (one e-fold if K = 1)."""
    step = curve[:, -2:-1] - curve[:, -1:] if curve.shape[1] > 1 else torch.ones_like(curve[:, -1:])
    return torch.cat([curve, curve[:, -1:] - step], dim=1)



class KARL(Tokenizer):
    """KARL. x: (B, 3, S, S) in [0, 1] → 1..K tokens per image, as many as the target error ε needs."""

    family = "karl"
    config_class = KARLConfig
    encode_knobs = ("quality", "num_tokens", "halt_threshold", "min_gain_db", "search")
    decode_options = ()

    def __init__(self, config: KARLConfig) -> None:
        super().__init__(config)
        from vector_quantize_pytorch import FSQ  # imported on first build: it loads einx and torch._dynamo (seconds)
        c = config
        k, de, dd = c.max_tokens, c.encoder_dim, c.decoder_dim
        # encoder: [N patches; ε token; K causal latents] → K codes of latent_dim
        self.enc_patch = Patchify(c.in_channels, c.patch_size, de)
        self.register_buffer("enc_pos", sincos_pos_embed_2d(de, c.grid), persistent=False)
        self.quality_embed = TimestepEmbedding(de)
        self.latents = nn.Parameter(torch.randn(k, de) * 0.02)
        self.patch_to_latent = nn.Parameter(torch.randn(k, c.num_patches) / c.num_patches**0.5)  # token mixing
        self.encoder = Transformer(de, c.encoder_depth, c.encoder_heads, c.mlp_ratio)
        self.to_code = nn.Linear(de, c.latent_dim)
        self.fsq = FSQ(list(c.fsq_levels)) if c.quantizer == "fsq" else None
        # halting head: pooled patch features → log-error curve c_1 > ... > c_K, and a sharpness s
        self.halt_head = nn.Sequential(nn.LayerNorm(de), nn.Linear(de, de), nn.GELU(), nn.Linear(de, k))
        nn.init.zeros_(self.halt_head[-1].weight)
        with torch.no_grad():  # start at c_1 = log 0.05, falling by ~0.15 per token (to ~5e-4 at K = 32)
            self.halt_head[-1].bias.fill_(math.log(math.expm1(0.15)))
            self.halt_head[-1].bias[0] = math.log(0.05)
        self.halt_log_scale = nn.Parameter(torch.tensor(math.log(4.0)))
        # decoder: [N patch queries; K token slots (mask token past the length)] → patches
        self.from_code = nn.Linear(c.latent_dim, dd)
        self.register_buffer("dec_pos", sincos_pos_embed_2d(dd, c.grid), persistent=False)
        self.patch_query = nn.Parameter(torch.randn(dd) * 0.02)
        self.slot_to_patch = nn.Parameter(torch.randn(c.num_patches, k) / k**0.5)  # token mixing
        self.slot_pos = nn.Parameter(torch.randn(k, dd) * 0.02)
        self.mask_token = nn.Parameter(torch.randn(dd) * 0.02)
        self.decoder = Transformer(dd, c.decoder_depth, c.decoder_heads, c.mlp_ratio)
        self.head = Unpatchify(dd, c.patch_size, c.in_channels)
        # a linear read-out of all K codes straight to pixels (zeros for dropped tokens): it learns a
        # PCA-like basis in a few hundred steps, while attention learns the rest
        self.linear_head = nn.Linear(k * c.latent_dim, c.in_channels * c.image_size**2)
        nn.init.zeros_(self.linear_head.weight)

    # -- the contract ----------------------------------------------------------------------------------

    @property
    def spec(self) -> TokenSpec:
        c = self.config
        s = c.image_size
        return TokenSpec(
            modality="image",
            vocab_size=c.vocab_size,
            num_codebooks=1,
            max_tokens=c.max_tokens,
            latent_dim=c.latent_dim,
            input=InputContract(layout=f"B {c.in_channels} H W", value_range=(0.0, 1.0), sizes={"H": s, "W": s}),
        )

    # -- modelling steps (used by encode/decode and by the training recipe) ------------------------------

    def patch_features(self, x: Tensor) -> Tensor:
        """x: (B, C, S, S) in [-1, 1] → encoder features of the patches (B, N, De).

        Patches attend only to patches, so these equal the patch rows of `encode_latents` at any ε.
        """
        return self.encoder(self.enc_patch(x) + self.enc_pos)

    def halting_curve(self, patch_feats: Tensor) -> Tensor:
        """patch_feats: (B, N, De) → c: (B, K), strictly decreasing in j.

        c_j is the log error the image is predicted to reach with its first j tokens (j = 0..K-1), so
        token j is needed while the target ε is below exp(c_j) (sharpened by `halting_logits`).
        """
        raw = self.halt_head(patch_feats.mean(1))  # (B, K)
        return raw[:, :1] - torch.cat([raw.new_zeros(raw.shape[0], 1), F.softplus(raw[:, 1:]).cumsum(1)], dim=1)

    def halting_logits(self, curve: Tensor, quality: Tensor) -> Tensor:
        """curve: (B, K); quality: (B,) target ε → logits (B, K) of "token j is not needed", rising with ε and j."""
        return self.halt_log_scale.exp() * (quality.log()[:, None] - curve)

    def lengths_for_quality(self, curve: Tensor, quality: Tensor, threshold: float) -> Tensor:
        """Tokens kept (B,) in 1..K: those whose halting probability is at most `threshold` (a prefix)."""
        p = torch.sigmoid(self.halting_logits(curve, quality))
        return (p <= threshold).sum(1).clamp(1, self.config.max_tokens)

    def lengths_for_gain(self, curve: Tensor, min_gain_db: float) -> Tensor:
        """Tokens (B,) in 1..K that maximise predicted PSNR - min_gain_db · tokens (the smallest such count).

        The rate-distortion stopping rule: a token is worth keeping only if, with the ones before it,
        it buys at least `min_gain_db` dB on the image's predicted curve. 0 keeps all K. Larger values
        never keep more tokens.
        """
        ext = extend_curve(curve)
        psnr = -10 / math.log(10) * (ext[:, :-1] + ext[:, 1:]) / 2  # (B, K): with n tokens, between c_{n-1} and c_n
        n = torch.arange(1, curve.shape[1] + 1, device=curve.device, dtype=psnr.dtype)
        return (psnr - min_gain_db * n).argmax(1) + 1  # argmax returns the first maximum

    def quality_for_lengths(self, curve: Tensor, lengths: Tensor, threshold: float) -> Tensor:
        """The ε (B,) that `lengths_for_quality` maps to `lengths` (B,): mid-way (in log) inside its interval."""
        k = self.config.max_tokens
        curve = extend_curve(curve)
        idx = (lengths - 1).clamp(0, k - 1)[:, None]
        mid = (curve.gather(1, idx) + curve.gather(1, idx + 1)).squeeze(1) / 2
        return (mid + math.log(threshold / (1 - threshold)) / self.halt_log_scale.exp()).exp()

    @torch.no_grad()
    def encoder_features(self, x: Tensor) -> Tensor:
        """x: (B, 3, S, S) in [0, 1] → the encoder's patch tokens after its last block, (B, N, encoder_dim).

        Patches attend only to patches, so these depend neither on ε nor on the token budget; they are
        what `zoo.reduce` reducers can be measured on (benchmarks/reduce.py --part tokenizers).
        """
        x = check_input(x, self.spec.input, "images").to(self.device)
        return self.encoder(self.enc_patch(x * 2 - 1) + self.enc_pos)

    def encode_latents(self, x: Tensor, quality: Tensor) -> tuple[Tensor, Tensor]:
        """x: (B, C, S, S) in [-1, 1]; quality: (B,) ε → (pre-quantisation codes (B, K, latent_dim),
        patch features (B, N, De), which do not depend on ε)."""
        c = self.config
        n, k = c.num_patches, c.max_tokens
        lo, hi = c.quality_range
        level = (quality.clamp(lo, hi).log() - math.log(lo)) / (math.log(hi) - math.log(lo))  # (B,) in [0, 1]
        patches = self.enc_patch(x) + self.enc_pos  # (B, N, De)
        latents = self.latents + torch.einsum("kn,bnd->bkd", self.patch_to_latent, patches)  # (B, K, De)
        seq = torch.cat([patches, self.quality_embed(level)[:, None], latents], dim=1)
        h = self.encoder(seq, prefix_causal_mask(n, 1 + k, x.device))
        return self.to_code(h[:, n + 1:]), h[:, :n]

    def quantize(self, z: Tensor) -> tuple[Tensor, Tensor | None]:
        """z: (B, K, D) → (codes (B, K, D), ids (B, K) or None). FSQ is straight-through; continuous is tanh."""
        if self.fsq is None:
            return torch.tanh(z), None
        codes, ids = self.fsq(z.float())
        return codes, ids

    def reconstruct(self, codes: Tensor, lengths: Tensor) -> Tensor:
        """Rebuild images from tokens.

        Args:
            codes: (B, k, D), k <= K; positions >= lengths are ignored (replaced by the mask token).
            lengths: (B,) kept tokens per image in 0..k.
        Returns:
            (B, C, S, S) in [-1, 1] units (unclamped).
        """
        c = self.config
        b, k = codes.shape[:2]
        keep = length_mask(lengths, k)[..., None]  # (B, k, 1)
        slots = torch.where(keep, self.from_code(codes), self.mask_token)  # (B, k, Dd)
        if k < c.max_tokens:
            slots = torch.cat([slots, repeat(self.mask_token, "d -> b m d", b=b, m=c.max_tokens - k)], dim=1)
        slots = slots + self.slot_pos
        queries = self.patch_query + self.dec_pos + torch.einsum("nk,bkd->bnd", self.slot_to_patch, slots)  # (B, N, Dd)
        h = self.decoder(torch.cat([queries, slots], dim=1))
        linear = rearrange(self.linear_head(kept_codes(codes, lengths, c.max_tokens)), "b (ch h w) -> b ch h w",
                           ch=c.in_channels, h=c.image_size)
        return self.head(h[:, : c.num_patches], c.grid) + linear

    # -- encode / decode -------------------------------------------------------------------------------

    @torch.no_grad()
    def encode(self, x: Tensor, *, quality: float | Tensor | None = None, num_tokens: int | Tensor | None = None,
               halt_threshold: float | None = None, min_gain_db: float | None = None,
               search: bool | Sequence[int] = False) -> Tokens:
        """Encode images, as many tokens per image as the target error needs.

        Args:
            x: (B, 3, S, S) float in [0, 1].
            quality: target ε, the per-image MSE in [0, 1] units (PSNR -10·log10 ε); a positive float or a
                float tensor [B]. Per image, the fewest tokens predicted to reach ε, with ε first raised to
                0.1 dB above the error all K tokens are predicted to reach (`zoo.image.budget.reachable_target`):
                toward a target out of reach, the fewest predicted within 0.1 dB of the best, since more buy no
                measurable gain. A larger ε (looser target) never keeps more tokens.
            num_tokens: a fixed budget instead of ε: an int in 1..K or a LongTensor [B].
            halt_threshold: halting probability above which a token is dropped (default the config's).
            min_gain_db: also stop where further tokens are predicted to buy less than this many dB each.
                Default: the config's when `quality` is not given; 0 when it is, so an explicit ε is a target
                the tokens meet when they can (pass both to combine them).
            search: measure instead of predict (`zoo.image.budget`): encode and decode every budget
                1..K (or the budgets given as a sequence) and keep, per image, the fewest tokens whose
                measured error meets ε (raised, as above, to 0.1 dB above the lowest measured error), or
                fewer where a token buys less than `min_gain_db` dB on the image's measured curve. One
                encode and decode per candidate; not with num_tokens.
            Give at most one of quality / num_tokens; with neither, ε = `config.default_quality`.
        Returns:
            Tokens with lengths (B,) in 1..K, ids (B, max length) for FSQ (zeros past each length) and
            latents (B, max length, D), the codes (zeros past each length). Unless `num_tokens` is given,
            also meta["quality_met"] (B,) bool: whether `decode` of these tokens is within ε of x in per-image
            MSE (`zoo.metrics.mse`), measured on their decode (the search's own, with search), never predicted.
        """
        c = self.config
        x = check_input(x, self.spec.input, "images").to(self.device)
        b = x.shape[0]
        threshold = self._check_threshold(c.halt_threshold if halt_threshold is None else halt_threshold)
        # an explicit target is honoured: the config's min-gain stop applies only to the default ε
        min_gain = (0.0 if quality is not None else c.min_gain_db) if min_gain_db is None else min_gain_db
        if isinstance(min_gain, bool) or not isinstance(min_gain, (int, float)) or not (math.isfinite(min_gain) and min_gain >= 0):
            raise ValueError(f"min_gain_db must be a finite number >= 0 (dB per token), got {min_gain!r}")
        if quality is not None and num_tokens is not None:
            raise ValueError("give quality= (a target error) or num_tokens= (a fixed budget), not both")
        if search is not False:
            if num_tokens is not None:
                raise ValueError("search= picks each image's budget; give quality= / min_gain_db=, not num_tokens=")
            eps = self._check_quality(c.default_quality if quality is None else quality, b)
            tokens, measured = self._search(x, eps, float(min_gain), threshold, self._check_candidates(search))
            return with_quality_met(self, tokens, x, eps, measured)
        scaled = x * 2 - 1
        curve = self.halting_curve(self.patch_features(scaled))
        if num_tokens is not None:
            lengths = budget_lengths(num_tokens, b, self.config.max_tokens, self.device)
            return self._tokens_at(scaled, self.quality_for_lengths(curve, lengths, threshold), lengths)
        target = self._check_quality(c.default_quality if quality is None else quality, b)
        lengths = self.lengths_for_quality(curve, target, threshold)
        # no tokens toward a target below what all K are predicted to reach (c_K, the curve extended) + 0.1 dB
        cut = self.lengths_for_quality(curve, reachable_target(target, extend_curve(curve)[:, -1].exp()), threshold)
        if min_gain > 0:
            cut = torch.minimum(cut, self.lengths_for_gain(curve, min_gain))
        eps = torch.where(cut < lengths, self.quality_for_lengths(curve, cut, threshold), target)  # what they reach
        tokens = self._tokens_at(scaled, eps, torch.minimum(lengths, cut))
        return with_quality_met(self, tokens, x, target)

    def _tokens_at(self, scaled: Tensor, eps: Tensor, lengths: Tensor, width: int | None = None) -> Tokens:
        """Tokens of images in [-1, 1] under the ε conditioning `eps` (B,), kept to `lengths` (B,) and zeroed
        past them; `width` (default the longest length) is the padded width."""
        width = int(lengths.max()) if width is None else width
        codes, ids = self.quantize(self.encode_latents(scaled, eps)[0][:, :width])
        keep = length_mask(lengths, width)  # (B, width)
        return Tokens(ids=None if ids is None else ids.long() * keep, lengths=lengths, latents=codes * keep[..., None])

    def _search(self, x: Tensor, eps: Tensor, min_gain: float, threshold: float, candidates: list[int]
                ) -> tuple[Tensor, Tensor]:
        """encode(search=...): x in [0, 1]; every candidate budget encoded, decoded and measured.
        Returns (the chosen tokens, their measured MSE (B,))."""
        b = x.shape[0]
        scaled = x * 2 - 1
        curve = self.halting_curve(self.patch_features(scaled))
        found, mse = [], []
        for n in candidates:  # the tokens encode(x, num_tokens=n) gives: the same ε conditioning
            lengths = torch.full((b,), n, dtype=torch.long, device=x.device)
            tokens = self._tokens_at(scaled, self.quality_for_lengths(curve, lengths, threshold), lengths, candidates[-1])
            found.append(tokens)
            mse.append(image_mse(self.decode(tokens), x))
        mse = torch.stack(mse, 1)  # (B, C)
        pick = choose_budget(mse, torch.tensor(candidates, dtype=torch.float32), eps, min_gain)
        lengths = torch.tensor(candidates, device=x.device)[pick]
        rows, width = torch.arange(b, device=x.device), int(lengths.max())
        ids = None if found[0].ids is None else torch.stack([t.ids for t in found])[pick, rows, :width]
        latents = torch.stack([t.latents for t in found])[pick, rows, :width]
        return Tokens(ids=ids, lengths=lengths, latents=latents), mse[rows, pick.to(mse.device)]

    def _check_candidates(self, search: Any) -> list[int]:
        k = self.config.max_tokens
        if search is True:
            return list(range(1, k + 1))
        if isinstance(search, (bool, str)) or not isinstance(search, Sequence) or not search:
            raise ValueError(f"search must be True (budgets 1..{k}) or a non-empty sequence of budgets, got {search!r}")
        return sorted({check_budget(n, 1, k, "search budget") for n in search})

    @torch.no_grad()
    def decode(self, tokens: Tokens) -> Tensor:
        """Decode tokens (deterministic); positions at or past each sample's length are never read.

        Args:
            tokens: from `encode`; ids (B, k) (FSQ) or latents (B, k, D) (continuous), k <= K, with lengths.
        Returns:
            (B, 3, S, S) float in [0, 1].
        """
        c = self.config
        if self.fsq is None and isinstance(tokens, Tokens):
            if tokens.latents is None:
                raise ValueError(f"this continuous KARL decodes latents (B, k, {c.latent_dim}); these tokens carry only ids")
            tokens = Tokens(ids=None, lengths=tokens.lengths, latents=tokens.latents)  # ids are not read
        check_tokens(tokens, self.spec)
        lengths = tokens.lengths.to(self.device)
        if int(lengths.min()) < 1 or int(lengths.max()) > c.max_tokens:
            raise ValueError(f"token lengths must lie in [1, {c.max_tokens}], got {tokens.lengths.tolist()}")
        if tokens.width > c.max_tokens:
            raise ValueError(f"tokens are {tokens.width} wide, this tokenizer has at most {c.max_tokens}")
        if self.fsq is not None:
            if tokens.ids is None:
                raise ValueError("this KARL is FSQ-quantised and decodes ids (B, k); these tokens carry only latents")
            ids = tokens.ids.to(self.device) * tokens.mask.to(self.device)  # padding → a valid id
            codes = self.fsq.indices_to_codes(ids)
        else:
            if tokens.latents.shape[-1] != c.latent_dim:
                raise ValueError(f"this continuous KARL decodes latents (B, k, {c.latent_dim}), got {tuple(tokens.latents.shape)}")
            codes = tokens.latents.to(self.device, torch.float32)
        return ((self.reconstruct(codes, lengths) + 1) / 2).clamp(0, 1)

    # -- argument checks ------------------------------------------------------------------------------

    def _check_quality(self, quality: Any, batch: int) -> Tensor:
        if isinstance(quality, Tensor):
            if not quality.is_floating_point() or quality.shape not in ((), (batch,)):
                raise ValueError(f"quality as a tensor must be floating with shape ({batch},), one per image; "
                                 f"got {quality.dtype} {tuple(quality.shape)}")
            q = quality.to(self.device, torch.float32).expand(batch)
        elif isinstance(quality, bool) or not isinstance(quality, (int, float)):
            raise ValueError(f"quality must be a positive number (target MSE in [0, 1] units), got {quality!r}")
        else:
            q = torch.full((batch,), float(quality), device=self.device)
        if not bool(torch.isfinite(q).all()) or float(q.min()) <= 0:
            raise ValueError(f"quality must be a finite positive target MSE (e.g. 0.003 ≈ 25 dB), got {quality!r}")
        return q

    @staticmethod
    def _check_threshold(threshold: Any) -> float:
        if isinstance(threshold, bool) or not isinstance(threshold, (int, float)) or not 0 < threshold < 1:
            raise ValueError(f"halt_threshold must be a number in (0, 1), got {threshold!r}")
        return float(threshold)


# ----------------------------------------------------------------------------------------- presets

PRESETS: dict[str, dict[str, Any]] = {
    # ours, trained here: 32x32 RGB, 16 patches of 8x8, up to 32 tokens of an FSQ vocabulary of 4375
    "tiny": {},
    # the same with continuous tokens (8 dims, tanh-bounded)
    "tiny-continuous": dict(quantizer="none", latent_dim=8),
    # shaped like the paper's small model (256x256 pixels, patch 16, up to 256 tokens)
    "small": dict(image_size=256, patch_size=16, max_tokens=256, encoder_dim=512, encoder_depth=8, encoder_heads=8,
                  decoder_dim=512, decoder_depth=8, decoder_heads=8, fsq_levels=(8, 8, 8, 5, 5, 5)),
}


# ----------------------------------------------------------------------------------------- registration

register_family(KARL, presets=PRESETS)
