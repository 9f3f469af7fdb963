"""SEANet layers of the EnCodec lineage (EnCodec, Mimi) with their exact padding rules, and a streaming runner.

EnCodec (Défossez et al., 2022, https://arxiv.org/abs/2210.13438, facebookresearch/encodec) and Mimi
(Kyutai, 2024, https://arxiv.org/abs/2410.00037, kyutai-labs/moshi) pad every convolution themselves:
a causal convolution puts all of its (effective kernel - stride) padding on the left, a non-causal one
splits it (the larger half on the left), and both add "extra" padding on the right so the last window is
full, which makes T = ceil(S / hop) frames. Padding is by reflection (EnCodec), zeros (Mimi) or
replication (Mimi's downsampling). These layers hold plain weights: weight norm is folded in at
conversion, so inference does no reparametrisation.

`Stack` is a sequence of such layers with recurrent layers between them (EnCodec's skip LSTM, Mimi's
transformer). `Stack.stream()` runs it causally on pieces of any size, exactly as on the whole input:
the layers between two recurrent ones have a finite left reach, so each new piece is run with just
enough of the preceding input ("history") in front to make its outputs exact, and the recurrent layers
carry their state. The first outputs wait until every padded layer has seen enough input for its
reflection (`warmup`), as a whole-file pass would. What a piece costs beyond itself is its history,
a few frames; long files run piece by piece with bounded memory and the same result.
"""

from __future__ import annotations

import math
from typing import Any, Callable, Iterable, Iterator

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from zoo.nn.cache import cached_on
from zoo.nn.seanet import ELU, conv_by_taps, elu, strided_taps, transposed_taps, two_tap, two_tap_pays
from zoo.tokenizer import check_fields

PAD_MODES = ("reflect", "constant", "replicate")


def pad1d(x: Tensor, left: int, right: int, mode: str) -> Tensor:
    """F.pad along time; reflection of an input no longer than the padding first appends zeros (EnCodec's rule)."""
    if not left and not right:
        return x
    if mode != "reflect":
        return F.pad(x, (left, right), mode=mode)
    extra = max(max(left, right) - x.shape[-1] + 1, 0)
    if extra:
        x = F.pad(x, (0, extra))
    y = F.pad(x, (left, right), mode="reflect")
    return y[..., :y.shape[-1] - extra]


class Conv(nn.Module):
    """Conv1d with EnCodec/Mimi padding (see the module docstring), optionally followed by a one-group
    GroupNorm over (channels, time) (EnCodec 48 kHz's "time_group_norm").

    x: (B, C, S) -> (B, C', ceil(S / stride)).
    """

    elu_before = False  # at (fast) inference, apply the ELU that precedes it (a `DeferredELU` left it undone)

    def __init__(self, cin: int, cout: int, kernel: int, stride: int = 1, dilation: int = 1, *, causal: bool,
                 pad_mode: str, group_norm: bool = False, groups: int = 1, bias: bool = True, fast: bool = False) -> None:
        super().__init__()
        self.fast = fast  # at inference, the last conv (one output channel) as a product per tap; ELU into the padding
        if pad_mode not in PAD_MODES:
            raise ValueError(f"pad_mode must be one of {PAD_MODES}, got {pad_mode!r}")
        self.conv = nn.Conv1d(cin, cout, kernel, stride, dilation=dilation, groups=groups, bias=bias)
        self.norm = nn.GroupNorm(1, cout) if group_norm else None
        self.causal, self.pad_mode, self.stride = causal, pad_mode, stride
        self.reach = (kernel - 1) * dilation + 1 - stride  # padding_total in EnCodec's words

    def pads(self, length: int) -> tuple[int, int]:
        """(left, right) padding for an input of `length` samples: the right side gets the extra samples that
        complete the last stride, so the output has ceil(length / stride) samples."""
        extra = -length % self.stride
        if self.causal:
            return self.reach, extra
        return self.reach - self.reach // 2, self.reach // 2 + extra

    def forward(self, x: Tensor) -> Tensor:
        if self.elu_before and not torch.is_grad_enabled():
            return self.after_elu(x)
        left, right = self.pads(x.shape[-1])
        if torch.is_grad_enabled():
            y = self._torch_conv(x, left, right)
        elif self._by_taps(x.shape[-1]):
            y = self._two_tap(padded_time_major(x, left, right, self.pad_mode))
            y = y if self.fast else y.contiguous()  # torch's kernels after it take (B, C, T) as the reference's do
        elif self.conv.groups != 1 or not self.fast:
            y = self._torch_conv(x, left, right)
        else:
            y = self._inference(x, left, right)
        return y if self.norm is None else self.norm(y)

    def _by_taps(self, length: int) -> bool:
        """Whether inference on `length` samples runs as `two_tap` over frames (a wide strided conv of kernel
        2·stride, fast or not: fewer multiply-adds, and no less accurate than torch's kernels)."""
        conv = self.conv
        return (self.stride > 1 and conv.kernel_size[0] == 2 * self.stride and conv.dilation[0] == 1
                and conv.groups == 1 and self.norm is None
                and two_tap_pays(self.stride * conv.in_channels, conv.out_channels, -(-length // self.stride)))

    def _two_tap(self, xp: Tensor) -> Tensor:
        """The convolution of an already padded, time-major xp (B, C, (n + 1)·stride) -> (B, C', n), time-major."""
        b, c, length = xp.shape
        taps = cached_on(self, self.conv.weight, strided_taps, "_taps")
        frames = xp.transpose(1, 2).reshape(b, length // self.stride, self.stride * c)  # a view: xp is time-major
        return two_tap(frames, *taps, self.conv.bias).transpose(1, 2)

    def _torch_conv(self, x: Tensor, left: int, right: int) -> Tensor:
        """torch's convolution of x padded by (left, right). Zeros reaching no further right than left are the
        convolution's own padding, its surplus outputs on the right dropped: no padded copy of x (for a wide
        activation, a fill and a copy of tens of MB), and the same values bit for bit (the same kernel)."""
        conv = self.conv
        if self.pad_mode != "constant" or right > left:
            return conv(pad1d(x, left, right, self.pad_mode))
        y = F.conv1d(x, conv.weight, conv.bias, self.stride, left, conv.dilation, conv.groups)
        return y[..., :-(-x.shape[-1] // self.stride)]

    def after_elu(self, x: Tensor) -> Tensor:
        """self(ELU(x)) (fast inference): the ELU writes straight into the padded input buffer, whose padding is
        then filled from it (the padding of ELU(x) is ELU of x's padding), saving the padding's copy."""
        left, right = self.pads(x.shape[-1])
        if x.shape[-1] <= max(left, right) or self.conv.groups != 1:
            y = self._inference(elu(x), left, right)
        else:
            xp = padded_time_major(x, left, right, self.pad_mode, elu, time_major=self.norm is None)
            y = self._two_tap(xp) if self._by_taps(x.shape[-1]) else self._inference(xp, 0, 0)
        return y if self.norm is None else self.norm(y)

    def _inference(self, x: Tensor, left: int, right: int) -> Tensor:
        conv = self.conv
        if conv.out_channels == 1 and self.stride == 1:  # a decoder's last conv: one product per tap, 3-4x faster
            return conv_by_taps(pad1d(x, left, right, self.pad_mode), conv.weight, conv.bias, dilation=conv.dilation[0])
        if self.norm is not None:  # GroupNorm (EnCodec 48 kHz) is slow on time-major input: keep (B, C, T)
            return self._torch_conv(x, left, right)
        weight = cached_on(self, conv.weight, lambda w: w.detach().unsqueeze(2).contiguous(memory_format=torch.channels_last))
        return time_major_conv(pad1d(x, left, right, self.pad_mode), weight, conv.bias, self.stride, conv.dilation[0])


def padded_time_major(x: Tensor, left: int, right: int, mode: str, fill: Callable[..., Tensor] | None = None,
                      time_major: bool = True) -> Tensor:
    """x (B, C, n) padded by (left, right) as `pad1d` pads it, into a new buffer stored time-major (or as x's
    layout, `time_major=False`); `fill(x, out=)` writes the middle instead of a copy (an activation of x, whose
    padding is the activation of x's padding: the padding is filled from the middle after it). Reflection needs
    n > max(left, right) (`pad1d` handles shorter inputs)."""
    n = x.shape[-1]
    xp = time_major_empty(x.shape[0], x.shape[1], left + n + right, x) if time_major else \
        x.new_empty(*x.shape[:-1], left + n + right)
    middle = xp[..., left:left + n]
    fill(x, out=middle) if fill is not None else middle.copy_(x)
    if mode == "constant":
        xp[..., :left] = 0
        xp[..., left + n:] = 0
    elif mode == "replicate":
        xp[..., :left] = xp[..., left:left + 1]
        xp[..., left + n:] = xp[..., left + n - 1:left + n]
    else:  # reflection about the first and last samples
        xp[..., :left] = xp[..., left + 1:2 * left + 1].flip(-1)
        xp[..., left + n:] = xp[..., left + n - 1 - right:left + n - 1].flip(-1)
    return xp


def time_major_empty(b: int, c: int, t: int, like: Tensor) -> Tensor:
    """An empty (B, C, T) tensor stored time-major: a (B, T, C) tensor seen through a transpose."""
    return like.new_empty(b, t, c).transpose(1, 2)


def time_major_conv(x: Tensor, weight: Tensor, bias: Tensor | None, stride: int = 1, dilation: int = 1,
                    padding: int = 0) -> Tensor:
    """conv1d(x, weight) run as a channels-last conv2d: x (B, C, T), weight (C', C, 1, K) channels-last ->
    (B, C', T') stored time-major.

    Why: on one CPU thread oneDNN's channels-last kernels are 1.3-2.3x faster than conv1d's for SEANet's
    convolutions (most for the strided ones), and a time-major output feeds the next one without a copy; a
    time-major input is taken as it is."""
    y = F.conv2d(x.unsqueeze(2).contiguous(memory_format=torch.channels_last), weight, bias, (1, stride),
                 (0, padding), (1, dilation))
    return y.squeeze(2)


class DeferredELU(ELU):
    """An ELU before a fast `Conv`: at inference it passes its input on and the Conv applies it
    (`Conv.after_elu`), writing the activation straight into its padded buffer; otherwise an ELU."""

    def __init__(self, conv: Conv) -> None:
        super().__init__()
        conv.elu_before = True

    def forward(self, x: Tensor) -> Tensor:
        return super().forward(x) if torch.is_grad_enabled() else x


class ConvTranspose(nn.Module):
    """ConvTranspose1d trimmed of its (kernel - stride) overhang: on the right when causal (EnCodec's
    trim_right_ratio = 1), split otherwise. x: (B, C, T) -> (B, C', T · stride)."""

    def __init__(self, cin: int, cout: int, kernel: int, stride: int, *, causal: bool, group_norm: bool = False,
                 groups: int = 1, bias: bool = True, fast: bool = False) -> None:
        super().__init__()
        self.fast = fast  # at inference, as a polyphase conv1d
        self.conv = nn.ConvTranspose1d(cin, cout, kernel, stride, groups=groups, bias=bias)
        self.norm = nn.GroupNorm(1, cout) if group_norm else None
        self.causal, self.stride, self.overhang = causal, stride, kernel - stride

    def forward(self, x: Tensor) -> Tensor:
        conv = self.conv
        wide = two_tap_pays(conv.in_channels, self.stride * conv.out_channels, x.shape[-1] + 1)  # fast or not
        if (self.fast or wide) and not torch.is_grad_enabled() and conv.groups == 1 and self.overhang == self.stride:
            y = self._polyphase(x, wide)  # 1.5-2.5x faster on CPU than torch's
            # GroupNorm is slow on time-major input; torch's kernels after it take (B, C, T) as the reference's do
            y = y if self.norm is None and self.fast else y.contiguous()
        else:
            y = conv(x)
        if self.norm is not None:  # over the untrimmed output, as released
            y = self.norm(y)
        right = self.overhang if self.causal else self.overhang // 2
        return y[..., self.overhang - right:y.shape[-1] - right]

    def _polyphase(self, x: Tensor, wide: bool) -> Tensor:
        """The transposed convolution as one channels-last conv1d over its s output phases (see
        `zoo.nn.seanet.conv_transpose_polyphase`), the phases ordered phase-major so that the output, stored
        time-major, is already interleaved: (B, C, N) -> (B, C', (N + 1) · s). Wide ones as `two_tap` products
        over the input steps instead (a quarter fewer multiply-adds)."""
        s = self.stride
        b, c, n = x.shape
        if wide:  # (the only way in when not `fast`)
            taps = cached_on(self, self.conv.weight, transposed_taps, "_taps")
            bias = None if self.conv.bias is None else self.conv.bias.detach().repeat(s)
            y = two_tap(padded_time_major(x, 1, 1, "constant").transpose(1, 2), *taps, bias)  # (B, N + 1, s · C')
            return y.view(b, (n + 1) * s, -1).transpose(1, 2)

        def regroup(w: Tensor) -> Tensor:  # (C, C', 2s) -> (s · C', C, 1, 2): row r · C' + c' is phase r of c'
            c, c_out = w.shape[0], w.shape[1]
            w = w.detach().view(c, c_out, 2, s).permute(3, 1, 0, 2).flip(-1).reshape(s * c_out, c, 1, 2)
            return w.contiguous(memory_format=torch.channels_last)

        weight = cached_on(self, self.conv.weight, regroup)
        bias = None if self.conv.bias is None else self.conv.bias.detach().repeat(s)
        y = time_major_conv(x, weight, bias, padding=1)  # (B, s · C', N + 1), stored (B, N + 1, s, C')
        b, _, m = y.shape
        return y.transpose(1, 2).reshape(b, m * s, -1).transpose(1, 2)


class ResBlock(nn.Module):
    """SEANet residual unit: shortcut(x) + Conv1x1(ELU(Conv_k,dilated(ELU(x)))), hidden = dim / compress;
    the shortcut is a 1x1 convolution (EnCodec) or the identity (Mimi's true skip)."""

    def __init__(self, dim: int, kernel: int, dilation: int, compress: int, *, true_skip: bool, **conv: Any) -> None:
        super().__init__()
        hidden = dim // compress
        self.block = nn.Sequential(ELU(), Conv(dim, hidden, kernel, dilation=dilation, **conv),
                                   ELU(), Conv(hidden, dim, 1, **conv))
        self.shortcut = nn.Identity() if true_skip else Conv(dim, dim, 1, **conv)

    def forward(self, x: Tensor) -> Tensor:
        if torch.is_grad_enabled():
            return self.shortcut(x) + self.block(x)
        _, conv, _, out = self.block
        if not conv.fast or out.norm is not None or getattr(self.shortcut, "norm", None) is not None:
            return self.block(x).add_(self.shortcut(x))  # the same sum, in the block's buffer
        # fast: the ELU into the padded buffer, and the 1x1 convolution, its bias and the 1x1 shortcut as one chain
        # of matrix products into one buffer (no separate sum, and GEMM instead of conv1d's slow 1x1 path)
        # (time-major: the products run as (B, T, C) @ (C, C'), whose output is time-major again)
        h = elu(conv.after_elu(x)).transpose(1, 2)  # (B, T, hidden)
        b, xt = x.shape[0], x.transpose(1, 2)
        w, bias = out.conv.weight[..., 0].t().expand(b, -1, -1), out.conv.bias
        if isinstance(self.shortcut, nn.Identity):
            return torch.baddbmm(xt, h, w).add_(bias).transpose(1, 2)
        s = self.shortcut.conv
        y = torch.baddbmm(bias + s.bias, xt, s.weight[..., 0].t().expand(b, -1, -1)).baddbmm_(h, w)
        return y.transpose(1, 2)


class SkipLSTM(nn.Module):
    """x + LSTM(x) over time (EnCodec). x: (B, C, T) -> (B, C, T); `state` carries (h, c) between pieces."""

    recurrent = True

    def __init__(self, dim: int, num_layers: int) -> None:
        super().__init__()
        self.lstm = nn.LSTM(dim, dim, num_layers)

    def forward(self, x: Tensor, state: Any = None) -> tuple[Tensor, Any]:
        seq = x.permute(2, 0, 1)  # (T, B, C)
        y, state = self.lstm(seq, state)
        return (y + seq).permute(1, 2, 0), state


def check_seanet(c: Any, **bounds: tuple[float, float]) -> int:
    """Check the SEANet fields `seanet_layers` reads (and a config's own `bounds`) before anything is built;
    returns the SEANet's weight estimate, its widest levels: about 20·(num_filters·2^levels)² over both sides."""
    check_fields(c, sample_rate=(1, 384_000), channels=(1, 8), num_filters=(1, 4096), ratios=(1, 64),
                 dimension=(1, 16384), num_residual_layers=(1, 16), residual_kernel_size=(1, 63), kernel_size=(1, 63),
                 last_kernel_size=(1, 63), dilation_base=(1, 16), compress=(1, 64), lstm_layers=(0, 16), **bounds)
    if not 1 <= len(c.ratios) <= 16:
        raise ValueError(f"ratios holds 1 to 16 strides, got {c.ratios}")
    return 20 * (c.num_filters * 2 ** len(c.ratios))**2


def seanet_layers(c: Any, decoder: bool, fast: bool = False) -> list[nn.Module]:
    """The SEANet layer list of EnCodec and Mimi (module i here is `model.i` in the official code), encoder or
    decoder; `c` has EnCodec's field names (`EncodecConfig`, `MimiConfig`).

    fast: at inference, run the transposed convolutions as polyphase convolutions, a one-channel output conv
    as a product per tap, each ELU before a convolution straight into its padded input (`DeferredELU`) and a
    residual unit's 1x1 convolution and 1x1 shortcut as one chain of matrix products (together 1.3x faster on
    one thread for EnCodec; the audio moves by float rounding, about 1e-7 for EnCodec, a little over 1e-5 for
    Mimi's decoder, so Mimi keeps torch's kernels in its encoder and its decoder's top level, see `Mimi`). Fast or
    not, wide strided and transposed convolutions run as `two_tap` products at inference."""
    conv = dict(causal=c.causal, pad_mode=c.pad_mode, group_norm=c.group_norm, fast=fast)
    res = dict(compress=c.compress, true_skip=c.true_skip, **conv)

    def units(dim: int) -> list[nn.Module]:
        return [ResBlock(dim, c.residual_kernel_size, c.dilation_base**j, **res) for j in range(c.num_residual_layers)]

    top = c.num_filters * 2 ** len(c.ratios)
    lstm = [SkipLSTM(top, c.lstm_layers)] if c.lstm_layers else []
    def elu_conv(*args: int) -> list[nn.Module]:  # ELU, Conv
        layer = Conv(*args, **conv)
        return [DeferredELU(layer) if fast else ELU(), layer]

    if not decoder:
        layers: list[nn.Module] = [Conv(c.channels, c.num_filters, c.kernel_size, **conv)]
        for level, ratio in enumerate(reversed(c.ratios)):
            dim = c.num_filters * 2**level
            layers += [*units(dim), *elu_conv(dim, 2 * dim, 2 * ratio, ratio)]
        return layers + lstm + elu_conv(top, c.dimension, c.last_kernel_size)
    layers = [Conv(c.dimension, top, c.kernel_size, **conv), *lstm]
    for level, ratio in enumerate(c.ratios):
        dim = top // 2**level
        layers += [ELU(), ConvTranspose(dim, dim // 2, 2 * ratio, ratio, causal=c.causal, group_norm=c.group_norm,
                                        fast=fast),
                   *units(dim // 2)]
    return layers + elu_conv(c.num_filters, c.channels, c.last_kernel_size)


# ----------------------------------------------------------------------------------------- stacks


def _is_recurrent(layer: nn.Module) -> bool:
    return getattr(layer, "recurrent", False)


def _walk(layer: nn.Module):
    """The convolutions of a layer in the order data meets them (a residual block's branch; its 1x1 shortcut
    neither reaches back nor pads)."""
    if isinstance(layer, (Conv, ConvTranspose)):
        yield layer
    elif isinstance(layer, ResBlock):
        for m in layer.block:
            yield from _walk(m)


def _run(layers: list[nn.Module], x: Tensor, head: int = 0, tail: int = 0) -> Tensor:
    """`layers` in order (a recurrent one from no state); the first `head` and the last `tail` of them window by
    window (`tiled`)."""
    n = len(layers)
    if head:
        x = tiled(Segment(layers[:head]), x, TILE_SAMPLES)
    for layer in layers[head:n - tail]:
        x = layer(x)[0] if _is_recurrent(layer) else layer(x)
    if tail:
        seg = Segment(layers[n - tail:])
        x = tiled(seg, x, max(TILE_SAMPLES // seg.up, 1))
    return x


class Segment:
    """Layers between two recurrent ones: a causal stack whose rate changes by `down` (strided convs) or
    `up` (transposed convs), with the history it needs per piece and the input it needs before its
    first output (for reflection/replication padding). At inference its first `head` and last `tail` layers
    run window by window (`tiled`, see `Stack.forward`)."""

    def __init__(self, layers: list[nn.Module], head: int = 0, tail: int = 0) -> None:
        self.layers, self.head, self.tail = layers, head, tail
        rate = 1.0  # output samples per input sample at the current layer's input
        garbage = 0  # leading outputs made wrong by a piece's own left padding, at the current rate
        need = 1.0  # input samples the first piece must hold, from the padded layers' point of view
        for conv in (c for layer in layers for c in _walk(layer)):
            if isinstance(conv, Conv):
                if not conv.causal:
                    raise ValueError("only causal stacks stream")
                if conv.pad_mode != "constant":
                    need = max(need, (conv.reach + 1) / rate)
                garbage = math.ceil((garbage + conv.reach) / conv.stride)
                rate /= conv.stride
            else:
                garbage = garbage * conv.stride + conv.overhang
                rate *= conv.stride
        self.down = round(1 / rate) if rate < 1 else 1
        self.up = round(rate) if rate >= 1 else 1
        self.history = garbage * self.down if rate < 1 else math.ceil(garbage / self.up)  # input samples
        self.warmup = math.ceil(need / self.down) * self.down

    def __call__(self, x: Tensor) -> Tensor:
        return _run(self.layers, x) if torch.is_grad_enabled() else _run(self.layers, x, self.head, self.tail)


class Stack(nn.Module):
    """A SEANet encoder or decoder: `layers` in order, recurrent ones (SkipLSTM, a transformer) taking a state."""

    def __init__(self, layers: list[nn.Module]) -> None:
        super().__init__()
        self.layers = nn.ModuleList(layers)

    def forward(self, x: Tensor) -> Tensor:
        """Whole-input pass. x: (B, C, S) -> (B, C', S').

        At inference a causal stack runs its wide, fast-rate ends (the levels before the first recurrent layer and
        after the last one whose weights are small beside their activations, `_tiled_ends`) window by window
        (`tiled`), so that each window's activations stay in cache and reuse memory instead of faulting in fresh
        pages; the same values to float rounding (convolutions over other lengths), as a stream gives.
        """
        head, tail = self._tiled_ends() if not torch.is_grad_enabled() else (0, len(self.layers))
        return _run(list(self.layers), x, head, len(self.layers) - tail)

    def run_many(self, xs: Iterable[Tensor]) -> Iterator[Tensor]:
        """Whole-input passes over independent inputs of one shape (B, C, S) (EnCodec 48 kHz's segments), yielding
        their outputs in order. Each input goes through the layers around the recurrent ones alone, and the
        recurrent layers run once over all of them as one batch.

        Why: a recurrent step on one input is a matrix-vector product bound by memory traffic (EnCodec's skip LSTM:
        4 MB of weights per layer and step), and a batch shares each weight load (8 segments cost 2.2x one on one
        thread); the convolutions are best one input at a time, their activations being large. The same values as
        `forward` per input, to float rounding; the last layers run lazily, one output held at a time.
        """
        runs: list[list[nn.Module]] = [[]]  # the layers between recurrent ones
        for layer in self.layers:
            if _is_recurrent(layer):
                runs.append([])
            else:
                runs[-1].append(layer)
        recurrent = [layer for layer in self.layers if _is_recurrent(layer)]
        hs = [_run(runs[0], x) for x in xs]
        for layer, after in zip(recurrent, runs[1:]):
            y, _ = layer(torch.cat(hs))
            hs = y.split([h.shape[0] for h in hs])
            if after is not runs[-1]:
                hs = [_run(after, h) for h in hs]
        yield from (_run(runs[-1], h) for h in hs) if recurrent else hs

    def _tiled_ends(self) -> tuple[int, int]:
        """(head, tail): the layers from each end up to the first recurrent one that run window by window,
        layers[:head] and layers[tail:]; (0, len) unless every convolution is causal. A layer joins while each of
        its convolutions outputs more per window of TILE_SAMPLES (at that end's outer rate) than it has weights:
        deeper, every window would re-read more weights than it makes."""
        n = len(self.layers)
        convs = [c for layer in self.layers for c in _walk(layer)]
        if not convs or not all(c.causal for c in convs):
            return 0, n

        def reach(order: list[nn.Module], inward: bool) -> int:
            """How many layers of `order` (from an end inwards) join; `inward`: data flows into the stack."""
            rate = 1.0  # samples per outer sample at the current point
            for count, layer in enumerate(order):
                if _is_recurrent(layer):
                    return count
                for conv in (list(_walk(layer)) if inward else list(_walk(layer))[::-1]):
                    up = isinstance(conv, ConvTranspose)
                    # rate of the output: inwards a Conv divides it, outwards (going back) we stand at the output
                    out = (rate * conv.stride if up else rate / conv.stride) if inward else rate
                    if conv.conv.weight.numel() > conv.conv.out_channels * TILE_SAMPLES * out:
                        return count
                    rate = out if inward else (rate / conv.stride if up else rate * conv.stride)
            return len(order)

        head = reach(list(self.layers), inward=True)
        tail = n - reach(list(self.layers)[::-1], inward=False)
        return head, max(tail, head)

    def stream(self) -> "Stream":
        return Stream(self)

    @property
    def rate(self) -> tuple[int, int]:
        """(down, up): an input of n · down samples gives n · up outputs."""
        down = up = 1
        for seg in self.parts()[::2]:
            down, up = down * seg.down, up * seg.up
        g = math.gcd(down, up)
        return down // g, up // g

    def parts(self) -> list[Any]:
        """Alternating [Segment, recurrent layer, Segment, ...] (segments possibly empty); the first and last
        segments run the layers of `_tiled_ends` window by window at inference."""
        head, tail = self._tiled_ends()
        out, run, n = [], [], len(self.layers)
        for i, layer in enumerate(self.layers):
            if _is_recurrent(layer):
                out += [Segment(run, head=0 if out else min(head, i)), layer]
                run = []
            else:
                run.append(layer)
        return out + [Segment(run, head=0 if out else head, tail=n - max(tail, n - len(run)))]


class Stream:
    """Causal pass over pieces of any size: `stream(x)` returns the outputs that `x` completes (None while
    it waits), `flush()` the rest (the last partial frame, padded on the right as a whole-file pass pads).
    The concatenated outputs equal `stack(whole input)`, to float rounding of the convolutions on
    different lengths.
    """

    def __init__(self, stack: Stack) -> None:
        self.parts = stack.parts()
        n = len(self.parts)
        self.pending: list[Tensor | None] = [None] * n  # per segment: input not yet run
        self.past: list[Tensor | None] = [None] * n  # per segment: the history in front of the next piece
        self.states: list[Any] = [None] * n  # per recurrent layer
        self.closed = False

    @torch.no_grad()
    def __call__(self, x: Tensor | None, final: bool = False) -> Tensor | None:
        if self.closed:
            raise ValueError("this stream was flushed; start a new one")
        self.closed = final
        for i, part in enumerate(self.parts):
            if isinstance(part, Segment):
                x = self._segment(i, part, x, final)
            elif x is not None:
                x, self.states[i] = part(x, self.states[i])
        return x

    def flush(self) -> Tensor | None:
        """The outputs still owed; the stream takes no input after."""
        return self(None, final=True)

    def _segment(self, i: int, seg: Segment, x: Tensor | None, final: bool) -> Tensor | None:
        parts = [t for t in (self.pending[i], x) if t is not None and t.shape[-1]]
        if not parts:
            return None
        x = torch.cat(parts, dim=-1) if len(parts) > 1 else parts[0]
        started = self.past[i] is not None
        if not started and x.shape[-1] < seg.warmup and not final:
            self.pending[i] = x  # not enough input yet for the first piece's padding
            return None
        usable = x.shape[-1] if final else x.shape[-1] - x.shape[-1] % seg.down
        self.pending[i] = x[..., usable:]
        if not usable:
            return None
        past = self.past[i] if started else x[..., :0]
        window = torch.cat([past, x[..., :usable]], dim=-1)
        y = seg(window)
        self.past[i] = window[..., max(window.shape[-1] - seg.history, 0):]  # whole frames: window is aligned
        return y[..., past.shape[-1] // seg.down * seg.up:]


TILE_SAMPLES = 32768  # full-rate samples per window of `tiled`: 32 channels x 32768 x 4 bytes = 4 MB


def tiled(seg: Segment, x: Tensor, window: int) -> Tensor:
    """A causal segment over the whole input, window by window: each window of `window` input samples (a whole
    number of the segment's strides) runs with `seg.history` samples of the input before it, whose outputs
    are dropped. Equal to `seg(x)` to float rounding; only windows of a wide, full-rate activation gain from
    it (each stays in cache through every layer). x: (B, C, S) -> seg(x)."""
    window = max(window // seg.down, 1) * seg.down
    if x.shape[-1] <= 2 * window or window < seg.warmup:
        return seg(x)
    out = []
    for start in range(0, x.shape[-1], window):
        lo = max(start - seg.history, 0)
        y = seg(x[..., lo:start + window])
        out.append(y[..., (start - lo) // seg.down * seg.up:])
    return torch.cat(out, dim=-1)


# ----------------------------------------------------------------------------------------- codec streams


class EncodeStream:
    """A codec's causal encoder and quantizer over pieces (`EnCodec.encode_stream`, `Mimi.encode_stream`); the model
    has `encoder` (a Stack), `_quantize(z (B, D, t), q) -> ids (B, t, q)` and `device`."""

    def __init__(self, model: Any, num_codebooks: int) -> None:
        self.model, self.q, self.stream = model, num_codebooks, model.encoder.stream()
        self.batch = None

    def __call__(self, wav: Tensor) -> Tensor:
        """wav: (B, C, s) -> ids (B, t, q)."""
        self.batch = wav.shape[0]
        return self._ids(self.stream(wav.to(self.model.device)))

    def flush(self) -> Tensor:
        return self._ids(self.stream.flush())

    def _ids(self, z: Tensor | None) -> Tensor:
        if z is None:
            return torch.zeros(self.batch or 1, 0, self.q, dtype=torch.long, device=self.model.device)
        return self.model._quantize(z, self.q)


class DecodeStream:
    """A codec's dequantizer and causal decoder over pieces of ids; the model has `decoder`, `_dequantize` and
    `channels`."""

    def __init__(self, model: Any) -> None:
        self.model, self.stream, self.batch = model, model.decoder.stream(), None

    def __call__(self, ids: Tensor) -> Tensor:
        """ids: (B, t, q) -> audio (B, C, s)."""
        self.batch = ids.shape[0]
        return self._audio(self.stream(self.model._dequantize(ids.to(self.model.device))))

    def flush(self) -> Tensor:
        return self._audio(self.stream.flush())

    def _audio(self, y: Tensor | None) -> Tensor:
        if y is None:
            return torch.zeros(self.batch or 1, self.model.channels, 0, device=self.model.device)
        return y
