"""A frame-rate waveform decoder with an inverse-STFT head (as Vocos, Siuzdak 2023, arXiv:2306.00814).

Latents (B, D, T) at the codec's frame rate -> ConvNeXt blocks at the frame rate -> a transposed
convolution to `upsample` x the frame rate -> ConvNeXt blocks there -> per frame a log-magnitude and
a phase for every bin of an n_fft = 4·hop' STFT (hop' = hop / upsample) -> windowed inverse FFT and
overlap-add -> waveform (B, 1, T · hop).

Why: a SEANet decoder spends most of its work at the full sample rate (16 channels x 16 000 samples
a second), where each multiply-add buys little. Here every layer runs at 50 or 100 frames a second
and the inverse FFT makes the samples, so the same CPU time pays for a network an order of magnitude
wider; the output is a sum of windowed frames, so its reach is finite and chunked decoding stays exact.

Ours: the two frame rates (Vocos runs all its blocks at the hop rate), and "same" overlap-add
normalised by the window's squared envelope, cropped to the samples every kept frame covers.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn


class ConvNeXt1d(nn.Module):
    """x + γ · MLP(LayerNorm(depthwise conv(x))) over (B, C, T), γ a small learned per-channel scale."""

    def __init__(self, dim: int, mlp_ratio: float = 3.0, kernel: int = 7, layer_scale: float = 0.1) -> None:
        from timm.layers import Mlp  # imported on first build: timm loads torchvision (seconds)

        super().__init__()
        self.dwconv = nn.Conv1d(dim, dim, kernel, padding=kernel // 2, groups=dim)
        self.norm = nn.LayerNorm(dim)
        self.mlp = Mlp(dim, int(dim * mlp_ratio), act_layer=nn.GELU)
        self.gamma = nn.Parameter(torch.full((dim,), layer_scale))

    def forward(self, x: Tensor) -> Tensor:
        h = self.mlp(self.norm(self.dwconv(x).transpose(1, 2))) * self.gamma
        return x + h.transpose(1, 2)


class ISTFTDecoder(nn.Module):
    """Latents (B, D, T) -> waveform (B, 1, T · hop), unbounded (the caller clamps).

    Args:
        latent_dim: D.
        hop: waveform samples per latent frame.
        dim: width of the blocks at the frame rate; those after the upsampling are dim / 2 wide.
        blocks: (number at the frame rate, number after the upsampling).
        upsample: frames of the STFT per latent frame (hop' = hop / upsample, n_fft = 4·hop').
        mlp_ratio: of the ConvNeXt blocks.
    """

    def __init__(self, latent_dim: int, hop: int, dim: int = 256, blocks: tuple[int, int] = (3, 3),
                 upsample: int = 2, mlp_ratio: float = 3.0) -> None:
        super().__init__()
        if upsample < 1 or hop % upsample or (hop // upsample) % 2:
            raise ValueError(f"hop {hop} must be a multiple of 2·upsample (upsample={upsample})")
        fine = dim // 2
        self.stft_hop = hop // upsample
        self.n_fft = 4 * self.stft_hop
        self.input = nn.Conv1d(latent_dim, dim, 7, padding=3)
        self.coarse = nn.Sequential(*(ConvNeXt1d(dim, mlp_ratio) for _ in range(blocks[0])))
        self.up = (nn.ConvTranspose1d(dim, fine, 2 * upsample, stride=upsample, padding=(upsample + 1) // 2,
                                      output_padding=upsample % 2)  # exactly T · upsample frames, as SEANet's
                   if upsample > 1 else nn.Conv1d(dim, fine, 1))
        self.fine = nn.Sequential(*(ConvNeXt1d(fine, mlp_ratio) for _ in range(blocks[1])))
        self.norm = nn.LayerNorm(fine)
        self.head = nn.Linear(fine, self.n_fft + 2)  # log-magnitude and phase of n_fft / 2 + 1 bins
        self.register_buffer("window", torch.hann_window(self.n_fft), persistent=False)
        # samples each side that the overlap-add adds to the convolutions' reach (see `receptive_field`)
        self.output_reach = self.n_fft // 2

    def forward(self, z: Tensor) -> Tensor:
        h = self.up(self.coarse(self.input(z)))  # (B, C, T · upsample)
        h = self.head(self.norm(self.fine(h).transpose(1, 2)))  # (B, T', n_fft + 2)
        log_magnitude, phase = h.float().chunk(2, dim=-1)  # the FFT runs in float32 (no half FFTs on CPU)
        magnitude = log_magnitude.clamp(max=6.0).exp()  # |X| <= e^6, as Vocos clips at 1e2
        spectrum = torch.complex(magnitude * phase.cos(), magnitude * phase.sin())  # torch.polar: 2x slower on CPU
        frames = torch.fft.irfft(spectrum, n=self.n_fft)  # (B, T', n_fft)
        return overlap_add(frames, self.window.float(), self.stft_hop)[:, None]


def overlap_add(frames: Tensor, window: Tensor, hop: int) -> Tensor:
    """Windowed overlap-add of frames (B, T, N), N = k·hop, frame t centred on samples [t·hop, (t+1)·hop),
    divided by the squared window's envelope -> (B, T · hop). With a Hann window and k >= 2 the envelope
    is positive on every kept sample (the head uses k = 4).

    Computed as k shifted sums of hop-long blocks (one add per block of every frame), not `F.fold`.
    """
    b, t, n = frames.shape
    k = n // hop
    if k * hop != n or (n - hop) % 2:
        raise ValueError(f"frame length {n} must be a multiple of the hop {hop} with (length - hop) even")

    def add_shifted(blocks: Tensor) -> Tensor:  # (B, T, k, hop) -> (B, (T + k - 1) · hop)
        out = blocks.new_zeros(blocks.shape[0], t + k - 1, hop)
        for j in range(k):
            out[:, j:j + t] += blocks[:, :, j]
        return out.flatten(1)

    y = add_shifted((frames * window).view(b, t, k, hop))
    envelope = add_shifted(window.square().expand(1, t, n).reshape(1, t, k, hop))[0]
    kept = slice((n - hop) // 2, (n - hop) // 2 + t * hop)  # the ends' envelope falls to 0: crop, then divide
    return y[:, kept] / envelope[kept]
