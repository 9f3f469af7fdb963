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


def ssim_video(x: Tensor, y: Tensor, data_range: float = 1.0) -> Tensor:
    """Mean SSIM over the frames of each clip; x, y: (B, C, T, H, W) → (B,)."""
    _same_shape(x, y)
    b, c, t = x.shape[:3]
    frames = ssim(x.transpose(1, 2).reshape(b * t, c, *x.shape[3:]), y.transpose(1, 2).reshape(b * t, c, *y.shape[3:]),
                  data_range)
    return frames.view(b, t).mean(1)


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


def codebook_usage(ids: Tensor, vocab_size: int) -> dict[str, float]:
    """How a batch of token ids spreads over the vocabulary; ids: integers of any shape in [0, vocab_size).

    Returns perplexity exp(H) of the id histogram (1 = one code used, vocab_size = all used equally)
    and `used`, the fraction of the vocabulary that occurs at least once.
    """
    counts = torch.bincount(ids.reshape(-1).long(), minlength=vocab_size).double()
    p = counts / counts.sum().clamp_min(1)
    entropy = -(p * p.clamp_min(1e-30).log()).sum()
    return {"perplexity": float(entropy.exp()), "used": float((counts > 0).double().mean())}


# ----------------------------------------------------------------------------------------- audio

# (window, mel bands) pairs of the multi-scale mel distance, as in DAC's MelSpectrogramLoss, sized for 16 kHz
MEL_SCALES: tuple[tuple[int, int], ...] = ((32, 5), (64, 10), (128, 20), (256, 40), (512, 80), (1024, 128))


def _audio_pair(x: Tensor, y: Tensor) -> tuple[Tensor, Tensor]:
    """(B, 1, S) or (B, S) pairs → (B, S) float."""
    _same_shape(x, y)
    if x.ndim == 3:
        if x.shape[1] != 1:
            raise ValueError(f"audio metrics take mono (B, 1, S) or (B, S), got shape {tuple(x.shape)}")
        x, y = x[:, 0], y[:, 0]
    if x.ndim != 2:
        raise ValueError(f"audio metrics take (B, 1, S) or (B, S), got shape {tuple(x.shape)}")
    return x.float(), y.float()


def si_sdr(estimate: Tensor, reference: Tensor) -> Tensor:
    """Scale-invariant signal-to-distortion ratio in dB per clip (Le Roux et al., 2019); (B, 1, S) or (B, S)."""
    from torchmetrics.functional.audio import scale_invariant_signal_distortion_ratio

    estimate, reference = _audio_pair(estimate, reference)
    return scale_invariant_signal_distortion_ratio(estimate, reference, zero_mean=True)


_MEL_CACHE: dict[tuple, torch.nn.Module] = {}


def _mel(window: int, n_mels: int, sample_rate: int, device: torch.device) -> torch.nn.Module:
    key = (window, n_mels, sample_rate, str(device))
    if key not in _MEL_CACHE:
        from torchaudio.transforms import MelSpectrogram

        _MEL_CACHE[key] = MelSpectrogram(sample_rate, n_fft=window, hop_length=window // 4, n_mels=n_mels,
                                         power=1.0, center=True, norm="slaney", mel_scale="slaney").to(device)
    return _MEL_CACHE[key]


def mel_distance(estimate: Tensor, reference: Tensor, sample_rate: int = 16000,
                 scales: tuple[tuple[int, int], ...] = MEL_SCALES) -> Tensor:
    """Multi-scale log-mel L1 distance per clip (DAC's mel loss; lower is better, differentiable).

    Args:
        estimate, reference: (B, 1, S) or (B, S) waveforms.
        scales: (window, mel bands) per scale; hop = window / 4; the distance is the mean over scales
            of mean |log10 mel(estimate) - log10 mel(reference)| (magnitudes clamped at 1e-5).
    """
    estimate, reference = _audio_pair(estimate, reference)
    total = estimate.new_zeros(estimate.shape[0])
    for window, n_mels in scales:
        mel = _mel(window, n_mels, sample_rate, estimate.device)
        a, b = mel(estimate).clamp_min(1e-5).log10(), mel(reference).clamp_min(1e-5).log10()
        total = total + (a - b).abs().mean((1, 2))
    return total / len(scales)


def stoi(estimate: Tensor, reference: Tensor, sample_rate: int = 16000, extended: bool = False) -> Tensor:
    """Short-time objective intelligibility per clip (Taal et al., 2011; pystoi), in [0, 1], higher is better."""
    from pystoi import stoi as _stoi

    estimate, reference = _audio_pair(estimate, reference)
    est, ref = estimate.detach().cpu().double().numpy(), reference.detach().cpu().double().numpy()
    return torch.tensor([_stoi(r, e, sample_rate, extended=extended) for r, e in zip(ref, est)])


def pesq(estimate: Tensor, reference: Tensor, sample_rate: int = 16000) -> Tensor:
    """PESQ MOS-LQO per clip (ITU-T P.862; `pesq` package), wide band at 16 kHz, narrow band at 8 kHz.

    Clips where PESQ finds no speech get NaN (average with `nanmean`).
    """
    from pesq import PesqError
    from pesq import pesq as _pesq

    if sample_rate not in (8000, 16000):
        raise ValueError(f"PESQ is defined at 8000 or 16000 Hz, got {sample_rate}; resample first")
    estimate, reference = _audio_pair(estimate, reference)
    est, ref = estimate.detach().cpu().double().numpy(), reference.detach().cpu().double().numpy()
    mode = "wb" if sample_rate == 16000 else "nb"
    out = []
    for r, e in zip(ref, est):
        try:
            out.append(_pesq(sample_rate, r, e, mode))
        except PesqError:
            out.append(float("nan"))
    return torch.tensor(out, dtype=torch.float64)


def dtw_distances(x: Tensor, y: Tensor) -> Tensor:
    """Dynamic-time-warping distance of each pair (x[i], y[i]), mean cost over the warping path.

    Batched over pairs (a Python loop over the T1·T2 grid, vectorised over B), so thousands of pairs
    cost about as much as one; `dtw_distance` is the one-pair reference. Ties prefer the diagonal.

    Args:
        x: (B, T1, D), y: (B, T2, D).
    Returns:
        (B,) float64.
    """
    if x.ndim != 3 or y.ndim != 3 or x.shape[0] != y.shape[0] or x.shape[2] != y.shape[2]:
        raise ValueError(f"dtw_distances needs (B, T1, D) and (B, T2, D), got {tuple(x.shape)} and {tuple(y.shape)}")
    cost = torch.cdist(x.double(), y.double()).permute(1, 2, 0).contiguous()  # (T1, T2, B): each cell contiguous
    t1, t2, b = cost.shape
    acc = torch.full((t1 + 1, t2 + 1, b), math.inf, dtype=torch.float64, device=cost.device)
    steps = torch.zeros_like(acc)
    acc[0, 0] = 0.0
    for i in range(1, t1 + 1):
        for j in range(1, t2 + 1):
            best, length = acc[i - 1, j - 1], steps[i - 1, j - 1]
            for a, n in ((acc[i - 1, j], steps[i - 1, j]), (acc[i, j - 1], steps[i, j - 1])):
                better = a < best
                best, length = torch.where(better, a, best), torch.where(better, n, length)
            acc[i, j] = cost[i - 1, j - 1] + best
            steps[i, j] = length + 1
    return acc[-1, -1] / steps[-1, -1]


# ----------------------------------------------------------------------------------------- distributions


def frechet_distance(a: Tensor, b: Tensor) -> float:
    """Fréchet distance between Gaussians fitted to two feature sets (the FID formula, any feature space).

    ‖μa - μb‖² + tr(Σa + Σb - 2 (Σa Σb)^½). Args: a: (Na, D), b: (Nb, D) features; use N well above D,
    and compare numbers only when N and the feature extractor are the same.
    """
    import numpy as np
    from scipy import linalg

    if a.ndim != 2 or b.ndim != 2 or a.shape[1] != b.shape[1]:
        raise ValueError(f"frechet_distance needs (Na, D) and (Nb, D) features, got {tuple(a.shape)} and {tuple(b.shape)}")
    if min(a.shape[0], b.shape[0]) < 2:
        raise ValueError(f"frechet_distance needs at least 2 samples per set, got {a.shape[0]} and {b.shape[0]}")
    x, y = a.detach().cpu().double().numpy(), b.detach().cpu().double().numpy()
    mu1, mu2 = x.mean(0), y.mean(0)
    s1, s2 = np.cov(x, rowvar=False), np.cov(y, rowvar=False)
    covmean, _ = linalg.sqrtm(s1 @ s2, disp=False)
    if not np.isfinite(covmean).all():  # near-singular product: regularise, as pytorch-fid does
        eps = np.eye(s1.shape[0]) * 1e-6
        covmean = linalg.sqrtm((s1 + eps) @ (s2 + eps))
    covmean = covmean.real
    return float(((mu1 - mu2) ** 2).sum() + np.trace(s1) + np.trace(s2) - 2 * np.trace(covmean))
