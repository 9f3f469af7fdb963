"""FlexTok: images as 1D token sequences of flexible length, decoded by a rectified flow.

Paper: "FlexTok: Resampling Images into 1D Token Sequences of Flexible Length" (Bachmann et al.,
ICML 2025, https://arxiv.org/abs/2502.13967). Official code: apple/ml-flextok (read, not copied).

The encoder is one transformer over the patchified image and K learned register tokens; patches
attend to patches, register i attends to every patch and to registers 0..i (causal). Each register
is projected to len(levels) dims and quantised by FSQ (https://arxiv.org/abs/2309.15505), so a token
is one id in [0, prod(levels)). Training drops all registers after a random prefix k (nested
dropout), so every prefix 1..K decodes. The decoder is a DiT-style rectified-flow transformer over
the noisy image patches and the kept registers; it predicts the clean image (x-prediction, as in JiT,
https://arxiv.org/abs/2511.13720, which suits large pixel patches), from which the flow velocity is
formed. Sampling is Euler from noise (t=0) to image (t=1), with optional classifier-free guidance.

What we do beyond the official code:
- decode (and encode) cost falls with k: the decoder sees N patches + 1 mask token + k registers,
  never K padded registers. All dropped registers collapse into one learned mask token that carries
  the position embedding of the first dropped slot, so the decoder still knows how many are missing;
  with k = 0 (only the mask token) it is the unconditional model used by guidance. Because registers
  are causal and patches never attend to them, encoding a prefix of k registers gives exactly the
  first k tokens of a full encode, at the cost of N + k tokens;
- per-sample k in one batch (`num_tokens=` a LongTensor [B]); shorter samples are padded and masked;
- an explicit `seed=` for decoding, so a decode is reproducible and independent of global RNG state;
- plain `scaled_dot_product_attention` masks, no flex_attention: CPU and CUDA alike.

What we add to the method (ours) so that a tiny model learns on a CPU budget (config fields, all on
in the "tiny" preset and off in the presets shaped like the official release). With attention alone,
40 CPU-minutes gave tokens that carried only the global colour (14.3 dB at every k, 8 steps); the
same paths made KARL (zoo/image/karl.py) learn:
- `token_mixing`: learned linear token mixing beside attention (MLP-Mixer style): each register
  starts as its learned embedding plus a learned mix of the patch embeddings, and each decoder patch
  token gets a learned mix of the K register slots (a dropped slot counts as the mask token). The
  decoder still attends to only k registers, so its cost still falls with k;
- `linear_readout`: a zero-init linear map of the kept codes (dropped ones = 0) to a coarse image,
  which is added to the predicted clean image and patch-embedded into the decoder's patch tokens, so
  the flow transformer refines a PCA-like linear reconstruction instead of building it from scratch
  (the recipe can also put a loss on the read-out alone, `readout_weight`);
- `code_norm`: a LayerNorm on the code before FSQ, to keep codes spread over the levels: the
  unmodified model used a few hundred distinct ids (of 64000) over 128 val images x 64 registers.
The recipe also draws k uniformly in half of the steps (`uniform_prefix`), since log-uniform prefixes
alone rarely train the long ones.

Layout note for importing the official d12-d18 release later: it runs on the 16-channel latents of
its VAE (patch size 2, K=256); `in_channels`, `patch_size`, `image_size` (the latent grid) and the
encoder/decoder widths and depths here express that shape (presets "d12-d12", "d18-d18"); an
importer would add the VAE around this class.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, ClassVar

import torch
from einops import rearrange, repeat
from torch import Tensor, nn

from zoo.nn import (AdaLNTransformer, Patchify, TimestepEmbedding, Transformer, Unpatchify, kept_codes,
                    sincos_pos_embed_2d)
from zoo.nn.transformer import key_padding_mask, prefix_causal_mask
from zoo.hub import register_family
from zoo.tokenizer import (InputContract, Tokenizer, Tokens, TokenSpec, budget_lengths, check_budget, check_fields,
                           check_input, check_tokens, check_weights, length_mask,
                           transformer_weights)


class FSQGridConfig:
    """What both FlexTok configs derive alike (ours below, the official architecture's in flextok_release.py):
    a preset by name, the patch count of the `grid` each defines, the FSQ vocabulary, and the check of the codes."""

    presets: ClassVar[dict[str, dict[str, Any]]] = {}  # set beside each family's PRESETS table

    @classmethod
    def from_name(cls, name: str, **overrides: Any) -> Any:
        if name not in cls.presets:
            raise ValueError(f"{name!r} is not a supported config name; known: {sorted(cls.presets)}")
        return cls(**{**cls.presets[name], **overrides})

    @property
    def num_patches(self) -> int:
        return self.grid[0] * self.grid[1]

    @property
    def vocab_size(self) -> int:
        return math.prod(self.fsq_levels)

    def check_codes(self) -> None:
        """`fsq_levels` as a tuple of ints, each >= 2, and at least one register (from `__post_init__`)."""
        self.fsq_levels = tuple(int(v) for v in self.fsq_levels)
        if self.num_registers < 1:
            raise ValueError(f"num_registers must be >= 1, got {self.num_registers}")
        if not self.fsq_levels or min(self.fsq_levels) < 2:
            raise ValueError(f"fsq_levels must be integers >= 2, got {self.fsq_levels}")


@dataclass
class FlexTokConfig(FSQGridConfig):
    """Args:
        image_size: side S of the (square) input; a multiple of `patch_size`.
        in_channels: C of the input (3 for RGB pixels; 16 for the official VAE latents).
        patch_size: p; the image becomes (S/p)² patch tokens in encoder and decoder.
        num_registers: K, the most tokens an image can have.
        encoder_dim, encoder_depth, encoder_heads: the encoder transformer.
        decoder_dim, decoder_depth, decoder_heads: the rectified-flow decoder transformer.
        mlp_ratio: MLP width / dim in both transformers.
        qk_norm: LayerNorm on queries and keys (stabilises larger models).
        pooled_condition: also add the mean of the kept registers to the time embedding that drives
            every block's adaLN (ours; the official decoder conditions in context only). It gives the
            global content of the tokens a direct path, which the in-context path takes long to learn.
        token_mixing: learned linear token mixing beside attention (ours, MLP-Mixer style, as in KARL):
            patches → register slots in the encoder, register slots → patch tokens in the decoder.
        linear_readout: a zero-init linear map of the kept codes (dropped ones = 0) to a coarse image
            (ours, as in KARL), which is added to the predicted clean image and patch-embedded into
            the decoder's patch tokens, so the transformer refines it.
        code_norm: a LayerNorm on the len(levels)-dim code before FSQ (ours), which spreads codes over
            the levels instead of collapsing onto a few.
        fsq_levels: FSQ levels per code dimension; vocab = prod(levels).
        steps: default Euler steps of `decode`.
        guidance: default classifier-free guidance scale of `decode` (1 = none).
        time_shift: warp s >= 1 of the sampling grid, t' = u / (s - (s - 1)·u) for a uniform u, which
            spends more steps near the noise end (t=0); 1 keeps the grid uniform.
    """

    image_size: int = 32
    in_channels: int = 3
    patch_size: int = 8
    num_registers: int = 64
    encoder_dim: int = 128
    encoder_depth: int = 4
    encoder_heads: int = 2
    decoder_dim: int = 192
    decoder_depth: int = 4
    decoder_heads: int = 3
    mlp_ratio: float = 4.0
    qk_norm: bool = False
    pooled_condition: bool = True
    token_mixing: bool = True
    linear_readout: bool = True
    code_norm: bool = True
    fsq_levels: tuple[int, ...] = (8, 8, 8, 5, 5, 5)
    steps: int = 8
    guidance: float = 1.0
    time_shift: float = 1.0

    def __post_init__(self) -> None:
        check_fields(self, image_size=(1, 4096), in_channels=(1, 256), patch_size=(1, 256), num_registers=(1, 16384),
                     encoder_dim=(1, 8192), encoder_depth=(0, 128), encoder_heads=(1, 256), decoder_dim=(1, 8192),
                     decoder_depth=(0, 128), decoder_heads=(1, 256), mlp_ratio=(0, 64), fsq_levels=(2, 1 << 16),
                     steps=(1, 10_000), guidance=(0, 1000), time_shift=(1, 10_000))
        check_weights(self, transformer_weights((self.encoder_dim, self.encoder_depth), (self.decoder_dim, self.decoder_depth)),
                      "transformer weights")
        self.check_codes()
        if self.patch_size < 1 or self.image_size % self.patch_size:
            raise ValueError(f"image_size={self.image_size} must be a multiple of patch_size={self.patch_size}")
        for name in ("encoder", "decoder"):
            dim, heads = getattr(self, f"{name}_dim"), getattr(self, f"{name}_heads")
            if dim % heads or (dim // heads) % 2:
                raise ValueError(f"{name}_dim={dim} must split into {name}_heads={heads} heads of even size")
            if dim % 4:
                raise ValueError(f"{name}_dim={dim} must be divisible by 4 (2D sin-cos positions)")
        if self.steps < 1:
            raise ValueError(f"steps must be >= 1, got {self.steps}")
        if self.time_shift < 1:
            raise ValueError(f"time_shift must be >= 1, got {self.time_shift}")

    @property
    def grid(self) -> tuple[int, int]:
        n = self.image_size // self.patch_size
        return n, n


# ----------------------------------------------------------------------------------------- the tokenizer


class FlexTok(Tokenizer):
    """FlexTok. x: (B, 3, S, S) in [0, 1] → ids (B, k) in [0, prod(levels)), any k in 1..K per sample."""

    family = "flextok"
    config_class = FlexTokConfig
    encode_knobs = ("num_tokens",)
    decode_options = ("steps", "guidance", "seed")

    def __init__(self, config: FlexTokConfig) -> None:
        super().__init__(config)
        from vector_quantize_pytorch import FSQ  # imported on first build: it loads einx and torch._dynamo (seconds)
        c = config
        n, k = c.num_patches, c.num_registers
        # encoder: patches + K causal registers → K codes of len(levels) dims
        self.enc_patch = Patchify(c.in_channels, c.patch_size, c.encoder_dim)
        self.register_buffer("enc_pos", sincos_pos_embed_2d(c.encoder_dim, c.grid), persistent=False)
        self.registers = nn.Parameter(torch.randn(k, c.encoder_dim) * 0.02)
        self.patch_to_register = nn.Parameter(torch.randn(k, n) / n**0.5) if c.token_mixing else None
        self.encoder = Transformer(c.encoder_dim, c.encoder_depth, c.encoder_heads, c.mlp_ratio, c.qk_norm)
        self.to_code = nn.Linear(c.encoder_dim, len(c.fsq_levels))
        self.code_norm = nn.LayerNorm(len(c.fsq_levels)) if c.code_norm else nn.Identity()
        self.fsq = FSQ(list(c.fsq_levels))
        # decoder: noisy patches + 1 mask token + k registers, conditioned on the flow time
        self.from_code = nn.Linear(len(c.fsq_levels), c.decoder_dim)
        self.dec_patch = Patchify(c.in_channels, c.patch_size, c.decoder_dim)
        self.register_buffer("dec_pos", sincos_pos_embed_2d(c.decoder_dim, c.grid), persistent=False)
        self.register_pos = nn.Parameter(torch.randn(k + 1, c.decoder_dim) * 0.02)  # slot K: the mask token when k = K
        self.mask_token = nn.Parameter(torch.randn(c.decoder_dim) * 0.02)
        self.time_embed = TimestepEmbedding(c.decoder_dim)
        self.pool_proj = nn.Linear(c.decoder_dim, c.decoder_dim) if c.pooled_condition else None
        self.slot_to_patch = nn.Parameter(torch.randn(n, k) / k**0.5) if c.token_mixing else None
        self.decoder = AdaLNTransformer(c.decoder_dim, c.decoder_depth, c.decoder_heads, c.mlp_ratio, c.qk_norm)
        self.head = Unpatchify(c.decoder_dim, c.patch_size, c.in_channels)
        nn.init.zeros_(self.head.proj.weight)
        nn.init.zeros_(self.head.proj.bias)
        self.linear_head = self.coarse_patch = None
        if c.linear_readout:
            self.linear_head = nn.Linear(k * len(c.fsq_levels), c.in_channels * c.image_size**2)
            nn.init.zeros_(self.linear_head.weight)
            self.coarse_patch = Patchify(c.in_channels, c.patch_size, c.decoder_dim)

    # -- the contract ----------------------------------------------------------------------------------

    @property
    def spec(self) -> TokenSpec:
        c = self.config
        s = c.image_size
        return TokenSpec(
            modality="image",
            vocab_size=c.vocab_size,
            num_codebooks=1,
            max_tokens=c.num_registers,
            latent_dim=len(c.fsq_levels),
            input=InputContract(layout=f"B {c.in_channels} H W", value_range=(0.0, 1.0), sizes={"H": s, "W": s}),
        )

    def lengths_from_budget(self, num_tokens: int | Tensor | None, batch: int, device: torch.device) -> Tensor:
        """num_tokens: None (all K), an int, or a LongTensor [B] → lengths (B,) in 1..K."""
        return budget_lengths(num_tokens, batch, self.config.num_registers, device)

    # -- modelling steps (used by encode/decode and by the training recipe) ------------------------------

    def quantize(self, x: Tensor, num_registers: int) -> tuple[Tensor, Tensor]:
        """x: (B, C, S, S) in [-1, 1] → (codes (B, k, len(levels)) in [-1, 1], ids (B, k)), k = num_registers.

        Differentiable (FSQ's straight-through estimator). Only the first k registers are computed:
        they do not depend on the later ones.
        """
        n = self.config.num_patches
        patches = self.enc_patch(x) + self.enc_pos  # (B, N, De)
        regs = repeat(self.registers[:num_registers], "k d -> b k d", b=x.shape[0])
        if self.patch_to_register is not None:
            regs = regs + torch.einsum("kn,bnd->bkd", self.patch_to_register[:num_registers], patches)
        h = self.encoder(torch.cat([patches, regs], dim=1), prefix_causal_mask(n, num_registers, x.device))
        codes, ids = self.fsq(self.code_norm(self.to_code(h[:, n:])).float())
        return codes, ids

    @torch.no_grad()
    def encoder_features(self, x: Tensor) -> Tensor:
        """x: (B, 3, S, S) in [0, 1] → the encoder's patch tokens after its last block, (B, N, encoder_dim).

        Patches never attend to the registers, so these do not depend on the token budget; they are
        what `zoo.reduce` reducers can be measured on (benchmarks/reduce.py --part tokenizers).
        """
        x = check_input(x, self.spec.input, "images").to(self.device)
        return self.encoder(self.enc_patch(x * 2 - 1) + self.enc_pos)

    def readout(self, codes: Tensor, lengths: Tensor) -> Tensor | None:
        """The linear read-out of the kept codes: codes (B, k, len(levels)), lengths (B,) → (B, C, S, S), or None.

        Dropped codes count as zeros, so with k = 0 it is a constant image (the learned bias).
        """
        if self.linear_head is None:
            return None
        c = self.config
        flat = self.linear_head(kept_codes(codes, lengths, c.num_registers))  # (B, C·S·S)
        return rearrange(flat, "b (ch h w) -> b ch h w", ch=c.in_channels, h=c.image_size)

    def denoise(self, z: Tensor, t: Tensor, codes: Tensor, lengths: Tensor) -> Tensor:
        """Predict the clean image from a noisy one.

        Args:
            z: (B, C, S, S), the noisy image (1 - t)·noise + t·x in [-1, 1] units.
            t: (B,) flow time, 0 = noise, 1 = image.
            codes: (B, k, len(levels)) FSQ codes; positions >= lengths are ignored.
            lengths: (B,) kept registers per sample in 0..k (0 = unconditional).
        Returns:
            x̂: (B, C, S, S), the predicted clean image in [-1, 1] units.
        """
        c = self.config
        b, k = codes.shape[:2]
        kept = length_mask(lengths, k)  # (B, k)
        patches = self.dec_patch(z) + self.dec_pos  # (B, N, Dd)
        mask_tok = (self.mask_token + self.register_pos[lengths])[:, None]  # (B, 1, Dd): slot of the first dropped
        regs = self.from_code(codes) + self.register_pos[:k]  # (B, k, Dd)
        coarse = self.readout(codes, lengths)  # (B, C, S, S) or None
        if coarse is not None:
            patches = patches + self.coarse_patch(coarse)
        if self.slot_to_patch is not None:
            # every one of the K slots (dropped ones = the mask token) mixed linearly into every patch
            slots = torch.where(kept[..., None], regs, self.mask_token + self.register_pos[:k])  # (B, k, Dd)
            rest = self.slot_to_patch[:, k:] @ (self.mask_token + self.register_pos[k:-1])  # (N, Dd): slots k..K-1
            patches = patches + torch.einsum("nk,bkd->bnd", self.slot_to_patch[:, :k], slots) + rest
        seq = torch.cat([patches, mask_tok, regs], dim=1)
        mask = None
        if bool((lengths < k).any()):
            valid = torch.cat([kept.new_ones(b, c.num_patches + 1), kept], dim=1)
            mask = key_padding_mask(valid)
        cond = self.time_embed(t)
        if self.pool_proj is not None:
            w = kept.to(regs.dtype)[..., None]  # (B, k, 1)
            pooled = (regs * w).sum(1) / w.sum(1).clamp_min(1)  # (B, Dd); zeros when k = 0
            cond = cond + self.pool_proj(pooled)
        h = self.decoder(seq, cond, mask)
        x_hat = self.head(h[:, : c.num_patches], c.grid)
        return x_hat if coarse is None else x_hat + coarse

    # -- encode / decode -------------------------------------------------------------------------------

    @torch.no_grad()
    def encode(self, x: Tensor, *, num_tokens: int | Tensor | None = None) -> Tokens:
        """Encode images.

        Args:
            x: (B, 3, S, S) float in [0, 1].
            num_tokens: tokens per image, an int in 1..K or a LongTensor [B] (per image); default K.
        Returns:
            Tokens with ids (B, max k) (zeros past each length), lengths (B,) and latents, the FSQ codes
            (B, max k, len(levels)) in [-1, 1].
        """
        x = check_input(x, self.spec.input, "images").to(self.device)
        lengths = self.lengths_from_budget(num_tokens, x.shape[0], x.device)
        codes, ids = self.quantize(x * 2 - 1, int(lengths.max()))
        keep = length_mask(lengths, ids.shape[1])
        return Tokens(ids=ids.long() * keep, lengths=lengths, latents=codes * keep[..., None])

    @torch.no_grad()
    def decode(self, tokens: Tokens, *, steps: int | None = None, guidance: float | None = None,
               seed: int | Tensor | None = 0) -> Tensor:
        """Decode tokens into images by Euler integration of the rectified flow.

        Args:
            tokens: from `encode` (ids (B, k) with lengths; any prefix of an encode is valid).
            steps: Euler steps (default `config.steps`); the cost is linear in steps.
            guidance: classifier-free guidance scale w (default `config.guidance`); 1 = none, > 1 doubles
                the batch. x̂ = x̂_uncond + w·(x̂_cond - x̂_uncond).
            seed: the starting noise. An int gives every image the same noise, so an image decodes the
                same alone or in any batch; a LongTensor [B] seeds each image on its own (e.g. several
                samples of the same tokens); None draws from the global RNG.
        Returns:
            (B, 3, S, S) float in [0, 1].
        """
        c = self.config
        steps, guidance, lengths = decode_arguments(self, tokens, steps, guidance)
        k = int(lengths.max())
        ids = tokens.ids[:, :k].to(self.device)
        ids = ids * length_mask(lengths, k)  # padding → a valid id
        codes = self.fsq.indices_to_codes(ids)  # (B, k, len(levels))
        b = ids.shape[0]
        if guidance != 1:
            codes = torch.cat([codes, codes])
            lengths = torch.cat([lengths, torch.zeros_like(lengths)])
        z = self.initial_noise(b, seed)
        times = self.time_grid(steps).to(self.device)
        for i in range(steps):
            t, t_next = times[i], times[i + 1]
            zz = torch.cat([z, z]) if guidance != 1 else z
            x_hat = self.denoise(zz, t.expand(zz.shape[0]), codes, lengths)
            if guidance != 1:
                cond, uncond = x_hat.chunk(2)
                x_hat = uncond + guidance * (cond - uncond)
            v = (x_hat - z) / (1 - t)
            z = z + (t_next - t) * v
        return ((z + 1) / 2).clamp(0, 1)

    def initial_noise(self, batch: int, seed: int | Tensor | None) -> Tensor:
        """Noise (B, C, S, S) at t=0: shared by the batch for an int seed, per image for a tensor [B]."""
        c = self.config
        return seeded_noise(batch, seed, (c.in_channels, c.image_size, c.image_size), self.device)

    def time_grid(self, steps: int) -> Tensor:
        """steps + 1 times from 0 (noise) to 1 (image), warped by `time_shift` toward the noise end."""
        u = torch.linspace(0, 1, steps + 1)
        s = self.config.time_shift
        return u / (s - (s - 1) * u)


# ----------------------------------------------------------------------------------------- shared with flextok_release


def decode_arguments(tok: Tokenizer, tokens: Tokens, steps: int | None, guidance: float | None
                     ) -> tuple[int, float, Tensor]:
    """What both FlexToks' `decode` checks first: steps and guidance (None: the config's), ids present, every length
    in [1, K]. Returns (steps, guidance, lengths (B,) on the tokenizer's device)."""
    c = tok.config
    steps = check_budget(c.steps if steps is None else steps, 1, 10_000, "steps")
    guidance = c.guidance if guidance is None else guidance
    if isinstance(guidance, bool) or not isinstance(guidance, (int, float)) or not math.isfinite(guidance) or guidance < 0:
        raise ValueError(f"guidance must be a finite number >= 0 (1 = no guidance), got {guidance!r}")
    check_tokens(tokens, tok.spec)
    if tokens.ids is None:
        raise ValueError(f"{type(tok).__name__} decodes ids (B, k); these tokens carry only latents")
    lengths = tokens.lengths.to(tok.device)
    if int(lengths.min()) < 1 or int(lengths.max()) > c.num_registers:
        raise ValueError(f"token lengths must lie in [1, {c.num_registers}], got {tokens.lengths.tolist()}")
    return steps, guidance, lengths


def seeded_noise(batch: int, seed: int | Tensor | None, shape: tuple[int, ...], device: torch.device) -> Tensor:
    """Gaussian noise (B, *shape): one draw shared by the batch for an int seed (so an image decodes the same
    alone or in any batch), one per image for a LongTensor [B] of seeds, the global RNG for None."""
    if seed is None:
        return torch.randn(batch, *shape, device=device)
    if isinstance(seed, Tensor):
        if seed.shape != (batch,) or seed.is_floating_point():
            raise ValueError(f"seed as a tensor must be integer with shape ({batch},), got {seed.dtype} {tuple(seed.shape)}")
        seeds = seed.tolist()
    elif isinstance(seed, bool) or not isinstance(seed, int):
        raise ValueError(f"seed must be an int, an integer tensor [B] or None, got {seed!r}")
    else:
        seeds = [seed]
    noise = [torch.randn(shape, generator=torch.Generator(device=device).manual_seed(int(s)), device=device) for s in seeds]
    return torch.stack(noise).expand(batch, *shape)


# ----------------------------------------------------------------------------------------- presets

# the official architecture has none of our additions
OFFICIAL = dict(pooled_condition=False, token_mixing=False, linear_readout=False, code_norm=False)

PRESETS: dict[str, dict[str, Any]] = {
    # ours, trained here: 32x32 RGB pixels, 16 patches of 8x8, up to 64 tokens
    "tiny": {},
    # shaped like the official release (over the 16-channel VAE latents of a 256x256 image, patch 2)
    "d12-d12": dict(image_size=32, in_channels=16, patch_size=2, num_registers=256, encoder_dim=768, encoder_depth=12,
                    encoder_heads=12, decoder_dim=768, decoder_depth=12, decoder_heads=12, qk_norm=True, steps=25, **OFFICIAL),
    "d18-d18": dict(image_size=32, in_channels=16, patch_size=2, num_registers=256, encoder_dim=1152, encoder_depth=18,
                    encoder_heads=18, decoder_dim=1152, decoder_depth=18, decoder_heads=18, qk_norm=True, steps=25, **OFFICIAL),
}


# ----------------------------------------------------------------------------------------- registration

FlexTokConfig.presets = PRESETS
register_family(FlexTok, presets=PRESETS)
