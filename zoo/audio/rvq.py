"""Residual vector quantization at inference: nearest codes by Euclidean distance, and their sums.

As in EnCodec and Mimi (and SoundStream before them): codebook i quantizes what codebooks 0..i-1 left,
so the first q codebooks are a coarser code. The distance is written as EnCodec and Moshi write it,
|x|² - 2 x·e + |e|², so ties and near-ties resolve as in the official code.
"""

from __future__ import annotations

import torch
from torch import Tensor


def nearest(x: Tensor, codebook: Tensor, distance: str = "expanded", table: Tensor | None = None) -> Tensor:
    """Index of the nearest code. x: (N, D), codebook: (K, D) -> (N,).

    distance: "expanded" computes |x|² - 2 x·e + |e|² (EnCodec), "cdist" is torch.cdist's (Mimi in moshi and
    transformers); the same nearest code up to float ties, written as each release's code does. With "cdist",
    `table` = `cdist_table(codebook)` saves recomputing the codebook's side on every call.
    """
    if distance == "cdist":
        return cdist_nearest(x, cdist_table(codebook) if table is None else table)
    dist = -(x.pow(2).sum(1, keepdim=True) - 2 * x @ codebook.t() + codebook.pow(2).sum(1)[None])
    return dist.max(dim=-1).indices


def cdist_table(codebooks: Tensor) -> Tensor:
    """(..., K, D) -> (..., K, D + 2): each entry as [e, 1, |e|²], the codebook's side of torch.cdist's
    matrix-product path (the one it takes whenever a side has more than 25 rows, as every codebook here has)."""
    norm = codebooks.pow(2).sum(-1, keepdim=True)
    return torch.cat([codebooks, torch.ones_like(norm), norm], dim=-1)


def cdist_nearest(x: Tensor, table: Tensor) -> Tensor:
    """argmin of torch.cdist(x, codebook) from the codebook's `cdist_table`, bit for bit the same distances:
    [-2x, |x|², 1] · [e, 1, |e|²] in one product, clamped at 0, square-rooted. x: (N, D), table: (K, D + 2)."""
    norm = x.pow(2).sum(-1, keepdim=True)
    augmented = torch.cat([x.mul(-2), norm, torch.ones_like(norm)], dim=-1)
    return augmented[None].matmul(table[None].mT)[0].clamp_min_(0).sqrt_().argmin(dim=-1)


def rvq_encode(z: Tensor, codebooks: Tensor, num_codebooks: int, distance: str = "expanded",
               tables: Tensor | None = None) -> Tensor:
    """Latents (B, T, D) -> ids (B, T, q) with the first q = num_codebooks codebooks (Q, K, D) (and, with
    distance="cdist", optionally their `cdist_table`s (Q, K, D + 2))."""
    b, t, d = z.shape
    residual = z.reshape(b * t, d)
    ids = []
    for i, codebook in enumerate(codebooks[:num_codebooks]):
        index = nearest(residual, codebook, distance, None if tables is None else tables[i])
        residual = residual - codebook[index]
        ids.append(index)
    return torch.stack(ids, dim=-1).view(b, t, num_codebooks)


def rvq_decode(ids: Tensor, codebooks: Tensor) -> Tensor:
    """ids (B, T, q) -> the sum of their codes (B, T, D), codebook by codebook in order."""
    out = codebooks[0][ids[..., 0]]
    for i in range(1, ids.shape[-1]):
        out = out + codebooks[i][ids[..., i]]
    return out
