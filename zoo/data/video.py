"""Short video clips for training and evaluating video tokenizers, built offline.

Seven sources, each split train/val by where its pixels come from, never by clip (the first three,
`SOURCES`, are the default build and `val_clips`; `ALL_SOURCES` adds four for what users bring, issue 20):

- ``shapes``: 1-3 shapes (`zoo.data.images.KINDS`, named colours) that move, spin and bounce off the
  frame's walls (elastic bounces; a third of the clips add gravity, so balls fall and rebound) over a
  flat or gradient background, with a caption ("a red star and a blue circle bouncing on a black
  background"). Clip ``j`` of a split is drawn from its own scene seed,
  ``zoo.data.images.SHAPES_SEED_BASE[split] + seed * 2**32 + j``: train seeds lie in [0, 2**63) and
  val seeds in [2**63, 2**64), so no val clip is ever a train clip.
- ``pans``: a moving camera over scikit-image's bundled photos: a pan (fixed window size, moving
  window), a zoom in or a zoom out (window shrinking or growing about a drifting centre). Train clips
  come only from `NATURAL_IMAGES["train"]`, val clips only from `NATURAL_IMAGES["val"]`.
- ``faces``: an LFW face (scikit-image's subset) sliding and bouncing over a flat or gradient
  background while it slowly grows or shrinks. Faces 0-79 are train, 80-99 val (`FACE_INDICES`).
- ``still``: a crop of a photo of the split, the same frame repeated (a still shot: repeating the first
  frame is exact there, so a tokenizer has to spend its tokens on one picture).
- ``objects``: the bouncing shapes of ``shapes`` over a crop of a photo of the split (still, or panning
  slowly), like a ball filmed over a real scene.
- ``fades``: a flat colour or a gradient that stays (a quarter of the clips) or fades slowly, 5-50% of the way
  toward another over the clip.
- ``patterns``: noise-free test patterns in the spirit of ffmpeg's ``testsrc``/``testsrc2``: colour bars,
  a grey ramp, a moving box and a frame counter, or a scrolling checker or ramp. Seeds split as ``shapes``.

Everything is drawn at `SUPERSAMPLE` x the resolution and box-filtered down (or cropped with a
float window, for photos), so motion is sub-pixel and edges are clean. Clip ``i`` comes from
``sources[i % len(sources)]`` and depends only on ``(split, seed, frames, resolution, sources, i)``;
builds are deterministic and cached by `zoo.data.cache.cached_arrays`. `val_clips` is the one
validation set every video tokenizer reports on.

    data = build_video_dataset("train", 512)      # {'videos': (512, 16, 32, 32, 3) uint8, ...}
    x = videos_to_tensor(data["videos"])          # float (512, 3, 16, 32, 32) in [0, 1]
    ds = VideoDataset("train", 512)               # ds[i]["video"]: float (3, 16, 32, 32)
"""

from __future__ import annotations

import math
from typing import Sequence

import numpy as np
import torch
from einops import rearrange
from PIL import Image, ImageDraw

from zoo.data.cache import cached_arrays
from zoo.data.images import (BACKGROUNDS, COLOURS, FACE_INDICES, KINDS, NATURAL_IMAGES, SHAPES_SEED_BASE, SPLITS,
                             SUPERSAMPLE, _article, _faces, _font, _natural_photo, _polygon, _random_colour, _texture,
                             flat_image, gradient_image)

VERSION = 1  # bump when the builders' output changes, so stale caches are not reused (new sources did not change the old ones)
SOURCES = ("shapes", "pans", "faces")  # the default build and `val_clips`
ALL_SOURCES = (*SOURCES, "still", "objects", "fades", "patterns")  # the `source` array indexes this tuple
RESOLUTIONS = (16, 32, 64)
MAX_FRAMES = 64
VAL_SEED = 0
MAX_SEED = 2**31

# --------------------------------------------------------------------------------------------------
# Bouncing, spinning shapes
# --------------------------------------------------------------------------------------------------

GRAVITY_P = 1 / 3  # fraction of shape clips with gravity
GRAVITY = 0.25  # output pixels / frame², downwards


def _bounce(pos: np.ndarray, vel: np.ndarray, radius: float, size: float) -> None:
    """Reflect (in place) a disc of `radius` at `pos` moving at `vel` off the walls of a [0, size]² box."""
    for axis in range(2):
        if pos[axis] < radius:
            pos[axis], vel[axis] = 2 * radius - pos[axis], abs(vel[axis])
        elif pos[axis] > size - radius:
            pos[axis], vel[axis] = 2 * (size - radius) - pos[axis], -abs(vel[axis])


def _background(rng: np.random.Generator, resolution: int) -> tuple[np.ndarray, str]:
    """A flat or gradient canvas uint8 (S, S, 3), S = resolution · SUPERSAMPLE, and its caption words."""
    name = list(BACKGROUNDS)[int(rng.integers(len(BACKGROUNDS)))]
    style = "gradient" if rng.random() < 0.5 else "flat"
    base = np.asarray(BACKGROUNDS[name], np.float32)
    other = tuple(int(v) for v in (base + 90 if base.mean() < 128 else base - 90))
    canvas = np.array(_texture(style, BACKGROUNDS[name], other, resolution, rng))
    return canvas, (f"{name} gradient" if style == "gradient" else name)


def _moving_shapes(rng: np.random.Generator, canvases: list[np.ndarray] | np.ndarray, frames: int,
                   resolution: int) -> tuple[np.ndarray, str, bool]:
    """1-3 shapes bouncing over `canvases` (uint8 (S, S, 3) at SUPERSAMPLE x, one, or one per frame)
    → (uint8 (T, R, R, 3), "a red star and a blue circle", gravity)."""
    size = resolution * SUPERSAMPLE
    gravity = rng.random() < GRAVITY_P
    colour_names = list(COLOURS)
    objects = []
    for _ in range(int(rng.integers(1, 4))):
        r = rng.uniform(0.12, 0.22) * size
        pos = rng.uniform(r, size - r, size=2)
        speed = rng.uniform(0.6, 2.2) * SUPERSAMPLE  # output pixels per frame
        angle = rng.uniform(0, 2 * math.pi)
        vel = np.array([math.cos(angle), math.sin(angle)]) * speed
        spin = rng.uniform(-0.35, 0.35)  # radians per frame
        objects.append(dict(kind=KINDS[int(rng.integers(len(KINDS)))], colour=colour_names[int(rng.integers(len(COLOURS)))],
                            r=r, pos=pos, vel=vel, theta=rng.uniform(0, 2 * math.pi), spin=spin))
    clip = np.empty((frames, resolution, resolution, 3), np.uint8)
    for t in range(frames):
        img = Image.fromarray(canvases if isinstance(canvases, np.ndarray) else canvases[t])
        draw = ImageDraw.Draw(img)
        for o in objects:
            rgb = COLOURS[o["colour"]]
            (cx, cy), r = o["pos"], o["r"]
            if o["kind"] == "circle":
                draw.ellipse((cx - r, cy - r, cx + r, cy + r), fill=rgb)
            else:
                draw.polygon(_polygon(o["kind"], cx, cy, r, o["theta"]), fill=rgb)
        clip[t] = np.asarray(img.resize((resolution, resolution), Image.BOX))
        for o in objects:  # step the physics after drawing, so frame 0 shows the initial state
            if gravity:
                o["vel"][1] += GRAVITY * SUPERSAMPLE
            o["pos"] += o["vel"]
            o["theta"] += o["spin"]
            _bounce(o["pos"], o["vel"], o["r"], size)
    names = [f"{_article(o['colour'])} {o['colour']} {o['kind']}" for o in objects]
    return clip, names[0] if len(names) == 1 else ", ".join(names[:-1]) + " and " + names[-1], gravity


def shapes_clip(scene_seed: int, frames: int = 16, resolution: int = 32) -> tuple[np.ndarray, str]:
    """Render one clip of bouncing shapes from its own seed → (uint8 (T, R, R, 3), caption)."""
    rng = np.random.default_rng(scene_seed)
    canvas, bg_words = _background(rng, resolution)
    clip, subject, gravity = _moving_shapes(rng, canvas, frames, resolution)
    caption = f"{subject} bouncing{' under gravity' if gravity else ''} on {_article(bg_words)} {bg_words} background"
    return clip, caption


# --------------------------------------------------------------------------------------------------
# Camera moves over photos
# --------------------------------------------------------------------------------------------------

PAN_SCALES = (0.15, 0.6)  # window side, as a fraction of the photo's short side (log-uniform)
ZOOM_FACTOR = (1.3, 2.2)  # how much the window shrinks (zoom in) or grows (zoom out) over a clip
MAX_PAN = 0.6  # largest pan over a clip, in window sides


def _pan_clip(split: str, seed: int, j: int, frames: int, resolution: int) -> tuple[np.ndarray, str, str]:
    """Clip `j` of camera moves over the photos of `split` → (uint8 (T, R, R, 3), caption, photo name)."""
    names = NATURAL_IMAGES[split]
    name = names[j % len(names)]
    photo = _natural_photo(name)
    rng = np.random.default_rng([SOURCES.index("pans"), SPLITS.index(split), seed, j])
    w, h = photo.size
    short = min(w, h)
    move = ("pan", "zoom in", "zoom out")[int(rng.integers(3))]
    side0 = short * math.exp(rng.uniform(*np.log(PAN_SCALES)))
    factor = rng.uniform(*ZOOM_FACTOR)
    side1 = {"pan": side0, "zoom in": side0 / factor, "zoom out": min(side0 * factor, short)}[move]
    side0, side1 = max(side0, resolution), max(side1, resolution)
    # window centres: a pan travels up to MAX_PAN window sides, a zoom drifts a little
    travel = (MAX_PAN if move == "pan" else 0.15) * max(side0, side1)
    half = max(side0, side1) / 2
    c0 = np.array([rng.uniform(half, w - half), rng.uniform(half, h - half)])
    angle = rng.uniform(0, 2 * math.pi)
    c1 = np.clip(c0 + travel * rng.uniform(0.5, 1.0) * np.array([math.cos(angle), math.sin(angle)]),
                 [half, half], [w - half, h - half])
    clip = np.empty((frames, resolution, resolution, 3), np.uint8)
    for t in range(frames):
        u = t / max(frames - 1, 1)
        side = side0 * (side1 / side0) ** u  # zooms are geometric, so the speed looks constant
        cx, cy = c0 + (c1 - c0) * u
        box = (max(cx - side / 2, 0.0), max(cy - side / 2, 0.0), min(cx + side / 2, w), min(cy + side / 2, h))  # clamp rounding
        clip[t] = np.asarray(photo.resize((resolution, resolution), Image.BILINEAR, box=box, reducing_gap=2.0))
    if move == "pan":
        dx, dy = c1 - c0
        direction = ("right" if dx > 0 else "left") if abs(dx) >= abs(dy) else ("down" if dy > 0 else "up")
        caption = f"the camera pans {direction} across a photo ({name})"
    else:
        caption = f"the camera zooms {move.split()[1]} on a photo ({name})"
    return clip, caption, name


# --------------------------------------------------------------------------------------------------
# Moving faces
# --------------------------------------------------------------------------------------------------


def _face_clip(split: str, seed: int, j: int, frames: int, resolution: int) -> tuple[np.ndarray, str, str]:
    """Clip `j` of a moving LFW face of `split` → (uint8 (T, R, R, 3), caption, 'lfw<index>')."""
    indices = FACE_INDICES[split]
    index = indices[j % len(indices)]
    face = Image.fromarray(_faces()[index]).convert("RGB")
    rng = np.random.default_rng([SOURCES.index("faces"), SPLITS.index(split), seed, j])
    size = resolution * SUPERSAMPLE
    canvas, bg_words = _background(rng, resolution)
    side0 = rng.uniform(0.45, 0.8) * size
    side1 = side0 * rng.uniform(0.8, 1.25)
    pos = rng.uniform(side0 / 2, size - side0 / 2, size=2)
    angle = rng.uniform(0, 2 * math.pi)
    vel = np.array([math.cos(angle), math.sin(angle)]) * rng.uniform(0.5, 1.8) * SUPERSAMPLE
    clip = np.empty((frames, resolution, resolution, 3), np.uint8)
    for t in range(frames):
        side = side0 + (side1 - side0) * t / max(frames - 1, 1)
        sprite = face.resize((max(round(side), 1),) * 2, Image.BICUBIC)
        img = Image.fromarray(canvas)
        img.paste(sprite, (round(pos[0] - side / 2), round(pos[1] - side / 2)))
        clip[t] = np.asarray(img.resize((resolution, resolution), Image.BOX))
        pos += vel
        _bounce(pos, vel, side / 2, size)
    grows = "growing" if side1 > side0 else "shrinking"
    return clip, f"a face sliding and {grows} on {_article(bg_words)} {bg_words} background", f"lfw{index}"


# --------------------------------------------------------------------------------------------------
# Still shots, shapes over photos, fades, test patterns
# --------------------------------------------------------------------------------------------------

SLOW_PAN = 0.15  # largest drift of an ``objects`` background over a clip, in window sides
FADE_STILL_P = 1 / 4  # share of ``fades`` clips that do not change at all


def _photo_windows(rng: np.random.Generator, photo: Image.Image, frames: int, out: int, drift: float,
                   min_side: int) -> list[np.ndarray]:
    """`frames` square windows of `photo` resized to `out` px, side log-uniform in `PAN_SCALES` of the short side
    (at least `min_side` px), the centre drifting in a straight line by up to `drift` window sides over the clip
    (0: one window, repeated)."""
    w, h = photo.size
    side = max(min(w, h) * math.exp(rng.uniform(*np.log(PAN_SCALES))), min_side)
    half = side / 2
    c0 = np.array([rng.uniform(half, w - half), rng.uniform(half, h - half)])
    angle = rng.uniform(0, 2 * math.pi)
    c1 = np.clip(c0 + drift * side * rng.uniform(0.5, 1.0) * np.array([math.cos(angle), math.sin(angle)]),
                 [half, half], [w - half, h - half])
    windows = []
    for t in range(frames if drift > 0 else 1):
        cx, cy = c0 + (c1 - c0) * t / max(frames - 1, 1)
        box = (max(cx - half, 0.0), max(cy - half, 0.0), min(cx + half, w), min(cy + half, h))
        windows.append(np.asarray(photo.resize((out, out), Image.BILINEAR, box=box, reducing_gap=2.0)))
    return windows * frames if drift == 0 else windows


def _source_rng(name: str, split: str, seed: int, j: int) -> np.random.Generator:
    return np.random.default_rng([ALL_SOURCES.index(name), SPLITS.index(split), seed, j])


def _still_clip(split: str, seed: int, j: int, frames: int, resolution: int) -> tuple[np.ndarray, str, str]:
    """Clip `j` of still shots of the photos of `split`: one crop repeated → (uint8 (T, R, R, 3), caption, photo)."""
    names = NATURAL_IMAGES[split]
    name = names[j % len(names)]
    (frame,) = _photo_windows(_source_rng("still", split, seed, j), _natural_photo(name), 1, resolution, 0.0, resolution)
    return np.repeat(frame[None], frames, axis=0), f"a still shot of a photo ({name})", name


def _objects_clip(split: str, seed: int, j: int, frames: int, resolution: int) -> tuple[np.ndarray, str, str]:
    """Clip `j` of shapes bouncing over a photo of `split` (still or panning slowly) → (clip, caption, photo)."""
    names = NATURAL_IMAGES[split]
    name = names[(j * 5 + 3) % len(names)]  # not the photo `still` and `pans` show at the same j
    rng = _source_rng("objects", split, seed, j)
    drift = SLOW_PAN * rng.uniform(0, 1) if rng.random() < 0.5 else 0.0
    canvases = _photo_windows(rng, _natural_photo(name), frames, resolution * SUPERSAMPLE, drift, resolution)
    clip, subject, gravity = _moving_shapes(rng, canvases, frames, resolution)
    return clip, f"{subject} bouncing{' under gravity' if gravity else ''} over a photo ({name})", name


def _fade_clip(scene_seed: int, frames: int, resolution: int) -> tuple[np.ndarray, str]:
    """A flat colour or gradient, still or fading part of the way to another → (uint8 (T, R, R, 3), caption)."""
    rng = np.random.default_rng(scene_seed)
    kind = "flat" if rng.random() < 0.5 else "gradient"
    make = flat_image if kind == "flat" else gradient_image
    a, b = make(rng, resolution).astype(np.float32), make(rng, resolution).astype(np.float32)
    amount = 0.0 if rng.random() < FADE_STILL_P else rng.uniform(0.05, 0.5)
    u = np.linspace(0.0, amount, frames, dtype=np.float32)[:, None, None, None]
    clip = np.round(a + (b - a) * u).astype(np.uint8)
    return clip, (f"a still {kind} colour" if amount == 0 else f"a {kind} colour fading slowly")


BARS = ((191, 191, 191), (191, 191, 0), (0, 191, 191), (0, 191, 0), (191, 0, 191), (191, 0, 0), (0, 0, 191))


def _pattern_clip(scene_seed: int, frames: int, resolution: int) -> tuple[np.ndarray, str]:
    """A noise-free test pattern → (uint8 (T, R, R, 3), caption): colour bars over a grey ramp with a box that
    moves and a frame counter (as ffmpeg's testsrc2), or a checker or colour ramp scrolling (as testsrc)."""
    rng = np.random.default_rng(scene_seed)
    size = resolution * SUPERSAMPLE
    y, x = np.mgrid[0:size, 0:size].astype(np.float32)
    style = ("bars", "checker", "ramp")[int(rng.integers(3))]
    clip = np.empty((frames, resolution, resolution, 3), np.uint8)
    if style == "bars":
        order = rng.permutation(len(BARS))[: int(rng.integers(4, len(BARS) + 1))]
        split_at = rng.uniform(0.55, 0.8) * size
        base = np.empty((size, size, 3), np.float32)
        base[:] = np.asarray(BARS, np.float32)[order][np.minimum((x * len(order) / size).astype(int), len(order) - 1)]
        base[y >= split_at] = (x[y >= split_at] / size * 255)[:, None]
        if rng.random() < 0.5:
            base = base.transpose(1, 0, 2).copy()
        canvas = Image.fromarray(base.astype(np.uint8))
        box = rng.uniform(0.15, 0.3) * size
        pos = rng.uniform(0, size - box, 2)
        vel = rng.uniform(-2.0, 2.0, 2) * SUPERSAMPLE
        colour = COLOURS[list(COLOURS)[int(rng.integers(len(COLOURS)))]]
        start = int(rng.integers(0, 90))
        font = _font(int(size * 0.3))
        for t in range(frames):
            img = canvas.copy()
            draw = ImageDraw.Draw(img)
            draw.rectangle((pos[0], pos[1], pos[0] + box, pos[1] + box), fill=colour)
            draw.text((size * 0.05, size * 0.05), f"{start + t:02d}", fill=(255, 255, 255), font=font)
            clip[t] = np.asarray(img.resize((resolution, resolution), Image.BOX))
            pos += vel
            for axis in range(2):  # bounce the box off the walls
                if not 0 <= pos[axis] <= size - box:
                    vel[axis] = -vel[axis]
                    pos[axis] = np.clip(pos[axis], 0, size - box)
        return clip, "colour bars with a moving box and a frame counter"
    a, b = _random_colour(rng), _random_colour(rng)
    period = rng.uniform(4.0, 16.0) * SUPERSAMPLE
    theta = rng.uniform(0, 2 * math.pi)
    speed = rng.uniform(0.25, 1.5) * SUPERSAMPLE  # output pixels per frame
    u0, v0 = x * math.cos(theta) + y * math.sin(theta), -x * math.sin(theta) + y * math.cos(theta)
    for t in range(frames):
        u = (u0 + speed * t) / period
        if style == "checker":
            m = ((np.floor(u) + np.floor(v0 / period)) % 2).astype(np.float32)
        else:
            m = u - np.floor(u)  # a sawtooth ramp
        m = m.reshape(resolution, SUPERSAMPLE, resolution, SUPERSAMPLE).mean((1, 3))
        clip[t] = np.round(a + (b - a) * m[..., None]).astype(np.uint8)
    return clip, f"a {style} pattern scrolling"


# --------------------------------------------------------------------------------------------------
# Builders
# --------------------------------------------------------------------------------------------------


def videos_to_tensor(videos: np.ndarray) -> torch.Tensor:
    """uint8 (..., T, H, W, 3) → float (..., 3, T, H, W) in [0, 1], the layout video tokenizers take."""
    if videos.dtype != np.uint8 or videos.ndim < 4 or videos.shape[-1] != 3:
        raise ValueError(f"videos must be uint8 (..., T, H, W, 3), got {videos.dtype} {videos.shape}")
    x = torch.from_numpy(np.ascontiguousarray(videos))
    return rearrange(x, "... t h w c -> ... c t h w").float().div_(255.0)


def _check_args(split: str, n: int, frames: int, resolution: int, sources: Sequence[str] | str,
                seed: int) -> tuple[str, ...]:
    if split not in SPLITS:
        raise ValueError(f"split={split!r} is not one of {SPLITS}")
    for name, value, low, high in (("n", n, 1, 2**32 - 1), ("frames", frames, 1, MAX_FRAMES), ("seed", seed, 0, MAX_SEED - 1)):
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or not low <= value <= high:
            raise ValueError(f"{name}={value!r} must be an integer in [{low}, {high}]")
    if resolution not in RESOLUTIONS:
        raise ValueError(f"resolution={resolution!r} is not one of {RESOLUTIONS}")
    sources = (sources,) if isinstance(sources, str) else tuple(sources)
    unknown = [s for s in sources if s not in ALL_SOURCES]
    if not sources or unknown or len(set(sources)) != len(sources):
        raise ValueError(f"sources={sources!r} must be distinct names from {ALL_SOURCES} (at least one); unknown: {unknown}")
    return sources


def build_video_dataset(split: str, n: int, frames: int = 16, resolution: int = 32,
                        sources: Sequence[str] = SOURCES, seed: int = 0) -> dict[str, np.ndarray]:
    """Build (or load from the cache) `n` clips of `split`, interleaving `sources` round-robin.

    Args:
        split: "train" or "val" (disjoint photos, faces and scene seeds; see the module docstring).
        n: number of clips.
        frames: T, frames per clip (1..64).
        resolution: side R in pixels, one of `RESOLUTIONS`.
        sources: names from `ALL_SOURCES`; clip i comes from sources[i % len(sources)].
        seed: in [0, 2**31); picks the moves and scenes.

    Returns:
        videos: uint8 (N, T, R, R, 3).
        source: int64 (N,), index into `ALL_SOURCES`.
        captions: unicode (N,), what moves and how.
        origin: unicode (N,), where the pixels come from: 'shapes<scene seed>' (also 'fades<seed>',
            'patterns<seed>'), the photo name, or 'lfw<index>'; train and val origins never meet.
    """
    sources = _check_args(split, n, frames, resolution, sources, seed)
    params = {"version": VERSION, "split": split, "n": int(n), "frames": int(frames), "resolution": int(resolution),
              "sources": list(sources), "seed": int(seed)}
    return cached_arrays("video", params, lambda: _build(split, int(n), int(frames), int(resolution), sources, int(seed)))


def _build(split: str, n: int, frames: int, resolution: int, sources: tuple[str, ...], seed: int) -> dict[str, np.ndarray]:
    videos = np.empty((n, frames, resolution, resolution, 3), np.uint8)
    source = np.empty(n, np.int64)
    captions, origins = [""] * n, [""] * n
    for i in range(n):
        name, j = sources[i % len(sources)], i // len(sources)
        source[i] = ALL_SOURCES.index(name)
        if name in ("shapes", "fades", "patterns"):  # drawn from a scene seed of their own, split as shapes
            scene_seed = SHAPES_SEED_BASE[split] + seed * 2**32 + j
            draw = {"shapes": shapes_clip, "fades": _fade_clip, "patterns": _pattern_clip}[name]
            videos[i], captions[i] = draw(scene_seed, frames, resolution)
            origins[i] = f"{name}{scene_seed}"
        else:
            draw = {"pans": _pan_clip, "faces": _face_clip, "still": _still_clip, "objects": _objects_clip}[name]
            videos[i], captions[i], origins[i] = draw(split, seed, j, frames, resolution)
    return {"videos": videos, "source": source, "captions": np.array(captions, dtype=str),
            "origin": np.array(origins, dtype=str)}


def val_clips(n: int = 96, frames: int = 16, resolution: int = 32) -> dict[str, np.ndarray]:
    """THE validation set every video tokenizer reports on: val split, seed `VAL_SEED`, all sources."""
    return build_video_dataset("val", n, frames, resolution, SOURCES, seed=VAL_SEED)


def source_val_clips(n: int = 16, frames: int = 16, resolution: int = 32) -> dict[str, dict[str, np.ndarray]]:
    """Validation clips, one set per source of `ALL_SOURCES` (`n` clips each, val split, seed `VAL_SEED`), so
    training runs and benchmarks report per source."""
    return {name: build_video_dataset("val", n, frames, resolution, (name,), seed=VAL_SEED) for name in ALL_SOURCES}


class VideoDataset(torch.utils.data.Dataset):
    """A built clip set as a torch Dataset of dicts: {"video": float (3, T, R, R) in [0, 1], "source", "caption"}."""

    def __init__(self, split: str, n: int, frames: int = 16, resolution: int = 32,
                 sources: Sequence[str] = SOURCES, seed: int = 0) -> None:
        self.arrays = build_video_dataset(split, n, frames, resolution, sources, seed)

    @classmethod
    def from_arrays(cls, arrays: dict[str, np.ndarray]) -> VideoDataset:
        """Wrap arrays already built (e.g. `val_clips()`)."""
        self = cls.__new__(cls)
        self.arrays = arrays
        return self

    def __len__(self) -> int:
        return len(self.arrays["videos"])

    def __getitem__(self, i: int) -> dict[str, torch.Tensor | int | str]:
        a = self.arrays
        return {"video": videos_to_tensor(a["videos"][i]), "source": int(a["source"][i]), "caption": str(a["captions"][i])}
