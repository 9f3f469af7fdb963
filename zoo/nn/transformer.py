"""Transformer stacks built from timm's ViT parts: plain (`Transformer`) and time-conditioned (`AdaLNTransformer`).

Both take an optional attention mask, so one stack serves full, causal, block-causal and padded
attention: `mask` is a bool tensor broadcastable to (B, heads, L, L), True where a query may attend a
key (the `scaled_dot_product_attention` convention). No flex_attention: runs on any device.
"""

from __future__ import annotations

import torch
from einops import rearrange
from torch import Tensor, nn


class Transformer(nn.Module):
    """A pre-norm ViT stack (timm `Block`s) with a final LayerNorm. x: (B, L, dim) → (B, L, dim).

    `qkv_bias=False`, `final_norm=False` and `norm_eps` reproduce stacks of released models that differ
    only there (e.g. LARP's encoder has no final norm and its decoder's output norm uses eps 1e-6).
    """

    def __init__(self, dim: int, depth: int, num_heads: int, mlp_ratio: float = 4.0, qk_norm: bool = False, *,
                 qkv_bias: bool = True, final_norm: bool = True, norm_eps: float = 1e-5) -> None:
        from timm.models.vision_transformer import Block  # imported on first build: timm loads torchvision (seconds)

        super().__init__()
        if dim % num_heads:
            raise ValueError(f"dim={dim} must be divisible by num_heads={num_heads}")
        self.blocks = nn.ModuleList(
            Block(dim, num_heads, mlp_ratio=mlp_ratio, qkv_bias=qkv_bias, qk_norm=qk_norm) for _ in range(depth)
        )
        self.norm = nn.LayerNorm(dim, eps=norm_eps) if final_norm else nn.Identity()

    def forward(self, x: Tensor, mask: Tensor | None = None) -> Tensor:
        for block in self.blocks:
            x = block(x, attn_mask=mask)
        return self.norm(x)


def modulate(x: Tensor, shift: Tensor, scale: Tensor) -> Tensor:
    """x: (B, L, D); shift, scale: (B, D)."""
    return x * (1 + scale[:, None]) + shift[:, None]


class AdaLNBlock(nn.Module):
    """A DiT block whose LayerNorms are shifted, scaled and gated by a modulation computed outside.

    adaLN-Zero (DiT, Peebles & Xie 2023, https://arxiv.org/abs/2212.09748) in its "single" form
    (PixArt-α, https://arxiv.org/abs/2310.00426): one MLP of the condition serves every block, and each
    block adds its own learned (6, dim) table; both start at zero, so each block starts as the identity.
    """

    def __init__(self, dim: int, num_heads: int, mlp_ratio: float = 4.0, qk_norm: bool = False) -> None:
        from timm.layers import Attention, Mlp  # imported on first build: timm loads torchvision (seconds)

        super().__init__()
        self.norm1 = nn.LayerNorm(dim, elementwise_affine=False, eps=1e-6)
        self.attn = Attention(dim, num_heads, qkv_bias=True, qk_norm=qk_norm, norm_layer=nn.LayerNorm)
        self.norm2 = nn.LayerNorm(dim, elementwise_affine=False, eps=1e-6)
        self.mlp = Mlp(dim, int(dim * mlp_ratio), act_layer=lambda: nn.GELU(approximate="tanh"))
        self.table = nn.Parameter(torch.zeros(6, dim))

    def forward(self, x: Tensor, modulation: Tensor, mask: Tensor | None = None) -> Tensor:
        """x: (B, L, dim); modulation: (B, 6, dim); mask: bool, broadcastable to (B, heads, L, L)."""
        shift1, scale1, gate1, shift2, scale2, gate2 = (modulation + self.table).unbind(1)
        x = x + gate1[:, None] * self.attn(modulate(self.norm1(x), shift1, scale1), attn_mask=mask)
        return x + gate2[:, None] * self.mlp(modulate(self.norm2(x), shift2, scale2))


class AdaLNTransformer(nn.Module):
    """`AdaLNBlock`s sharing one modulation MLP, and a modulated final norm. x: (B, L, dim), c: (B, dim)."""

    def __init__(self, dim: int, depth: int, num_heads: int, mlp_ratio: float = 4.0, qk_norm: bool = False) -> None:
        super().__init__()
        if dim % num_heads:
            raise ValueError(f"dim={dim} must be divisible by num_heads={num_heads}")
        self.blocks = nn.ModuleList(AdaLNBlock(dim, num_heads, mlp_ratio, qk_norm) for _ in range(depth))
        self.ada = nn.Sequential(nn.SiLU(), nn.Linear(dim, 6 * dim))
        self.norm = nn.LayerNorm(dim, elementwise_affine=False, eps=1e-6)
        self.final_ada = nn.Sequential(nn.SiLU(), nn.Linear(dim, 2 * dim))
        for linear in (self.ada[1], self.final_ada[1]):
            nn.init.zeros_(linear.weight)
            nn.init.zeros_(linear.bias)

    def forward(self, x: Tensor, c: Tensor, mask: Tensor | None = None) -> Tensor:
        modulation = rearrange(self.ada(c), "b (six d) -> b six d", six=6)
        for block in self.blocks:
            x = block(x, modulation, mask)
        shift, scale = self.final_ada(c).chunk(2, dim=-1)
        return modulate(self.norm(x), shift, scale)


def key_padding_mask(valid: Tensor) -> Tensor:
    """valid: bool (B, L), True on real tokens → attention mask (B, 1, 1, L): every query sees the valid keys."""
    return rearrange(valid, "b l -> b 1 1 l")


def prefix_causal_mask(num_free: int, num_causal: int, device: torch.device | None = None) -> Tensor:
    """(L, L) bool mask for [free tokens; causal tokens], L = num_free + num_causal.

    Free tokens (e.g. image patches) attend only to each other; causal token i (e.g. register i)
    attends to every free token and to causal tokens 0..i. So causal token i never depends on the
    tokens after it, and a prefix of them can be computed without the rest.
    """
    n, k = num_free, num_causal
    mask = torch.zeros(n + k, n + k, dtype=torch.bool, device=device)
    mask[:n, :n] = True
    mask[n:, :n] = True
    mask[n:, n:] = torch.ones(k, k, dtype=torch.bool, device=device).tril()
    return mask
