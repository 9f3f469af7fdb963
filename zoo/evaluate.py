"""Measuring trained tokenizers: the numbers their cards, the benchmarks and the tests share.

Per-sample metrics on tensors live in `zoo.metrics`; this module runs a tokenizer to get them. The
demo LM's measurement is `zoo.llm.evaluate`. Recipes, benchmarks and tests import from here (the
library never imports `recipes`).
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from zoo import metrics


@torch.no_grad()
def budget_metrics(tok: Any, x: Tensor, token_counts: list[int], chunk: int = 32) -> dict[str, float]:
    """PSNR and SSIM at each token budget `num_tokens=n`, and the codebook usage of the full encode.

    Args:
        tok: a tokenizer with a `num_tokens` budget and one codebook (LARP, FlexTok, KARL).
        x: (B, 3, H, W) images or (B, 3, T, H, W) clips in [0, 1].
        token_counts: the budgets n.
    Returns:
        psnr_n{n}, ssim_n{n} (means over the batch), codebook_perplexity, codebook_used.
    """
    ssim = metrics.ssim_video if x.ndim == 5 else metrics.ssim
    out: dict[str, float] = {}
    for n in token_counts:
        y = torch.cat([tok.decode(tok.encode(v, num_tokens=n)) for v in x.split(chunk)])
        out[f"psnr_n{n}"] = float(metrics.psnr(y, x).mean())
        out[f"ssim_n{n}"] = float(ssim(y, x).mean())
    ids = torch.cat([tok.encode(v).ids for v in x.split(chunk)])
    usage = metrics.codebook_usage(ids, tok.spec.vocab_size)
    out["codebook_perplexity"], out["codebook_used"] = usage["perplexity"], usage["used"]
    return out


def cat_ratio_psnr(tok: Any, images: Tensor) -> Tensor:
    """PSNR (B, R) in dB that a CAT reaches on each image (B, 3, S, S) in [0, 1] at each ratio, finest first.

    The same numbers as decode(encode(images, ratio=r)) for each r, with the trunk run once (CAT's
    estimator trains on them, and its card and benchmark report them).
    """
    raws = tok.raw_latents(tok.features(images * 2 - 1))
    return torch.stack([metrics.psnr(tok.pixels(tok.latent(raw)[0], level), images) for level, raw in enumerate(raws)],
                       dim=1)
