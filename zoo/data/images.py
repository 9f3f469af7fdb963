"""Images for training and evaluating image tokenizers (and a small ViT classifier), built offline.

Seven sources, each split train/val by where its pixels come from, never by crop:

- ``natural``: random square crops (log-uniform scale from `NATURAL_MIN_SCALE` to the whole short
  side, uniform position, random horizontal flip) of scikit-image's bundled photos, resized with PIL
  (Lanczos). Train crops come only from `NATURAL_IMAGES["train"]`, val crops only from
  `NATURAL_IMAGES["val"]`; grey photos are repeated to RGB.
- ``faces``: scikit-image's LFW subset (`skimage.data.lfw_subset()`: its first 100 images are 25x25
  grey faces, the other 100 non-faces, which we skip). Faces 0-79 are train, 80-99 val
  (`FACE_INDICES`). Each sample is a random 75-100% crop, flipped at random, resized (bicubic).
- ``shapes``: procedural scenes of circles, squares, triangles, stars and crosses in named colours,
  with a caption ("two red circles and a striped blue star on a black background") and class labels
  for the main object (the first one named): kind, colour and count. `LEVELS` sets the complexity,
  from 0 (one flat shape on a flat background) to 4 (many textured shapes on a textured background,
  with text). Scene `i` of a split is drawn from its own integer seed,
  ``SHAPES_SEED_BASE[split] + seed * 2**32 + i``: train seeds lie in [0, 2**63) and val seeds in
  [2**63, 2**64), so no val scene is ever a train scene (`render_scene` re-draws any one of them).
- ``flat``: one uniform colour, uniform in the RGB cube, with each channel pushed to 0 or 255 a third
  of the time (saturated colours are what the first models never saw).
- ``gradients``: a linear (two thirds) or radial ramp between two random colours.
- ``textures``: procedural textures in random colours: 1/f^beta noise (beta 1-3) mapped onto a
  two-colour ramp, or stripes / a checker / dots at a random period and angle.
- ``jittered``: natural crops (same photos and split as ``natural``) with colour jitter: hue rotation,
  saturation 0-2x, brightness 0.6-1.4x, contrast 0.6-1.4x.

  flat, gradients and textures are generated from seeds, ``SHAPES_SEED_BASE[split] + seed * 2**32 + j``
  as for shapes, so val never repeats train; they are not part of `mixed_val_set` (the set the cards
  of the first checkpoints report on), but `source_val_sets` reports on each.

`real_photo_crops` holds out more than the val photos: crops of `HELDOUT_PHOTOS` (the val photos and
matplotlib's bundled Grace Hopper portrait, which no builder trains on), the real inputs the
benchmarks compare tokenizers and baselines on.

`build_image_dataset` interleaves the requested sources round-robin (image ``i`` comes from
``sources[i % len(sources)]``), cycles natural crops over their source photos, faces over their
indices and shapes over the complexity levels, so every prefix of a build is balanced, and image
``i`` depends only on ``(split, seed, resolution, sources, i)``: a larger build extends a smaller one.
Builds are deterministic (same arguments, same bytes) and cached by `zoo.data.cache.cached_arrays`.
`mixed_val_set` is the one validation set every image tokenizer reports on.

    data = build_image_dataset("train", 4096)            # {'images': (4096, 32, 32, 3) uint8, ...}
    x = images_to_tensor(data["images"])                 # float (4096, 3, 32, 32) in [0, 1]
    ds = ImageDataset("train", 4096, resolution=64)      # ds[i]["image"]: float (3, 64, 64)
"""

from __future__ import annotations

import io
import math
from dataclasses import dataclass
from functools import lru_cache
from typing import Sequence

import numpy as np
import torch
from einops import rearrange, repeat
from PIL import Image, ImageDraw, ImageFont

from zoo.data.cache import cached_arrays

VERSION = 1  # bump when the builders' output changes, so stale caches are not reused
SPLITS = ("train", "val")
SOURCES = ("natural", "faces", "shapes")  # the default build and `mixed_val_set`
# the `source` array holds indices into ALL_SOURCES (SOURCES first, so their indices keep their meaning)
ALL_SOURCES = (*SOURCES, "flat", "gradients", "textures", "jittered")
RESOLUTIONS = (16, 32, 64, 128)
MIXED_VAL_SEED = 0
MAX_SEED = 2**31

# --------------------------------------------------------------------------------------------------
# Natural crops and faces
# --------------------------------------------------------------------------------------------------

# `skimage.data` functions that work offline (bundled with the wheel; `eagle`, `kidney`, `lily`,
# `skin`, ... need a download and are left out), split by photo. Synthetic images (checkerboard,
# colorwheel, logo, horse, binary_blobs) are left out too; `cat` is `chelsea`, so only one is used.
NATURAL_IMAGES: dict[str, tuple[str, ...]] = {
    "train": (
        "astronaut", "coffee", "hubble_deep_field", "immunohistochemistry", "stereo_motorcycle",
        "retina", "brick", "clock", "coins", "grass", "moon", "page", "text", "cell",
    ),
    "val": ("chelsea", "rocket", "camera", "gravel"),
}
# photos no builder ever trains on: the natural val photos, and matplotlib's bundled sample photo
HELDOUT_PHOTOS = (*NATURAL_IMAGES["val"], "matplotlib:grace_hopper.jpg")
NATURAL_MIN_SCALE = 0.12  # smallest crop side, as a fraction of the photo's short side
FACE_INDICES: dict[str, range] = {"train": range(0, 80), "val": range(80, 100)}
FACE_MIN_SCALE = 0.75


@lru_cache(maxsize=None)
def _natural_photo(name: str) -> Image.Image:
    """One bundled scikit-image photo (or "matplotlib:<file>", one of matplotlib's sample photos) as an RGB PIL
    image (grey repeated to three channels)."""
    if name.startswith("matplotlib:"):
        import matplotlib.cbook

        with matplotlib.cbook.get_sample_data(name.partition(":")[2]) as f:
            return Image.open(f).convert("RGB")
    import skimage.data

    img = getattr(skimage.data, name)()
    if name == "stereo_motorcycle":
        img = img[0]  # (left, right, disparity): the right view is nearly the same photo
    return Image.fromarray(np.asarray(img, dtype=np.uint8)).convert("RGB")


@lru_cache(maxsize=1)
def _faces() -> np.ndarray:
    """The LFW faces: uint8 (100, 25, 25)."""
    import skimage.data

    return np.round(skimage.data.lfw_subset()[:100] * 255).astype(np.uint8)


def _natural_crop(split: str, seed: int, j: int, resolution: int,
                  names: tuple[str, ...] | None = None, stream: int = 0) -> tuple[np.ndarray, str]:
    """Crop `j` of the natural photos of `split` (or of `names`): uint8 (R, R, 3) and the photo's name.

    `stream` separates random streams that crop the same photos (0 for ``natural``)."""
    names = NATURAL_IMAGES[split] if names is None else names
    name = names[j % len(names)]
    photo = _natural_photo(name)
    key = [ALL_SOURCES.index("natural"), SPLITS.index(split), seed, j] + ([stream] if stream else [])
    rng = np.random.default_rng(key)
    short = min(photo.size)
    scale = math.exp(rng.uniform(math.log(NATURAL_MIN_SCALE), 0.0))
    side = max(round(short * scale), min(resolution, short))
    x0 = int(rng.integers(0, photo.size[0] - side + 1))
    y0 = int(rng.integers(0, photo.size[1] - side + 1))
    crop = photo.resize((resolution, resolution), Image.LANCZOS, box=(x0, y0, x0 + side, y0 + side),
                        reducing_gap=3.0)
    img = np.asarray(crop)
    if rng.random() < 0.5:
        img = img[:, ::-1]
    return np.ascontiguousarray(img), name


def _face_crop(split: str, seed: int, j: int, resolution: int) -> tuple[np.ndarray, str]:
    """Crop `j` of the LFW faces of `split`: uint8 (R, R, 3) and 'lfw<index>'."""
    indices = FACE_INDICES[split]
    index = indices[j % len(indices)]
    face = _faces()[index]
    rng = np.random.default_rng([SOURCES.index("faces"), SPLITS.index(split), seed, j])
    side = round(face.shape[0] * rng.uniform(FACE_MIN_SCALE, 1.0))
    x0, y0 = (int(v) for v in rng.integers(0, face.shape[0] - side + 1, size=2))
    crop = Image.fromarray(face).resize((resolution, resolution), Image.BICUBIC,
                                        box=(x0, y0, x0 + side, y0 + side))
    img = np.asarray(crop)
    if rng.random() < 0.5:
        img = img[:, ::-1]
    return repeat(img, "h w -> h w c", c=3).copy(), f"lfw{index}"


# --------------------------------------------------------------------------------------------------
# Procedural shape scenes
# --------------------------------------------------------------------------------------------------

KINDS = ("circle", "square", "triangle", "star", "cross")  # `label_kind` indexes this
PLURALS = {"circle": "circles", "square": "squares", "triangle": "triangles", "star": "stars",
           "cross": "crosses"}
COLOURS: dict[str, tuple[int, int, int]] = {  # `label_colour` indexes this (in insertion order)
    "red": (220, 40, 40), "orange": (245, 140, 20), "yellow": (240, 220, 40), "green": (40, 170, 60),
    "cyan": (40, 200, 220), "blue": (40, 80, 220), "purple": (140, 60, 200), "pink": (240, 120, 180),
}
BACKGROUNDS: dict[str, tuple[int, int, int]] = {
    "black": (15, 15, 15), "dark grey": (70, 70, 70), "light grey": (185, 185, 185),
    "white": (245, 245, 245),
}
COUNT_WORDS = ("one", "two", "three", "four")  # `label_count` is count - 1, an index into this
TEXTURE_WORDS = {"flat": "", "stripes": "striped", "checker": "checkered", "noise": "speckled"}
BACKGROUND_PHRASES = {"flat": "{}", "gradient": "{} gradient", "stripes": "striped {}",
                      "checker": "checkered {}", "noise": "speckled {}"}
WORDS = ("ZOO", "CAT", "HI", "OK", "ABC", "TOK", "GO", "YES", "NO", "RUN", "MAP", "SKY")
SHAPES_SEED_BASE = {"train": 0, "val": 2**63}
SUPERSAMPLE = 4  # scenes are drawn at 4x the resolution and box-filtered down, for clean edges


@dataclass(frozen=True)
class Level:
    """How a complexity level draws a scene.

    Args:
        max_count: the main object appears 1..max_count times.
        distractors: inclusive range of other objects (never the main kind in the main colour).
        textures: fills an object group may take (one per group, so the caption stays exact).
        backgrounds: background styles to draw from.
        text_p: probability of a word drawn on top.
        rotate: whether objects get a random rotation.
    """

    max_count: int
    distractors: tuple[int, int]
    textures: tuple[str, ...]
    backgrounds: tuple[str, ...]
    text_p: float
    rotate: bool


LEVELS = (
    Level(1, (0, 0), ("flat",), ("flat",), 0.0, False),
    Level(2, (0, 1), ("flat",), ("flat",), 0.0, True),
    Level(3, (1, 2), ("flat",), ("gradient",), 0.0, True),
    Level(4, (1, 2), ("flat", "stripes", "checker"), ("stripes", "checker"), 0.5, True),
    Level(4, (2, 3), ("stripes", "checker", "noise"), ("noise", "checker"), 1.0, True),
)


@dataclass(frozen=True)
class Scene:
    """One rendered scene: uint8 image (R, R, 3), caption and main-object labels (see `KINDS`...)."""

    image: np.ndarray
    caption: str
    kind: int
    colour: int
    count: int


@lru_cache(maxsize=8)
def _grid(size: int) -> tuple[np.ndarray, np.ndarray]:
    """Pixel-centre coordinates (y, x), each float (size, size)."""
    return np.mgrid[0:size, 0:size].astype(np.float32) + 0.5  # type: ignore[return-value]


@lru_cache(maxsize=16)
def _font(size: int) -> ImageFont.ImageFont | ImageFont.FreeTypeFont:
    try:
        return ImageFont.load_default(size=size)
    except (TypeError, OSError, ImportError):  # Pillow without FreeType: the fixed bitmap font
        return ImageFont.load_default()


def _texture(style: str, c1: tuple[int, ...], c2: tuple[int, ...], resolution: int,
             rng: np.random.Generator) -> np.ndarray:
    """A fill of the supersampled canvas: uint8 (S, S, 3), S = resolution * SUPERSAMPLE.

    Periods and noise are set in output pixels, so they survive the box filter down to `resolution`.
    """
    size = resolution * SUPERSAMPLE
    a, b = np.asarray(c1, np.float32), np.asarray(c2, np.float32)
    if style == "flat":
        return np.broadcast_to(a.astype(np.uint8), (size, size, 3))
    if style == "noise":
        noise = rng.normal(0.0, 40.0, (resolution, resolution, 3)).astype(np.float32)
        noise = repeat(noise, "h w c -> (h s1) (w s2) c", s1=SUPERSAMPLE, s2=SUPERSAMPLE)
        return np.clip(a + noise, 0, 255).astype(np.uint8)
    y, x = _grid(size)
    if style == "gradient":
        theta = rng.uniform(0, 2 * math.pi)
        t = (x * math.cos(theta) + y * math.sin(theta)) / size
        t = (t - t.min()) / (t.max() - t.min())
        return (a + (b - a) * t[..., None]).astype(np.uint8)
    period = int(rng.integers(2, 5)) * SUPERSAMPLE  # output pixels per band
    if style == "stripes":
        theta = rng.choice([0.0, 0.25, 0.5, 0.75]) * math.pi
        mask = np.floor((x * math.cos(theta) + y * math.sin(theta)) / period) % 2 == 1
    elif style == "checker":
        mask = (np.floor(x / period) + np.floor(y / period)) % 2 == 1
    else:
        raise ValueError(f"texture {style!r} is not one of {tuple(TEXTURE_WORDS)} or 'gradient'")
    return np.where(mask[..., None], b, a).astype(np.uint8)


def _polygon(kind: str, cx: float, cy: float, r: float, theta: float) -> list[tuple[float, float]]:
    """Vertices of `kind` centred at (cx, cy) with circumradius `r`, rotated by `theta`."""
    if kind == "square":
        local = [(math.cos(a), math.sin(a)) for a in np.arange(4) * math.pi / 2 + math.pi / 4]
    elif kind == "triangle":
        local = [(math.cos(a), math.sin(a)) for a in np.arange(3) * 2 * math.pi / 3 - math.pi / 2]
    elif kind == "star":
        local = [((1.0 if k % 2 == 0 else 0.45) * math.cos(a), (1.0 if k % 2 == 0 else 0.45) * math.sin(a))
                 for k, a in enumerate(np.arange(10) * math.pi / 5 - math.pi / 2)]
    elif kind == "cross":
        w = 0.33
        local = [(-w, -1), (w, -1), (w, -w), (1, -w), (1, w), (w, w), (w, 1), (-w, 1), (-w, w), (-1, w),
                 (-1, -w), (-w, -w)]
    else:
        raise ValueError(f"kind {kind!r} is not a polygon; expected one of {KINDS[1:]}")
    c, s = math.cos(theta), math.sin(theta)
    return [(cx + r * (u * c - v * s), cy + r * (u * s + v * c)) for u, v in local]


def _place(k: int, size: int, rng: np.random.Generator) -> list[tuple[float, float, float]]:
    """Centres and radii (cx, cy, r) of `k` non-overlapping discs in a (size, size) canvas.

    Rejection sampling; when a disc does not fit after 100 tries, every radius shrinks by 15% and
    placement starts over, so it always ends (deterministically, given `rng`).
    """
    r_max = min(0.35, 0.42 / math.sqrt(k)) * size
    while True:
        discs: list[tuple[float, float, float]] = []
        for _ in range(k):
            for _ in range(100):
                r = rng.uniform(0.6, 1.0) * r_max
                cx, cy = rng.uniform(r, size - r, size=2)
                if all((cx - x) ** 2 + (cy - y) ** 2 >= (r + q) ** 2 for x, y, q in discs):
                    discs.append((float(cx), float(cy), float(r)))
                    break
            else:
                break
        if len(discs) == k:
            return discs
        r_max *= 0.85


def _article(word: str) -> str:
    return "an" if word[0] in "aeiou" else "a"


def _phrase(count: int, texture: str, colour: str, kind: str) -> str:
    """'two striped red circles', 'an orange star'."""
    words = " ".join(w for w in (TEXTURE_WORDS[texture], colour) if w)
    if count == 1:
        return f"{_article(words)} {words} {kind}"
    return f"{COUNT_WORDS[count - 1]} {words} {PLURALS[kind]}"


def render_scene(scene_seed: int, level: int, resolution: int = 32) -> Scene:
    """Draw one shape scene from its own seed.

    The main object (kind, colour, count) is named first in the caption; distractors never share
    its kind and colour, so `count` is exact. Objects do not overlap (text, at levels 3-4, may
    cover part of them).

    Args:
        scene_seed: any non-negative integer (see `SHAPES_SEED_BASE` for the split ranges).
        level: complexity, 0..len(LEVELS) - 1.
        resolution: output side R in pixels.

    Returns:
        A `Scene` with image uint8 (R, R, 3).
    """
    if not 0 <= level < len(LEVELS):
        raise ValueError(f"level={level} is out of range; expected 0..{len(LEVELS) - 1}")
    spec = LEVELS[level]
    rng = np.random.default_rng(scene_seed)
    size = resolution * SUPERSAMPLE
    colour_names = list(COLOURS)

    kind, colour = int(rng.integers(len(KINDS))), int(rng.integers(len(COLOURS)))
    count = int(rng.integers(1, spec.max_count + 1))
    groups = [(count, str(rng.choice(spec.textures)), colour, kind)]  # (count, texture, colour, kind)
    for _ in range(int(rng.integers(spec.distractors[0], spec.distractors[1] + 1))):
        while True:
            d_kind, d_colour = int(rng.integers(len(KINDS))), int(rng.integers(len(COLOURS)))
            if (d_kind, d_colour) != (kind, colour):
                break
        same = [g for g in groups[1:] if (g[3], g[2]) == (d_kind, d_colour)]
        if same:  # a repeat joins its group, and takes its texture
            i = groups.index(same[0])
            groups[i] = (groups[i][0] + 1, *groups[i][1:])
        else:
            groups.append((1, str(rng.choice(spec.textures)), d_colour, d_kind))

    bg_name = list(BACKGROUNDS)[int(rng.integers(len(BACKGROUNDS)))]
    bg_style = str(rng.choice(spec.backgrounds))
    bg = np.asarray(BACKGROUNDS[bg_name], np.float32)
    bg2 = tuple(int(v) for v in (bg + 90 if bg.mean() < 128 else bg - 90))  # second tone, same side
    canvas = np.array(_texture(bg_style, BACKGROUNDS[bg_name], bg2, resolution, rng))

    discs = _place(sum(g[0] for g in groups), size, rng)
    objects = [(g, k) for g in groups for k in range(g[0])]
    for ((_, texture, c, kd), _), (cx, cy, r) in zip(objects, discs):
        rgb = COLOURS[colour_names[c]]
        dark = tuple(int(v * 0.55) for v in rgb)
        fill = _texture(texture, rgb, dark, resolution, rng)
        mask = Image.new("L", (size, size), 0)
        draw = ImageDraw.Draw(mask)
        theta = rng.uniform(0, 2 * math.pi) if spec.rotate else 0.0
        if KINDS[kd] == "circle":
            draw.ellipse((cx - r, cy - r, cx + r, cy + r), fill=255)
        else:
            draw.polygon(_polygon(KINDS[kd], cx, cy, r, theta), fill=255)
        inside = np.asarray(mask) > 0
        canvas[inside] = fill[inside]

    caption_parts = [_phrase(n, t, colour_names[c], KINDS[kd]) for n, t, c, kd in groups]
    caption = (caption_parts[0] if len(caption_parts) == 1
               else ", ".join(caption_parts[:-1]) + " and " + caption_parts[-1])
    bg_words = BACKGROUND_PHRASES[bg_style].format(bg_name)
    caption += f" on {_article(bg_words)} {bg_words} background"

    img = Image.fromarray(canvas)
    if rng.random() < spec.text_p:
        word = str(rng.choice(WORDS))
        font = _font(int(size * rng.uniform(0.22, 0.32)))
        x0, y0, x1, y1 = ImageDraw.Draw(img).textbbox((0, 0), word, font=font)
        tx = rng.uniform(0, max(size - (x1 - x0), 1)) - x0
        ty = rng.uniform(0, max(size - (y1 - y0), 1)) - y0
        ink = (0, 0, 0) if bg.mean() >= 128 else (255, 255, 255)
        ImageDraw.Draw(img).text((tx, ty), word, fill=ink, font=font)
        caption += f' with the text "{word}"'

    image = np.asarray(img.resize((resolution, resolution), Image.BOX))
    return Scene(image=image, caption=caption, kind=kind, colour=colour, count=count)


# --------------------------------------------------------------------------------------------------
# Flat colours, gradients, textures, colour jitter
# --------------------------------------------------------------------------------------------------

SATURATE_P = 1 / 3  # per channel, the chance a flat colour's (or a ramp end's) channel is pushed to 0 or 255


def _random_colour(rng: np.random.Generator) -> np.ndarray:
    """float (3,) in [0, 255]: uniform in the RGB cube, each channel saturated with probability `SATURATE_P`."""
    c = rng.uniform(0, 255, 3)
    return np.where(rng.random(3) < SATURATE_P, np.where(rng.random(3) < 0.5, 0.0, 255.0), c)


def flat_image(rng: np.random.Generator, resolution: int) -> np.ndarray:
    """One uniform colour: uint8 (R, R, 3)."""
    return np.broadcast_to(np.round(_random_colour(rng)).astype(np.uint8), (resolution, resolution, 3)).copy()


def gradient_image(rng: np.random.Generator, resolution: int) -> np.ndarray:
    """A linear (2/3) or radial ramp between two random colours: uint8 (R, R, 3)."""
    y, x = _grid(resolution)
    if rng.random() < 2 / 3:
        theta = rng.uniform(0, 2 * math.pi)
        t = x * math.cos(theta) + y * math.sin(theta)
    else:
        cx, cy = rng.uniform(0, resolution, 2)
        t = np.hypot(x - cx, y - cy)
    t = (t - t.min()) / max(float(t.max() - t.min()), 1e-6)
    a, b = _random_colour(rng), _random_colour(rng)
    return np.round(a + (b - a) * t[..., None]).astype(np.uint8)


def texture_image(rng: np.random.Generator, resolution: int) -> np.ndarray:
    """A procedural texture in two random colours: uint8 (R, R, 3).

    Half are 1/f^beta noise (beta uniform in [1, 3], smooth clouds to grain) mapped onto a ramp between
    the colours; the rest stripes, a checker or dots at a random period (2-12 px) and angle, drawn at
    `SUPERSAMPLE` x and box-filtered down.
    """
    a, b = _random_colour(rng), _random_colour(rng)
    if rng.random() < 0.5:
        beta = rng.uniform(1.0, 3.0)
        fy = np.fft.fftfreq(resolution)[:, None]
        fx = np.fft.rfftfreq(resolution)[None, :]
        amp = np.hypot(fy, fx)
        amp[0, 0] = 1.0
        spec = (rng.normal(size=amp.shape) + 1j * rng.normal(size=amp.shape)) / amp ** (beta / 2)
        spec[0, 0] = 0.0
        t = np.fft.irfft2(spec, s=(resolution, resolution))
        t = (t - t.min()) / max(float(t.max() - t.min()), 1e-9)
    else:
        size = resolution * SUPERSAMPLE
        y, x = _grid(size)
        period = rng.uniform(2.0, 12.0) * SUPERSAMPLE
        theta = rng.uniform(0, math.pi)
        u = (x * math.cos(theta) + y * math.sin(theta)) / period
        v = (-x * math.sin(theta) + y * math.cos(theta)) / period
        style = int(rng.integers(3))
        if style == 0:  # stripes
            mask = np.floor(u) % 2 == 1
        elif style == 1:  # checker
            mask = (np.floor(u) + np.floor(v)) % 2 == 1
        else:  # dots
            mask = np.hypot(u - np.floor(u) - 0.5, v - np.floor(v) - 0.5) < rng.uniform(0.15, 0.45)
        t = mask.astype(np.float32).reshape(resolution, SUPERSAMPLE, resolution, SUPERSAMPLE).mean((1, 3))
    return np.round(a + (b - a) * t[..., None]).astype(np.uint8)


def colour_jitter(img: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Hue rotation (any angle), saturation x[0, 2], brightness x[0.6, 1.4], contrast x[0.6, 1.4]: uint8 (H, W, 3)."""
    x = img.astype(np.float32) / 255.0
    # hue and saturation act on the chroma plane of YIQ, which keeps luma
    yiq = np.array([[0.299, 0.587, 0.114], [0.596, -0.274, -0.322], [0.211, -0.523, 0.312]], np.float32)
    q = x @ yiq.T
    angle, sat = rng.uniform(0, 2 * math.pi), rng.uniform(0.0, 2.0)
    c, s_ = math.cos(angle) * sat, math.sin(angle) * sat
    q[..., 1], q[..., 2] = c * q[..., 1] - s_ * q[..., 2], s_ * q[..., 1] + c * q[..., 2]
    x = q @ np.linalg.inv(yiq).T
    x = x * rng.uniform(0.6, 1.4)
    mean = x.mean()
    x = mean + (x - mean) * rng.uniform(0.6, 1.4)
    return np.round(np.clip(x, 0.0, 1.0) * 255).astype(np.uint8)


GENERATED = {"flat": flat_image, "gradients": gradient_image, "textures": texture_image}


# --------------------------------------------------------------------------------------------------
# Builders
# --------------------------------------------------------------------------------------------------


def png_complexity(img: np.ndarray) -> int:
    """Bytes of `img` as a PNG (zlib level 9): a cheap, deterministic measure of visual complexity.

    Args:
        img: uint8 (H, W, 3) or (H, W).
    """
    img = np.asarray(img)
    if img.dtype != np.uint8 or not (img.ndim == 2 or (img.ndim == 3 and img.shape[-1] == 3)):
        raise ValueError(f"png_complexity expects uint8 (H, W, 3) or (H, W), got {img.dtype} {img.shape}")
    buf = io.BytesIO()
    Image.fromarray(img).save(buf, format="PNG", compress_level=9)
    return buf.tell()


def images_to_tensor(images: np.ndarray) -> torch.Tensor:
    """uint8 (..., H, W, 3) -> float (..., 3, H, W) in [0, 1], the layout tokenizers take."""
    if images.dtype != np.uint8 or images.ndim < 3 or images.shape[-1] != 3:
        raise ValueError(f"images must be uint8 (..., H, W, 3), got {images.dtype} {images.shape}")
    x = torch.from_numpy(np.ascontiguousarray(images))
    return rearrange(x, "... h w c -> ... c h w").float().div_(255.0)


def _check_args(split: str, n: int, resolution: int, sources: Sequence[str], seed: int) -> tuple[str, ...]:
    if split not in SPLITS:
        raise ValueError(f"split={split!r} is not one of {SPLITS}")
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or not 1 <= n < 2**32:
        raise ValueError(f"n={n!r} must be an integer in [1, 2**32)")
    if resolution not in RESOLUTIONS:
        raise ValueError(f"resolution={resolution!r} is not one of {RESOLUTIONS}")
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or not 0 <= seed < MAX_SEED:
        raise ValueError(f"seed={seed!r} must be an integer in [0, 2**31)")
    sources = (sources,) if isinstance(sources, str) else tuple(sources)
    unknown = [s for s in sources if s not in ALL_SOURCES]
    if not sources or unknown or len(set(sources)) != len(sources):
        raise ValueError(f"sources={sources!r} must be distinct names from {ALL_SOURCES} (at least one); "
                         f"unknown: {unknown}")
    return sources


def build_image_dataset(split: str, n: int, resolution: int = 32,
                        sources: Sequence[str] = SOURCES, seed: int = 0, workers: int = 0) -> dict[str, np.ndarray]:
    """Build (or load from the cache) `n` images of `split`, interleaving `sources` round-robin.

    Args:
        split: "train" or "val" (disjoint photos, faces and scene seeds; see the module docstring).
        n: number of images.
        resolution: side R in pixels, one of `RESOLUTIONS`.
        sources: names from `ALL_SOURCES`; image i comes from sources[i % len(sources)].
        seed: in [0, 2**31); picks crops and scenes.
        workers: build in this many processes (0 or 1: in this one). The bytes are the same either way, so
            the cache does not tell them apart; a GPU machine's cores build a large train set in seconds.

    Returns:
        images: uint8 (N, R, R, 3).
        source: int64 (N,), index into `ALL_SOURCES`.
        complexity: int64 (N,), the shape scene's level 0..4 (cycling), -1 for natural and faces.
        png_bytes: int64 (N,), `png_complexity` of each image (defined for every source).
        captions: unicode (N,), the scene's caption for shapes, "" for natural and faces.
        origin: unicode (N,), where the pixels come from: the photo name, 'lfw<index>', or
            'shapes<scene seed>'; train and val origins never meet.
        label_kind, label_colour, label_count: int64 (N,), indices into `KINDS`, `COLOURS`,
            `COUNT_WORDS` (count - 1) for shapes, -1 for natural and faces.
    """
    sources = _check_args(split, n, resolution, sources, seed)
    params = {"version": VERSION, "split": split, "n": int(n), "resolution": int(resolution),
              "sources": list(sources), "seed": int(seed)}
    if isinstance(workers, bool) or not isinstance(workers, int) or workers < 0:
        raise ValueError(f"workers must be an int >= 0, got {workers!r}")
    return cached_arrays("images", params, lambda: _build_parallel(split, int(n), int(resolution), sources,
                                                                   int(seed), workers))


def _build_parallel(split: str, n: int, resolution: int, sources: tuple[str, ...], seed: int,
                    workers: int) -> dict[str, np.ndarray]:
    """`_build` of images 0..n-1, in `workers` processes over contiguous ranges (image i depends only on i)."""
    if workers <= 1 or n < 2 * workers:
        return _build(split, n, resolution, sources, seed)
    from concurrent.futures import ProcessPoolExecutor

    bounds = np.linspace(0, n, workers + 1).astype(int)
    with ProcessPoolExecutor(workers) as pool:
        parts = list(pool.map(_build, *zip(*[(split, int(b - a), resolution, sources, seed, int(a))
                                              for a, b in zip(bounds[:-1], bounds[1:])])))
    return {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}


def _build(split: str, n: int, resolution: int, sources: tuple[str, ...], seed: int,
           start: int = 0) -> dict[str, np.ndarray]:
    """Images start..start+n-1 of the build (see `build_image_dataset`)."""
    images = np.empty((n, resolution, resolution, 3), np.uint8)
    source, complexity = np.empty(n, np.int64), np.full(n, -1, np.int64)
    labels = np.full((3, n), -1, np.int64)  # kind, colour, count
    captions, origins = [""] * n, [""] * n
    for k in range(n):
        i = start + k
        name, j = sources[i % len(sources)], i // len(sources)
        source[k] = ALL_SOURCES.index(name)
        if name == "natural":
            images[k], origins[k] = _natural_crop(split, seed, j, resolution)
        elif name == "faces":
            images[k], origins[k] = _face_crop(split, seed, j, resolution)
        elif name == "jittered":
            crop, photo = _natural_crop(split, seed, j, resolution, stream=1)
            rng = np.random.default_rng([ALL_SOURCES.index("jittered"), SPLITS.index(split), seed, j])
            images[k], origins[k] = colour_jitter(crop, rng), photo
        elif name in GENERATED:
            scene_seed = SHAPES_SEED_BASE[split] + seed * 2**32 + j
            rng = np.random.default_rng([ALL_SOURCES.index(name), scene_seed])
            images[k], origins[k] = GENERATED[name](rng, resolution), f"{name}{scene_seed}"
        else:
            scene_seed = SHAPES_SEED_BASE[split] + seed * 2**32 + j
            level = j % len(LEVELS)
            scene = render_scene(scene_seed, level, resolution)
            images[k], captions[k], origins[k] = scene.image, scene.caption, f"shapes{scene_seed}"
            complexity[k] = level
            labels[:, k] = scene.kind, scene.colour, scene.count - 1
    return {
        "images": images, "source": source, "complexity": complexity,
        "png_bytes": np.array([png_complexity(im) for im in images], np.int64),
        "captions": np.array(captions, dtype=str), "origin": np.array(origins, dtype=str),
        "label_kind": labels[0], "label_colour": labels[1], "label_count": labels[2],
    }


def mixed_val_set(n: int = 256, resolution: int = 32) -> dict[str, np.ndarray]:
    """THE validation set every image tokenizer reports on (same keys as `build_image_dataset`).

    Val split, seed `MIXED_VAL_SEED`, all three sources interleaved: a third natural crops (cycling
    over the val photos), a third LFW val faces, a third shape scenes (cycling over levels 0..4).
    """
    return build_image_dataset("val", n, resolution, SOURCES, seed=MIXED_VAL_SEED)


def source_val_sets(n: int = 48, resolution: int = 32) -> dict[str, dict[str, np.ndarray]]:
    """Validation sets, one per source: {"photos": `real_photo_crops`, "faces": ..., "flat": ..., ...}.

    Each is `n` images of the val split (seed `MIXED_VAL_SEED`) from that source alone, so training runs
    and benchmarks can report per source; "photos" replaces "natural" and "jittered" (its photos are held out
    from every builder).
    """
    sets = {"photos": real_photo_crops(n, resolution)}
    for name in ("faces", "shapes", "flat", "gradients", "textures"):
        sets[name] = build_image_dataset("val", n, resolution, (name,), seed=MIXED_VAL_SEED)
    return sets


def real_photo_crops(n: int = 48, resolution: int = 32, seed: int = 0) -> dict[str, np.ndarray]:
    """Held-out real inputs: `n` random crops (scales as ``natural``) of `HELDOUT_PHOTOS`, cycling over them.

    Returns {"images": uint8 (N, R, R, 3), "origin": unicode (N,) photo names}.
    """
    _check_args("val", n, resolution, ("natural",), seed)

    def build() -> dict[str, np.ndarray]:
        crops = [_natural_crop("val", seed, j, resolution, names=HELDOUT_PHOTOS, stream=2) for j in range(n)]
        return {"images": np.stack([c for c, _ in crops]), "origin": np.array([o for _, o in crops], dtype=str)}

    return cached_arrays("real_photos", {"version": VERSION, "n": int(n), "resolution": int(resolution),
                                         "seed": int(seed), "photos": list(HELDOUT_PHOTOS)}, build)


class ImageDataset(torch.utils.data.Dataset):
    """A built image set as a torch Dataset of dicts, for DataLoaders and Lightning DataModules.

    Item: {"image": float (3, R, R) in [0, 1], "source", "complexity", "label_kind", "label_colour",
    "label_count": int (-1 where undefined), "caption": str}.
    """

    def __init__(self, split: str, n: int, resolution: int = 32, sources: Sequence[str] = SOURCES,
                 seed: int = 0) -> None:
        self.arrays = build_image_dataset(split, n, resolution, sources, seed)

    @classmethod
    def from_arrays(cls, arrays: dict[str, np.ndarray]) -> ImageDataset:
        """Wrap arrays already built (e.g. `mixed_val_set()`)."""
        self = cls.__new__(cls)
        self.arrays = arrays
        return self

    def __len__(self) -> int:
        return len(self.arrays["images"])

    def __getitem__(self, i: int) -> dict[str, torch.Tensor | int | str]:
        a = self.arrays
        item: dict[str, torch.Tensor | int | str] = {"image": images_to_tensor(a["images"][i])}
        for key in ("source", "complexity", "label_kind", "label_colour", "label_count"):
            item[key] = int(a[key][i])
        item["caption"] = str(a["captions"][i])
        return item


def shape_scenes(split: str, n: int, levels: Sequence[int] = (0,), seed: int = 0, resolution: int = 32) -> dict[str, np.ndarray]:
    """`n` shape scenes of the given complexity levels (scene i at levels[i % len]), cached.

    Returns: images uint8 (n, R, R, 3), captions, label_kind, label_colour, label_count (count - 1).
    """
    if split not in SPLITS:
        raise ValueError(f"split={split!r} is not one of {SPLITS}")
    levels = [int(v) for v in levels]

    def build() -> dict[str, np.ndarray]:
        scenes = [render_scene(SHAPES_SEED_BASE[split] + seed * 2**32 + i, levels[i % len(levels)], resolution)
                  for i in range(n)]
        return {"images": np.stack([s.image for s in scenes]), "captions": np.array([s.caption for s in scenes]),
                "label_kind": np.array([s.kind for s in scenes]), "label_colour": np.array([s.colour for s in scenes]),
                "label_count": np.array([s.count - 1 for s in scenes])}

    params = {"split": split, "n": n, "levels": levels, "seed": seed, "resolution": resolution, "version": VERSION}
    return cached_arrays("lm-scenes", params, build)
