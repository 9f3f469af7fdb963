"""Budgets for a target error: which of an image's candidate budgets to keep, and whether the target was met.

KARL and CAT take `quality=ε`, a target per-image mean squared error on [0, 1] pixels (PSNR
-10·log10 ε). One rule picks the budget from an image's error curve, whether the errors are predicted
in one pass (KARL's halting head, CAT's PSNR estimator) or measured by `search=True`, which encodes
and decodes the image at every candidate budget (one encode and one decode per candidate, so it
suits offline tokenization, where tokens are paid for many times and encoding once):

- a target ε: the fewest tokens whose error is at most ε, where ε is first raised to `NEAR_BEST_DB`
  (0.1 dB) above the lowest error the image reaches (`reachable_target`). So an image that cannot
  reach ε keeps the fewest tokens within 0.1 dB of its best, not blindly the largest budget: tokens
  that bring it no measurably closer to the target are not spent. The same holds for a target within
  0.1 dB of the image's best, so a looser ε still never keeps more tokens (a target that only the last
  such tokens would meet is reported as missed: `quality_met`);
- a rate-distortion stop λ (dB per token): the budget that maximises PSNR − λ·tokens, so every token
  kept buys at least λ dB on the image's own curve.

With both, the fewer tokens of the two choices is kept. Whatever the choice, `meta["quality_met"]` is
measured, not predicted: `with_quality_met` compares the error of the decoded tokens with ε (a search
passes the error it measured on the chosen candidate, the same decode, so nothing is decoded twice).
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import Tensor

from zoo.metrics import mse as image_mse
from zoo.tokenizer import Tokens

NEAR_BEST_DB = 0.1  # within this of the lowest error reachable counts as no measurable gain (2.3% of the MSE)


def reachable_target(quality: Tensor, lowest: Tensor, tolerance_db: float = NEAR_BEST_DB) -> Tensor:
    """The target (B,) a budget is chosen for: ε `quality` (B,), raised to `tolerance_db` above the `lowest` (B,)
    error the image reaches at any budget (measured or predicted). Non-decreasing in ε."""
    return torch.maximum(quality, lowest * 10 ** (tolerance_db / 10))


def choose_budget(mse: Tensor, tokens: Tensor, quality: Tensor | None = None, min_gain_db: float = 0.0) -> Tensor:
    """Per image, the index of the candidate budget to keep (the rules of the module docstring).

    Args:
        mse: (B, C) per-image MSE (on [0, 1] pixels) at each of C candidate budgets, measured or predicted.
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
    order = tokens.argsort(dim=1, stable=True)
    mse_o, tok_o = mse.gather(1, order), tokens.gather(1, order)
    picks = []
    if quality is not None:
        ok = mse_o <= reachable_target(quality.to(mse.device, mse.dtype), mse_o.min(1).values)[:, None]
        picks.append(ok.float().argmax(1))  # the lowest error always qualifies
    if min_gain_db > 0:
        psnr = -10 * torch.log10(mse_o.clamp(min=1e-10))
        picks.append((psnr - min_gain_db * tok_o).argmax(1))  # argmax returns the first maximum
    pick = picks[0] if len(picks) == 1 else torch.minimum(*picks)
    return order.gather(1, pick[:, None]).squeeze(1)


def with_quality_met(tok: Any, tokens: Tokens, x: Tensor, quality: Tensor, measured: Tensor | None = None) -> Tokens:
    """Set tokens.meta["quality_met"] (B,) bool: whether `tok.decode(tokens)` is within `quality` (B,) of x (B, ...)
    in per-image MSE (`zoo.metrics.mse`), as a user who decodes the tokens measures it. Returns `tokens`.

    `measured`: (B,) that MSE when the caller already decoded these tokens (a search measures every candidate);
    None decodes them here."""
    error = image_mse(tok.decode(tokens), x) if measured is None else measured
    tokens.meta["quality_met"] = error <= quality.to(x.device, torch.float32)
    return tokens
