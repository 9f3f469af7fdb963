"""Processors: any image, clip or recording in, the tokenizer's input contract out, and back.

A tokenizer takes one exact layout (`tok.spec.input`: e.g. (B, 3, 32, 32) in [0, 1], or (B, 1, S) at
16 kHz). A processor brings what users have to it, as timm's and Hugging Face's processors do, and
undoes it on the way out:

- images (`ImageProcessor`): PIL images of any mode (RGB, RGBA and LA composited over `background`,
  L, P, CMYK, 16-bit I;16 / I, float F), numpy arrays (uint8, uint16, bool or float, HW / HWC) or tensors
  (CHW / BCHW, float in [0, 1] or uint8), any size → resized to the contract's H x W with
  `interpolation` (antialiased when shrinking), by `fit`: "stretch" (whole image, aspect ratio not kept;
  the inverse stretches back, so the output covers the whole input), "crop" (shorter side to size,
  centre crop; the output is the crop, at the input's scale) or "pad" (longer side to size, edge padding;
  the inverse removes it). Bicubic overshoot is clamped to [0, 1].
- clips (`VideoProcessor`): (3, T, H, W) or (T, H, W, 3) frames, any T, any size → frames resized as
  images, then cut into segments of the contract's T frames (the last padded by repeating its last
  frame); the inverse puts the segments back in order, trims the padding and resizes to the input's size.
- recordings (`AudioProcessor`): (S,), (C, S) or (B, C, S), any sample rate and channel count →
  resampled to the contract's rate with torchaudio (`resample`), downmixed by the channel mean (or
  repeated when a model takes more channels than given), clamped to [-1, 1] (a band-limited resampler
  rings past full scale near clipped edges: up to ~1.16 on a full-scale square wave; a warning says how
  far), padded to the contract's multiple, and cut into `segment_seconds` segments when set (the codecs
  take any length and chunk internally, so the default is the whole recording). The inverse trims,
  resamples back and restores the channel count.

Each model sample carries where it came from in `Processed.meta` (per sample, so `Tokens.meta` can hold
it): `input_index`, `input_segment`, `input_shape` (and `input_rate` for audio), so a token file alone is
enough to put the decoded output back at the input's size (`zoo decode` does).

The options are part of the contract (`InputContract.processor`, written to config.json, printed by
`zoo info`); `processor_for(tok, **overrides)` builds the processor of a tokenizer.

    proc = processor_for(tok)
    p = proc([Image.open("photo.jpg"), Image.open("logo.png")])    # p.batch: (2, 3, 32, 32)
    tokens = p.attach(tok.encode(p.batch))
    images = proc.invert(tok.decode(tokens), tokens.meta)        # [(3, 600, 800), (3, 64, 64)]
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

FITS = ("stretch", "crop", "pad")
INTERPOLATIONS = ("bicubic", "bilinear", "nearest", "area")
RESAMPLERS = ("sinc_interp_hann", "sinc_interp_kaiser")
DEFAULTS: dict[str, dict[str, Any]] = {
    "image": {"fit": "stretch", "interpolation": "bicubic", "antialias": True, "background": 1.0},
    "video": {"fit": "stretch", "interpolation": "bicubic", "antialias": True, "background": 1.0},
    "audio": {"resample": "sinc_interp_hann", "downmix": "mean", "clamp": True, "segment_seconds": None},
}


def modality_of(layout: str) -> str | None:
    """The modality a contract layout describes: "B 3 H W" → image, "B 3 T H W" → video, "B 1 S" → audio."""
    axes = layout.split()
    if axes[-2:] == ["H", "W"]:
        return "video" if "T" in axes else "image"
    if axes[-1:] == ["S"]:
        return "audio"
    return None


def default_options(layout: str) -> dict[str, Any]:
    """The processor options a contract of this layout records when its family sets none ({} for actions)."""
    return dict(DEFAULTS.get(modality_of(layout) or "", {}))


@dataclass
class Processed:
    """Model-ready samples and, per sample, where they came from.

    Args:
        batch: the contract's layout, e.g. (N, 3, H, W); N >= the number of inputs when segmented.
        meta: per sample (leading axis N): input_index (N,), input_segment (N,), input_shape (N, k) and,
            for audio, input_rate (N,) and input_frames (N,) (samples at the model's rate before padding).
    """

    batch: Tensor
    meta: dict[str, Tensor]

    def attach(self, tokens: Any) -> Any:
        """`tokens` (a `zoo.Tokens` of this batch) with the meta added, so that `invert` needs only the tokens."""
        import dataclasses

        meta = {k: v.to(tokens.lengths.device) for k, v in self.meta.items()}
        return dataclasses.replace(tokens, meta={**tokens.meta, **meta})


def _group(meta: dict[str, Tensor]) -> list[list[int]]:
    """Sample rows of each input, in segment order: [[rows of input 0], [rows of input 1], ...]."""
    for key in ("input_index", "input_segment", "input_shape"):
        if key not in meta:
            raise ValueError(f"meta has no {key!r}: these outputs were not made from a processor's batch "
                             f"(attach `Processed.meta` to the tokens before saving them)")
    index, segment = meta["input_index"].cpu().tolist(), meta["input_segment"].cpu().tolist()
    groups: dict[int, list[tuple[int, int]]] = {}
    for row, (i, s) in enumerate(zip(index, segment)):
        groups.setdefault(int(i), []).append((int(s), row))
    return [[row for _, row in sorted(groups[i])] for i in sorted(groups)]


def _meta(index: list[int], segment: list[int], shape: list[Sequence[int]], **extra: list[int]) -> dict[str, Tensor]:
    out = {"input_index": torch.tensor(index, dtype=torch.long), "input_segment": torch.tensor(segment, dtype=torch.long),
           "input_shape": torch.tensor([list(s) for s in shape], dtype=torch.long)}
    out.update({k: torch.tensor(v, dtype=torch.long) for k, v in extra.items()})
    return out


# ----------------------------------------------------------------------------------------- images


def image_to_tensor(x: Any, background: float = 1.0) -> Tensor:
    """One image of any kind → float (3, H, W) in [0, 1].

    Args:
        x: a PIL image (any mode), a path, a numpy array (H, W) / (H, W, 1|3|4) of uint8, uint16, bool or
            float in [0, 1], or a tensor (1|3|4, H, W) (float in [0, 1], or uint8).
        background: grey level in [0, 1] that transparent pixels are composited over.
    """
    from PIL import Image

    if isinstance(x, (str, Path)):
        from PIL import UnidentifiedImageError

        try:
            with Image.open(x) as img:
                img.load()
                return image_to_tensor(img, background)
        except (UnidentifiedImageError, OSError) as e:
            raise ValueError(f"{x} is not a readable image: {e}") from e
    if isinstance(x, Image.Image):
        return _pil_to_tensor(x, background)
    if isinstance(x, np.ndarray):
        a = x
        if a.ndim == 2:
            a = a[..., None]
        if a.ndim != 3 or a.shape[-1] not in (1, 3, 4):
            raise ValueError(f"an image array must be (H, W) or (H, W, 1|3|4), got shape {x.shape}")
        if a.dtype == np.uint8:
            t = torch.from_numpy(a.astype(np.float32) / 255.0)
        elif a.dtype == np.uint16:
            t = torch.from_numpy(a.astype(np.float32) / 65535.0)
        elif a.dtype == np.bool_ or np.issubdtype(a.dtype, np.floating):
            t = torch.from_numpy(a.astype(np.float32))
        else:
            raise ValueError(f"image arrays are uint8, uint16, bool or float in [0, 1], got {a.dtype}")
        return image_to_tensor(t.permute(2, 0, 1), background)
    if not isinstance(x, Tensor):
        raise ValueError(f"an image must be a PIL image, a path, a numpy array or a tensor, got {type(x).__name__}")
    if x.ndim != 3 or x.shape[0] not in (1, 3, 4):
        raise ValueError(f"an image tensor must be (1|3|4, H, W), got shape {tuple(x.shape)}")
    if x.dtype == torch.uint8:
        x = x.float() / 255.0
    elif not x.is_floating_point():
        raise ValueError(f"an image tensor must be float in [0, 1] or uint8, got {x.dtype}")
    x = x.float()
    if not bool(torch.isfinite(x).all()):
        raise ValueError("the image contains NaN or infinite values")
    lo, hi = float(x.min()), float(x.max())
    if lo < 0 or hi > 1:
        raise ValueError(f"image values must lie in [0, 1], got [{lo:g}, {hi:g}] (divide 8-bit values by 255)")
    if x.shape[0] == 4:
        alpha = x[3:]
        x = x[:3] * alpha + background * (1 - alpha)
    elif x.shape[0] == 1:
        x = x.expand(3, -1, -1)
    return x.contiguous()


def _pil_to_tensor(img: Any, background: float) -> Tensor:
    mode = img.mode
    if mode in ("I;16", "I;16B", "I;16L", "I;16N", "I"):
        a = np.asarray(img).astype(np.float32)
        # 16-bit PNGs open as I;16 (or I): 65535 is white; a 32-bit I image with larger values is scaled by its max
        a = a / max(65535.0, float(a.max()))
        return image_to_tensor(np.clip(a, 0, 1), background)
    if mode == "F":
        a = np.asarray(img).astype(np.float32)
        if a.size and (a.min() < 0 or a.max() > 1):
            a = (a - a.min()) / max(float(a.max() - a.min()), 1e-12)
        return image_to_tensor(a, background)
    if mode == "P":
        img = img.convert("RGBA" if "transparency" in img.info else "RGB")
    elif mode in ("LA", "PA", "RGBa", "La"):
        img = img.convert("RGBA")
    elif mode not in ("RGB", "RGBA", "L"):
        img = img.convert("RGB")  # 1, CMYK, YCbCr, LAB, HSV
    return image_to_tensor(np.asarray(img), background)


def _images(x: Any, background: float) -> list[Tensor]:
    """A batch tensor (B, C, H, W), or one image or a list of images of any kind → list of (3, H, W)."""
    if isinstance(x, Tensor) and x.ndim == 4:
        return [image_to_tensor(xi, background) for xi in x]
    if isinstance(x, np.ndarray) and x.ndim == 4:
        return [image_to_tensor(xi, background) for xi in x]
    if isinstance(x, (list, tuple)):
        if not x:
            raise ValueError("no images given (an empty list)")
        return [image_to_tensor(xi, background) for xi in x]
    return [image_to_tensor(x, background)]


def resize(x: Tensor, size: tuple[int, int], interpolation: str = "bicubic", antialias: bool = True) -> Tensor:
    """x: (N, C, H, W) → (N, C, size[0], size[1]); antialiased bicubic/bilinear when shrinking."""
    if tuple(x.shape[-2:]) == tuple(size):
        return x
    kwargs: dict[str, Any] = {"mode": interpolation}
    if interpolation in ("bicubic", "bilinear"):
        kwargs.update(align_corners=False, antialias=antialias)
    return F.interpolate(x.float(), size=tuple(size), **kwargs)


@dataclass(frozen=True)
class ImageProcessor:
    """Any image → (N, 3, H, W) in [0, 1] at the contract's size, and back (see the module docstring).

    Args:
        size: (H, W) the tokenizer takes.
        fit: "stretch", "crop" or "pad".
        interpolation: "bicubic", "bilinear", "nearest" or "area" (torch's `interpolate` modes).
        antialias: low-pass before shrinking (bicubic and bilinear).
        background: grey level transparent pixels are composited over.
    """

    size: tuple[int, int]
    fit: str = "stretch"
    interpolation: str = "bicubic"
    antialias: bool = True
    background: float = 1.0
    modality: str = field(default="image", init=False)

    def __post_init__(self) -> None:
        if self.fit not in FITS:
            raise ValueError(f"fit must be one of {FITS}, got {self.fit!r}")
        if self.interpolation not in INTERPOLATIONS:
            raise ValueError(f"interpolation must be one of {INTERPOLATIONS}, got {self.interpolation!r}")
        if not 0 <= self.background <= 1:
            raise ValueError(f"background must be a grey level in [0, 1], got {self.background}")

    def options(self) -> dict[str, Any]:
        return {"fit": self.fit, "interpolation": self.interpolation, "antialias": self.antialias,
                "background": self.background}

    def describe(self) -> str:
        return (f"any image → {self.size[0]}x{self.size[1]} ({self.fit}, {self.interpolation}"
                f"{', antialiased' if self.antialias else ''}); outputs back at the input's size")

    def _geometry(self, h: int, w: int) -> tuple[tuple[int, int], tuple[int, int, int, int]]:
        """(resized size, (top, left, bottom, right) crop (< 0) or pad (> 0) to reach `size`)."""
        th, tw = self.size
        if self.fit == "stretch":
            return (th, tw), (0, 0, 0, 0)
        scale = max(th / h, tw / w) if self.fit == "crop" else min(th / h, tw / w)
        rh, rw = max(1, round(h * scale)), max(1, round(w * scale))
        if self.fit == "crop":
            rh, rw = max(rh, th), max(rw, tw)
        dh, dw = th - rh, tw - rw  # <= 0 for crop, >= 0 for pad
        top, left = int(math.floor(dh / 2)) if dh < 0 else dh // 2, int(math.floor(dw / 2)) if dw < 0 else dw // 2
        return (rh, rw), (top, left, dh - top, dw - left)

    def frames_to_model(self, x: Tensor) -> Tensor:
        """x: (N, 3, h, w) frames of one input → (N, 3, H, W)."""
        (rh, rw), (top, left, bottom, right) = self._geometry(*x.shape[-2:])
        y = resize(x, (rh, rw), self.interpolation, self.antialias)
        if self.fit == "pad":
            y = F.pad(y, (left, right, top, bottom), mode="replicate")
        elif self.fit == "crop":
            th, tw = self.size
            y = y[..., -top: -top + th, -left: -left + tw]
        return y.clamp(0, 1)

    def frames_from_model(self, y: Tensor, h: int, w: int) -> Tensor:
        """y: (N, 3, H, W) → (N, 3, h, w) (for "crop": the crop's area of the input, at the input's scale)."""
        (rh, rw), (top, left, bottom, right) = self._geometry(h, w)
        th, tw = self.size
        if self.fit == "pad":
            y = y[..., top: th - bottom, left: tw - right]
        elif self.fit == "crop":
            scale = rh / h
            h, w = min(h, round(th / scale)), min(w, round(tw / scale))
        return resize(y, (h, w), self.interpolation, self.antialias).clamp(0, 1)

    def __call__(self, images: Any) -> Processed:
        """images: one image or a list of any kind (see `image_to_tensor`), or a (B, C, H, W) batch."""
        items = _images(images, self.background)
        batch = torch.stack([self.frames_to_model(x[None])[0] for x in items])
        n = len(items)
        return Processed(batch, _meta(list(range(n)), [0] * n, [x.shape[-2:] for x in items]))

    def invert(self, outputs: Tensor, meta: dict[str, Tensor]) -> list[Tensor]:
        """outputs: (N, 3, H, W) decoded from a processed batch → one (3, h, w) per input, at its own size."""
        groups = _group(meta)
        shapes = meta["input_shape"].tolist()
        return [self.frames_from_model(outputs[rows[0]][None].float(), *shapes[rows[0]])[0] for rows in groups]


# ----------------------------------------------------------------------------------------- video


def clip_to_tensor(x: Any) -> Tensor:
    """One clip → float (3, T, H, W) in [0, 1]: a tensor (3, T, H, W), a uint8 / float array (T, H, W, 3), a list
    of frames (anything `image_to_tensor` takes), or a path (.gif / .mp4 / .npy, read by `zoo.io.read_video`)."""
    if isinstance(x, (str, Path)):
        from zoo.io import read_video

        v = read_video(Path(x))
        if v.ndim != 5 or v.shape[0] != 1:
            raise ValueError(f"{x} must hold one clip, got shape {tuple(v.shape)}")
        return clip_to_tensor(v[0])
    if isinstance(x, (list, tuple)):
        if not x:
            raise ValueError("a clip needs at least one frame, got an empty list")
        return torch.stack([image_to_tensor(f) for f in x], dim=1)
    if isinstance(x, np.ndarray):
        if x.ndim != 4 or x.shape[-1] not in (1, 3, 4):
            raise ValueError(f"a clip array must be (T, H, W, 1|3|4), got shape {x.shape}")
        return torch.stack([image_to_tensor(f) for f in x], dim=1)
    if not isinstance(x, Tensor) or x.ndim != 4 or x.shape[0] not in (1, 3, 4):
        raise ValueError(f"a clip tensor must be (3, T, H, W), got {type(x).__name__} "
                         f"{tuple(x.shape) if isinstance(x, Tensor) else ''}")
    return torch.stack([image_to_tensor(x[:, t]) for t in range(x.shape[1])], dim=1)


@dataclass(frozen=True)
class VideoProcessor:
    """Any clip → segments (N, 3, T, H, W) in [0, 1] of the contract's T frames and size, and back.

    Args:
        frames: T, frames per segment the tokenizer takes.
        image: what is done to each frame (size, fit, interpolation).
    """

    frames: int
    image: ImageProcessor
    modality: str = field(default="video", init=False)

    def options(self) -> dict[str, Any]:
        return self.image.options()

    def describe(self) -> str:
        im = self.image
        return (f"any clip → segments of {self.frames} frames at {im.size[0]}x{im.size[1]} ({im.fit}, "
                f"{im.interpolation}); last segment padded by repeating its last frame; outputs back at the input's "
                f"length and size")

    def __call__(self, clips: Any) -> Processed:
        """clips: one clip or a list (see `clip_to_tensor`), or a (B, 3, T, H, W) batch."""
        if isinstance(clips, Tensor) and clips.ndim == 5:
            items = [clip_to_tensor(c) for c in clips]
        elif isinstance(clips, (list, tuple)) and clips and not _is_frame(clips[0]):
            items = [clip_to_tensor(c) for c in clips]
        else:
            items = [clip_to_tensor(clips)]
        image, t = self.image, self.frames
        segments, index, segment, shape = [], [], [], []
        for i, clip in enumerate(items):
            frames = image.frames_to_model(clip.transpose(0, 1))  # (T_in, 3, H, W)
            n = max(1, math.ceil(frames.shape[0] / t))
            pad = n * t - frames.shape[0]
            if pad:
                frames = torch.cat([frames, frames[-1:].expand(pad, -1, -1, -1)])
            for s in range(n):
                segments.append(frames[s * t: (s + 1) * t].transpose(0, 1))
                index.append(i), segment.append(s), shape.append(clip.shape[1:])
        return Processed(torch.stack(segments), _meta(index, segment, shape))

    def invert(self, outputs: Tensor, meta: dict[str, Tensor]) -> list[Tensor]:
        """outputs: (N, 3, T, H, W) decoded segments → one (3, T_in, h, w) per input."""
        groups = _group(meta)
        shapes = meta["input_shape"].tolist()
        out = []
        for rows in groups:
            frames = torch.cat([outputs[r].float().transpose(0, 1) for r in rows])  # (n·T, 3, H, W)
            t_in, h, w = shapes[rows[0]]
            out.append(self.image.frames_from_model(frames[:t_in], h, w).transpose(0, 1))
        return out


def _is_frame(x: Any) -> bool:
    """Whether an item of a list is one frame (a list of frames is one clip) rather than a clip."""
    from PIL import Image

    return isinstance(x, Image.Image) or (isinstance(x, (Tensor, np.ndarray)) and x.ndim <= 3)


# ----------------------------------------------------------------------------------------- audio


def read_sound(path: str | Path) -> tuple[Tensor, int]:
    """A sound file (WAV/FLAC/OGG via soundfile) → (float (C, S), sample rate)."""
    import soundfile as sf

    try:
        data, rate = sf.read(str(path), dtype="float32", always_2d=True)
    except (RuntimeError, sf.LibsndfileError) as e:
        raise ValueError(f"{path} is not a readable sound file: {e}") from e
    return torch.from_numpy(data.T.copy()), int(rate)


@dataclass(frozen=True)
class AudioProcessor:
    """Any recording → (N, C, S) in [-1, 1] at the contract's rate and channels, and back.

    Args:
        sample_rate: the tokenizer's rate (Hz).
        channels: C the tokenizer takes (None: any, kept as given).
        multiple: S is padded to a multiple of this (the contract's, or 1).
        resample: torchaudio's `resampling_method`.
        downmix: "mean" (the only one: averaging channels keeps the level of a centred source).
        clamp: clamp to [-1, 1] (with a warning saying how far the signal went).
        segment_seconds: cut into segments this long (the last zero-padded); None keeps each recording whole.
    """

    sample_rate: int
    channels: int | None = 1
    multiple: int = 1
    resample: str = "sinc_interp_hann"
    downmix: str = "mean"
    clamp: bool = True
    segment_seconds: float | None = None
    modality: str = field(default="audio", init=False)

    def __post_init__(self) -> None:
        if self.resample not in RESAMPLERS:
            raise ValueError(f"resample must be one of {RESAMPLERS}, got {self.resample!r}")
        if self.downmix != "mean":
            raise ValueError(f"downmix must be 'mean', got {self.downmix!r}")
        if self.segment_seconds is not None and not self.segment_seconds * self.sample_rate >= self.multiple:
            raise ValueError(f"segment_seconds must cover at least {self.multiple} samples, got {self.segment_seconds}")

    def options(self) -> dict[str, Any]:
        return {"resample": self.resample, "downmix": self.downmix, "clamp": self.clamp,
                "segment_seconds": self.segment_seconds}

    def describe(self) -> str:
        ch = {None: "any channels", 1: "mono (channel mean)"}.get(self.channels, f"{self.channels} channels")
        seg = f", segments of {self.segment_seconds:g} s" if self.segment_seconds else ""
        return (f"any rate and channels → {self.sample_rate} Hz ({self.resample}), {ch}, clamped to [-1, 1]{seg}; "
                f"outputs back at the input's rate, channels and length")

    def _resample(self, x: Tensor, src: int, dst: int) -> Tensor:
        if src == dst:
            return x
        import torchaudio.functional as AF

        return AF.resample(x.float(), src, dst, resampling_method=self.resample)

    def __call__(self, audio: Any, sample_rate: int | None = None) -> Processed:
        """audio: (S,), (C, S) or (B, C, S) (tensor or array), a path, or a list of those or of (wave, rate) pairs.

        sample_rate: of the given waves (default: the tokenizer's); a path or a pair carries its own.
        """
        items = self._items(audio, sample_rate)
        waves, index, segment, shape, rates, lengths = [], [], [], [], [], []
        for i, (x, rate) in enumerate(items):
            c_in, s_in = x.shape
            y = self._resample(x, rate, self.sample_rate)
            if self.channels is not None and y.shape[0] != self.channels:  # downmix by the mean (or repeat a mono input)
                y = y.mean(0, keepdim=True).expand(self.channels, -1)
            peak = float(y.abs().max()) if y.numel() else 0.0
            if self.clamp and peak > 1:
                why = ("the resampler's ringing near full-scale edges (normal for band-limited resampling)"
                       if rate != self.sample_rate and float(x.abs().max()) <= 1 else "the input itself")
                warnings.warn(f"input {i}: peak {peak:.3f} after processing, from {why}; clamped to [-1, 1]", stacklevel=2)
                y = y.clamp(-1, 1)
            s = y.shape[-1]
            seg = (math.ceil(self.segment_seconds * self.sample_rate / self.multiple) * self.multiple
                   if self.segment_seconds else math.ceil(max(s, 1) / self.multiple) * self.multiple)
            n = max(1, math.ceil(s / seg))
            y = F.pad(y, (0, n * seg - s))
            for k in range(n):
                waves.append(y[:, k * seg: (k + 1) * seg])
                index.append(i), segment.append(k), shape.append((c_in, s_in)), rates.append(rate), lengths.append(s)
        widths = {w.shape[-1] for w in waves}
        if len(widths) > 1:  # recordings of different lengths in one batch: pad to the longest (trimmed by invert)
            width = max(widths)
            waves = [F.pad(w, (0, width - w.shape[-1])) for w in waves]
        return Processed(torch.stack(waves), _meta(index, segment, shape, input_rate=rates, input_frames=lengths))

    def _items(self, audio: Any, sample_rate: int | None) -> list[tuple[Tensor, int]]:
        rate = self.sample_rate if sample_rate is None else int(sample_rate)
        if isinstance(audio, (str, Path)):
            return [read_sound(audio)]
        if isinstance(audio, tuple) and len(audio) == 2 and isinstance(audio[1], (int, np.integer)):
            return self._items(audio[0], int(audio[1]))
        if isinstance(audio, list):
            if not audio:
                raise ValueError("no recordings given (an empty list)")
            return [item for a in audio for item in self._items(a, sample_rate)]
        if isinstance(audio, np.ndarray):
            audio = torch.from_numpy(np.ascontiguousarray(audio))
        if not isinstance(audio, Tensor):
            raise ValueError(f"audio must be a tensor, an array, a path or (wave, rate), got {type(audio).__name__}")
        if not audio.is_floating_point():
            if audio.dtype == torch.int16:
                audio = audio.float() / 32768.0
            else:
                raise ValueError(f"audio must be float in [-1, 1] or int16, got {audio.dtype}")
        if not bool(torch.isfinite(audio).all()):
            raise ValueError("the audio contains NaN or infinite values")
        if audio.ndim == 1:
            return [(audio[None].float(), rate)]
        if audio.ndim == 2:
            return [(audio.float(), rate)]
        if audio.ndim == 3:
            return [(a.float(), rate) for a in audio]
        raise ValueError(f"audio must be (S,), (C, S) or (B, C, S), got shape {tuple(audio.shape)}")

    def invert(self, outputs: Tensor, meta: dict[str, Tensor]) -> list[Tensor]:
        """outputs: (N, C, S) decoded → one (C_in, S_in) per input, at its own rate and channel count."""
        groups = _group(meta)
        for key in ("input_rate", "input_frames"):
            if key not in meta:
                raise ValueError(f"meta has no {key!r}: these outputs were not made from an audio processor's batch")
        shapes, rates, frames = meta["input_shape"].tolist(), meta["input_rate"].tolist(), meta["input_frames"].tolist()
        out = []
        for rows in groups:
            y = torch.cat([outputs[r].float() for r in rows], dim=-1)[:, : frames[rows[0]]]
            c_in, s_in = shapes[rows[0]]
            y = self._resample(y, self.sample_rate, rates[rows[0]])
            y = F.pad(y, (0, max(0, s_in - y.shape[-1])))[:, :s_in]
            if y.shape[0] != c_in:
                y = y.mean(0, keepdim=True).expand(c_in, -1)
            out.append(y.contiguous())
        return out


# ----------------------------------------------------------------------------------------- from a contract

Processor = ImageProcessor | VideoProcessor | AudioProcessor


def processor_for(tok_or_contract: Any, **overrides: Any) -> Processor | None:
    """The processor of a tokenizer (or of an `InputContract`), from the options its contract records.

    Returns None for modalities without one (actions, features: their inputs have no size or rate to fix).
    `overrides` replace recorded options (e.g. `fit="crop"`, `segment_seconds=10`).
    """
    contract = getattr(getattr(tok_or_contract, "spec", None), "input", tok_or_contract)
    modality = modality_of(contract.layout)
    if modality is None:
        if overrides:
            raise ValueError(f"a {contract.layout!r} input has no processor, so options {sorted(overrides)} do not apply")
        return None
    options = {**default_options(contract.layout), **(getattr(contract, "processor", None) or {}), **overrides}
    unknown = sorted(set(options) - set(DEFAULTS[modality]))
    if unknown:
        raise ValueError(f"unknown {modality} processor option(s) {unknown}; known: {sorted(DEFAULTS[modality])}")
    axes, sizes = contract.axes, contract.sizes

    def size_of(axis: str) -> int:
        if axis in sizes:
            return int(sizes[axis])
        raise ValueError(f"the contract {contract.describe()!r} fixes no {axis}: there is nothing to resize to")

    if modality == "image":
        return ImageProcessor((size_of("H"), size_of("W")), **options)
    if modality == "video":
        return VideoProcessor(size_of("T"), ImageProcessor((size_of("H"), size_of("W")), **options))
    channel = axes[1] if len(axes) == 3 else None
    channels = int(channel) if channel and channel.isdigit() else sizes.get(channel) if channel else None
    if contract.sample_rate is None:
        raise ValueError(f"the contract {contract.describe()!r} has no sample rate to resample to")
    return AudioProcessor(int(contract.sample_rate), channels, int(contract.multiples.get("S", 1)), **options)


def describe_spec(spec: dict[str, Any]) -> dict[str, Any]:
    """What `zoo info` prints of a spec's processor: {"processor": one line, "processor_options": {...}}, or {}
    where the modality has none. The index records it for shipped checkpoints, so `zoo info` needs no torch."""
    from zoo.tokenizer import TokenSpec

    proc = processor_for(TokenSpec.from_dict(spec).input) if spec else None
    return {} if proc is None else {"processor": proc.describe(), "processor_options": dict(sorted(proc.options().items()))}
