"""The one interface: `Tokenizer` (an nn.Module), `Tokens` (what encode returns), `TokenSpec` (the contract).

Every family in the zoo subclasses `Tokenizer`, declares a config dataclass, and implements `encode`
and `decode`. Input checks shared by all families live here too, so every tokenizer rejects bad input
with the same clear `ValueError`s.
"""

from __future__ import annotations

import contextlib
import contextvars
import dataclasses
import functools
import hashlib
import inspect
import json
import math
import os
import warnings
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Sequence

import numpy as np
import torch
from torch import Tensor, nn

from zoo.hub import Pretrained, config_from_dict  # noqa: F401  (config_from_dict: re-exported for the families)
from zoo.nn.threads import map_threads, one_thread_per_op

MODALITIES = ("image", "video", "audio", "action", "features")


# ----------------------------------------------------------------------------------------- the contract


@dataclass(frozen=True)
class InputContract:
    """What `encode` accepts, checked at the door and printed by `zoo info`.

    Args:
        layout: axes of the input, e.g. "B T D" (actions), "B 3 H W" (images), "B 1 S" (audio).
        dtype: floating dtype expected ("float32"); other float dtypes are converted, ints refused.
        value_range: (low, high) the values must lie in, or None when unbounded.
        sizes: fixed sizes of named axes, e.g. {"D": 2, "H": 32}.
        multiples: axes whose size must be a multiple of a number, e.g. {"S": 320}.
        sample_rate: Hz, for audio.
        processor: options of the processor that brings any image, clip or recording to this contract
            (`zoo.processing`: interpolation, fit, resampler, ...); empty means the layout's defaults, filled in.
    """

    layout: str
    dtype: str = "float32"
    value_range: tuple[float, float] | None = None
    sizes: dict[str, int] = field(default_factory=dict)
    multiples: dict[str, int] = field(default_factory=dict)
    sample_rate: int | None = None
    processor: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not self.processor:
            from zoo.processing import default_options

            object.__setattr__(self, "processor", default_options(self.layout))

    @property
    def axes(self) -> list[str]:
        return self.layout.split()

    def describe(self) -> str:
        parts = [f"layout ({', '.join(self.axes)})", self.dtype]
        if self.value_range is not None:
            parts.append(f"values in [{self.value_range[0]:g}, {self.value_range[1]:g}]")
        parts += [f"{k}={v}" for k, v in self.sizes.items()]
        parts += [f"{k} multiple of {v}" for k, v in self.multiples.items()]
        if self.sample_rate:
            parts.append(f"{self.sample_rate} Hz")
        return ", ".join(parts)


@dataclass(frozen=True)
class TokenSpec:
    """What a tokenizer emits and accepts.

    Args:
        modality: one of MODALITIES.
        vocab_size: ids per codebook (0 for a purely continuous tokenizer).
        num_codebooks: Q; ids are [B, L] when 1, [B, L, Q] otherwise.
        max_tokens: the largest L encode can return.
        latent_dim: D of continuous `latents`, or None when the tokenizer is discrete only.
        input: the input contract.
    """

    modality: str
    vocab_size: int
    num_codebooks: int
    max_tokens: int
    input: InputContract
    latent_dim: int | None = None

    def __post_init__(self) -> None:
        if self.modality not in MODALITIES:
            raise ValueError(f"modality must be one of {MODALITIES}, got {self.modality!r}")

    @property
    def bits_per_token(self) -> float:
        return self.num_codebooks * math.log2(self.vocab_size) if self.vocab_size > 1 else 0.0

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "TokenSpec":
        inp = dict(d["input"])
        if inp.get("value_range") is not None:
            inp["value_range"] = tuple(inp["value_range"])
        return cls(**{**d, "input": InputContract(**inp)})


# ----------------------------------------------------------------------------------------- the tokens


class _TooLarge(ValueError):
    """A token file over the size limit (raised as is, not wrapped as an unreadable file)."""


MAX_TOKEN_FILE_BYTES = 1 << 28  # 256 MiB of arrays: 33 M int64 ids, ~10x the tokens of 10,000 images at 256 each with latents
_MAX_ARRAYS = 1024


@dataclass(frozen=True)
class Provenance:
    """Which tokenizer made a batch of tokens: its name (as loaded) and the fingerprint of its config."""

    tokenizer: str
    fingerprint: str


@dataclass
class Tokens:
    """A batch of tokens from any tokenizer.

    Args:
        ids: LongTensor [B, L] (one codebook) or [B, L, Q]; None for continuous-only tokens.
        lengths: LongTensor [B], valid tokens per sample; positions >= length are padding.
        latents: FloatTensor [B, L, D] for continuous tokens, else None.
        meta: per-sample tensors with a leading batch axis that decode needs (e.g. `num_steps` [B],
            `start` [B, D]); only tensors, so that slicing, `.to()` and saving stay exact.
        provenance: which tokenizer made them (set by `encode`, saved in token files); `decode` refuses
            tokens of another tokenizer unless forced. None for tokens built by hand or old files.
    """

    ids: Tensor | None
    lengths: Tensor
    latents: Tensor | None = None
    meta: dict[str, Tensor] = field(default_factory=dict)
    provenance: Provenance | None = None

    def __post_init__(self) -> None:
        if self.ids is None and self.latents is None:
            raise ValueError("Tokens need ids, latents or both; got neither")
        if self.lengths.ndim != 1:
            raise ValueError(f"lengths must be [B], got shape {tuple(self.lengths.shape)}")
        b = self.lengths.shape[0]
        for name, t in self._tensors().items():
            if t.shape[:1] != (b,):
                raise ValueError(f"Tokens.{name} has batch size {t.shape[:1]}, lengths has {b}")
        if self.ids is not None and self.ids.ndim not in (2, 3):
            raise ValueError(f"ids must be [B, L] or [B, L, Q], got shape {tuple(self.ids.shape)}")
        if self.latents is not None and self.latents.ndim != 3:
            raise ValueError(f"latents must be [B, L, D], got shape {tuple(self.latents.shape)}")
        width = self.width
        if b and (int(self.lengths.min()) < 0 or int(self.lengths.max()) > width):
            raise ValueError(f"lengths must lie in [0, {width}], got {self.lengths.tolist()}")

    def _tensors(self) -> dict[str, Tensor]:
        out = {"lengths": self.lengths}
        if self.ids is not None:
            out["ids"] = self.ids
        if self.latents is not None:
            out["latents"] = self.latents
        out.update({f"meta.{k}": v for k, v in self.meta.items()})
        return out

    @property
    def batch_size(self) -> int:
        return int(self.lengths.shape[0])

    @property
    def width(self) -> int:
        """L, the padded token axis."""
        return int((self.ids if self.ids is not None else self.latents).shape[1])

    @property
    def mask(self) -> Tensor:
        """BoolTensor [B, L], True on valid tokens."""
        return length_mask(self.lengths, self.width)

    def __len__(self) -> int:
        return self.batch_size

    def __getitem__(self, index: int | slice | Sequence[int] | Tensor) -> "Tokens":
        """Select samples of the batch; an int keeps the batch axis (size 1)."""
        if isinstance(index, int):
            index = slice(index, index + 1 if index != -1 else None)
        return self._map(lambda t: t[index])

    def to(self, *args: Any, **kwargs: Any) -> "Tokens":
        """Move to a device; dtype arguments apply to floating tensors only (ids stay long)."""
        return self._map(lambda t: t.to(*args, **kwargs) if t.is_floating_point() else t.to(device=_device_of(args, kwargs, t)))

    def _map(self, fn) -> "Tokens":
        return Tokens(
            ids=None if self.ids is None else fn(self.ids),
            lengths=fn(self.lengths),
            latents=None if self.latents is None else fn(self.latents),
            meta={k: fn(v) for k, v in self.meta.items()},
            provenance=self.provenance,
        )

    @classmethod
    def cat(cls, parts: Sequence["Tokens"]) -> "Tokens":
        """Join batches along the batch axis; the token axis (and any other axis) is zero-padded to the widest.

        All parts must carry the same fields, meta keys and provenance (as chunks of one encode do).
        """
        if not parts:
            raise ValueError("Tokens.cat needs at least one batch")
        first = parts[0]
        for p in parts[1:]:
            if (p.ids is None) != (first.ids is None) or (p.latents is None) != (first.latents is None) \
                    or set(p.meta) != set(first.meta) or p.provenance != first.provenance:
                raise ValueError("Tokens.cat joins batches of one tokenizer with the same fields and meta keys")
        return cls(
            ids=None if first.ids is None else _cat_padded([p.ids for p in parts]),
            lengths=torch.cat([p.lengths for p in parts]),
            latents=None if first.latents is None else _cat_padded([p.latents for p in parts]),
            meta={k: _cat_padded([p.meta[k] for p in parts]) for k in first.meta},
            provenance=first.provenance,
        )

    # -- files ------------------------------------------------------------------------------------

    def save(self, path: str | Path) -> None:
        """Write to .npz or .safetensors (chosen by suffix); `Tokens.load` reads both back exactly, provenance included."""
        path = Path(path)
        arrays = {k: v.detach().cpu().contiguous() for k, v in self._tensors().items()}
        prov = {} if self.provenance is None else {"tokenizer": self.provenance.tokenizer,
                                                    "fingerprint": self.provenance.fingerprint}
        if path.suffix == ".safetensors":
            from safetensors.torch import save_file

            save_file(arrays, str(path), metadata={"format": "zoo.Tokens", **prov})
        elif path.suffix == ".npz":
            np.savez(path, **{k: v.numpy() for k, v in arrays.items()},
                     **{f"provenance.{k}": np.array(v) for k, v in prov.items()})
        else:
            raise ValueError(f"token files end in .npz or .safetensors, got {path.name!r}")

    @classmethod
    def load(cls, path: str | Path, *, max_bytes: int = MAX_TOKEN_FILE_BYTES) -> "Tokens":
        """Read a token file written by `save`.

        Args:
            path: a .npz or .safetensors token file.
            max_bytes: refuse files whose arrays would take more memory than this once read (checked
                from the headers, before anything is inflated); raise it for a genuinely huge file.
        """
        path = Path(path)
        if not path.is_file():
            raise ValueError(f"no token file at {str(path)!r}")
        if path.suffix not in (".npz", ".safetensors"):
            raise ValueError(f"token files end in .npz or .safetensors, got {path.name!r}")
        if isinstance(max_bytes, bool) or not isinstance(max_bytes, int) or max_bytes < 1:
            raise ValueError(f"max_bytes must be a positive int, got {max_bytes!r}")
        try:
            if path.suffix == ".safetensors":
                from safetensors import safe_open
                from safetensors.torch import load_file

                _check_safetensors_size(path, max_bytes)
                with safe_open(str(path), "pt") as f:
                    meta = f.metadata() or {}
                arrays = load_file(str(path))
                prov = {k: meta[k] for k in ("tokenizer", "fingerprint") if k in meta}
            else:
                _check_npz_size(path, max_bytes)
                with np.load(path, allow_pickle=False) as f:
                    arrays = {k: torch.from_numpy(f[k]) for k in f.files if not k.startswith("provenance.")}
                    prov = {k[len("provenance."):]: str(f[k]) for k in f.files if k.startswith("provenance.")}
        except _TooLarge:
            raise
        except Exception as e:  # zip, pickle-refusal and safetensors errors on a damaged or foreign file
            raise ValueError(f"{str(path)!r} is not a readable token file: {e}") from e
        tokens = cls.from_arrays(arrays, source=str(path))
        if set(prov) == {"tokenizer", "fingerprint"}:
            tokens.provenance = Provenance(prov["tokenizer"], prov["fingerprint"])
        else:
            warnings.warn(f"{str(path)!r} does not say which tokenizer made it (a file from before zoo recorded it); "
                          "decoding it with another tokenizer than the one that encoded it gives garbage", stacklevel=2)
        return tokens

    @classmethod
    def from_arrays(cls, arrays: dict[str, Tensor], source: str = "arrays") -> "Tokens":
        known = {"ids", "lengths", "latents"}
        unknown = [k for k in arrays if k not in known and not k.startswith("meta.")]
        if "lengths" not in arrays or unknown:
            raise ValueError(
                f"{source} is not a token file: expected keys ids/latents, lengths, meta.*; got {sorted(arrays)}"
            )
        for k in ("ids", "lengths"):
            if k in arrays and arrays[k].dtype not in (torch.int64, torch.int32, torch.int16, torch.uint8):
                raise ValueError(f"{source}: {k} must be integers, got {arrays[k].dtype}")
        return cls(
            ids=arrays["ids"].long() if "ids" in arrays else None,
            lengths=arrays["lengths"].long(),
            latents=arrays.get("latents"),
            meta={k[5:]: v for k, v in arrays.items() if k.startswith("meta.")},
        )


def _cat_padded(tensors: list[Tensor]) -> Tensor:
    """Concatenate along axis 0, zero-padding every other axis to the largest size."""
    shape = [max(t.shape[i] for t in tensors) for i in range(1, tensors[0].ndim)]
    out = []
    for t in tensors:
        pad = [p for size, have in zip(reversed(shape), reversed(t.shape[1:])) for p in (0, size - have)]
        out.append(torch.nn.functional.pad(t, pad) if any(pad) else t)
    return torch.cat(out)




def _check_npz_size(path: Path, max_bytes: int) -> None:
    """Read each member's .npy header (shape, dtype) and refuse before numpy allocates what it declares."""
    total = 0
    with zipfile.ZipFile(path) as z:
        members = z.infolist()
        if len(members) > _MAX_ARRAYS:
            raise _TooLarge(f"{str(path)!r} holds {len(members)} arrays; a token file has a handful")
        for info in members:
            with z.open(info) as f:
                version = np.lib.format.read_magic(f)
                read = np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0
                shape, _, dtype = read(f)
            if dtype.hasobject:
                raise _TooLarge(f"{str(path)!r}: array {info.filename!r} holds Python objects; token files hold numbers")
            total += math.prod(shape) * dtype.itemsize
            if total > max_bytes:
                raise _TooLarge(f"{str(path)!r} declares arrays of {total:,} bytes or more once inflated, over the "
                                 f"limit of {max_bytes:,} (Tokens.load(path, max_bytes=...) to raise it)")


def _check_safetensors_size(path: Path, max_bytes: int) -> None:
    """safetensors are not compressed: the file size bounds what loading takes."""
    size = path.stat().st_size
    if size > max_bytes:
        raise _TooLarge(f"{str(path)!r} is {size:,} bytes, over the limit of {max_bytes:,} "
                         "(Tokens.load(path, max_bytes=...) to raise it)")


def _device_of(args: tuple, kwargs: dict, t: Tensor) -> torch.device:
    for a in (*args, kwargs.get("device")):
        if isinstance(a, (str, torch.device)):
            return torch.device(a)
        if isinstance(a, Tensor):
            return a.device
    return t.device


# ----------------------------------------------------------------------------------------- input checks


def check_input(x: Any, contract: InputContract, name: str = "input") -> Tensor:
    """Check `x` against a contract and return it as a float tensor; ValueError names what is wrong.

    Args:
        x: a tensor (or numpy array) laid out as `contract.layout`.
    """
    if isinstance(x, np.ndarray):
        x = torch.from_numpy(x)
    if not isinstance(x, Tensor):
        raise ValueError(f"{name} must be a torch.Tensor or numpy array, got {type(x).__name__}")
    if x.device.type == "meta":
        raise ValueError(f"{name} is a meta tensor (shape only, no data); pass real values")
    axes = contract.axes
    if x.ndim != len(axes):
        raise ValueError(f"{name} must have {len(axes)} axes ({' '.join(axes)}), got shape {tuple(x.shape)}")
    if not x.is_floating_point():
        raise ValueError(f"{name} must be a floating tensor ({contract.dtype}), got {x.dtype}")
    if x.shape[0] == 0:
        raise ValueError(f"{name} is an empty batch (B=0); pass at least one sample")
    for axis, size in zip(axes, x.shape):
        if axis.isdigit() and size != int(axis):
            raise ValueError(f"{name} axis {axes.index(axis)} must have size {axis}, got shape {tuple(x.shape)}")
        if size == 0:
            raise ValueError(f"{name} axis {axis} is empty, got shape {tuple(x.shape)}")
        if axis in contract.sizes and size != contract.sizes[axis]:
            raise ValueError(f"{name} axis {axis} must be {contract.sizes[axis]}, got {size} (shape {tuple(x.shape)})")
        if axis in contract.multiples and size % contract.multiples[axis]:
            raise ValueError(f"{name} axis {axis} must be a multiple of {contract.multiples[axis]}, got {size}")
    if not _all_finite(x):
        raise ValueError(f"{name} contains NaN or infinite values")
    if contract.value_range is not None:
        lo, hi = contract.value_range
        xmin, xmax = float(x.min()), float(x.max())
        if xmin < lo or xmax > hi:
            raise ValueError(f"{name} values must lie in [{lo:g}, {hi:g}], got [{xmin:g}, {xmax:g}]")
    # half and bfloat16 stay as they are: `Tokenizer.encode` has already cast them to the model's dtype
    return x if x.dtype in (torch.float16, torch.bfloat16) else x.float()


_NUMPY_FLOATS = (torch.float32, torch.float64, torch.float16)


def _all_finite(x: Tensor) -> bool:
    """No NaN or infinity in x; a small CPU tensor is checked through numpy (3x cheaper than torch's ops at batch 1)."""
    if x.device.type == "cpu" and x.dtype in _NUMPY_FLOATS:
        return bool(np.isfinite(x.detach().numpy()).all())
    return bool(torch.isfinite(x).all())


def check_ids(ids: Tensor, vocab_size: int, lengths: Tensor | None = None, name: str = "ids") -> None:
    """Refuse ids outside [0, vocab_size) in the valid positions (padding is ignored)."""
    if ids.dtype not in (torch.int64, torch.int32, torch.int16, torch.uint8):
        raise ValueError(f"{name} must be integers, got {ids.dtype}")
    if ids.device.type == "cpu" and (lengths is None or lengths.device.type == "cpu"):  # numpy: a tenth of the time
        valid = ids.numpy()
        if lengths is not None:
            valid = valid[length_mask(lengths.detach().numpy(), ids.shape[1])]
    else:
        valid = ids if lengths is None else ids[length_mask(lengths, ids.shape[1])]
    if math.prod(valid.shape) and (int(valid.min()) < 0 or int(valid.max()) >= vocab_size):
        bad = valid[(valid < 0) | (valid >= vocab_size)].reshape(-1)
        raise ValueError(
            f"{name} must lie in [0, {vocab_size}), got {len(bad)} out of range (e.g. {bad[:5].tolist()})"
        )


def check_tokens(tokens: Any, spec: TokenSpec, name: str = "tokens") -> None:
    """Refuse token batches a decoder cannot take: not Tokens, empty, wrong id layout, ids out of range."""
    if not isinstance(tokens, Tokens):
        raise ValueError(f"{name} must be zoo.Tokens, got {type(tokens).__name__}")
    if tokens.batch_size == 0:
        raise ValueError(f"{name} is an empty batch (B=0)")
    if tokens.ids is not None:
        want = 2 if spec.num_codebooks == 1 else 3
        if tokens.ids.ndim != want:
            layout = "[B, L]" if want == 2 else f"[B, L, q] (q <= {spec.num_codebooks} codebooks)"
            raise ValueError(f"{name}.ids must be {layout} for this tokenizer, got shape {tuple(tokens.ids.shape)}")
        if want == 3 and tokens.ids.shape[2] > spec.num_codebooks:
            raise ValueError(f"{name}.ids has {tokens.ids.shape[2]} codebooks, this tokenizer has {spec.num_codebooks}")
        check_ids(tokens.ids, spec.vocab_size, tokens.lengths, f"{name}.ids")
    elif spec.latent_dim is None:
        raise ValueError(f"this tokenizer decodes ids; {name} carries only latents")
    if tokens.latents is not None and not bool(torch.isfinite(tokens.latents).all()):
        raise ValueError(f"{name}.latents contain NaN or infinite values")


def check_budget(value: int, low: int, high: int, name: str = "num_tokens") -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise ValueError(f"{name} must be an int in [{low}, {high}], got {value!r}")
    if not low <= value <= high:
        raise ValueError(f"{name} must lie in [{low}, {high}], got {value}")
    return int(value)


# ----------------------------------------------------------------------------------------- config bounds

MAX_PARAMETERS = 4_000_000_000  # 16 GB of float32: about twice the largest released model a family here imports
_LARGE = contextvars.ContextVar("zoo_large_models", default=False)


@contextlib.contextmanager
def large_models():
    """Lift the upper bounds on config fields and parameter count, for a genuinely giant model.

        with zoo.tokenizer.large_models():
            tok = zoo.load("my-giant-checkpoint")

    (or set ZOO_LARGE_MODELS=1). The bounds stop a hostile or mistyped config.json from allocating
    tens of gigabytes before anything else is checked; only lift them for a checkpoint you trust.
    """
    token = _LARGE.set(True)
    try:
        yield
    finally:
        _LARGE.reset(token)


def _large_allowed() -> bool:
    return _LARGE.get() or os.environ.get("ZOO_LARGE_MODELS") == "1"


def check_fields(config: Any, **bounds: tuple[float, float]) -> None:
    """Refuse config fields outside [low, high] before a model allocates anything.

    Args:
        config: a config dataclass (its `__post_init__` calls this).
        bounds: field name -> (low, high); a tuple field has every element checked, None is skipped. The high ends are
            what the family can honestly use, with headroom; `large_models()` lifts them, never the lows.
    """
    name = type(config).__name__
    for field_name, (low, high) in bounds.items():
        value = getattr(config, field_name)
        if value is None:  # an optional field left unset: the family's own checks say when it is needed
            continue
        for v in value if isinstance(value, (tuple, list)) else (value,):
            if isinstance(v, bool) or not isinstance(v, (int, float, np.integer, np.floating)) or not math.isfinite(v):
                raise ValueError(f"{name}.{field_name} must be a finite number, got {value!r}")
            if v < low:
                raise ValueError(f"{name}.{field_name} must be >= {low:g}, got {value!r}")
            if v > high and not _large_allowed():
                raise ValueError(f"{name}.{field_name}={value!r} is beyond {high:g}, more than this family uses; for a "
                                 "genuinely larger model build it inside `with zoo.tokenizer.large_models():` "
                                 "(or ZOO_LARGE_MODELS=1)")


def transformer_weights(*stacks: tuple[int, int]) -> int:
    """The weight estimate of transformer stacks given as (width, depth): about 12·width²·depth each."""
    return sum(12 * width**2 * depth for width, depth in stacks)


def check_weights(config: Any, count: int, what: str = "weights") -> None:
    """Refuse a config whose weights (an estimate the family computes from its fields) exceed MAX_PARAMETERS.

    For transformer stacks, `transformer_weights`; for codebooks, codebooks x entries x dim.
    """
    if count > MAX_PARAMETERS and not _large_allowed():
        raise ValueError(f"this {type(config).__name__} has about {count:,} {what}, over the limit of "
                         f"{MAX_PARAMETERS:,}; for a genuinely larger model build it inside "
                         "`with zoo.tokenizer.large_models():` (or ZOO_LARGE_MODELS=1)")


def length_mask(lengths: Tensor | np.ndarray, width: int) -> Tensor | np.ndarray:
    """Bool (B, width), True on the first `lengths[b]` positions of row b; lengths: (B,). A tensor gives a BoolTensor
    on its device; a numpy array a numpy mask (the CPU paths that work in numpy, where torch ops cost more)."""
    if isinstance(lengths, np.ndarray):
        return np.arange(width) < lengths[:, None]
    return torch.arange(width, device=lengths.device)[None] < lengths[:, None]


def budget_lengths(num_tokens: int | Tensor | None, batch: int, max_tokens: int, device: torch.device) -> Tensor:
    """A `num_tokens=` budget as lengths (B,) in 1..max_tokens: None (all), an int, or a LongTensor [B], one per sample."""
    if num_tokens is None:
        return torch.full((batch,), max_tokens, dtype=torch.long, device=device)
    if isinstance(num_tokens, Tensor):
        if num_tokens.shape != (batch,) or num_tokens.is_floating_point() or num_tokens.dtype == torch.bool:
            raise ValueError(f"num_tokens as a tensor must be integer with shape ({batch},), one per sample; "
                             f"got {num_tokens.dtype} {tuple(num_tokens.shape)}")
        lo, hi = int(num_tokens.min()), int(num_tokens.max())
        if lo < 1 or hi > max_tokens:
            raise ValueError(f"num_tokens must lie in [1, {max_tokens}] for every sample, got values in [{lo}, {hi}]")
        return num_tokens.to(device=device, dtype=torch.long)
    n = check_budget(num_tokens, 1, max_tokens)
    return torch.full((batch,), n, dtype=torch.long, device=device)


# ----------------------------------------------------------------------------------------- the base class


_CPU = torch.device("cpu")


class Tokenizer(Pretrained, nn.Module):
    """Base class of every tokenizer: a config dataclass, a spec, encode and decode.

    Subclasses set `family` and `config_class`, build themselves from `config`, and implement
    `spec`, `encode` and `decode`. `save_pretrained`/`push_to_hub`/`from_pretrained` come from
    `zoo.hub.Pretrained` (config.json + model.safetensors, written whole; loading is strict).

    The budget contract: a family declares `encode_knobs` and `decode_options` and writes
    `encode(self, x, *, <knobs>)` / `decode(self, tokens, *, <options>)` with keyword-only arguments
    of exactly those names (checked when the class is defined). Every call goes through the base
    class, which refuses any other keyword with a `ValueError` naming the ones the family takes, and
    adds what every family gets for free:

    - `batch_size=`: encode/decode at most this many samples at a time (default `max_batch`) and
      join the results, so memory stays bounded for any batch; the ids are the same as in one piece.
    - threads (CPU): every op runs on one thread and pieces of `parallel_chunk` samples go over a pool
      of as many Python threads as torch had (`zoo.nn.threads`): a busy core then slows one piece, not
      every op, so more threads are never slower than one. The pieces do not depend on the thread
      count, so neither do the results. On a GPU the batch stays whole.
    - provenance: `encode` stamps its Tokens with this tokenizer's name and `fingerprint`; `decode`
      refuses tokens another tokenizer made, unless `force=True`.
    - precision and device: the input must be on the tokenizer's device (else a `ValueError`); a floating
      input is cast to the weights' dtype (`tok.to(torch.bfloat16)` runs in bfloat16, and `decode` returns
      bfloat16, as a cast torch module does); an ambient
      `torch.autocast` is switched off inside encode/decode, so a tokenizer computes at its own dtype and
      gives the same ids under autocast as without (cast the model to run it in half precision).
    """

    family: ClassVar[str] = ""
    config_class: ClassVar[type] = object
    encode_knobs: ClassVar[tuple[str, ...]] = ()
    decode_options: ClassVar[tuple[str, ...]] = ()
    max_batch: ClassVar[int] = 256  # default chunk of encode/decode (`batch_size=` overrides per call)
    parallel_chunk: ClassVar[int] = 4  # samples per piece of work spread over CPU threads
    budget_note: ClassVar[str] = ""  # said when encode refuses a knob, e.g. why the family has no budget

    def __init_subclass__(cls, **kwargs: Any) -> None:
        """Wrap each `encode`/`decode` a subclass defines in the base class's checks.

        Wrapping at class creation (rather than a template method `_encode` behind a base `encode`)
        keeps the family's own `encode` the public one: its signature, docstring and knob defaults are
        what `help()`, `inspect.signature` and `zoo info` show, and a family reads top to bottom with
        nothing hidden behind a second name.
        """
        super().__init_subclass__(**kwargs)
        for method, declared_in in (("encode", "encode_knobs"), ("decode", "decode_options")):
            fn = cls.__dict__.get(method)
            if fn is None or getattr(fn, "_zoo_contract", False):
                continue
            declared = cls.__dict__.get(declared_in)
            if declared is None:
                raise TypeError(f"{cls.__name__} defines {method} but does not declare {declared_in}")
            names = keyword_names(fn)
            if tuple(sorted(names)) != tuple(sorted(declared)):
                raise TypeError(f"{cls.__name__}.{declared_in} = {tuple(declared)} but {method} takes the keyword-only "
                                f"arguments {names}; declare exactly the keywords {method} takes")
            setattr(cls, method, (_checked_encode if method == "encode" else _checked_decode)(fn, tuple(declared)))

    def __init__(self, config: Any) -> None:
        super().__init__()
        if not isinstance(config, self.config_class):
            raise ValueError(f"{type(self).__name__} needs a {self.config_class.__name__}, got {type(config).__name__}")
        self.config = config
        self.name: str | None = None  # what it was loaded as (the hub sets it); recorded in its tokens

    @property
    def spec(self) -> TokenSpec:
        raise NotImplementedError

    def encode(self, x: Tensor, **budget: Any) -> Tokens:
        raise NotImplementedError

    def decode(self, tokens: Tokens, **options: Any) -> Tensor:
        raise NotImplementedError

    @property
    def fingerprint(self) -> str:
        """A hash of what decoding depends on besides the weights: family, config and fitted state."""
        blob = json.dumps({"family": self.family, "config": self.config_dict(), "extra": self.extra_state()},
                          sort_keys=True, default=str)
        return hashlib.sha256(blob.encode()).hexdigest()[:16]

    @property
    def provenance(self) -> Provenance:
        return Provenance(self.name or self.family, self.fingerprint)

    def check_provenance(self, tokens: Tokens) -> None:
        """Refuse tokens another tokenizer made (tokens without provenance pass)."""
        made = tokens.provenance
        if made is None:
            return
        mine = self.provenance
        if made.fingerprint != mine.fingerprint:
            raise ValueError(
                f"these tokens were made by {made.tokenizer!r} (fingerprint {made.fingerprint}), not by this "
                f"tokenizer {mine.tokenizer!r} ({mine.fingerprint}); decode them with the tokenizer that made them, "
                "or pass force=True (CLI: --force) to decode anyway"
            )

    @property
    def device(self) -> torch.device:
        return self._placement()[0]

    @property
    def dtype(self) -> torch.dtype:
        """The floating dtype of the weights (`tok.to(torch.bfloat16)` changes it); float32 for a model without any."""
        return self._placement()[1]

    def _placement(self) -> tuple[torch.device, torch.dtype]:
        """(device, dtype): the device of the first parameter (else buffer), the dtype of the first floating one.

        Looked up afresh at each call (a `.to()`, a swapped parameter or `.data` change shows at once), in one walk
        that stops at the first floating tensor: listing every parameter and buffer took ~6 us per lookup, several
        lookups per call, a tenth of a FAST encode at batch 1.
        """
        device = dtype = None
        for kind in ("_parameters", "_buffers"):  # the order of parameters() then buffers()
            for module in self.modules():
                for t in getattr(module, kind).values():
                    if t is None:
                        continue
                    device = device or t.device
                    if t.is_floating_point():
                        return device, t.dtype
        return device or _CPU, torch.float32

    def extra_state(self) -> dict[str, Any]:
        """JSON-serialisable state beyond weights (fitted bounds, BPE merges), stored in config.json."""
        return {}

    def load_extra_state(self, state: dict[str, Any]) -> None:
        if state:
            raise ValueError(f"{type(self).__name__} takes no extra state, got keys {sorted(state)}")

    def config_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self.config)

    def __repr__(self) -> str:
        s = self.spec
        return (
            f"{type(self).__name__}(modality={s.modality!r}, vocab={s.vocab_size}, codebooks={s.num_codebooks}, "
            f"max_tokens={s.max_tokens}, input=({s.input.describe()}))"
        )


def keyword_names(fn: Any) -> tuple[str, ...]:
    """The keyword-only argument names of a function (through decorators such as torch.no_grad)."""
    return tuple(p.name for p in inspect.signature(fn).parameters.values() if p.kind is inspect.Parameter.KEYWORD_ONLY)


def _refuse_unknown(tok: Tokenizer, method: str, allowed: tuple[str, ...], given: dict[str, Any], extra: tuple[str, ...],
                    n_positional: int) -> None:
    what = "knobs" if method == "encode" else "options"
    takes = ", ".join(allowed) if allowed else f"no {what}"
    if n_positional:
        raise ValueError(f"{type(tok).__name__}.{method} takes its {what} as keywords ({takes}); "
                         f"got {n_positional} more positional argument(s)")
    unknown = [k for k in given if k not in allowed and k not in extra]
    if unknown:
        other = type(tok).decode_options if method == "encode" else type(tok).encode_knobs
        hint = [k for k in unknown if k in other]
        note = f" ({', '.join(hint)} is a {'decode option' if method == 'encode' else 'encode knob'})" if hint else ""
        if method == "encode" and type(tok).budget_note:
            note += f"; {type(tok).budget_note}"
        raise ValueError(f"{type(tok).__name__}.{method} takes {takes} (and {', '.join(extra)}); "
                         f"got {', '.join(map(repr, unknown))}{note}")


def _check_batch_size(tok: Tokenizer, batch_size: Any) -> int:
    if batch_size is None:
        return tok.max_batch
    return check_budget(batch_size, 1, 1 << 31, "batch_size")


def _piece_size(tok: Tokenizer, batch_size: Any, device: torch.device) -> int:
    """Samples per call of the family's method: the memory bound, and on CPU the thread piece too."""
    size = _check_batch_size(tok, batch_size)
    return min(size, tok.parallel_chunk) if device.type == "cpu" else size


def _rows(value: Any, batch: int, lo: int, hi: int) -> Any:
    """A knob's value for samples lo..hi: per-sample tensors [B, ...] are sliced, anything else is shared."""
    if isinstance(value, Tensor) and value.ndim >= 1 and value.shape[0] == batch:
        return value[lo:hi]
    return value


def _on_device(x: Any, here: torch.device, dtype: torch.dtype) -> Any:
    """Refuse an input on another device than the tokenizer's (`here`); cast a floating one to its `dtype`."""
    if not isinstance(x, Tensor) or x.device.type == "meta":
        return x  # numpy, lists and meta tensors are refused or converted by the family's check_input
    if x.device.type != here.type or (here.index is not None and x.device.index not in (None, here.index)):
        raise ValueError(f"the input is on {x.device}, this tokenizer on {here}; move one of them "
                         f"(x.to({str(here)!r}) or tok.to({str(x.device)!r}))")
    return x.to(dtype) if x.is_floating_point() else x


def _own_precision(device: torch.device, dtype: torch.dtype) -> Any:
    """A context in which a tokenizer with weights of `dtype` on `device` runs at its own dtype, whatever the
    caller's autocast.

    float32 (or float64) weights: autocast off, so an ambient `torch.autocast` changes nothing. Half or bfloat16
    weights: autocast at that dtype, which casts what the family code makes in float32 (noise, time embeddings,
    quantizer codes) to the weights' dtype at each matrix product and keeps the precision-sensitive ops (norms,
    softmax, FFTs) in float32, as mixed-precision training does. When autocast is already off and the weights are
    not half, there is nothing to switch: no context is made (entering one cost ~10 us, a FAST call at batch 1).
    """
    half = dtype in (torch.float16, torch.bfloat16)
    if not half and not _autocast_may_be_on(device.type):
        return _NO_CONTEXT
    try:
        return torch.autocast(device.type, dtype=dtype if half else None, enabled=half)
    except RuntimeError:  # a device type autocast does not know
        return _NO_CONTEXT


_NO_CONTEXT = contextlib.nullcontext()  # stateless, so one serves every call and thread


def _autocast_may_be_on(device_type: str) -> bool:
    """Whether autocast is on for `device_type` in this thread (True when torch cannot say: the context decides)."""
    try:
        return bool(torch.is_autocast_enabled(device_type))
    except (TypeError, RuntimeError):  # torch < 2.4 takes no device type; a device type autocast does not know
        return True


def _at_own_precision(device: torch.device, dtype: torch.dtype, fn: Any) -> Any:
    """`fn` run inside `_own_precision(device, dtype)` (in whichever thread calls it: autocast state is per thread)."""
    def run(*args: Any, **kwargs: Any) -> Any:
        with _own_precision(device, dtype):
            return fn(*args, **kwargs)

    return run


def _in_pieces(fn: Any, tok: Tokenizer, data: Any, batch: int, size: int, options: dict[str, Any]) -> list[Any]:
    """`fn(tok, piece, **options)` on each `size` samples of `data` (per-sample options sliced alike),
    the pieces over the thread pool (`zoo.nn.threads`), results in order."""
    return map_threads(lambda lo: fn(tok, data[lo:lo + size], **{k: _rows(v, batch, lo, lo + size) for k, v in options.items()}),
                       range(0, batch, size))


def _checked_encode(fn: Any, allowed: tuple[str, ...]) -> Any:
    @functools.wraps(fn)
    def encode(self: Tokenizer, x: Any, *args: Any, batch_size: int | None = None, **knobs: Any) -> Tokens:
        if args or knobs:
            _refuse_unknown(self, "encode", allowed, knobs, ("batch_size",), len(args))
        device, dtype = self._placement()
        x = _on_device(x, device, dtype)
        run = _at_own_precision(device, dtype, fn)  # inside each worker thread: autocast state is per thread
        size = _piece_size(self, batch_size, device)
        batch = x.shape[0] if isinstance(x, (Tensor, np.ndarray)) and x.ndim >= 1 else 0
        with one_thread_per_op():
            if batch <= size:
                tokens = run(self, x, **knobs)
            else:
                tokens = Tokens.cat(_in_pieces(run, self, x, batch, size, knobs))
        tokens.provenance = self.provenance
        return tokens

    encode._zoo_contract = True
    return encode


def _checked_decode(fn: Any, allowed: tuple[str, ...]) -> Any:
    @functools.wraps(fn)
    def decode(self: Tokenizer, tokens: Any, *args: Any, batch_size: int | None = None, force: bool = False,
               **options: Any) -> Tensor:
        if args or options:
            _refuse_unknown(self, "decode", allowed, options, ("batch_size", "force"), len(args))
        if not isinstance(force, bool):
            raise ValueError(f"force must be True or False, got {force!r}")
        device, dtype = self._placement()
        run = _at_own_precision(device, dtype, fn)
        size = _piece_size(self, batch_size, device)
        if isinstance(tokens, Tokens) and not force:
            self.check_provenance(tokens)
        with one_thread_per_op():
            if not isinstance(tokens, Tokens) or tokens.batch_size <= size:
                out = run(self, tokens, **options)
            else:
                out = torch.cat(_in_pieces(run, self, tokens, tokens.batch_size, size, options))
        # at the weights' dtype, whatever the family computed last in (an iSTFT or a flow step in float32)
        return out.to(dtype) if isinstance(out, Tensor) and out.is_floating_point() and out.dtype != dtype else out

    decode._zoo_contract = True
    return decode


def dumps(obj: Any) -> str:
    return json.dumps(obj, indent=2, sort_keys=True)
