"""Residual vector quantization at inference: nearest codes by Euclidean distance, and their sums.

As in EnCodec and Mimi (and SoundStream before them): codebook i quantizes what codebooks 0..i-1 left,
so the first q codebooks are a coarser code. The distance is written as EnCodec and Moshi write it,
|x|² - 2 x·e + |e|², so ties and near-ties resolve as in the official code.
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import Tensor

from zoo.tokenizer import check_budget


class CodebookRate:
    """The bitrate of a residual-VQ codec's config, mixed into each audio config (codec, DAC, EnCodec, Mimi): one
    formula for what its `frame_rate`, `num_codebooks` and `codebook_size` give."""

    frame_rate: float
    num_codebooks: int
    codebook_size: int

    def kbps(self, num_codebooks: int) -> float:
        """Bitrate of `num_codebooks` codebooks, in kbit/s: frames/s x codebooks x log2(codebook_size) bits / 1000."""
        return self.frame_rate * num_codebooks * math.log2(self.codebook_size) / 1000

    @property
    def bitrates(self) -> list[float]:
        """Every bitrate the codec can run at, in kbit/s (one per number of codebooks)."""
        return [self.kbps(q) for q in range(1, self.num_codebooks + 1)]


def rate_summary(config: Any, *, min_codebooks: int = 1, note: str = "") -> dict[str, Any]:
    """What `zoo list` shows of a residual-VQ codec, from its config (frame_rate, num_codebooks, codebook_size,
    kbps(q)): frames/s x min_codebooks-Q codebooks (`note` added), the vocabulary, kbps at all Q codebooks.
    Each audio family's `listing(config)` returns it, so a release's row says what its preset says."""
    q = config.num_codebooks
    return {"modality": "audio", "tokens": f"{config.frame_rate:g} frames/s x {min_codebooks}-{q} codebooks{note}",
            "vocab": f"{config.codebook_size} x {q}", "kbps": config.kbps(q),
            "bits_note": f"{config.kbps(1):.3g} kbps per codebook"}


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


def codebooks_for(config, bitrate: float | None, num_codebooks: int | None, *, low: int = 1,
                  within: bool = False) -> int:
    """The number of codebooks q a codec runs at: for a bitrate in kbit/s or an explicit q; default all of them.

    Args:
        config: has `num_codebooks` (Q) and `kbps(q)`.
        low: the fewest codebooks allowed (Mimi: its semantic ones).
        within: False (EnCodec, Mimi, our codec): the bitrate must be a whole number of codebooks;
            True (DAC, as its release does): the most codebooks whose rate fits within the bitrate.
    """
    top, per = config.num_codebooks, config.kbps(1)
    if bitrate is not None and num_codebooks is not None:
        raise ValueError(f"pass bitrate= or num_codebooks=, not both (got {bitrate} and {num_codebooks})")
    if bitrate is None:
        return top if num_codebooks is None else check_budget(num_codebooks, low, top, "num_codebooks")
    number = isinstance(bitrate, (int, float)) and not isinstance(bitrate, bool)
    if within:
        if not number or not config.kbps(low) <= bitrate + 1e-9:
            raise ValueError(f"bitrate={bitrate!r} kbps is not supported: this codec takes {config.kbps(low):g} to "
                             f"{config.kbps(top):g} kbps ({per:g} kbps per codebook)")
        return min(int(bitrate / per + 1e-9), top)
    q = bitrate / per if number else -1
    if abs(q - round(q)) > 1e-6 or not low <= round(q) <= top:
        raise ValueError(f"bitrate={bitrate!r} kbps is not supported; use a multiple of {per:g} kbps "
                         f"from {config.kbps(low):g} to {config.kbps(top):g}")
    return int(round(q))
