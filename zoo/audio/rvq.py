"""Residual vector quantization at inference: nearest codes by Euclidean distance, and their sums.

As in EnCodec and Mimi (and SoundStream before them): codebook i quantizes what codebooks 0..i-1 left,
so the first q codebooks are a coarser code. The distance is written as EnCodec and Moshi write it,
|x|² - 2 x·e + |e|², so ties and near-ties resolve as in the official code.
"""

from __future__ import annotations

import torch
from torch import Tensor


def nearest(x: Tensor, codebook: Tensor, distance: str = "expanded") -> Tensor:
    """Index of the nearest code. x: (N, D), codebook: (K, D) -> (N,).

    distance: "expanded" computes |x|² - 2 x·e + |e|² (EnCodec), "cdist" calls torch.cdist (Mimi in transformers);
    the same nearest code up to float ties, written as each release's code does.
    """
    if distance == "cdist":
        return torch.cdist(x[None], codebook[None], p=2)[0].argmin(dim=-1)
    dist = -(x.pow(2).sum(1, keepdim=True) - 2 * x @ codebook.t() + codebook.pow(2).sum(1)[None])
    return dist.max(dim=-1).indices


def rvq_encode(z: Tensor, codebooks: Tensor, num_codebooks: int, distance: str = "expanded") -> Tensor:
    """Latents (B, T, D) -> ids (B, T, q) with the first q = num_codebooks codebooks (Q, K, D)."""
    b, t, d = z.shape
    residual = z.reshape(b * t, d)
    ids = []
    for codebook in codebooks[:num_codebooks]:
        index = nearest(residual, codebook, distance)
        residual = residual - codebook[index]
        ids.append(index)
    return torch.stack(ids, dim=-1).view(b, t, num_codebooks)


def rvq_decode(ids: Tensor, codebooks: Tensor) -> Tensor:
    """ids (B, T, q) -> the sum of their codes (B, T, D), codebook by codebook in order."""
    out = codebooks[0][ids[..., 0]]
    for i in range(1, ids.shape[-1]):
        out = out + codebooks[i][ids[..., i]]
    return out
