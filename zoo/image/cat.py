"""CAT: one nested autoencoder, three compression ratios, and a learned choice of ratio per image.

Paper: "CAT: Content-Adaptive Image Tokenization" (Shen et al., 2025, https://arxiv.org/abs/2501.03120).
No official code was released; this file follows the paper's method in our own design.

The encoder is one convolutional trunk that brings a (B, 3, S, S) image down to the finest latent grid
(S/4 for ratio 4); the medium and coarse grids are made from the same trunk by further stride-2
blocks (nested: ratio 8 = ratio 4 + one block, ratio 16 = ratio 8 + one more). Each grid has its own
1x1 head to the latent. The decoder mirrors it: a coarse latent goes up through the coarse and the
medium up-blocks, a medium one through the medium up-block, and all three then share the rest of the
decoder down to pixels. One token is one cell of the chosen grid, so an image costs 64, 16 or 4
tokens at 32x32.

Two kinds of latent, chosen by `CATConfig.quantizer`:
- "kl": a diagonal Gaussian per cell (KL-regularised, as CAT is a VAE for diffusion models); tokens
  are continuous `latents` (B, L, latent_dim) (the posterior mean), `ids` is None;
- "fsq": each cell is projected to len(fsq_levels) dims and quantised by FSQ
  (https://arxiv.org/abs/2309.15505), so a token is one id in [0, prod(levels)), usable by an LLM.

The paper picks the ratio with a captioner and an LLM rating the caption's complexity. Ours is a small
head on the (frozen) encoder trunk that predicts the PSNR each ratio would reach on this image,
trained after the autoencoder (recipes/cat.py). `encode(x, ratio="auto", quality=eps)` takes, per
image, the coarsest ratio whose predicted error meets eps (eps is a mean squared error on [0, 1]
pixels, so PSNR = -10·log10(eps)), a target above the best predicted PSNR - 0.1 dB counting as that: when
none meets eps, the coarsest predicted within 0.1 dB of the best (`zoo.image.budget`, KARL's rule too). A looser eps can only pick a coarser ratio or the
same one. Whether eps was met is measured on the decoded tokens (meta["quality_met"]). `ratio=4`
(any configured ratio, or one per image) fixes it.
"""

from __future__ import annotations

import math
import numbers
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import Tensor, nn

from zoo.image.budget import choose_budget, with_quality_met
from zoo.metrics import mse as image_mse
from zoo.hub import register_family
from zoo.tokenizer import InputContract, Tokenizer, Tokens, TokenSpec, check_fields, check_input, check_tokens

QUANTIZERS = ("fsq", "kl")


@dataclass
class CATConfig:
    """Args:
        image_size: side S of the (square) input; a multiple of the coarsest ratio.
        in_channels: C of the input.
        channels: trunk widths, one per resolution from S down to the finest grid S/ratios[0]; each
            step halves the resolution, so ratios[0] = 2 ** (len(channels) - 1).
        ratios: the compression ratios (pixels per latent cell side), finest first, each twice the
            previous; the coarser grids are made from the finest by one stride-2 block each.
        blocks: residual blocks per resolution in the encoder and the decoder.
        quantizer: "fsq" (ids) or "kl" (continuous latents).
        fsq_levels: FSQ levels per code dimension ("fsq"); vocab = prod(levels).
        latent_dim: channels of a continuous latent cell ("kl").
        estimator_dim: width of the ratio estimator.
        default_quality: the eps of `encode(x)` when neither `ratio` nor `quality` is given (MSE).
    """

    image_size: int = 32
    in_channels: int = 3
    channels: tuple[int, ...] = (16, 32, 128)
    ratios: tuple[int, ...] = (4, 8, 16)
    blocks: int = 1
    quantizer: str = "fsq"
    fsq_levels: tuple[int, ...] = (8, 8, 8, 5, 5, 5)
    latent_dim: int = 4
    estimator_dim: int = 64
    default_quality: float = 0.004

    def __post_init__(self) -> None:
        check_fields(self, image_size=(1, 4096), in_channels=(1, 256), channels=(1, 8192), ratios=(1, 1024),
                     blocks=(0, 64), fsq_levels=(2, 1 << 16), latent_dim=(1, 4096), estimator_dim=(1, 8192))
        if len(self.channels) > 11:  # ratios[0] = 2 ** (len(channels) - 1) <= 1024
            raise ValueError(f"channels has {len(self.channels)} levels; at most 11 (a finest ratio of 1024)")
        self.channels = tuple(int(c) for c in self.channels)
        self.ratios = tuple(int(r) for r in self.ratios)
        self.fsq_levels = tuple(int(v) for v in self.fsq_levels)
        if self.quantizer not in QUANTIZERS:
            raise ValueError(f"quantizer must be one of {QUANTIZERS}, got {self.quantizer!r}")
        if len(self.channels) < 1 or min(self.channels) < 8 or any(c % 8 for c in self.channels):
            raise ValueError(f"channels must be multiples of 8 (GroupNorm of 8 groups), got {self.channels}")
        if len(self.ratios) < 2:
            raise ValueError(f"ratios needs at least two values (a choice), got {self.ratios}")
        if self.ratios[0] != 2 ** (len(self.channels) - 1):
            raise ValueError(f"ratios[0]={self.ratios[0]} must be 2 ** (len(channels) - 1) = "
                             f"{2 ** (len(self.channels) - 1)}: each trunk level halves the resolution")
        if any(b != 2 * a for a, b in zip(self.ratios, self.ratios[1:])):
            raise ValueError(f"each ratio must be twice the previous (finest first), got {self.ratios}")
        if self.image_size % self.ratios[-1]:
            raise ValueError(f"image_size={self.image_size} must be a multiple of the coarsest ratio {self.ratios[-1]}")
        if self.blocks < 0:
            raise ValueError(f"blocks must be >= 0, got {self.blocks}")
        if not self.fsq_levels or min(self.fsq_levels) < 2:
            raise ValueError(f"fsq_levels must be integers >= 2, got {self.fsq_levels}")
        if self.latent_dim < 1 or self.estimator_dim < 8:
            raise ValueError(f"latent_dim must be >= 1 and estimator_dim >= 8, got {self.latent_dim}, {self.estimator_dim}")
        if not (isinstance(self.default_quality, (int, float)) and 0 < self.default_quality <= 1):
            raise ValueError(f"default_quality must be an MSE in (0, 1], got {self.default_quality!r}")

    @property
    def code_dim(self) -> int:
        """D of one token's latent: len(fsq_levels) for "fsq", latent_dim for "kl"."""
        return len(self.fsq_levels) if self.quantizer == "fsq" else self.latent_dim

    @property
    def vocab_size(self) -> int:
        return math.prod(self.fsq_levels) if self.quantizer == "fsq" else 0

    def grid(self, ratio: int) -> int:
        """Side of the latent grid at `ratio`."""
        return self.image_size // ratio

    def num_tokens(self, ratio: int) -> int:
        return self.grid(ratio) ** 2

    @classmethod
    def from_name(cls, name: str, **overrides: Any) -> "CATConfig":
        if name not in PRESETS:
            raise ValueError(f"{name!r} is not a supported config name; known: {sorted(PRESETS)}")
        return cls(**{**PRESETS[name], **overrides})


# ----------------------------------------------------------------------------------------- blocks


class ResBlock(nn.Module):
    """Pre-norm residual block: (GroupNorm, SiLU, 3x3 conv) twice. x: (B, C, H, W) → same."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.body = nn.Sequential(
            nn.GroupNorm(8, channels), nn.SiLU(), nn.Conv2d(channels, channels, 3, padding=1),
            nn.GroupNorm(8, channels), nn.SiLU(), nn.Conv2d(channels, channels, 3, padding=1),
        )

    def forward(self, x: Tensor) -> Tensor:
        return x + self.body(x)


def down(c_in: int, c_out: int, blocks: int) -> nn.Sequential:
    """(B, c_in, H, W) → (B, c_out, H/2, W/2): a stride-2 conv, then `blocks` residual blocks."""
    return nn.Sequential(nn.Conv2d(c_in, c_out, 3, stride=2, padding=1), *(ResBlock(c_out) for _ in range(blocks)))


def up(c_in: int, c_out: int, blocks: int) -> nn.Sequential:
    """(B, c_in, H, W) → (B, c_out, 2H, 2W): residual blocks, nearest upsampling, a 3x3 conv."""
    return nn.Sequential(*(ResBlock(c_in) for _ in range(blocks)), nn.Upsample(scale_factor=2, mode="nearest"),
                         nn.Conv2d(c_in, c_out, 3, padding=1))


class RatioEstimator(nn.Module):
    """Trunk features (B, C, g, g) → predicted PSNR (B, R) in dB at each ratio, finest first.

    The prediction is built non-increasing from fine to coarse (the coarsest value plus softplus
    increments), since a coarser grid of the same nested model cannot be expected to do better.
    """

    def __init__(self, channels: int, dim: int, num_ratios: int) -> None:
        super().__init__()
        self.body = nn.Sequential(
            nn.GroupNorm(8, channels), nn.Conv2d(channels, dim, 3, padding=1), nn.SiLU(),
            nn.Conv2d(dim, dim, 3, stride=2, padding=1), nn.SiLU(),
        )
        self.head = nn.Linear(2 * dim, num_ratios)
        nn.init.zeros_(self.head.weight)
        with torch.no_grad():  # start at a plausible 20 dB coarse, +3 dB per finer ratio
            self.head.bias.copy_(torch.tensor([20.0] + [math.log(math.expm1(3.0))] * (num_ratios - 1)))

    def forward(self, features: Tensor) -> Tensor:
        h = self.body(features)
        pooled = torch.cat([h.mean(dim=(2, 3)), h.amax(dim=(2, 3))], dim=1)  # (B, 2·dim)
        out = self.head(pooled)  # (B, R): coarsest PSNR, then increments toward fine
        steps = torch.cat([out[:, :1], F.softplus(out[:, 1:])], dim=1)
        return steps.cumsum(dim=1).flip(1)  # finest first


# ----------------------------------------------------------------------------------------- the tokenizer


class CAT(Tokenizer):
    """CAT. x: (B, 3, S, S) in [0, 1] → (S/r)² tokens per image, r one of `config.ratios`, chosen per image."""

    family = "cat"
    config_class = CATConfig
    encode_knobs = ("ratio", "quality", "min_gain_db", "search")
    decode_options = ()

    def __init__(self, config: CATConfig) -> None:
        super().__init__(config)
        from vector_quantize_pytorch import FSQ  # imported on first build: it loads einx and torch._dynamo (seconds)
        c = config
        ch, top, n = c.channels, c.channels[-1], len(c.ratios)
        out_dim = c.code_dim * (2 if c.quantizer == "kl" else 1)
        # encoder: trunk down to the finest grid, then one stride-2 block per coarser ratio
        self.stem = nn.Conv2d(c.in_channels, ch[0], 3, padding=1)
        self.enc_trunk = nn.Sequential(*(ResBlock(ch[0]) for _ in range(c.blocks)),
                                       *(down(a, b, c.blocks) for a, b in zip(ch, ch[1:])))
        self.enc_nest = nn.ModuleList(down(top, top, c.blocks) for _ in range(n - 1))
        self.to_latent = nn.ModuleList(nn.Sequential(nn.GroupNorm(8, top), nn.SiLU(), nn.Conv2d(top, out_dim, 1))
                                       for _ in range(n))
        self.fsq = FSQ(list(c.fsq_levels)) if c.quantizer == "fsq" else None
        if c.quantizer == "kl":  # start with a small posterior variance, so the sampled latents carry the image
            for head in self.to_latent:
                nn.init.constant_(head[-1].bias[c.code_dim:], -6.0)
        # decoder: a latent enters at its own grid, goes up the nested blocks, then the shared trunk
        self.from_latent = nn.ModuleList(nn.Conv2d(c.code_dim, top, 1) for _ in range(n))
        self.dec_nest = nn.ModuleList(up(top, top, c.blocks) for _ in range(n - 1))
        self.dec_trunk = nn.Sequential(*(up(a, b, c.blocks) for a, b in zip(ch[::-1], ch[::-1][1:])),
                                       *(ResBlock(ch[0]) for _ in range(c.blocks)),
                                       nn.GroupNorm(8, ch[0]), nn.SiLU(), nn.Conv2d(ch[0], c.in_channels, 3, padding=1))
        self.estimator = RatioEstimator(top, c.estimator_dim, n)

    # -- the contract ----------------------------------------------------------------------------------

    @property
    def spec(self) -> TokenSpec:
        c = self.config
        s = c.image_size
        return TokenSpec(
            modality="image",
            vocab_size=c.vocab_size,
            num_codebooks=1,
            max_tokens=c.num_tokens(c.ratios[0]),
            latent_dim=c.code_dim,
            input=InputContract(layout=f"B {c.in_channels} H W", value_range=(0.0, 1.0), sizes={"H": s, "W": s}),
        )

    # -- modelling steps (used by encode/decode and by the training recipe) ------------------------------

    def features(self, x: Tensor) -> Tensor:
        """x: (B, C, S, S) in [-1, 1] → trunk features (B, channels[-1], S/r0, S/r0) at the finest grid."""
        return self.enc_trunk(self.stem(x))

    @torch.no_grad()
    def encoder_features(self, x: Tensor) -> Tensor:
        """x: (B, 3, S, S) in [0, 1] → the trunk's features at the finest grid as tokens, (B, (S/r0)², channels[-1]).

        What `zoo.reduce` reducers can be measured on (benchmarks/reduce.py --part tokenizers).
        """
        x = check_input(x, self.spec.input, "images").to(self.device)
        return rearrange(self.features(x * 2 - 1), "b d h w -> b (h w) d")

    def raw_latents(self, features: Tensor) -> list[Tensor]:
        """Trunk features → the head output at every ratio, finest first: (B, out_dim, g_i, g_i)."""
        out, h = [], features
        for i, head in enumerate(self.to_latent):
            if i:
                h = self.enc_nest[i - 1](h)
            out.append(head(h))
        return out

    def latent(self, raw: Tensor, sample: bool = False) -> tuple[Tensor, Tensor | None, Tensor | None]:
        """One ratio's head output (B, out_dim, g, g) → (z (B, g², D), ids (B, g²) or None, logvar or None).

        "fsq": z are the quantised codes in [-1, 1] (straight-through), ids their indices.
        "kl": z is the posterior mean, or a sample from N(mean, exp(logvar)) when `sample`.
        """
        flat = rearrange(raw, "b d h w -> b (h w) d")
        if self.fsq is not None:
            codes, ids = self.fsq(flat.float())
            return codes, ids.long(), None
        mean, logvar = flat.chunk(2, dim=-1)
        logvar = logvar.clamp(-30.0, 20.0)
        z = mean + torch.randn_like(mean) * (0.5 * logvar).exp() if sample else mean
        return z, None, logvar

    def decode_latent(self, z: Tensor, level: int) -> Tensor:
        """z: (B, g², D) at ratio index `level` (0 = finest) → image (B, C, S, S) in [-1, 1] units (unclipped)."""
        g = self.config.grid(self.config.ratios[level])
        h = self.from_latent[level](rearrange(z, "b (h w) d -> b d h w", h=g, w=g))
        for i in reversed(range(level)):  # coarse → medium → fine
            h = self.dec_nest[i](h)
        return self.dec_trunk(h)

    def pixels(self, z: Tensor, level: int) -> Tensor:
        """`decode_latent` brought to the decoder's output range: (B, C, S, S) in [0, 1]."""
        return ((self.decode_latent(z, level) + 1) / 2).clamp(0, 1)

    @torch.no_grad()
    def predict_psnr(self, x: Tensor) -> Tensor:
        """The estimator's PSNR (B, R) in dB for each ratio of `config.ratios` (finest first). x in [0, 1]."""
        x = check_input(x, self.spec.input, "images").to(self.device)
        return self.estimator(self.features(x * 2 - 1))

    # -- encode / decode -------------------------------------------------------------------------------

    def choose_levels(self, predicted_psnr: Tensor, quality: float) -> Tensor:
        """predicted PSNR (B, R), finest first → ratio index (B,): the coarsest that meets `quality`, a target above
        the best predicted PSNR - `zoo.image.budget.NEAR_BEST_DB` counting as that (`choose_budget`): when none
        meets it, the coarsest within 0.1 dB of the best."""
        target = predicted_psnr.new_full(predicted_psnr.shape[:1], quality)
        return choose_budget(10 ** (-predicted_psnr / 10), self.ratio_tokens(), target)

    def ratio_tokens(self) -> Tensor:
        """(R,) float: the tokens each of `config.ratios` costs, finest first (the candidates of `choose_budget`)."""
        return torch.tensor([float(self.config.num_tokens(r)) for r in self.config.ratios])

    def levels_from_budget(self, ratio: Any, quality: Any, batch: int, device: torch.device) -> Tensor | None:
        """Check `ratio` / `quality` and return fixed ratio indices (B,), or None for 'auto'."""
        ratios = self.config.ratios
        if ratio is None:
            ratio = "auto"
        if isinstance(ratio, str):
            if ratio == "search":
                raise ValueError("ratio='search' is now spelled ratio='auto', search=True (measured search is search=True "
                                 "in every family)")
            if ratio != "auto":
                raise ValueError(f"ratio must be 'auto', one of {ratios}, or a LongTensor [B] of them; got {ratio!r}")
            return None
        if quality is not None:
            raise ValueError(f"quality= applies to ratio='auto' only; got ratio={ratio!r} with quality={quality!r}")
        if isinstance(ratio, Tensor):
            if ratio.shape != (batch,) or ratio.is_floating_point() or ratio.dtype == torch.bool:
                raise ValueError(f"ratio as a tensor must be integer with shape ({batch},), one per image; "
                                 f"got {ratio.dtype} {tuple(ratio.shape)}")
            values = ratio.tolist()
        elif isinstance(ratio, bool) or not isinstance(ratio, numbers.Integral):
            raise ValueError(f"ratio must be 'auto', one of {ratios}, or a LongTensor [B] of them; got {ratio!r}")
        else:
            values = [int(ratio)] * batch
        bad = sorted({v for v in values if v not in ratios})
        if bad:
            raise ValueError(f"ratio {bad} is not one of this model's ratios {ratios}")
        return torch.tensor([ratios.index(v) for v in values], dtype=torch.long, device=device)

    @staticmethod
    def check_quality(quality: Any) -> float:
        if isinstance(quality, bool) or not isinstance(quality, numbers.Real) or not math.isfinite(quality) \
                or not 0 < quality <= 1:
            raise ValueError(f"quality is a target mean squared error on [0, 1] pixels, a number in (0, 1] "
                             f"(e.g. 0.001 for 30 dB PSNR); got {quality!r}")
        return float(quality)

    @torch.no_grad()
    def encode(self, x: Tensor, *, ratio: int | str | Tensor | None = None, quality: float | None = None,
               min_gain_db: float = 0.0, search: bool = False) -> Tokens:
        """Encode images at a fixed or an adaptive compression ratio.

        Args:
            x: (B, 3, S, S) float in [0, 1].
            ratio: "auto" (default): per image, the coarsest ratio whose predicted error meets `quality`;
                or one of `config.ratios` for every image; or a LongTensor [B] of them, one per image.
            quality: with "auto", the target mean squared error on [0, 1] pixels (PSNR = -10·log10 of it);
                larger is looser and never picks a finer ratio. Default `config.default_quality`. When no
                ratio is predicted to meet it, the coarsest predicted within 0.1 dB of the best.
            min_gain_db: with search, the rate-distortion stop λ (dB per token); 0 (default) = off.
            search: with ratio "auto", measure instead of predict (`zoo.image.budget`): decode every ratio
                and keep, per image, the coarsest whose measured error meets `quality` (when none does, the
                coarsest within 0.1 dB of the lowest measured error: the same rule on measured errors), or
                coarser where the finer ratio buys less than `min_gain_db` dB per extra token.
        Returns:
            Tokens with lengths (B,) = (S/r)² of each image's ratio r, meta["ratio"] (B,) = r, and
            "fsq": ids (B, L) + latents, the FSQ codes (B, L, len(levels)); "kl": latents (B, L, latent_dim),
            the posterior means, ids None. L is the longest length in the batch; padding is zeros.
            With ratio "auto", also meta["quality_met"] (B,) bool: whether `decode` of these tokens is within
            `quality` of x in per-image MSE (`zoo.metrics.mse`), measured by decoding them (with search, the
            search's own decode of the chosen ratio), never predicted.
        """
        c = self.config
        x = check_input(x, self.spec.input, "images").to(self.device)
        b = x.shape[0]
        levels = self.levels_from_budget(ratio, quality, b, x.device)
        if not isinstance(search, bool):
            raise ValueError(f"search must be True or False, got {search!r}")
        if search and levels is not None:
            raise ValueError(f"search=True picks each image's ratio; give ratio='auto' (or none), not ratio={ratio!r}")
        if isinstance(min_gain_db, bool) or not isinstance(min_gain_db, numbers.Real) or not math.isfinite(min_gain_db) \
                or min_gain_db < 0 or (min_gain_db > 0 and not search):
            raise ValueError(f"min_gain_db is a finite number >= 0 (dB per token) for search=True; "
                             f"got {min_gain_db!r} with search={search!r}")
        features = self.features(x * 2 - 1)
        raws = self.raw_latents(features)
        auto, measured = levels is None, None
        if auto:
            eps = self.check_quality(c.default_quality if quality is None else quality)
        if search:
            mse = torch.stack([image_mse(self.pixels(self.latent(raw)[0], i), x)
                               for i, raw in enumerate(raws)], 1)  # (B, R): what decode gives
            levels = choose_budget(mse, self.ratio_tokens(), torch.full((b,), eps), float(min_gain_db))
            measured = mse[torch.arange(b, device=mse.device), levels.to(mse.device)]  # the decode of the kept tokens
        elif auto:
            levels = self.choose_levels(self.estimator(features), eps)
        lengths = torch.tensor([c.num_tokens(c.ratios[i]) for i in levels.tolist()], dtype=torch.long, device=x.device)
        width = int(lengths.max())
        latents = x.new_zeros(b, width, c.code_dim)
        ids = torch.zeros(b, width, dtype=torch.long, device=x.device) if self.fsq is not None else None
        for level in levels.unique().tolist():
            rows = (levels == level).nonzero().squeeze(1)
            z, level_ids, _ = self.latent(raws[level][rows])
            n = z.shape[1]
            latents[rows, :n] = z.to(latents.dtype)  # the quantizer's codes are float32 in a half model
            if ids is not None:
                ids[rows, :n] = level_ids
        ratios = torch.tensor(c.ratios, device=x.device)[levels]
        tokens = Tokens(ids=ids, lengths=lengths, latents=latents, meta={"ratio": ratios})
        return with_quality_met(self, tokens, x, torch.full((b,), eps), measured) if auto else tokens

    def levels_of(self, tokens: Tokens) -> Tensor:
        """Ratio index (B,) of each sample, from its length (each ratio has its own), checked against meta["ratio"]."""
        c = self.config
        sizes = {c.num_tokens(r): i for i, r in enumerate(c.ratios)}
        lengths = tokens.lengths.tolist()
        bad = sorted({n for n in lengths if n not in sizes})
        if bad:
            raise ValueError(f"token lengths must be one of {sorted(sizes)} (the grids of ratios {c.ratios}); got {bad}")
        levels = torch.tensor([sizes[n] for n in lengths], dtype=torch.long)
        if "ratio" in tokens.meta:
            given = tokens.meta["ratio"]
            expected = torch.tensor(c.ratios)[levels]
            if given.shape != (len(lengths),) or not torch.equal(given.cpu().long(), expected):
                raise ValueError(f"tokens.meta['ratio'] {given.tolist()} does not match the lengths {lengths} "
                                 f"(ratio r has (S/r)² tokens, ratios {c.ratios})")
        return levels.to(tokens.lengths.device)

    @torch.no_grad()
    def decode(self, tokens: Tokens) -> Tensor:
        """Decode tokens from `encode` (any mix of ratios in one batch).

        Args:
            tokens: "fsq": ids (B, L); "kl": latents (B, L, latent_dim). Each sample's ratio is read
                from its length ((S/r)² tokens at ratio r; meta["ratio"], when present, must agree);
                positions past a sample's length are ignored.
        Returns:
            (B, 3, S, S) float in [0, 1].
        """
        c = self.config
        check_tokens(tokens, self.spec)
        if self.fsq is not None and tokens.ids is None:
            raise ValueError("this CAT model is FSQ-quantized and decodes ids (B, L); these tokens carry only latents")
        if self.fsq is None and tokens.latents is None:
            raise ValueError("this CAT model is continuous (KL) and decodes latents (B, L, D); these tokens carry only ids")
        if self.fsq is None and tokens.latents.shape[2] != c.code_dim:
            raise ValueError(f"latents must have {c.code_dim} channels, got shape {tuple(tokens.latents.shape)}")
        levels = self.levels_of(tokens).to(self.device)
        out = torch.zeros(tokens.batch_size, c.in_channels, c.image_size, c.image_size, device=self.device)
        for level in levels.unique().tolist():
            rows = (levels == level).nonzero().squeeze(1)
            n = c.num_tokens(c.ratios[level])
            if self.fsq is not None:
                z = self.fsq.indices_to_codes(tokens.ids.to(self.device)[rows, :n])
            else:
                z = tokens.latents.to(self.device, torch.float32)[rows, :n]
            out[rows] = self.pixels(z, level).to(out.dtype)  # bfloat16 under a half model's autocast
        return out


# ----------------------------------------------------------------------------------------- presets

PRESETS: dict[str, dict[str, Any]] = {
    # ours, trained here: 32x32 RGB, grids 8x8 / 4x4 / 2x2 (64 / 16 / 4 tokens), FSQ vocabulary 64000
    "tiny": {},
    # the same, continuous (KL) latents of 4 channels per cell
    "tiny-kl": dict(quantizer="kl", latent_dim=4),
    # shaped like the paper's setting (256x256, ratios 8 / 16 / 32, 16-channel continuous latents)
    "base-256": dict(image_size=256, channels=(128, 128, 256, 512), ratios=(8, 16, 32), blocks=2,
                     quantizer="kl", latent_dim=16, estimator_dim=128),
}


# ----------------------------------------------------------------------------------------- registration

register_family(CAT, presets=PRESETS)
