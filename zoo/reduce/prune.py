"""PPT-style pruning and pooling, and random dropping (the baseline every reducer must beat).

Paper: "PPT: Token Pruning and Pooling for Efficient Vision Transformers" (Wu et al., 2023,
https://arxiv.org/abs/2310.01812). Official code: xjwu1024/PPT (read, not copied).

Per image, PPT looks at how the importance scores of its tokens are spread: when a few tokens carry
most of the importance (inattentive redundancy), it *prunes* the least important ones; when the
scores are flat (duplicative redundancy), pruning would throw away information, so it *pools*
similar tokens instead (ToMe matching). Importance is the CLS token's attention to each token
times the norm of that token's value vector, averaged over heads (computed by our ViT patcher next
to the fused attention, from the CLS query alone); outside a ViT, the token norm stands in.

We decide per sample with a scale-free flatness measure, the coefficient of variation of the
importance scores (std / mean over the sample's valid tokens): below `threshold` -> pool, else prune.
PPT's threshold is on the raw variance, which depends on the number of tokens.
"""

from __future__ import annotations

import torch
from torch import Tensor

from zoo.reduce.base import Reducer, keep_top
from zoo.reduce.merge import ToMe

POLICIES = ("adaptive", "prune", "pool")


class PrunePool(Reducer):
    """Prune the least important tokens, or pool them when importance is flat (per sample).

    Args:
        policy: "adaptive" (PPT: choose per sample), "prune" (always) or "pool" (always, = ToMe).
        threshold: the coefficient of variation below which "adaptive" pools.
    """

    needs = ("metric", "importance")

    def __init__(self, policy: str = "adaptive", threshold: float = 0.5) -> None:
        super().__init__()
        if policy not in POLICIES:
            raise ValueError(f"policy={policy!r} is not one of {POLICIES}")
        if not threshold >= 0:
            raise ValueError(f"threshold={threshold!r} must be >= 0 (a coefficient of variation)")
        self.policy, self.threshold = policy, float(threshold)
        self.last_pooled: Tensor | None = None  # (B,) bool, which samples the last call pooled

    def assign(self, x: Tensor, sizes: Tensor, counts: Tensor, *, metric: Tensor,
               importance: Tensor | None, offset: int = 0) -> Tensor:
        valid = sizes > 0
        if importance is None:
            importance = x.float().norm(dim=-1)
        importance = importance.float()
        arange = torch.arange(x.shape[1], device=x.device).expand(valid.shape)
        pruned = torch.where(keep_top(importance, counts, valid), arange, -1)
        pooled_mask = self.flat(importance, valid)
        self.last_pooled = pooled_mask
        if not bool(pooled_mask.any()):
            return pruned
        pooled = ToMe().assign(x, sizes, counts, metric=metric, importance=None, offset=offset)
        return torch.where(pooled_mask[:, None], pooled, pruned)

    def flat(self, importance: Tensor, valid: Tensor) -> Tensor:
        """(B,) bool, True where the sample's importance is flat enough to pool."""
        if self.policy != "adaptive":
            return torch.full(valid.shape[:1], self.policy == "pool", device=valid.device)
        return coefficient_of_variation(importance, valid) < self.threshold


def coefficient_of_variation(score: Tensor, valid: Tensor) -> Tensor:
    """(B,) std / mean of each sample's valid scores."""
    w = valid.float()
    n = w.sum(1).clamp(min=1)
    mean = (score * w).sum(1) / n
    var = (((score - mean[:, None]) ** 2) * w).sum(1) / n
    return var.sqrt() / mean.abs().clamp(min=1e-12)


class RandomDrop(Reducer):
    """Keep a uniformly random subset of the tokens (seeded, so eval runs repeat exactly)."""

    def __init__(self, seed: int = 0) -> None:
        super().__init__()
        self.seed = int(seed)

    def assign(self, x: Tensor, sizes: Tensor, counts: Tensor, *, metric: Tensor,
               importance: Tensor | None, offset: int = 0) -> Tensor:
        g = torch.Generator(device="cpu").manual_seed(self.seed)
        score = torch.rand(x.shape[:2], generator=g).to(x.device)
        arange = torch.arange(x.shape[1], device=x.device).expand(score.shape)
        return torch.where(keep_top(score, counts, sizes > 0), arange, -1)
