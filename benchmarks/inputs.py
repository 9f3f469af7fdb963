"""Inputs for speed benchmarks, made from a tokenizer's input contract (values do not change the work,
except for adaptive tokenizers, where smooth noise stands in for a natural sample)."""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor


def synthetic_input(tok: Any, batch: int, seconds: float = 10.0, steps: int = 100, seed: int = 0) -> Tensor:
    """A batch laid out as `tok.spec.input.layout`, inside its value range.

    Args:
        batch: B.
        seconds: length of audio (S = seconds · sample_rate).
        steps: T of an action trajectory when the contract does not fix it.
    """
    contract = tok.spec.input
    g = torch.Generator().manual_seed(seed)
    shape = []
    for axis in contract.axes:
        if axis == "B":
            shape.append(batch)
        elif axis.isdigit():
            shape.append(int(axis))
        elif axis in contract.sizes:
            shape.append(contract.sizes[axis])
        elif axis == "S":
            shape.append(int(seconds * (contract.sample_rate or 16000)))
        else:
            shape.append(steps)
    x = torch.randn(shape, generator=g).cumsum(-1)  # smooth along the last axis, like real signals
    x = (x - x.mean()) / (x.std() + 1e-6)
    if contract.value_range is not None:
        lo, hi = contract.value_range
        x = lo + (hi - lo) * torch.sigmoid(x)
    return x
