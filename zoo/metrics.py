"""Quality metrics shared by tokenizers, benchmarks and model cards.

Every function takes batched tensors and returns one value per sample (shape [B]) unless it says
otherwise, so callers can average, take medians, or correlate per-sample scores with token counts.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor


def _same_shape(a: Tensor, b: Tensor) -> None:
    if a.shape != b.shape:
        raise ValueError(f"inputs must have the same shape, got {tuple(a.shape)} and {tuple(b.shape)}")


def mse(x: Tensor, y: Tensor) -> Tensor:
    """Mean squared error per sample: (B, ...) → (B,)."""
    _same_shape(x, y)
    return (x.float() - y.float()).pow(2).flatten(1).mean(1)


def psnr(x: Tensor, y: Tensor, data_range: float = 1.0) -> Tensor:
    """Peak signal-to-noise ratio in dB per sample; x, y: (B, ...) in [0, data_range]."""
    err = mse(x, y).clamp_min(1e-12)
    return 10 * torch.log10(data_range**2 / err)


def ssim(x: Tensor, y: Tensor, data_range: float = 1.0) -> Tensor:
    """Structural similarity per image (torchmetrics, Gaussian window); x, y: (B, C, H, W)."""
    from torchmetrics.functional.image import structural_similarity_index_measure

    _same_shape(x, y)
    kernel = 7 if min(x.shape[-2:]) < 48 else 11  # a 32x32 image is too small for the usual 11x11 window
    return structural_similarity_index_measure(x.float(), y.float(), data_range=data_range, reduction="none",
                                               kernel_size=kernel)


def trajectory_error(x: Tensor, y: Tensor) -> dict[str, Tensor]:
    """Per-trajectory errors; x, y: (B, T, D). MSE, RMSE, max absolute error and final-point error."""
    _same_shape(x, y)
    diff = (x.float() - y.float())
    return {
        "mse": diff.pow(2).mean((1, 2)),
        "rmse": diff.pow(2).mean((1, 2)).sqrt(),
        "max_abs": diff.abs().amax((1, 2)),
        "final": diff[:, -1].norm(dim=-1),
    }


def dtw_distance(x: Tensor, y: Tensor) -> float:
    """Dynamic-time-warping distance between two trajectories (T1, D) and (T2, D), mean over the path."""
    import numpy as np

    a, b = x.detach().cpu().double().numpy(), y.detach().cpu().double().numpy()
    cost = np.linalg.norm(a[:, None] - b[None], axis=-1)
    acc = np.full((len(a) + 1, len(b) + 1), np.inf)
    acc[0, 0] = 0.0
    steps = np.zeros_like(acc)
    for i in range(1, len(a) + 1):
        for j in range(1, len(b) + 1):
            prev = min((acc[i - 1, j], steps[i - 1, j]), (acc[i, j - 1], steps[i, j - 1]), (acc[i - 1, j - 1], steps[i - 1, j - 1]))
            acc[i, j] = cost[i - 1, j - 1] + prev[0]
            steps[i, j] = prev[1] + 1
    return float(acc[-1, -1] / steps[-1, -1])


def jerk(x: Tensor) -> Tensor:
    """Mean squared third difference per trajectory (a smoothness measure); x: (B, T, D)."""
    return torch.diff(x.float(), n=3, dim=1).pow(2).mean((1, 2))


def bits(num_tokens: float, vocab_size: int, num_codebooks: int = 1) -> float:
    """Bits carried by a token sequence."""
    return num_tokens * num_codebooks * math.log2(vocab_size)
