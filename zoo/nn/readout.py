"""The input of a linear read-out of kept tokens (KARL, FlexTok and LARP decode through one)."""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor

from zoo.tokenizer import length_mask


def kept_codes(codes: Tensor, lengths: Tensor, total: int) -> Tensor:
    """codes: (B, k, D), k <= total; lengths: (B,) kept codes per sample → (B, total·D).

    The first `lengths[b]` codes of each sample, zeros after them and up to `total` slots, flattened,
    so one linear layer over all `total` slots reads any prefix.
    """
    k = codes.shape[1]
    kept = length_mask(lengths, k)  # (B, k)
    return F.pad(codes * kept[..., None], (0, 0, 0, total - k)).flatten(1)
