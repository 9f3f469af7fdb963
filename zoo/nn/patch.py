"""Images ↔ patch tokens, and fixed 2D sin-cos position tables (ViT, MAE, DiT)."""

from __future__ import annotations

import torch
from einops import rearrange
from torch import Tensor, nn


class Patchify(nn.Module):
    """x: (B, C, H, W) → tokens (B, (H/p)·(W/p), dim), row-major over the patch grid.

    A linear map of each flattened p×p patch (a stride-p convolution written with einops).
    """

    def __init__(self, in_channels: int, patch_size: int, dim: int) -> None:
        super().__init__()
        self.patch_size = patch_size
        self.proj = nn.Linear(in_channels * patch_size**2, dim)

    def forward(self, x: Tensor) -> Tensor:
        p = self.patch_size
        patches = rearrange(x, "b c (h p1) (w p2) -> b (h w) (p1 p2 c)", p1=p, p2=p)
        return self.proj(patches)


class Unpatchify(nn.Module):
    """tokens (B, h·w, dim) → (B, C, h·p, w·p): a linear head per token, then the patches laid out."""

    def __init__(self, dim: int, patch_size: int, out_channels: int) -> None:
        super().__init__()
        self.patch_size, self.out_channels = patch_size, out_channels
        self.proj = nn.Linear(dim, out_channels * patch_size**2)

    def forward(self, tokens: Tensor, grid: tuple[int, int]) -> Tensor:
        p = self.patch_size
        return rearrange(self.proj(tokens), "b (h w) (p1 p2 c) -> b c (h p1) (w p2)", h=grid[0], w=grid[1], p1=p, p2=p)


def sincos_pos_embed_2d(dim: int, grid: tuple[int, int]) -> Tensor:
    """Fixed 2D sin-cos position table (h·w, dim), half the channels for rows and half for columns."""
    if dim % 4:
        raise ValueError(f"a 2D sin-cos table needs dim divisible by 4, got {dim}")
    h, w = grid
    quarter = dim // 4
    omega = 1.0 / 10000 ** (torch.arange(quarter, dtype=torch.float64) / quarter)
    ys, xs = torch.meshgrid(torch.arange(h, dtype=torch.float64), torch.arange(w, dtype=torch.float64), indexing="ij")
    parts = []
    for pos in (ys.flatten(), xs.flatten()):
        angles = pos[:, None] * omega[None]  # (h·w, dim/4)
        parts += [angles.sin(), angles.cos()]
    return torch.cat(parts, dim=1).float()
