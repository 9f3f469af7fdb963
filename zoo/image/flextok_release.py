"""FlexTok as released: the official architecture (apple/ml-flextok), in our code, over its f8 VAE.

Paper: "FlexTok: Resampling Images into 1D Token Sequences of Flexible Length" (Bachmann et al., ICML 2025,
https://arxiv.org/abs/2502.13967). Weights: EPFL-VILAB/flextok_{d12_d12,d18_d18,d18_d28}_in1k and
flextok_d18_d28_dfn on the Hugging Face hub, over the VAE EPFL-VILAB/flextok_vae_c16, under the Apple
Machine Learning Research Model licence (research, non-commercial). Official code read, not copied.

The pipeline: a 256x256 image in [-1, 1] → the VAE's latent mode (16 x 32 x 32, times its scaling factor)
→ 2x2 latent patches + K = 256 registers through a ViT encoder (patches attend to patches, register i to
every patch and registers 0..i) → a 6-dim code per register, FSQ levels 8,8,8,5,5,5 (64000 ids). The
decoder is a rectified flow over the latent: x_t = t·noise + (1 - t)·x, the network predicts the velocity
noise - x, and sampling is Euler from t = 1 to 0, optionally with classifier-free guidance or adaptive
projected guidance (APG, https://arxiv.org/abs/2410.02416) against a learned null condition.

The official blocks, as built here (`ReleaseBlock`):
- LayerNorm without affine parameters, computed in fp32 (before attention, MLP and every head);
- bias-free q, k, v and output projections, a per-head LayerNorm on q and k (QK-norm), and the μP
  attention scale 8 / head_dim (= 1/sqrt(head_dim) only at head_dim 64);
- a SwiGLU MLP (timm's `SwiGLU`; hidden width int(2/3 · mlp_ratio · dim), bias-free);
- in the decoder, adaLN-Zero modulation computed per block from the time embedding, one table for the
  patches and one for the registers (the official `adaLN_expansion` 2 with per-subsequence embeddings),
  in the order gate_msa, gate_mlp, shift_msa, scale_msa, shift_mlp, scale_mlp.

What we do differently (exactly the same function, less work):
- no flex_attention and no sequence packing: plain `scaled_dot_product_attention` on a batch, CPU or GPU;
- decode cost falls with the number of tokens k. The official decoder always runs all K registers, the
  dropped ones replaced by one learned mask token (the same vector, without position). Identical tokens
  stay identical through every block, so K - k of them act on attention exactly as one token whose logit is
  raised by log(K - k): we run N patches + k registers + 1 such token. The unconditional pass (null
  condition on every register) is N + 1 tokens the same way;
- one fused q/k/v matrix (the three official matrices stacked at conversion).

`FlexTokRelease.from_release(folder)` converts a downloaded release (config.json with the Hydra tree +
model.safetensors, and the VAE folder if its weights are not inside): the Hydra tree is read against an
allow-list of the classes it may name and checked for every switch this class implements; nothing in it is
instantiated.
"""

from __future__ import annotations

import ast

import json
import math
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import Tensor, nn

from zoo.hub import register_family, register_release, token_summary
from zoo.image.flextok import FSQGridConfig, decode_arguments, seeded_noise
from zoo.nn.patch import Patchify, Unpatchify, sincos_pos_embed_2d
from zoo.nn.timestep import TimestepEmbedding
from zoo.nn.transformer import prefix_causal_mask
from zoo.tokenizer import (InputContract, Tokenizer, Tokens, TokenSpec, budget_lengths, check_fields, check_input,
                           check_weights, length_mask, transformer_weights)

LICENCE = "LicenseRef-apple-amlr"  # Apple Machine Learning Research Model licence ('apple-amlr' on the hub)
LICENCE_URL = "https://github.com/apple/ml-flextok/blob/main/LICENSE_WEIGHTS"
LICENCE_NOTICE = ("FlexTok weights (EPFL-VILAB) are under the Apple Machine Learning Research Model licence: "
                  f"research use only, non-commercial ({LICENCE_URL}).")

# the f8, 16-channel VAE EPFL-VILAB/flextok_vae_c16 (its diffusers config; scaling factor from the release)
VAE_C16: dict[str, Any] = dict(
    in_channels=3, out_channels=3, latent_channels=16, block_out_channels=[128, 256, 512, 512],
    down_block_types=["DownEncoderBlock2D"] * 4, up_block_types=["UpDecoderBlock2D"] * 4, layers_per_block=2,
    norm_num_groups=32, act_fn="silu", sample_size=1024, scaling_factor=None,  # the factor comes with the release
)


VAE_REPO, VAE_REVISION = "EPFL-VILAB/flextok_vae_c16", None  # not pinned: the hub is unreachable from here
VAE_FILES = ("config.json", "diffusion_pytorch_model.safetensors")


class LicenceNotice(UserWarning):
    """Raised (as a warning) when weights under a restrictive licence are loaded."""


@dataclass
class FlexTokReleaseConfig(FSQGridConfig):
    """Args:
        image_size: side S of the square input image (256 for the releases).
        vae: the diffusers `AutoencoderKL` config of the latent space (downsampling 2^(len(blocks) - 1)).
        vae_scaling_factor: latents are the VAE's posterior mode times this.
        patch_size: p, latent patch side in encoder and decoder.
        num_registers: K, the most tokens an image can have.
        encoder_dim, encoder_depth, decoder_dim, decoder_depth: the two transformers.
        head_dim: attention head width (heads = dim / head_dim).
        mlp_ratio: SwiGLU hidden width is int(2/3 · int(mlp_ratio · dim)).
        fsq_levels: FSQ levels per code dimension; vocab = prod(levels).
        adaln_expansion: 1 = one modulation for the whole decoder sequence, 2 = one for the patches and one
            for the registers.
        head_adaln: the decoder's output head is modulated by the time embedding too.
        null_single_token: the null condition is one token (True) or replaces each of the K registers.
        max_timestep: the time embedding sees t · 1000 / max_timestep (1.0: t in [0, 1]).
        norm_eps: eps of every LayerNorm.
        steps, guidance, apg: defaults of `decode` (the official example: 20 steps, guidance 7.5 with APG).
    """

    image_size: int = 256
    vae: dict[str, Any] = field(default_factory=lambda: dict(VAE_C16))
    vae_scaling_factor: float = 1.0
    patch_size: int = 2
    num_registers: int = 256
    encoder_dim: int = 768
    encoder_depth: int = 12
    decoder_dim: int = 768
    decoder_depth: int = 12
    head_dim: int = 64
    mlp_ratio: float = 4.0
    fsq_levels: tuple[int, ...] = (8, 8, 8, 5, 5, 5)
    adaln_expansion: int = 2
    head_adaln: bool = True
    null_single_token: bool = False
    max_timestep: float = 1.0
    norm_eps: float = 1e-5
    steps: int = 20
    guidance: float = 7.5
    apg: bool = True

    def __post_init__(self) -> None:
        check_fields(self, image_size=(8, 4096), patch_size=(1, 64), num_registers=(1, 4096), encoder_dim=(1, 8192),
                     encoder_depth=(1, 128), decoder_dim=(1, 8192), decoder_depth=(1, 128), head_dim=(1, 1024),
                     mlp_ratio=(0.1, 64), fsq_levels=(2, 1 << 16), adaln_expansion=(1, 2), max_timestep=(1e-6, 1e6),
                     norm_eps=(0, 1), steps=(1, 10_000), guidance=(0, 1000))
        check_weights(self, transformer_weights((self.encoder_dim, self.encoder_depth), (self.decoder_dim, self.decoder_depth)))
        self.check_codes()
        self.vae = dict(self.vae)
        if self.image_size % (self.downsample * self.patch_size):
            raise ValueError(f"image_size={self.image_size} must be a multiple of the VAE's downsampling "
                             f"{self.downsample} times patch_size={self.patch_size}")
        for name in ("encoder", "decoder"):
            dim = getattr(self, f"{name}_dim")
            if dim % self.head_dim or dim % 4:
                raise ValueError(f"{name}_dim={dim} must be a multiple of head_dim={self.head_dim} and of 4")
        if self.adaln_expansion not in (1, 2):
            raise ValueError(f"adaln_expansion must be 1 or 2, got {self.adaln_expansion}")

    @property
    def downsample(self) -> int:
        return 2 ** (len(self.vae["block_out_channels"]) - 1)

    @property
    def latent_channels(self) -> int:
        return int(self.vae["latent_channels"])

    @property
    def grid(self) -> tuple[int, int]:
        n = self.image_size // self.downsample // self.patch_size
        return n, n


# ----------------------------------------------------------------------------------------- blocks


def fp32_layer_norm(x: Tensor, eps: float) -> Tensor:
    """LayerNorm over the last axis without affine parameters, computed in float32 (the official Fp32LayerNorm)."""
    return F.layer_norm(x.float(), x.shape[-1:], eps=eps).type_as(x)


class ScaledFrequencyEmbedding(TimestepEmbedding):
    """The official time embedding: the same features, with the time scale folded into the frequencies
    before multiplying by t (at angles up to 1000 rad the order of the two products shows at 1e-5)."""

    def forward(self, t: Tensor) -> Tensor:
        half = self.frequencies // 2
        freqs = self.scale * torch.exp(-math.log(self.max_period) * torch.arange(half, device=t.device, dtype=torch.float32) / half)
        angles = t.float()[:, None] * freqs[None]
        return self.mlp(torch.cat([angles.cos(), angles.sin()], dim=-1))


class QKNormAttention(nn.Module):
    """Bias-free multi-head self-attention with per-head QK LayerNorm and the μP scale 8 / head_dim.

    x: (B, L, dim); bias: float or bool attention mask broadcastable to (B, heads, L, L), or None.
    """

    def __init__(self, dim: int, head_dim: int, eps: float) -> None:
        super().__init__()
        self.heads, self.head_dim, self.eps = dim // head_dim, head_dim, eps
        self.qkv = nn.Linear(dim, 3 * dim, bias=False)  # the official wq, wk, wv stacked
        self.proj = nn.Linear(dim, dim, bias=False)

    def forward(self, x: Tensor, bias: Tensor | None = None) -> Tensor:
        q, k, v = rearrange(self.qkv(x), "b l (three h d) -> three b h l d", three=3, h=self.heads)
        q, k = fp32_layer_norm(q, self.eps), fp32_layer_norm(k, self.eps)
        out = F.scaled_dot_product_attention(q, k, v, attn_mask=bias, scale=8.0 / self.head_dim)
        return self.proj(rearrange(out, "b h l d -> b l (h d)"))


class ReleaseBlock(nn.Module):
    """A pre-norm transformer block of the release; with `expansion` > 0 it is adaLN-Zero modulated.

    forward(x (B, L, dim), bias, emb (B, dim) or None, split): with two modulation tables (`expansion` 2),
    tokens before `split` (the patches) use the first and the rest (the registers) the second.
    """

    def __init__(self, dim: int, head_dim: int, mlp_ratio: float, eps: float, expansion: int = 0) -> None:
        from timm.layers import SwiGLU

        super().__init__()
        self.eps, self.expansion = eps, expansion
        self.attn = QKNormAttention(dim, head_dim, eps)
        self.mlp = SwiGLU(dim, int(2 * int(dim * mlp_ratio) / 3), bias=False)
        self.ada = nn.Sequential(nn.SiLU(), nn.Linear(dim, expansion * 6 * dim)) if expansion else None

    def forward(self, x: Tensor, bias: Tensor | None = None, emb: Tensor | None = None,
                split: int | None = None) -> Tensor:
        if self.ada is None:
            x = x + self.attn(fp32_layer_norm(x, self.eps), bias)
            return x + self.mlp(fp32_layer_norm(x, self.eps))
        mod = rearrange(self.ada(emb), "b (e six d) -> six b e 1 d", e=self.expansion, six=6)
        gate_msa, gate_mlp, shift_msa, scale_msa, shift_mlp, scale_mlp = mod.unbind(0)  # each (B, e, 1, D)

        def modulated(h: Tensor, shift: Tensor, scale: Tensor) -> Tensor:
            return per_segment(fp32_layer_norm(h, self.eps), split, lambda part, i: part * (1 + scale[:, i]) + shift[:, i])

        x = x + per_segment(self.attn(modulated(x, shift_msa, scale_msa), bias), split, lambda part, i: part * gate_msa[:, i])
        return x + per_segment(self.mlp(modulated(x, shift_mlp, scale_mlp)), split, lambda part, i: part * gate_mlp[:, i])


def per_segment(x: Tensor, split: int | None, fn) -> Tensor:
    """fn(part, i) on x[:, :split] (i = 0) and x[:, split:] (i = 1), or on all of x (i = 0) when split is None."""
    if split is None:
        return fn(x, 0)
    return torch.cat([fn(x[:, :split], 0), fn(x[:, split:], 1)], dim=1)


# ----------------------------------------------------------------------------------------- the tokenizer


class FlexTokRelease(Tokenizer):
    """The released FlexTok. x: (B, 3, S, S) in [0, 1] → ids (B, k) in [0, 64000), any k in 1..K per sample."""

    family = "flextok-release"
    config_class = FlexTokReleaseConfig
    encode_knobs: ClassVar[tuple[str, ...]] = ("num_tokens",)
    decode_options: ClassVar[tuple[str, ...]] = ("steps", "guidance", "seed")

    @classmethod
    def listing(cls, config: FlexTokReleaseConfig) -> dict[str, Any]:
        """What `zoo list` shows of a checkpoint of this config (`zoo.hub` module docstring)."""
        return token_summary("image", config.vocab_size, config.num_registers)

    def __init__(self, config: FlexTokReleaseConfig) -> None:
        from diffusers import AutoencoderKL
        from vector_quantize_pytorch import FSQ

        super().__init__(config)
        c = config
        ch, k = c.latent_channels, c.num_registers
        self.vae = AutoencoderKL.from_config(c.vae)
        # encoder
        self.enc_patch = Patchify(ch, c.patch_size, c.encoder_dim)
        self.register_buffer("enc_pos", sincos_pos_embed_2d(c.encoder_dim, c.grid))  # replaced by the release's table
        self.registers = nn.Parameter(torch.randn(k, c.encoder_dim) * 0.02)
        self.encoder = nn.ModuleList(ReleaseBlock(c.encoder_dim, c.head_dim, c.mlp_ratio, c.norm_eps)
                                     for _ in range(c.encoder_depth))
        self.to_code = nn.Linear(c.encoder_dim, len(c.fsq_levels))
        with torch.device("cpu"):  # its implicit codebook is made with .item(), which a meta-device build cannot run
            self.fsq = FSQ(list(c.fsq_levels))
        # decoder
        self.from_code = nn.Linear(len(c.fsq_levels), c.decoder_dim)
        self.register_pos = nn.Parameter(torch.randn(k, c.decoder_dim) * 0.02)
        self.mask_token = nn.Parameter(torch.randn(c.decoder_dim) * 0.02)
        self.null_token = nn.Parameter(torch.randn(c.decoder_dim) * 0.02)
        self.dec_patch = Patchify(ch, c.patch_size, c.decoder_dim)
        self.register_buffer("dec_pos", sincos_pos_embed_2d(c.decoder_dim, c.grid))
        self.time_embed = ScaledFrequencyEmbedding(c.decoder_dim, frequencies=256, max_period=256.0, scale=1000.0 / c.max_timestep)
        self.decoder = nn.ModuleList(ReleaseBlock(c.decoder_dim, c.head_dim, c.mlp_ratio, c.norm_eps, c.adaln_expansion)
                                     for _ in range(c.decoder_depth))
        self.head_ada = nn.Sequential(nn.SiLU(), nn.Linear(c.decoder_dim, 2 * c.decoder_dim)) if c.head_adaln else None
        self.head = Unpatchify(c.decoder_dim, c.patch_size, ch)

    # -- the contract ----------------------------------------------------------------------------------

    @property
    def spec(self) -> TokenSpec:
        c = self.config
        s = c.image_size
        return TokenSpec(modality="image", vocab_size=c.vocab_size, num_codebooks=1, max_tokens=c.num_registers,
                         latent_dim=len(c.fsq_levels),
                         input=InputContract(layout="B 3 H W", value_range=(0.0, 1.0), sizes={"H": s, "W": s}))

    # -- modelling steps -------------------------------------------------------------------------------

    def latents(self, x: Tensor) -> Tensor:
        """x: (B, 3, S, S) in [-1, 1] → the VAE posterior mode times the scaling factor, (B, C, S/f, S/f)."""
        return self.vae.encode(x).latent_dist.mode() * self.config.vae_scaling_factor

    def pixels(self, z: Tensor) -> Tensor:
        """Latents (B, C, S/f, S/f) → images (B, 3, S, S) in [-1, 1] units (not clamped)."""
        return self.vae.decode(z / self.config.vae_scaling_factor).sample

    def quantize(self, z: Tensor, num_registers: int) -> tuple[Tensor, Tensor]:
        """Latents z (B, C, h, w) → (codes (B, k, 6) in [-1, 1], ids (B, k)); only the first k registers are run."""
        c = self.config
        n = c.num_patches
        x = torch.cat([self.enc_patch(z) + self.enc_pos, self.registers[:num_registers].expand(z.shape[0], -1, -1)], 1)
        mask = prefix_causal_mask(n, num_registers, z.device)
        for block in self.encoder:
            x = block(x, mask)
        return self.fsq(self.to_code(fp32_layer_norm(x[:, n:], c.norm_eps)).float())

    def velocity(self, z: Tensor, t: Tensor, codes: Tensor | None, lengths: Tensor | None) -> Tensor:
        """The decoder: predicted velocity noise - x for the noisy latent z at time t (1 = noise).

        Args:
            z: (B, C, h, w); t: (B,) in [0, 1].
            codes: (B, k, 6) FSQ codes, positions >= lengths ignored; None = the null condition.
            lengths: (B,) kept registers per sample in 1..k (with codes).
        Returns:
            (B, C, h, w).
        """
        c = self.config
        b, n, big_k = z.shape[0], c.num_patches, c.num_registers
        patches = self.dec_patch(z) + self.dec_pos  # (B, N, D)
        if codes is None:  # every register is the null token (or one null token)
            regs = self.null_token.expand(b, 1, -1)
            extra = 0.0 if c.null_single_token else math.log(big_k)
        else:
            k = codes.shape[1]
            regs = self.from_code(codes) + self.register_pos[:k]
            kept = torch.arange(k, device=z.device)[None, :, None] < lengths[:, None, None]
            regs = torch.where(kept, regs, self.mask_token)  # dropped registers are the bare mask token
            extra = math.log(big_k - k) if k < big_k else None
            if extra is not None:  # registers k..K-1, all the mask token: one token carrying their count
                regs = torch.cat([regs, self.mask_token.expand(b, 1, -1)], 1)
        x = torch.cat([patches, regs], 1)
        bias = None
        if extra:  # log-count on the key of the shared token (0 when it stands for itself)
            bias = x.new_zeros(1, x.shape[1])  # (1, L): every query, each key
            bias[0, -1] = extra
        split = n if c.adaln_expansion == 2 else None
        emb = self.time_embed(t)
        for block in self.decoder:
            x = block(x, bias, emb, split)
        h = fp32_layer_norm(x[:, :n], c.norm_eps)
        if self.head_ada is not None:
            shift, scale = self.head_ada(emb)[:, None].chunk(2, dim=-1)
            h = h * (1 + scale) + shift
        return self.head(h, c.grid)

    # -- encode / decode -------------------------------------------------------------------------------

    @torch.no_grad()
    def encode(self, x: Tensor, *, num_tokens: int | Tensor | None = None) -> Tokens:
        """Encode images.

        Args:
            x: (B, 3, S, S) float in [0, 1].
            num_tokens: tokens per image, an int in 1..K or a LongTensor [B]; default K. The first k tokens
                do not depend on the budget (causal registers), so this is a prefix of a full encode.
        Returns:
            Tokens with ids (B, max k) (zeros past each length), lengths (B,) and the FSQ codes as latents.
        """
        x = check_input(x, self.spec.input, "images").to(self.device)
        lengths = budget_lengths(num_tokens, x.shape[0], self.config.num_registers, x.device)
        codes, ids = self.quantize(self.latents(x * 2 - 1), int(lengths.max()))
        keep = length_mask(lengths, ids.shape[1])
        return Tokens(ids=ids.long() * keep, lengths=lengths, latents=codes * keep[..., None])

    @torch.no_grad()
    def decode(self, tokens: Tokens, *, steps: int | None = None, guidance: float | None = None,
               seed: int | Tensor | None = 0) -> Tensor:
        """Decode tokens into images: Euler steps of the rectified flow from noise (t = 1) to the latent, then the VAE.

        Args:
            tokens: from `encode` (any prefix of an encode is valid).
            steps: Euler steps (default `config.steps`).
            guidance: guidance scale w (default `config.guidance`); 1 = none. With `config.apg` the
                official adaptive projected guidance (momentum -0.5, norm threshold 2.5, eta 0), otherwise
                classifier-free guidance uncond + w·(cond - uncond). w != 1 adds an N+1-token pass.
            seed: the starting noise: an int (the same noise for every image), a LongTensor [B], or None.
        Returns:
            (B, 3, S, S) float in [0, 1].
        """
        c = self.config
        steps, guidance, lengths = decode_arguments(self, tokens, steps, guidance)
        k = int(lengths.max())
        codes = self.fsq.indices_to_codes(tokens.ids[:, :k].to(self.device))
        side = c.image_size // c.downsample
        z = seeded_noise(len(lengths), seed, (c.latent_channels, side, side), self.device)
        z = self.sample(z, codes, lengths, steps, guidance)
        return ((self.pixels(z) + 1) / 2).clamp(0, 1)

    def sample(self, z: Tensor, codes: Tensor, lengths: Tensor, steps: int, guidance: float) -> Tensor:
        """Euler integration from noise z (t = 1) to a latent (t = 0), as the official MinRFPipeline."""
        momentum = torch.zeros_like(z)
        for i in range(steps, 0, -1):
            t = torch.full((z.shape[0],), i / steps, device=z.device)
            v = self.velocity(z, t, codes, lengths)
            if guidance != 1:
                v_null = self.velocity(z, t, None, None)
                if self.config.apg:
                    v, momentum = projected_guidance(v, v_null, guidance, momentum)
                else:
                    v = v_null + guidance * (v - v_null)
            z = z - v / steps
        return z

    # -- released weights ------------------------------------------------------------------------------

    @staticmethod
    def is_release(path: str | Path) -> bool:
        """A FlexTok release (no weights read): a folder with config.json holding the Hydra tree and
        model.safetensors, or a model.safetensors alone that carries the tree in its header metadata."""
        try:
            tree, weights = _release_files(Path(path))
        except (OSError, ValueError):
            return False
        encoder = tree.get("encoder") if isinstance(tree, dict) else None
        return weights.is_file() and isinstance(encoder, dict) and \
            str(encoder.get("_target_", "")).startswith("flextok.")

    @classmethod
    def from_release(cls, path: str | Path, vae: str | Path | None = None) -> "FlexTokRelease":
        """Convert an official release: `path` a folder (or its model.safetensors) as downloaded from the hub,
        or the model.safetensors alone as the official README links it (the tree is then read from its header).

        The VAE weights come from `model.safetensors` when it holds them (keys vae.vae.*), else from `vae`,
        a folder with the VAE release (config.json + diffusion_pytorch_model.safetensors), by default the
        `vae/` folder beside the release or the folder the release's config names.
        """
        from safetensors.torch import load_file

        if not cls.is_release(path):
            raise ValueError(f"{path} is not an official FlexTok release: expected a folder with config.json (the "
                             "Hydra tree of apple/ml-flextok) and model.safetensors, or a model.safetensors whose "
                             "header metadata holds that tree")
        tree, weights = _release_files(Path(path))
        folder = weights.parent
        state = load_file(str(weights))
        vae_state = {k[len("vae.vae."):]: state.pop(k) for k in list(state) if k.startswith("vae.vae.")}
        vae_config = None
        if not vae_state:
            vae_dir = Path(vae) if vae is not None else _vae_folder(folder, tree)
            vae_config = json.loads((vae_dir / "config.json").read_text())
            vae_state = load_file(str(vae_dir / "diffusion_pytorch_model.safetensors"))
        elif vae is not None:
            vae_config = json.loads((Path(vae) / "config.json").read_text())
        config = release_config(tree, vae_config, vae_state)
        warnings.warn(LICENCE_NOTICE, LicenceNotice, stacklevel=2)
        tok = cls(config)
        converted = release_state_dict(state, tree, config)
        converted.update({f"vae.{k}": v for k, v in vae_state.items()})
        want = set(tok.state_dict())
        missing, unexpected = sorted(want - set(converted)), sorted(set(converted) - want)
        if missing or unexpected:
            raise ValueError(f"the release does not map onto FlexTokRelease: missing {missing[:8]}, unexpected {unexpected[:8]}")
        tok.load_state_dict(converted, strict=True)
        return tok.eval()


def projected_guidance(cond: Tensor, uncond: Tensor, scale: float, momentum: Tensor,
                       beta: float = -0.5, threshold: float = 2.5) -> tuple[Tensor, Tensor]:
    """Adaptive projected guidance (Sadat et al. 2024) as the official sampler uses it, per image.

    The difference cond - uncond is accumulated with momentum `beta`, its norm capped at `threshold`, and only
    its part orthogonal to `cond` is added: cond + (scale - 1)·diff_orth. Returns (guided, new momentum).
    """
    diff = cond - uncond + beta * momentum
    momentum = diff
    norm = diff.flatten(1).norm(dim=1).view(-1, 1, 1, 1)
    diff = diff * torch.minimum(torch.ones_like(norm), threshold / norm)
    unit = F.normalize(cond.double().flatten(1), dim=1).view_as(cond)
    d = diff.double()
    orthogonal = (d - (d * unit).flatten(1).sum(1).view(-1, 1, 1, 1) * unit).to(diff.dtype)
    return cond + (scale - 1) * orthogonal, momentum


# ----------------------------------------------------------------------------------------- the release's Hydra tree

_PKG = "flextok."
# every `_target_` a release tree may name; reading one is a lookup in this table, never an import
ALLOWED_TARGETS = frozenset(_PKG + t for t in (
    "flextok_wrapper.FlexTok", "flextok_wrapper.FlexTokFromHub", "vae_wrapper.StableDiffusionVAE",
    "model.utils.wrappers.SequentialModuleDictWrapper", "model.utils.dict_ops.PerSampleOp",
    "model.utils.dict_ops.channels_first_to_last", "model.utils.dict_ops.channels_last_to_first",
    "model.preprocessors.patching.PatchEmbedder", "model.utils.posembs.PositionalEmbeddingAdder",
    "model.preprocessors.registers.Registers1D", "model.preprocessors.flex_seq_packing.BlockWiseSequencePacker",
    "model.trunks.transformers.FlexTransformer", "model.postprocessors.seq_unpacking.SequenceUnpacker",
    "model.postprocessors.heads.LinearHead", "model.postprocessors.heads.ToPatchesLinearHead",
    "model.postprocessors.heads.MLPHead",
    "regularizers.quantize_fsq.FSQ", "model.preprocessors.linear.LinearLayer",
    "model.preprocessors.token_dropout.MaskedNestedDropout", "model.preprocessors.nullcond.LearnedNullCond",
    "model.preprocessors.time_embedding.TimestepEmbedder", "flow_matching.noise_modules.MinRFNoiseModule",
    "flow_matching.pipelines.MinRFPipeline", "model.layers.norm.Fp32LayerNorm",
)) | {"torch.nn.SiLU", "torch.nn.GELU", "functools.partial"}


def _unwrap(tree: Any) -> Any:
    """config.json of a PyTorchModelHubMixin release: the tree itself, or {"config": tree}."""
    return tree["config"] if isinstance(tree, dict) and set(tree) == {"config"} else tree


MAX_TREE_CHARS = 1 << 20  # a release's Hydra tree is a few KB; more in a header is refused before it is parsed


def _release_files(path: Path) -> tuple[Any, Path]:
    """(the Hydra tree, the weights file) of a release at `path`, reading no weights.

    The tree comes from config.json beside the weights (what `FlexTokFromHub.save_pretrained` writes), else
    from the header metadata of the weights file itself: the official `save_safetensors` stores each top-level
    entry of the tree as `str(value)` and its `load_safetensors` reads each back with `ast.literal_eval`,
    keeping the string where that fails. We read it the same way (literals only, nothing is executed).
    """
    weights = path if path.is_file() else path / "model.safetensors"
    config = weights.parent / "config.json"
    if config.is_file():
        return _unwrap(json.loads(config.read_text())), weights
    if weights.suffix != ".safetensors" or not weights.is_file():
        raise ValueError(f"{path}: no config.json and no .safetensors file")
    from safetensors import safe_open

    with safe_open(str(weights), "pt") as f:  # parses the header only
        metadata = f.metadata() or {}
    if sum(len(k) + len(v) for k, v in metadata.items()) > MAX_TREE_CHARS:
        raise ValueError(f"{weights}: header metadata over {MAX_TREE_CHARS} characters, not a FlexTok tree")
    tree: dict[str, Any] = {}
    for key, text in metadata.items():
        try:
            tree[key] = ast.literal_eval(text)
        except (ValueError, SyntaxError, TypeError):
            tree[key] = text
        except (RecursionError, MemoryError) as e:
            raise ValueError(f"{weights}: header metadata {key!r} is nested too deeply to be a FlexTok tree") from e
    return tree, weights


def _check_targets(node: Any, where: str = "config") -> None:
    if isinstance(node, dict):
        target = node.get("_target_")
        if target is not None and target not in ALLOWED_TARGETS:
            raise ValueError(f"{where}: _target_ {target!r} is not one this converter knows; refusing the release")
        for k, v in node.items():
            _check_targets(v, f"{where}.{k}")
    elif isinstance(node, list):
        for i, v in enumerate(node):
            _check_targets(v, f"{where}[{i}]")


def _modules(tree: dict, part: str) -> dict[str, dict]:
    node = tree.get(part)
    if not isinstance(node, dict) or not isinstance(node.get("module_dict"), dict):
        raise ValueError(f"the release's {part} is not a SequentialModuleDictWrapper with a module_dict")
    return node["module_dict"]


def _find(modules: dict[str, dict], target: str, part: str, where: Any = None) -> tuple[str, dict]:
    hits = [(name, m) for name, m in modules.items()
            if isinstance(m, dict) and m.get("_target_") == _PKG + target and (where is None or where(m))]
    if len(hits) != 1:
        raise ValueError(f"the release's {part} has {len(hits)} modules {target!r} where this converter expects one")
    return hits[0]


def _expect(module: dict, name: str, key: str, allowed: tuple, default: Any) -> Any:
    value = module.get(key, default)
    if value not in allowed:
        raise ValueError(f"the release's {name}.{key} = {value!r}; this converter implements {allowed}")
    return value


def _vae_folder(folder: Path, tree: dict) -> Path:
    local = folder / "vae"
    if (local / "config.json").is_file():
        return local
    named = tree.get("vae", {}).get("hf_hub_path") or VAE_REPO
    if (Path(named) / "config.json").is_file():
        return Path(named)
    if named != VAE_REPO:
        raise ValueError(f"the release's VAE is {named!r}, not {VAE_REPO}; pass its folder as vae=")
    from zoo import hub

    paths = [hub._hf_download(VAE_REPO, f, VAE_REVISION) for f in VAE_FILES]  # offline: a clear ValueError
    return paths[0].parent


def release_config(tree: dict, vae_config: dict | None, vae_state: dict[str, Tensor]) -> FlexTokReleaseConfig:
    """Read the Hydra tree (allow-listed targets only) into a config, refusing any switch we do not implement."""
    _check_targets(tree)
    enc, dec = _modules(tree, "encoder"), _modules(tree, "decoder")
    _, patch = _find(enc, "model.preprocessors.patching.PatchEmbedder", "encoder")
    _, regs = _find(enc, "model.preprocessors.registers.Registers1D", "encoder")
    _, enc_tf = _find(enc, "model.trunks.transformers.FlexTransformer", "encoder")
    _, dec_tf = _find(dec, "model.trunks.transformers.FlexTransformer", "decoder")
    _, dec_patch = _find(dec, "model.preprocessors.patching.PatchEmbedder", "decoder")
    _, head = _find(dec, "model.postprocessors.heads.ToPatchesLinearHead", "decoder")
    _, temb = _find(dec, "model.preprocessors.time_embedding.TimestepEmbedder", "decoder")
    name_null, null = _find(dec, "model.preprocessors.nullcond.LearnedNullCond", "decoder")
    _, packer = _find(dec, "model.preprocessors.flex_seq_packing.BlockWiseSequencePacker", "decoder")
    _, enc_packer = _find(enc, "model.preprocessors.flex_seq_packing.BlockWiseSequencePacker", "encoder")
    fsq = tree.get("regularizer", {})
    if fsq.get("_target_") != _PKG + "regularizers.quantize_fsq.FSQ":
        raise ValueError("the release's regularizer is not the official FSQ")
    _expect(enc_packer, "enc_seq_packer", "mask_mode", ("causal_last",), None)
    _expect(packer, "dec_seq_packer", "mask_mode", ("full",), None)
    _expect(regs, "enc_register_module", "ordering_mode", ("nested",), "nested")
    for name, tf in (("encoder", enc_tf), ("decoder", dec_tf)):
        for key, allowed, default in (("mlp_ratio", (4.0, 4), 4.0), ("qkv_bias", (False,), False),
                                      ("proj_bias", (False,), False), ("mlp_bias", (False,), False),
                                      ("gated_mlp", (True,), True), ("qk_norm", (True,), True)):
            _expect(tf, f"{name} transformer", key, allowed, default)
        if "norm_layer" in tf or "act_layer" in tf:
            raise ValueError(f"the release's {name} transformer overrides its norm or activation; not implemented")
    _expect(enc_tf, "encoder transformer", "adaLN_emb_read_key", (None,), None)
    if dec_tf.get("adaLN_emb_read_key") != temb.get("time_embedding_write_key"):
        raise ValueError("the release's decoder is not modulated by its time embedding")
    per_subseq = _expect(packer, "dec_seq_packer", "per_subseq_embs", (True, False), False)
    expansion = _expect(dec_tf, "decoder transformer", "adaLN_expansion", (1, 2), 1)
    if (expansion == 2) != bool(per_subseq):
        raise ValueError("adaLN_expansion 2 needs per-subsequence embeddings (and 1 needs none)")
    order = packer.get("input_list_read_keys", [])
    if len(order) != 2 or order[0] != dec_patch.get("patches_list_write_key"):
        raise ValueError(f"the release's decoder sequence {order} is not [patches, registers]")
    if null.get("read_write_key") != order[1]:
        raise ValueError(f"the release's {name_null} does not act on the decoder registers")
    head_adaln = head.get("adaLN_emb_read_key") is not None
    if head_adaln and head["adaLN_emb_read_key"] != temb.get("time_embedding_write_key"):
        raise ValueError("the release's decoder head is modulated by something other than the time embedding")
    _expect(temb, "dec_time_embedder", "frequency_embedding_size", (256,), 256)
    p = patch.get("patch_sizes", [2, 2])
    if len(set(p)) != 1 or p != dec_patch.get("patch_sizes", [2, 2]):
        raise ValueError(f"patch sizes {p} / {dec_patch.get('patch_sizes')} are not one square size")
    if enc_tf.get("head_dim", 64) != dec_tf.get("head_dim", 64):
        raise ValueError("encoder and decoder head widths differ; not implemented")
    vae_node = tree.get("vae", {})
    vae = dict(VAE_C16)
    if vae_config is not None:
        vae.update({k: v for k, v in vae_config.items() if not k.startswith("_")})
    else:  # the VAE inside model.safetensors: its shape from the weights, the rest from the official base config
        vae["latent_channels"] = int(vae_state["decoder.conv_in.weight"].shape[1])
    vae["latent_channels"] = int(vae_node.get("latent_channels", vae["latent_channels"]))
    scaling = vae_node.get("scaling_factor") or vae.get("scaling_factor")
    if scaling is None:
        raise ValueError("the release names no VAE scaling factor")
    enc_dim = int(enc_tf.get("dim", 768))
    return FlexTokReleaseConfig(
        image_size=int(_posemb_side(enc, "encoder") * p[0] * 2 ** (len(vae["block_out_channels"]) - 1)),
        vae=vae, vae_scaling_factor=float(scaling), patch_size=int(p[0]), num_registers=int(regs["n_max"]),
        encoder_dim=enc_dim, encoder_depth=int(enc_tf.get("depth", 12)), decoder_dim=int(dec_tf.get("dim", 768)),
        decoder_depth=int(dec_tf.get("depth", 12)), head_dim=int(enc_tf.get("head_dim", 64)),
        fsq_levels=tuple(fsq["levels"]), adaln_expansion=int(expansion), head_adaln=head_adaln,
        null_single_token=bool(null.get("replace_with_single_token", False)),
        max_timestep=float(temb.get("max_timestep", 1000.0)))


def _posemb_side(modules: dict[str, dict], part: str) -> int:
    _, pos = _find(modules, "model.utils.posembs.PositionalEmbeddingAdder", part,
                   where=lambda m: len(m.get("max_sizes", [])) == 2)
    h, w = pos["max_sizes"]
    if h != w or pos.get("posemb_type", "sincos") != "sincos" or pos.get("posemb_scaling", "absolute") != "absolute":
        raise ValueError(f"the release's {part} patch positions are not a square absolute sin-cos table")
    return int(h)


def release_state_dict(state: dict[str, Tensor], tree: dict, config: FlexTokReleaseConfig) -> dict[str, Tensor]:
    """Official key names (encoder.module_dict.<name>...) → ours; every official tensor must be used."""
    state = dict(state)
    enc, dec = _modules(tree, "encoder"), _modules(tree, "decoder")

    def take(key: str) -> Tensor:
        if key not in state:
            raise ValueError(f"the release's model.safetensors lacks {key}")
        return state.pop(key)

    def name(modules: dict, part: str, target: str, where: Any = None) -> str:
        return f"{part}.module_dict.{_find(modules, target, part, where)[0]}"

    out: dict[str, Tensor] = {}
    for part, modules in (("encoder", enc), ("decoder", dec)):  # REPA projectors: training-only, dropped
        for m_name, m in modules.items():
            if isinstance(m, dict) and m.get("_target_") == _PKG + "model.postprocessors.heads.MLPHead":
                for key in [k for k in state if k.startswith(f"{part}.module_dict.{m_name}.")]:
                    del state[key]

    def blocks(prefix: str, ours: str, depth: int, modulated: bool) -> None:
        for i in range(depth):
            src, dst = f"{prefix}.blocks.{i}", f"{ours}.{i}"
            out[f"{dst}.attn.qkv.weight"] = torch.cat([take(f"{src}.attn.w{x}.weight") for x in "qkv"])
            out[f"{dst}.attn.proj.weight"] = take(f"{src}.attn.proj.weight")
            out[f"{dst}.mlp.fc1_g.weight"] = take(f"{src}.mlp.fc1.weight")
            out[f"{dst}.mlp.fc1_x.weight"] = take(f"{src}.mlp.fc3.weight")
            out[f"{dst}.mlp.fc2.weight"] = take(f"{src}.mlp.fc2.weight")
            if modulated:
                out[f"{dst}.ada.1.weight"] = take(f"{src}.adaLN_modulation.1.weight")
                out[f"{dst}.ada.1.bias"] = take(f"{src}.adaLN_modulation.1.bias")

    def table(key: str) -> Tensor:  # (1, D, H, W) sin-cos parameter → (H·W, D), cropped to our grid
        h, w = config.grid
        return rearrange(take(key)[:, :, :h, :w], "1 d h w -> (h w) d")

    two_d = lambda m: len(m.get("max_sizes", [])) == 2  # noqa: E731
    one_d = lambda m: len(m.get("max_sizes", [])) == 1  # noqa: E731
    p = name(enc, "encoder", "model.preprocessors.patching.PatchEmbedder")
    out["enc_patch.proj.weight"], out["enc_patch.proj.bias"] = take(f"{p}.patch_proj.weight"), take(f"{p}.patch_proj.bias")
    out["enc_pos"] = table(name(enc, "encoder", "model.utils.posembs.PositionalEmbeddingAdder", two_d) + ".posembs")
    out["registers"] = take(name(enc, "encoder", "model.preprocessors.registers.Registers1D") + ".registers")
    blocks(name(enc, "encoder", "model.trunks.transformers.FlexTransformer"), "encoder", config.encoder_depth, False)
    p = name(enc, "encoder", "model.postprocessors.heads.LinearHead")
    out["to_code.weight"], out["to_code.bias"] = take(f"{p}.proj.weight"), take(f"{p}.proj.bias")

    p = name(dec, "decoder", "model.preprocessors.linear.LinearLayer")
    out["from_code.weight"], out["from_code.bias"] = take(f"{p}.proj.weight"), take(f"{p}.proj.bias")
    pos = take(name(dec, "decoder", "model.utils.posembs.PositionalEmbeddingAdder", one_d) + ".posembs")
    out["register_pos"] = rearrange(pos[0, 0, :, : config.num_registers], "d k -> k d")
    out["mask_token"] = take(name(dec, "decoder", "model.preprocessors.token_dropout.MaskedNestedDropout") + ".dropout_mask_token")
    out["null_token"] = take(name(dec, "decoder", "model.preprocessors.nullcond.LearnedNullCond") + ".nullcond")
    p = name(dec, "decoder", "model.preprocessors.patching.PatchEmbedder")
    out["dec_patch.proj.weight"], out["dec_patch.proj.bias"] = take(f"{p}.patch_proj.weight"), take(f"{p}.patch_proj.bias")
    out["dec_pos"] = table(name(dec, "decoder", "model.utils.posembs.PositionalEmbeddingAdder", two_d) + ".posembs")
    p = name(dec, "decoder", "model.preprocessors.time_embedding.TimestepEmbedder")
    for i in (0, 2):
        out[f"time_embed.mlp.{i}.weight"], out[f"time_embed.mlp.{i}.bias"] = take(f"{p}.mlp.{i}.weight"), take(f"{p}.mlp.{i}.bias")
    blocks(name(dec, "decoder", "model.trunks.transformers.FlexTransformer"), "decoder", config.decoder_depth, True)
    p = name(dec, "decoder", "model.postprocessors.heads.ToPatchesLinearHead")
    out["head.proj.weight"], out["head.proj.bias"] = take(f"{p}.proj.weight"), take(f"{p}.proj.bias")
    if config.head_adaln:
        out["head_ada.1.weight"], out["head_ada.1.bias"] = take(f"{p}.adaLN_modulation.1.weight"), take(f"{p}.adaLN_modulation.1.bias")
    if state:
        raise ValueError(f"unexpected tensors in the FlexTok release: {sorted(state)[:8]}")
    return out


# ----------------------------------------------------------------------------------------- presets

# the released shapes (256 px over the c16 VAE, K = 256, head width 64); weights come from `from_release`
PRESETS: dict[str, dict[str, Any]] = {
    "d12-d12": dict(encoder_dim=768, encoder_depth=12, decoder_dim=768, decoder_depth=12),
    "d18-d18": dict(encoder_dim=1152, encoder_depth=18, decoder_dim=1152, decoder_depth=18),
    "d18-d28": dict(encoder_dim=1152, encoder_depth=18, decoder_dim=1792, decoder_depth=28),
}


# ----------------------------------------------------------------------------------------- released weights
# `zoo.load(name)` downloads config.json + model.safetensors, converts once with `FlexTokRelease.from_release`
# (which fetches the VAE from its own repo, EPFL-VILAB/flextok_vae_c16) and caches our checkpoint.


def _release(repo: str, preset: str, data: str) -> dict[str, Any]:
    c = FlexTokReleaseConfig(**PRESETS[preset])
    card = (f"FlexTok {preset} trained on {data} (Bachmann et al., ICML 2025), converted from EPFL-VILAB/{repo} over the "
            f"VAE {VAE_REPO}: {c.image_size}x{c.image_size} images -> 1..{c.num_registers} tokens of a {c.vocab_size}-id "
            f"FSQ vocabulary, decoded by a rectified flow. {LICENCE_NOTICE}")
    return dict(
        family="flextok-release", hf_repo=f"EPFL-VILAB/{repo}", revision=None,  # not pinned: the hub is unreachable here
        files=("config.json", "model.safetensors"), license=LICENCE, license_url=LICENCE_URL, non_commercial=True,
        summary={**FlexTokRelease.listing(c), "description": card},
    )


RELEASES: dict[str, dict[str, Any]] = {
    "flextok-d12-d12-in1k": _release("flextok_d12_d12_in1k", "d12-d12", "ImageNet-1k"),
    "flextok-d18-d18-in1k": _release("flextok_d18_d18_in1k", "d18-d18", "ImageNet-1k"),
    "flextok-d18-d28-in1k": _release("flextok_d18_d28_in1k", "d18-d28", "ImageNet-1k"),
    "flextok-d18-d28-dfn": _release("flextok_d18_d28_dfn", "d18-d28", "DFN"),
}


# ----------------------------------------------------------------------------------------- registration

FlexTokReleaseConfig.presets = PRESETS
register_family(FlexTokRelease, presets=PRESETS)
for _name, _release_entry in RELEASES.items():
    register_release(_name, **_release_entry)
