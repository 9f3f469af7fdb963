"""ToMe: token merging by bipartite soft matching.

Paper: "Token Merging: Your ViT But Faster" (Bolya et al., ICLR 2023, https://arxiv.org/abs/2210.09461).
Official code: facebookresearch/ToMe (read, not copied).

Tokens are split alternately into sets A (even positions) and B (odd positions); each A token finds
its most similar B token (cosine similarity of the matching metric, in a ViT the attention keys
averaged over heads); the r most similar pairs are merged (size-weighted mean) and the rest stay.
Inside a ViT the merged sizes feed *proportional attention* (log size added to the attention
logits), which our patcher passes to PyTorch's fused attention as a bias.

Two ways to ask for it:
- `merge_r(x, sizes, metric, r, protect)`, ToMe's own step (what `patch_timm(vit, ToMe(), r=8)` runs in
  every block): the same merges and the same output order as the official code, so a whole patched
  model matches official ToMe. The split runs over every token, protected ones included (CLS is A's
  first token, a distillation token B's first), and protected tokens take part with a -inf score,
  as in the official code; the output is the protected tokens, the unmerged A tokens (in input order
  when tokens are protected, else by descending score, as official), then the B tokens.
- `ToMe()(x, keep=...)` (ours): any budget, per sample: a keep below half the tokens runs further
  rounds (one round can at most halve), every sample may keep a different count (the batch is padded,
  sizes 0), the output keeps the input order of the surviving tokens and a full source map is
  returned. Its first round matches on the same A/B split as the official code (positions counted
  with the protected tokens), so one round merges the same pairs; later rounds split the tokens in
  input order, where the official code would split them in its reordered sequence.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from zoo.reduce.base import Reducer, pool


def merge_r(x: Tensor, sizes: Tensor | None, metric: Tensor, r: int, protect: int = 0) -> tuple[Tensor, Tensor, Tensor]:
    """One ToMe step with the official matching and output order: merge r of N tokens.

    Args:
        x: (B, N, D) tokens; sizes: (B, N) float sizes (None: ones); metric: (B, N, C) matching features.
        r: tokens to remove, clipped to (N - protect) // 2 as in the official code.
        protect: leading tokens never merged (1: CLS; 2: CLS and a distillation token).

    Returns:
        (x (B, N - r, D) size-weighted means, sizes (B, N - r), slot (B, N) long: the output index of each input).
    """
    b, n, d = x.shape
    r = min(r, (n - protect) // 2)
    if sizes is None:
        sizes = x.new_ones(b, n)
    if r <= 0:
        return x, sizes, torch.arange(n, device=x.device).expand(b, n)
    src, unm, dst = _match(metric, r, protect)  # (B, r), (B, Na - r), (B, r): indices into A / into B
    pa, pb = (protect + 1) // 2, protect // 2
    m, nb = n - r, n // 2
    # input position of each output token: protected (input order), the other kept A, the other B
    rep = torch.cat(_protected_first([2 * unm, 2 * torch.arange(nb, device=x.device).expand(b, -1) + 1],
                                     pa, pb, protect), dim=1)  # (B, M)
    into = dst + (m - nb)  # output index of each merged A token's partner (B token j >= pb sits at M - Nb + j)
    # every output row is its representative's row; one index_add then corrects the r rows that receive a
    # merge: partner row x_j += sum over its sources i of s_i / S (x_i - x_j), S the partner's new size
    rows = torch.arange(b, device=x.device)[:, None]
    flat_x = x.reshape(b * n, d)
    out = flat_x.index_select(0, (rep + n * rows).reshape(-1))  # (B M, D)
    out_sizes = sizes.gather(1, rep)
    src_sizes = sizes[:, 0::2].gather(1, src)
    new_sizes = out_sizes.scatter_add(1, into, src_sizes)
    weight = (src_sizes / new_sizes.gather(1, into)).reshape(-1, 1).to(x.dtype)  # (B r, 1)
    merged = flat_x.index_select(0, (2 * src + n * rows).reshape(-1))
    partner = flat_x.index_select(0, (2 * dst + 1 + n * rows).reshape(-1))
    out.index_add_(0, (into + m * rows).reshape(-1), (merged - partner) * weight)
    out = out.view(b, m, d)
    # where each input went: representatives to their output index, merged A tokens to their partner's
    slot = torch.empty(b, n, dtype=torch.long, device=x.device)
    slot.scatter_(1, rep, torch.arange(m, device=x.device).expand(b, -1))
    slot.scatter_(1, 2 * src, into)
    return out, new_sizes, slot


def _match(metric: Tensor, r: int, protect: int) -> tuple[Tensor, Tensor, Tensor]:
    """ToMe's bipartite matching: A = even positions, B = odd; the r A tokens most similar to B merge.

    Returns (src (B, r) merged A indices, unm (B, Na - r) kept A indices in output order, dst (B, r) B partners).
    """
    metric = metric / metric.norm(dim=-1, keepdim=True)
    scores = metric[:, 0::2] @ metric[:, 1::2].transpose(1, 2)  # (B, Na, Nb) cosine similarity
    pa, pb = (protect + 1) // 2, protect // 2  # protected tokens in A (even positions) and in B (odd)
    if pa:
        scores[:, :pa] = float("-inf")
    if pb:
        scores[:, :, :pb] = float("-inf")
    best, partner = scores.max(-1)  # (B, Na)
    edge = best.argsort(dim=-1, descending=True)
    src, unm = edge[:, :r], edge[:, r:]  # A tokens merged / kept
    if protect:
        unm = unm.sort(dim=-1).values  # protected A tokens (score -inf) come first, the rest in input order
    return src, unm, partner.gather(1, src)


def _protected_first(parts: list[Tensor], pa: int, pb: int, protect: int) -> list[Tensor]:
    """[kept A, B] → [protected tokens in input order (A0, B0, A1, ...), the other kept A, the other B]."""
    a, bb = parts
    if protect <= 1:
        return [a, bb]
    head = [a[:, i // 2:i // 2 + 1] if i % 2 == 0 else bb[:, i // 2:i // 2 + 1] for i in range(protect)]
    return [*head, a[:, pa:], bb[:, pb:]]


def bipartite_round(metric: Tensor, valid: Tensor, merges: Tensor, first: int = 0) -> Tensor:
    """One round of bipartite soft matching.

    Args:
        metric: (B, N, C) matching features; valid: (B, N) bool (False on padding).
        merges: (B,) long, how many A tokens each sample should merge (clipped to what it can).
        first: 0 when token 0 is in set A, 1 when it is in B (its position in the full sequence is odd).

    Returns:
        (B, N) long target: each merged A token points at its B partner, every other valid token at
        itself, padding at -1.
    """
    b, n, _ = metric.shape
    metric = F.normalize(metric.float(), dim=-1)
    sa, sb = slice(first, None, 2), slice(1 - first, None, 2)  # A = even positions of the full sequence, B = odd
    a, bb = metric[:, sa], metric[:, sb]
    va, vb = valid[:, sa], valid[:, sb]
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
    partner_pos = arange[:, sb].gather(1, partner)  # input position of each A token's best B token
    target[:, sa] = torch.where(merged, partner_pos, target[:, sa])
    return target


class ToMe(Reducer):
    """Bipartite soft matching (merging), on the attention keys when run inside a ViT."""

    needs = ("metric",)

    def assign(self, x: Tensor, sizes: Tensor, counts: Tensor, *, metric: Tensor,
               importance: Tensor | None, offset: int = 0) -> Tensor:
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
            step = bipartite_round(cur_metric, alive, merges.clamp(min=0), first=offset % 2)
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
