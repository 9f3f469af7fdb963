"""SEANet convolutional encoder/decoder for waveforms, as used by neural audio codecs.

SEANet (Tagliasacchi et al., 2020, https://arxiv.org/abs/2009.02095) as adapted by SoundStream
(https://arxiv.org/abs/2107.03312), EnCodec (https://arxiv.org/abs/2210.13438, facebookresearch/encodec)
and DAC (https://arxiv.org/abs/2306.06546, descriptinc/descript-audio-codec): a stack of
(residual units -> strided conv) blocks, the channels doubling at each downsampling, mirrored by
transposed convolutions in the decoder. The hop is the product of the strides (2·4·5·8 = 320 samples,
50 frames/s at 16 kHz).

Our choices: non-causal convolutions with zero "same" padding (so a frame depends only on a finite
window of samples, the `receptive_field`, which makes chunked encoding exact), weight normalisation
on every convolution as in EnCodec/DAC, ELU activations (computed without torch's CPU kernel at
inference, see `ELU`), and an optional channel cap so small models keep a narrow bottleneck.

Inference (autograd off) runs the same layers as an `inference_plan`: weight norm folded into plain
weights once (cached until a parameter changes; recomputing it per call also defeats oneDNN's fast path),
the narrow full-rate convolutions as one matrix product per tap (`conv_by_taps`), and each run of
stride-1 layers window by window (`Tiled`) so activations stay in cache. Outputs equal the training
path's to float rounding (tested).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import partial
from typing import Callable

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.nn.utils.parametrizations import weight_norm

from zoo.nn.cache import cached_on, drop_cached, without_cached


@dataclass(frozen=True)
class SEANetConfig:
    """Args:
        channels: C, width of the first (full-rate) level; doubles after every downsampling.
        max_channels: cap on the width of any level (keeps small models small).
        latent_dim: D, channels of the latent sequence at the frame rate.
        strides: downsampling factors, encoder order; the hop is their product.
        dilations: one residual unit per dilation at every level.
        kernel_size: of the first and last convolutions.
        residual_kernel_size: of the dilated convolution in each residual unit.
    """

    channels: int = 16
    max_channels: int = 256
    latent_dim: int = 64
    strides: tuple[int, ...] = (2, 4, 5, 8)
    dilations: tuple[int, ...] = (1, 3)
    kernel_size: int = 7
    residual_kernel_size: int = 3

    def width(self, level: int) -> int:
        """Channels at `level` (0 = full rate, len(strides) = frame rate)."""
        return min(self.channels * 2**level, self.max_channels)


def _conv(cin: int, cout: int, kernel: int, stride: int = 1, dilation: int = 1) -> nn.Conv1d:
    """Conv1d with 'same' zero padding for stride 1, and exact hop-aligned padding when strided."""
    if stride == 1:
        padding = dilation * (kernel - 1) // 2
    else:  # kernel = 2·stride: pad ceil(stride/2) each side so T_out = T_in / stride exactly
        padding = (kernel - stride + 1) // 2
    return weight_norm(nn.Conv1d(cin, cout, kernel, stride=stride, padding=padding, dilation=dilation))


class ELU(nn.Module):
    """ELU (alpha = 1) that computes `elu` at inference: the same function to within 1e-7, over 10x
    faster on CPU.

    Why: torch's CPU ELU evaluates expm1, which is not vectorised, while exp is. On one thread the
    activations took about 60% of the codec's encode + decode time (torch profiler, 10 s of audio).
    Training (autograd on) uses `F.elu`, whose backward needs no extra saved tensors.
    """

    def forward(self, x: Tensor) -> Tensor:
        if torch.is_grad_enabled() and x.requires_grad:
            return F.elu(x)
        return elu(x)


def elu(x: Tensor, out: Tensor | None = None) -> Tensor:
    """ELU without autograd: max(x, 2^(min(x, 0) · log2 e) - 1), as exp(x) - 1 >= x; one buffer (`out`, of
    x's shape, when given: a caller can place the activation inside a larger, padded buffer).

    torch's vectorised exp2 is 2.5x faster than its exp on this CPU; the result is as close to the exact
    ELU as torch's own (within 7e-8 on [-30, 30]).
    """
    if out is None and (x.ndim < 2 or x.numel() <= 2 * _BLOCK):
        y = x.clamp(max=0).mul_(_LOG2_E).exp2_().sub_(1)
        return torch.maximum(y, x, out=y)
    # A whole-file activation (tens of MB) would stream through memory five times: run the five passes
    # block by block along time so that each block stays in cache (the same values).
    y = torch.empty_like(x) if out is None else out  # in x's layout (time-major stays time-major)
    if not x.numel():
        return y
    step = max(_BLOCK // (x.numel() // x.shape[-1]), 256)
    for start in range(0, x.shape[-1], step):
        xs, ys = x[..., start:start + step], y[..., start:start + step]
        torch.clamp(xs, max=0, out=ys).mul_(_LOG2_E).exp2_().sub_(1)
        torch.maximum(ys, xs, out=ys)
    return y


_LOG2_E = 1 / math.log(2)
_BLOCK = 2**17  # elements per block of `elu`: 512 kB, in L2


class ResidualUnit(nn.Module):
    """x + conv1x1(ELU(dilated conv(ELU(x)))), with a bottleneck of half the channels (EnCodec)."""

    def __init__(self, channels: int, kernel: int, dilation: int) -> None:
        super().__init__()
        hidden = max(channels // 2, 1)
        self.block = nn.Sequential(
            ELU(), _conv(channels, hidden, kernel, dilation=dilation), ELU(), _conv(hidden, channels, 1)
        )

    def forward(self, x: Tensor) -> Tensor:
        """x: (B, C, T) -> (B, C, T)."""
        return x + self.block(x)


class _SEANet(nn.Module):
    """What the encoder and decoder share: `net` trains (weight norm, autograd); without autograd the
    same layers run as an `inference_plan`, rebuilt whenever a parameter changes (optimiser step, load)."""

    net: nn.Sequential

    def forward(self, x: Tensor) -> Tensor:
        if torch.is_grad_enabled():
            return self.net(x)
        for stage in self._inference_plan():
            x = stage(x)
        return x

    def _inference_plan(self) -> list["Tiled"]:
        def make(params: tuple[Tensor, ...]) -> list["Tiled"]:
            on_cpu = params[0].device.type == "cpu"  # windows help CPU caches, not GPUs
            return inference_plan(self.net, tile=16384 if on_cpu else 2**62)

        return cached_on(self, self.parameters(), make, "_stages")

    def train(self, mode: bool = True) -> "_SEANet":
        drop_cached(self, "_stages")  # drop the folded weights while training
        return super().train(mode)

    def __getstate__(self) -> dict:
        return without_cached(self.__dict__, "_stages")  # rebuilt, not copied


class SEANetEncoder(_SEANet):
    """Waveform (B, 1, S) -> latents (B, D, S / hop); S must be a multiple of the hop."""

    def __init__(self, config: SEANetConfig) -> None:
        super().__init__()
        c = config
        layers: list[nn.Module] = [_conv(1, c.width(0), c.kernel_size)]
        for level, stride in enumerate(c.strides):
            layers += [ResidualUnit(c.width(level), c.residual_kernel_size, d) for d in c.dilations]
            layers += [ELU(), _conv(c.width(level), c.width(level + 1), 2 * stride, stride=stride)]
        layers += [ELU(), _conv(c.width(len(c.strides)), c.latent_dim, 3)]
        self.net = nn.Sequential(*layers)


class SEANetDecoder(_SEANet):
    """Latents (B, D, T) -> waveform (B, 1, T · hop), unbounded (the caller clamps)."""

    def __init__(self, config: SEANetConfig) -> None:
        super().__init__()
        c = config
        top = len(c.strides)
        layers: list[nn.Module] = [_conv(c.latent_dim, c.width(top), c.kernel_size)]
        for level, stride in zip(range(top, 0, -1), reversed(c.strides)):
            up = nn.ConvTranspose1d(c.width(level), c.width(level - 1), 2 * stride, stride=stride,
                                    padding=(stride + 1) // 2, output_padding=stride % 2)
            layers += [ELU(), weight_norm(up)]
            layers += [ResidualUnit(c.width(level - 1), c.residual_kernel_size, d) for d in c.dilations]
        layers += [ELU(), _conv(c.width(0), 1, c.kernel_size)]
        self.net = nn.Sequential(*layers)


# ----------------------------------------------------------------------------------------- inference


def inference_plan(net: nn.Sequential, tile: int) -> list["Tiled"]:
    """`net` as `Tiled` stages without autograd, weight norm folded: a stage is a transposed conv (if
    any), the stride-1 layers after it, and the strided conv that ends them (if any)."""
    stages: list[Tiled] = []
    up, run = None, []
    for module in net:
        layer = valid_layer(module)
        if layer is not None:
            run.append(layer)
        elif isinstance(module, nn.ConvTranspose1d):
            if up is not None or run:
                stages.append(Tiled(run, tile, up=up))
            up, run = Resample(module), []
        else:
            stages.append(Tiled(run, tile, up=up, down=Resample(module)))
            up, run = None, []
    if up is not None or run:
        stages.append(Tiled(run, tile, up=up))
    return stages


def valid_layer(module: nn.Module) -> tuple[Callable[[Tensor], Tensor], int] | None:
    """A stride-1 layer as (f, reach): f maps a window (B, C, L) to its L - 2·reach central outputs (no
    padding: `Tiled` supplies it); None for the strided and transposed convolutions."""
    if isinstance(module, ELU):
        return elu, 0
    if isinstance(module, ResidualUnit):
        block = [valid_layer(m) for m in module.block]
        reach = sum(r for _, r in block)

        def residual(x: Tensor) -> Tensor:
            y = x
            for f, _ in block:
                y = f(y)
            return y.add_(x[..., reach:x.shape[-1] - reach])

        return residual, reach
    if isinstance(module, nn.Conv1d) and module.stride[0] == 1:
        (k,), (dilation,) = module.kernel_size, module.dilation
        reach = dilation * (k - 1) // 2
        assert module.padding[0] == reach, "SEANet's stride-1 convolutions are 'same' convolutions"
        weight, bias = _folded(module)
        if k > 1 and max(module.in_channels, module.out_channels) <= 16:
            return partial(conv_by_taps, weight=weight, bias=bias, dilation=dilation), reach
        return partial(F.conv1d, weight=weight, bias=bias, dilation=dilation), reach
    if isinstance(module, (nn.Conv1d, nn.ConvTranspose1d)):
        return None
    raise TypeError(f"no inference path for {type(module).__name__}")


def _folded(conv: nn.Module) -> tuple[Tensor, Tensor]:
    """Plain copies of a convolution's weight (weight norm applied) and bias."""
    return conv.weight.detach().clone(), conv.bias.detach().clone()


class Resample:
    """A strided conv (kernel k, stride s: downsampling) or transposed conv (upsampling) without padding:
    `Tiled` feeds it windows and keeps track of where their outputs lie."""

    def __init__(self, conv: nn.Conv1d | nn.ConvTranspose1d) -> None:
        (self.kernel,), (self.stride,), (self.padding,) = conv.kernel_size, conv.stride, conv.padding
        self.weight, self.bias = _folded(conv)
        self.transposed = isinstance(conv, nn.ConvTranspose1d)
        self.output_padding = conv.output_padding[0] if self.transposed else 0
        self.conv = F.conv_transpose1d if self.transposed else F.conv1d
        if self.transposed and self.kernel == 2 * self.stride:  # as a conv1d: see conv_transpose_polyphase
            c, c_out, s = self.weight.shape[0], self.weight.shape[1], self.stride
            self.weight = self.weight.view(c, c_out, 2, s).permute(1, 3, 0, 2).flip(-1).reshape(c_out * s, c, 2)
            self.bias = self.bias.repeat_interleave(s)
            self.conv = conv_transpose_polyphase

    def __call__(self, x: Tensor) -> Tensor:
        return self.conv(x, self.weight, self.bias, self.stride)

    def output_length(self, n: int) -> int:
        """Samples the padded layer makes from n input steps (torch's formulas)."""
        if self.transposed:
            return (n - 1) * self.stride - 2 * self.padding + self.kernel + self.output_padding
        return (n + 2 * self.padding - self.kernel) // self.stride + 1


class Tiled:
    """A stage of the inference plan run window by window along time, each window with the context its
    layers reach: [transposed conv ->] stride-1 layers [-> strided conv].

    Why: run whole, every full-rate activation is a fresh 10 MB per 10 s of audio (16 channels): each
    layer streams through memory, and fresh pages fault in (a quarter of the time on this machine).
    Windows of `tile` samples stay in cache and reuse freed memory. Exact: outside [0, length) every
    activation is reset to zero, the padding the next layer would have seen.
    """

    def __init__(self, layers: list[tuple[Callable[[Tensor], Tensor], int]], tile: int,
                 up: Resample | None = None, down: Resample | None = None) -> None:
        self.layers, self.tile, self.up, self.down = layers, tile, up, down
        self.reach = sum(r for _, r in layers)

    def __call__(self, x: Tensor) -> Tensor:
        """x: (B, C, N) -> (B, C', N · up / down)."""
        down = self.down.stride if self.down else 1
        size = self.up.output_length(x.shape[-1]) if self.up else x.shape[-1]  # at the stride-1 layers' rate
        out = None
        step = max(self.tile // down, 1)
        for start in range(0, size // down, step):
            stop = min(start + step, size // down)
            lo, hi = start, stop  # samples of the stride-1 layers' output that this window needs
            if self.down:
                d = self.down
                lo, hi = start * down - d.padding, (stop - 1) * down - d.padding + d.kernel
            h, lo = self._window(x, lo - self.reach, hi + self.reach, size)
            for f, reach in self.layers:  # lo: the time of h's first sample
                h, lo = _zero_outside(f(h), lo + reach, size)
            if self.down:
                h = self.down(h)
            if out is None:
                out = h.new_empty(*h.shape[:-1], size // down)
            out[..., start:stop] = h
        return out

    def _window(self, x: Tensor, lo: int, hi: int, size: int) -> tuple[Tensor, int]:
        """Samples [lo, hi) of the stage's input at the stride-1 layers' rate (upsampled if `up`), zero
        outside [0, size)."""
        if self.up is None:
            h = x[..., max(lo, 0):hi]
            if lo < 0 or hi > size:
                h = F.pad(h, (max(-lo, 0), max(hi - size, 0)))
            return h, lo
        u = self.up  # output n = i·s - p + j (j < kernel) for input frame i: take every frame reaching [lo, hi)
        first = max((lo + u.padding - u.kernel) // u.stride + 1, 0)
        last = min((hi - 1 + u.padding) // u.stride + 1, x.shape[-1])
        h = u(x[..., first:last])  # starts at sample first · s - p
        begin = first * u.stride - u.padding
        h = F.pad(h, (begin - lo, hi - begin - h.shape[-1]))  # negative padding crops
        return _zero_outside(h, lo, size)


def _zero_outside(h: Tensor, lo: int, size: int) -> tuple[Tensor, int]:
    """Zero the samples of h (its first at time lo) that lie outside [0, size)."""
    if lo < 0:
        h[..., :-lo] = 0
    if lo + h.shape[-1] > size:
        h[..., max(size - lo, 0):] = 0
    return h, lo


def conv_by_taps(x: Tensor, weight: Tensor, bias: Tensor, padding: int = 0, dilation: int = 1) -> Tensor:
    """Stride-1 conv1d as y = b + sum_t W[:, :, t] @ x_padded[:, t·d : t·d + S'] (a batched product per tap).

    Why: on one CPU thread torch's conv1d (oneDNN) runs narrow, long convolutions (at most 16 channels
    over 160 000 samples) well below the GEMM rate; this is 1.2-2x faster for 16 -> 8 channels, 2-4x for
    16 -> 1. A single input channel takes one product over its (small) im2col matrix.

    Args:
        x: (B, C, S); weight: (C', C, K); bias: (C',).
    Returns:
        (B, C', S + 2·padding - dilation·(K - 1)).
    """
    b, k = x.shape[0], weight.shape[-1]
    xp = F.pad(x, (padding, padding)) if padding else x  # (B, C, S + 2p)
    length = xp.shape[-1] - dilation * (k - 1)
    if x.shape[1] == 1:  # im2col: (B, S', K) @ (K, C')
        cols = xp[:, 0].unfold(-1, dilation * (k - 1) + 1, 1)[..., ::dilation]  # (B, S', K)
        return torch.matmul(weight[:, 0], cols.transpose(1, 2)).add_(bias[:, None])
    y = torch.baddbmm(bias[:, None], weight[..., 0].expand(b, -1, -1), xp[..., :length])
    for t in range(1, k):
        y.baddbmm_(weight[..., t].expand(b, -1, -1), xp[..., t * dilation:t * dilation + length])
    return y


def conv_transpose_polyphase(x: Tensor, weight: Tensor, bias: Tensor, stride: int) -> Tensor:
    """Transposed conv1d of kernel 2·stride without padding, as one (fast) conv1d over its s output phases.

    Why: torch's CPU conv_transpose1d is 1.5-2.5x slower on one thread for these shapes (and far slower on a
    strided window). Output sample m·s + r is W[..., r]ᵀ x[m] + W[..., r + s]ᵀ x[m - 1]: for each phase r a
    kernel-2 convolution of x, all s phases in one conv1d with C'·s output channels, then interleaved.

    Args:
        x: (B, C, N); weight: (C' · s, C, 2), the layer's (C, C', 2s) weight regrouped by phase (see
        `Resample`); bias: (C' · s,), the layer's repeated s times.
    Returns:
        (B, C', (N + 1) · s), what conv_transpose1d(x, w, b, s) gives.
    """
    y = F.conv1d(x.contiguous(), weight, bias, padding=1)  # (B, C'·s, N + 1): phases of each output block
    b, _, m = y.shape
    return y.view(b, -1, stride, m).transpose(-1, -2).reshape(b, -1, m * stride)


def two_tap(frames: Tensor, u0: Tensor, u1: Tensor, u01: Tensor, bias: Tensor | None) -> Tensor:
    """y[t] = frames[t] @ u0 + frames[t + 1] @ u1 + bias, t < n, with three matrix products per two outputs instead
    of four (Winograd's minimal filtering F(2, 2)): for d0, d1, d2 = frames 2i, 2i + 1, 2i + 2,

        y[2i] = d1 @ (u0 + u1) + (d0 - d1) @ u0,    y[2i + 1] = d1 @ (u0 + u1) + (d2 - d1) @ u1.

    A strided convolution of kernel 2·s is such a two-tap product over frames of s samples (`strided_taps`), and a
    transposed one over its input steps (`transposed_taps`); SEANet's wide ones are GEMM-bound, so a quarter fewer
    multiply-adds is up to a quarter less time (`two_tap_pays`). The transform's coefficients are 0 and ±1:
    the error stays the direct sum's (measured: below oneDNN's own convolution against float64).

    Args:
        frames: (B, n + 1, K), each row contiguous (a time-major activation seen as frames); u0, u1: (K, N);
            u01 = u0 + u1; bias: (N,) or None.
    Returns:
        (B, n, N), contiguous.
    """
    b, rows, _ = frames.shape
    n = rows - 1
    y = frames.new_empty(b, n, u0.shape[1])
    pairs = n - n % 2

    def product(a: Tensor, u: Tensor, out: Tensor) -> Tensor:  # out = bias + a @ u
        return torch.mm(a, u, out=out) if bias is None else torch.addmm(bias, a, u, out=out)

    for f, out in zip(frames, y):
        if pairs:
            d0, d1, d2 = f[0:pairs:2], f[1:pairs:2], f[2:pairs + 1:2]
            even, odd = out[0:pairs:2], out[1:pairs:2]
            product(d1, u01, odd)
            torch.addmm(odd, d0 - d1, u0, out=even)
            odd.addmm_(d2 - d1, u1)
        if n % 2:  # the last output alone
            product(f[n - 1:n], u0, out[n - 1:]).addmm_(f[n:], u1)
    return y


def two_tap_pays(k: int, n: int, rows: int) -> bool:
    """Whether `two_tap` beats oneDNN's convolution for K inputs and N outputs per frame over `rows` frames.

    On one thread it is 1.14-1.9x faster from (K, N) = (256, 640) up to (4096, 1024), as fast at (128, 256), slower
    with narrow outputs ((640, 256): 0.9x, (256, 128): 0.64x), where GEMM's small N wastes its advantage. Its taps
    are three K x N matrices (1.5x the layer's weights), kept and read at every call: only where K·N <= 2^21 (at
    most 24 MiB of taps; Mimi's middle levels keep 20 MiB, its two stride-8 levels would add 96 MiB for about 45 ms
    per 10 s), and for calls of at least N / 4 frames, where the products' work outweighs reading them (a
    stream's few frames per piece go to the convolution)."""
    return k >= 256 and n >= 512 and k * n <= 2**21 and 4 * rows >= n


def strided_taps(weight: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """A strided convolution's weight (C', C, 2s), stride s, as `two_tap`'s (u0, u1, u0 + u1), each (s·C, C'), for
    time-major frames: row k·C + c of frame t is sample t·s + k of channel c."""
    c_out, c, taps = weight.shape
    u = weight.detach().view(c_out, c, 2, taps // 2).permute(2, 3, 1, 0).reshape(2, -1, c_out)
    return u[0].contiguous(), u[1].contiguous(), (u[0] + u[1]).contiguous()


def transposed_taps(weight: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """A transposed convolution's weight (C, C', 2s), stride s, as `two_tap`'s (u0, u1, u0 + u1), each (C, s·C'),
    over its input padded by one zero step on each side: output block t (samples t·s + r, time-major:
    column r·C' + c') is x[t - 1] @ w[..., s + r] + x[t] @ w[..., r]."""
    c, c_out, taps = weight.shape
    u = weight.detach().view(c, c_out, 2, taps // 2).permute(2, 0, 3, 1).reshape(2, c, -1)
    return u[1].contiguous(), u[0].contiguous(), (u[0] + u[1]).contiguous()


def receptive_field(module: nn.Module, input_rate: int = 1) -> int:
    """One-sided reach, in waveform samples, of a stack of Conv1d / ConvTranspose1d layers.

    Computed from the layers (kernel, dilation, stride), so it stays right when the config changes.

    Args:
        module: an encoder (waveform in) or decoder (frames in).
        input_rate: waveform samples per input step: 1 for an encoder, the hop for a decoder.
    """
    reach, rate = 0.0, float(input_rate)  # samples per step at the current layer's input
    for m in module.modules():
        if isinstance(m, nn.ConvTranspose1d):
            reach += (m.kernel_size[0] - 1) / 2 * rate  # taps at the input (coarse) rate
            rate /= m.stride[0]
        elif isinstance(m, nn.Conv1d):
            k, d, s = m.kernel_size[0], m.dilation[0], m.stride[0]
            reach += d * (k - 1) / 2 * rate + (s - 1) * rate
            rate *= s
    return math.ceil(reach)


def chunk_spans(num_frames: int, size: int, context: int) -> list[tuple[int, int, int, int]]:
    """Frames [0, num_frames) in chunks of `size`: (start, stop) kept, (lo, hi) computed, with `context` frames
    on each side (clipped to the input) so that a non-causal stack's kept frames equal a whole-input pass."""
    return [(start, min(start + size, num_frames), max(start - context, 0), min(start + size + context, num_frames))
            for start in range(0, num_frames, size)]
