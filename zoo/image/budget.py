"""Measured budgets: pick each image's token budget from the errors its candidate budgets really reach.

A single-pass allocator (KARL's halting head, CAT's complexity estimator) predicts each image's
error curve and errs; the search here encodes and decodes the image at every candidate budget and
keeps the budget the measured errors call for. It costs one encode and one decode per candidate,
so it suits offline tokenization (building an LLM's training set), where tokens are paid for many
times and encoding once. Two rules, the same ones the single-pass paths follow:

- a target error ε: the fewest tokens whose measured MSE is at most ε; an image that reaches ε at no
  candidate keeps the candidate of lowest MSE (not blindly the largest);
- a rate-distortion stop λ (dB per token): the budget that maximises PSNR − λ·tokens, so every token
  kept buys at least λ dB on the image's own measured curve.

With both, the fewer tokens of the two choices is kept.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor


def choose_measured(mse: Tensor, tokens: Tensor, quality: Tensor | None = None, min_gain_db: float = 0.0) -> Tensor:
    """Per image, the index of the candidate budget to keep.

    Args:
        mse: (B, C) measured per-image MSE (on [0, 1] pixels) at each of C candidate budgets.
        tokens: (C,) or (B, C) tokens each candidate costs.
        quality: (B,) target MSE ε, or None for no target.
        min_gain_db: λ >= 0; 0 switches the rate-distortion stop off.

    Returns:
        (B,) long indices into the C candidates. Ties go to the fewer tokens.
    """
    if mse.ndim != 2:
        raise ValueError(f"mse must be (B, C), got {tuple(mse.shape)}")
    if quality is None and min_gain_db <= 0:
        raise ValueError("give a target error (quality) or a rate-distortion stop (min_gain_db > 0)")
    if not math.isfinite(min_gain_db):
        raise ValueError(f"min_gain_db must be finite, got {min_gain_db}")
    b, c = mse.shape
    tokens = tokens.to(mse.device, mse.dtype).expand(b, c)
    # candidates in order of cost, so "first" means "fewest tokens"
    order = tokens.argsort(dim=1, stable=True)
    mse_o, tok_o = mse.gather(1, order), tokens.gather(1, order)
    picks = []
    if quality is not None:
        ok = mse_o <= quality.to(mse.device, mse.dtype)[:, None]
        lowest = mse_o.argmin(1)  # first minimum: the fewest tokens among equal errors
        picks.append(torch.where(ok.any(1), ok.float().argmax(1), lowest))
    if min_gain_db > 0:
        psnr = -10 * torch.log10(mse_o.clamp(min=1e-10))
        picks.append((psnr - min_gain_db * tok_o).argmax(1))  # argmax returns the first maximum
    pick = picks[0] if len(picks) == 1 else torch.minimum(*picks)
    return order.gather(1, pick[:, None]).squeeze(1)
