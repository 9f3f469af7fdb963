"""Helpers for importing released audio-codec weights (DAC, EnCodec, Mimi): their convolutions were trained
with weight normalisation, which inference does not need."""

from __future__ import annotations

import torch
from torch import Tensor


def fold_weight_norm(state: dict[str, Tensor]) -> dict[str, Tensor]:
    """Replace each weight-normalised pair by its plain weight w = g · v / ||v||.

    Takes both spellings: `name.weight_g` / `name.weight_v` (torch.nn.utils.weight_norm, the official
    release) and `name.parametrizations.weight.original0` / `original1` (torch's parametrization). The norm
    runs over every axis where g has size 1 (axis 0 kept for conv weights (out, in, k) and for transposed
    conv weights (in, out, k), torch's default dim=0 in both cases), with torch's own kernel.
    """
    pairs = {"weight_g": "weight_v", "parametrizations.weight.original0": "parametrizations.weight.original1"}
    out = {}
    for key, value in state.items():
        leaf = next((n for n in (*pairs, *pairs.values()) if key == n or key.endswith("." + n)), "")
        prefix = key[: len(key) - len(leaf)]
        if leaf in pairs.values():
            g_leaf = next(g for g, v in pairs.items() if v == leaf)
            if prefix + g_leaf not in state:
                raise ValueError(f"{key} has no matching {prefix + g_leaf}")
            continue  # v: taken with its g
        if leaf not in pairs:
            out[key] = value
            continue
        v = state.get(prefix + pairs[leaf])
        if v is None:
            raise ValueError(f"{key} has no matching {prefix + pairs[leaf]}")
        dims = [d for d in range(v.ndim) if value.shape[d] != 1]
        if value.ndim != v.ndim or len(dims) > 1 or value.numel() != (v.shape[dims[0]] if dims else 1):
            raise ValueError(f"{key} of shape {tuple(value.shape)} does not normalise {tuple(v.shape)}")
        out[prefix + "weight"] = torch._weight_norm(v, value, dims[0] if dims else 0)
    return out
