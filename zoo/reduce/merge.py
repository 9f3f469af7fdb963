"""ToMe: token merging by bipartite soft matching.

Paper: "Token Merging: Your ViT But Faster" (Bolya et al., ICLR 2023, https://arxiv.org/abs/2210.09461).
Official code: facebookresearch/ToMe (read, not copied).

Tokens are split alternately into sets A (even positions) and B (odd positions); each A token finds
its most similar B token (cosine similarity of the matching metric, in a ViT the attention keys
averaged over heads); the r most similar pairs are merged (size-weighted mean) and the rest stay.
Inside a ViT the merged sizes feed *proportional attention* (log size added to the attention
logits), which our patcher passes to PyTorch's fused attention as a bias.

What we do beyond the official code:
- any budget, per sample: a keep below half the tokens runs further matching rounds (one round can at
  most halve), and every sample may keep a different count (the batch is padded, sizes 0);
- the output keeps the input order of the surviving tokens, and a full source map is returned;
- protected tokens (CLS) are excluded from matching by construction, not by a -inf score.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from zoo.reduce.base import Reducer, pool


def bipartite_round(metric: Tensor, valid: Tensor, merges: Tensor) -> Tensor:
    """One round of bipartite soft matching.

    Args:
        metric: (B, N, C) matching features; valid: (B, N) bool (False on padding).
        merges: (B,) long, how many A tokens each sample should merge (clipped to what it can).

    Returns:
        (B, N) long target: each merged A token points at its B partner, every other valid token at
        itself, padding at -1.
    """
    b, n, _ = metric.shape
    metric = F.normalize(metric.float(), dim=-1)
    a, bb = metric[:, 0::2], metric[:, 1::2]  # A = even positions, B = odd positions
    va, vb = valid[:, 0::2], valid[:, 1::2]
    scores = a @ bb.transpose(1, 2)  # (B, Na, Nb) cosine similarity
    scores = scores.masked_fill(~vb[:, None, :], float("-inf"))
    best, partner = scores.max(-1)  # (B, Na)
    best = best.masked_fill(~va, float("-inf"))
    order = best.argsort(dim=1, descending=True, stable=True)
    rank = torch.empty_like(order).scatter_(1, order, torch.arange(a.shape[1], device=metric.device).expand_as(order))
    can = (va & torch.isfinite(best)).sum(1)
    merged = (rank < torch.minimum(merges, can)[:, None]) & va & torch.isfinite(best)

    arange = torch.arange(n, device=metric.device).expand(b, n)
    target = torch.where(valid, arange, -1)
    partner_pos = arange[:, 1::2].gather(1, partner)  # input position of each A token's best B token
    target[:, 0::2] = torch.where(merged, partner_pos, target[:, 0::2])
    return target


class ToMe(Reducer):
    """Bipartite soft matching (merging), on the attention keys when run inside a ViT."""

    needs = ("metric",)

    def assign(self, x: Tensor, sizes: Tensor, counts: Tensor, *, metric: Tensor,
               importance: Tensor | None) -> Tensor:
        b, n, _ = x.shape
        arange = torch.arange(n, device=x.device).expand(b, n)
        target = torch.where(sizes > 0, arange, -1)  # in input indices; updated round by round
        rep = arange  # input index of the representative held in each current slot
        cur_metric, cur_sizes = metric, sizes
        while True:
            alive = cur_sizes > 0
            merges = alive.sum(1) - counts
            if int(merges.max()) <= 0:
                return target
            step = bipartite_round(cur_metric, alive, merges.clamp(min=0))
            red = pool(cur_metric, cur_sizes, step)
            # slot s of this round joins slot step[s]; inputs follow their slot's representative
            new_rep = torch.where(step >= 0, rep.gather(1, step.clamp(min=0)), -1)
            slot_of_input = _slot_of(target, rep)
            target = torch.where(target >= 0, new_rep.gather(1, slot_of_input.clamp(min=0)), -1)
            keep_slots = step == torch.arange(step.shape[1], device=x.device).expand_as(step)
            rep = _compact(rep, keep_slots)
            cur_metric, cur_sizes = red.x, red.sizes


def _slot_of(target: Tensor, rep: Tensor) -> Tensor:
    """(B, N): the current slot of each input token, found through its representative."""
    b, n = target.shape
    slot_of_input = torch.full((b, n + 1), -1, dtype=torch.long, device=target.device)
    slots = torch.arange(rep.shape[1], device=rep.device).expand_as(rep)
    slot_of_input.scatter_(1, torch.where(rep >= 0, rep, n), slots)  # rep -> slot; column n collects padding
    return torch.where(target >= 0, slot_of_input.gather(1, target.clamp(min=0)), -1)


def _compact(rep: Tensor, keep: Tensor) -> Tensor:
    """Representatives of the slots that survive, moved to the front in order, padded with -1."""
    b, m = rep.shape
    order = (~keep).long().argsort(dim=1, stable=True)  # kept slots first, in order
    out = rep.gather(1, order)
    width = max(int(keep.sum(1).max()), 1)
    valid = torch.arange(m, device=rep.device)[None] < keep.sum(1, keepdim=True)
    return torch.where(valid, out, -1)[:, :width]
