"""Embedding of a continuous diffusion / flow time t ∈ [0, 1] (sinusoidal features, then an MLP, as in DiT)."""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn


class TimestepEmbedding(nn.Module):
    """t: (B,) float → (B, dim)."""

    def __init__(self, dim: int, frequencies: int = 256, max_period: float = 10000.0, scale: float = 1000.0) -> None:
        super().__init__()
        self.frequencies, self.max_period, self.scale = frequencies, max_period, scale
        self.mlp = nn.Sequential(nn.Linear(frequencies, dim), nn.SiLU(), nn.Linear(dim, dim))

    def forward(self, t: Tensor) -> Tensor:
        half = self.frequencies // 2
        freqs = torch.exp(-math.log(self.max_period) * torch.arange(half, device=t.device, dtype=torch.float32) / half)
        angles = (t.float() * self.scale)[:, None] * freqs[None]  # (B, half)
        return self.mlp(torch.cat([angles.cos(), angles.sin()], dim=-1))
