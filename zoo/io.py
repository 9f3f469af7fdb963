"""Reading inputs from files and writing reconstructions, per modality (used by `zoo encode/decode`).

Each reader returns a batch laid out as the modality's contract says; each writer takes one.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from torch import Tensor


def _read_array(path: Path) -> np.ndarray:
    if path.suffix == ".npy":
        try:
            return np.load(path, allow_pickle=False)
        except Exception as e:  # numpy raises ValueError, EOFError, OSError... on damaged files
            raise ValueError(f"{path} is not a readable .npy array of numbers (pickled objects are refused): {e}") from e
    if path.suffix == ".csv":
        try:
            return np.loadtxt(path, delimiter=",", ndmin=2, dtype=np.float32)
        except Exception as e:  # ValueError on text, UnicodeDecodeError on binary
            raise ValueError(f"{path} is not a numeric CSV (one row per step, one column per dof): {e}") from e
    raise ValueError(f"unsupported file type {path.suffix!r} for {path.name}")


def read_actions(path: Path) -> Tensor:
    """.npy (T, D) or (B, T, D), or .csv with one row per step → (B, T, D) float32."""
    x = np.asarray(_read_array(path))
    if x.ndim == 2:
        x = x[None]
    if x.ndim != 3 or not np.issubdtype(x.dtype, np.number):
        raise ValueError(f"{path}: expected a numeric (T, D) or (B, T, D) array, got {x.dtype} {x.shape}")
    return torch.from_numpy(x.astype(np.float32))


def write_actions(path: Path, x: Tensor) -> None:
    a = x.detach().cpu().numpy()
    if path.suffix == ".csv":
        if a.shape[0] != 1:
            raise ValueError(f"a .csv holds one trajectory; got a batch of {a.shape[0]}, write .npy instead")
        np.savetxt(path, a[0], delimiter=",", fmt="%.6g")
    elif path.suffix == ".npy":
        np.save(path, a[0] if a.shape[0] == 1 else a)
    else:
        raise ValueError(f"actions are written as .npy or .csv, got {path.name!r}")


def read_image(path: Path) -> Tensor:
    """An image file (PNG/JPEG/...) → (1, 3, H, W) in [0, 1]; a .npy (B, 3, H, W) float is taken as is."""
    if path.suffix == ".npy":
        return torch.from_numpy(np.asarray(_read_array(path), dtype=np.float32))
    from PIL import Image, UnidentifiedImageError

    try:
        img = np.asarray(Image.open(path).convert("RGB"), dtype=np.float32) / 255.0
    except (UnidentifiedImageError, OSError) as e:
        raise ValueError(f"{path} is not a readable image: {e}") from e
    return torch.from_numpy(img).permute(2, 0, 1)[None].contiguous()


def write_image(path: Path, x: Tensor) -> None:
    from PIL import Image

    if path.suffix == ".npy":
        np.save(path, x.detach().cpu().numpy())
        return
    if x.shape[0] != 1:
        raise ValueError(f"an image file holds one image; got a batch of {x.shape[0]}, write .npy instead")
    img = (x[0].detach().clamp(0, 1).permute(1, 2, 0).cpu().numpy() * 255).round().astype(np.uint8)
    Image.fromarray(img).save(path)


def read_audio(path: Path, sample_rate: int | None = None) -> Tensor:
    """A sound file (WAV/FLAC/OGG via soundfile) → (1, C, S) float32. The rate must match the contract."""
    import soundfile as sf

    try:
        data, rate = sf.read(str(path), dtype="float32", always_2d=True)
    except (RuntimeError, sf.LibsndfileError) as e:
        raise ValueError(f"{path} is not a readable sound file: {e}") from e
    if sample_rate is not None and rate != sample_rate:
        raise ValueError(f"{path} is sampled at {rate} Hz; this tokenizer expects {sample_rate} Hz (resample it first)")
    return torch.from_numpy(data.T.copy())[None]


def write_audio(path: Path, x: Tensor, sample_rate: int) -> None:
    import soundfile as sf

    if x.shape[0] != 1:
        raise ValueError(f"a sound file holds one clip; got a batch of {x.shape[0]}")
    sf.write(str(path), x[0].detach().cpu().numpy().T, sample_rate)


VIDEO_SUFFIXES = (".gif", ".mp4", ".npy")


def read_video(path: Path) -> Tensor:
    """A .gif or .mp4 (decoded with PyAV) → (1, 3, T, H, W) in [0, 1]; a .npy (B, 3, T, H, W) float is taken as is."""
    if path.suffix == ".npy":
        return torch.from_numpy(np.asarray(_read_array(path), dtype=np.float32))
    if path.suffix not in VIDEO_SUFFIXES:
        raise ValueError(f"videos are read from {', '.join(VIDEO_SUFFIXES)}; got {path.name!r}")
    import av

    try:
        with av.open(str(path)) as container:
            frames = [f.to_ndarray(format="rgb24") for f in container.decode(video=0)]
    except (av.FFmpegError, ValueError, IndexError) as e:  # IndexError: a file with no video stream
        raise ValueError(f"{path} is not a readable video: {e}") from e
    if not frames:
        raise ValueError(f"{path} holds no video frames")
    x = torch.from_numpy(np.stack(frames)).float().div_(255.0)  # (T, H, W, 3)
    return x.permute(3, 0, 1, 2)[None].contiguous()


def write_video(path: Path, x: Tensor, fps: int = 8) -> None:
    """x: (1, 3, T, H, W) in [0, 1] → a .gif (lossless for <= 256 colours a frame) or .mp4 (H.264, lossy);
    .npy keeps the whole batch exactly."""
    if path.suffix == ".npy":
        np.save(path, x.detach().cpu().numpy())
        return
    if path.suffix not in VIDEO_SUFFIXES:
        raise ValueError(f"videos are written as {', '.join(VIDEO_SUFFIXES)}; got {path.name!r}")
    if x.ndim != 5 or x.shape[0] != 1 or x.shape[1] != 3:
        raise ValueError(f"a video file holds one clip (1, 3, T, H, W); got shape {tuple(x.shape)}, write .npy instead")
    frames = (x[0].detach().clamp(0, 1).permute(1, 2, 3, 0).cpu().numpy() * 255).round().astype(np.uint8)  # (T, H, W, 3)
    if path.suffix == ".gif":
        from PIL import Image

        images = [Image.fromarray(f) for f in frames]
        images[0].save(path, save_all=True, append_images=images[1:], duration=round(1000 / fps), loop=0,
                       optimize=False, disposal=1)
        return
    import av

    h, w = frames.shape[1:3]
    if h % 2 or w % 2:
        raise ValueError(f"H.264 needs even frame sizes, got {h}x{w}; write .gif or .npy instead")
    with av.open(str(path), mode="w") as container:
        stream = container.add_stream("libx264", rate=fps)
        stream.width, stream.height, stream.pix_fmt = w, h, "yuv444p"
        stream.options = {"crf": "12"}
        for f in frames:
            for packet in stream.encode(av.VideoFrame.from_ndarray(f, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)


def read_raw(path: str | Path, modality: str) -> object:
    """A file as the modality's processor takes it (`zoo.processing`): an image path or a .npy batch, a
    (1, 3, T, H, W) clip, or (wave (C, S), sample rate)."""
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"no input file at {str(path)!r}")
    if modality == "image":
        return torch.from_numpy(np.asarray(_read_array(path), dtype=np.float32)) if path.suffix == ".npy" else path
    if modality == "video":
        return read_video(path)
    if modality == "audio":
        from zoo.processing import read_sound

        return read_sound(path)
    raise ValueError(f"no processor reads {modality!r} files")


def read_input(path: str | Path, modality: str, sample_rate: int | None = None) -> Tensor:
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"no input file at {str(path)!r}")
    if modality == "action":
        return read_actions(path)
    if modality == "image":
        return read_image(path)
    if modality == "audio":
        return read_audio(path, sample_rate)
    if modality == "video":
        return read_video(path)
    raise ValueError(f"no file reader for modality {modality!r}")


def write_output(path: str | Path, x: Tensor, modality: str, sample_rate: int | None = None) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if modality == "action":
        write_actions(path, x)
    elif modality == "image":
        write_image(path, x)
    elif modality == "audio":
        write_audio(path, x, sample_rate or 16000)
    elif modality == "video":
        write_video(path, x)
    else:
        raise ValueError(f"no file writer for modality {modality!r}")
