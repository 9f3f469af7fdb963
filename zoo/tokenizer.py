"""The one interface: `Tokenizer` (an nn.Module), `Tokens` (what encode returns), `TokenSpec` (the contract).

Every family in the zoo subclasses `Tokenizer`, declares a config dataclass, and implements `encode`
and `decode`. Input checks shared by all families live here too, so every tokenizer rejects bad input
with the same clear `ValueError`s.
"""

from __future__ import annotations

import dataclasses
import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Sequence

import numpy as np
import torch
from torch import Tensor, nn

from zoo.hub import Pretrained, config_from_dict  # noqa: F401  (config_from_dict: re-exported for the families)

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


@dataclass
class Tokens:
    """A batch of tokens from any tokenizer.

    Args:
        ids: LongTensor [B, L] (one codebook) or [B, L, Q]; None for continuous-only tokens.
        lengths: LongTensor [B], valid tokens per sample; positions >= length are padding.
        latents: FloatTensor [B, L, D] for continuous tokens, else None.
        meta: per-sample tensors with a leading batch axis that decode needs (e.g. `num_steps` [B],
            `start` [B, D]); only tensors, so that slicing, `.to()` and saving stay exact.
    """

    ids: Tensor | None
    lengths: Tensor
    latents: Tensor | None = None
    meta: dict[str, Tensor] = field(default_factory=dict)

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
        return torch.arange(self.width, device=self.lengths.device)[None] < self.lengths[:, None]

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
        )

    # -- files ------------------------------------------------------------------------------------

    def save(self, path: str | Path) -> None:
        """Write to .npz or .safetensors (chosen by suffix); `Tokens.load` reads both back exactly."""
        path = Path(path)
        arrays = {k: v.detach().cpu().contiguous() for k, v in self._tensors().items()}
        if path.suffix == ".safetensors":
            from safetensors.torch import save_file

            save_file(arrays, str(path), metadata={"format": "zoo.Tokens"})
        elif path.suffix == ".npz":
            np.savez(path, **{k: v.numpy() for k, v in arrays.items()})
        else:
            raise ValueError(f"token files end in .npz or .safetensors, got {path.name!r}")

    @classmethod
    def load(cls, path: str | Path) -> "Tokens":
        path = Path(path)
        if not path.is_file():
            raise ValueError(f"no token file at {str(path)!r}")
        if path.suffix not in (".npz", ".safetensors"):
            raise ValueError(f"token files end in .npz or .safetensors, got {path.name!r}")
        try:
            if path.suffix == ".safetensors":
                from safetensors.torch import load_file

                arrays = load_file(str(path))
            else:
                with np.load(path, allow_pickle=False) as f:
                    arrays = {k: torch.from_numpy(f[k]) for k in f.files}
        except Exception as e:  # zip, pickle-refusal and safetensors errors on a damaged or foreign file
            raise ValueError(f"{str(path)!r} is not a readable token file: {e}") from e
        return cls.from_arrays(arrays, source=str(path))

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
    if not bool(torch.isfinite(x).all()):
        raise ValueError(f"{name} contains NaN or infinite values")
    if contract.value_range is not None:
        lo, hi = contract.value_range
        xmin, xmax = float(x.min()), float(x.max())
        if xmin < lo or xmax > hi:
            raise ValueError(f"{name} values must lie in [{lo:g}, {hi:g}], got [{xmin:g}, {xmax:g}]")
    return x.float()


def check_ids(ids: Tensor, vocab_size: int, lengths: Tensor | None = None, name: str = "ids") -> None:
    """Refuse ids outside [0, vocab_size) in the valid positions (padding is ignored)."""
    if ids.dtype not in (torch.int64, torch.int32, torch.int16, torch.uint8):
        raise ValueError(f"{name} must be integers, got {ids.dtype}")
    valid = ids
    if lengths is not None:
        mask = torch.arange(ids.shape[1], device=ids.device)[None] < lengths[:, None]
        valid = ids[mask]
    if valid.numel() and (int(valid.min()) < 0 or int(valid.max()) >= vocab_size):
        bad = valid[(valid < 0) | (valid >= vocab_size)]
        raise ValueError(
            f"{name} must lie in [0, {vocab_size}), got {bad.numel()} out of range (e.g. {bad[:5].tolist()})"
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


# ----------------------------------------------------------------------------------------- the base class


class Tokenizer(Pretrained, nn.Module):
    """Base class of every tokenizer: a config dataclass, a spec, encode and decode.

    Subclasses set `family` and `config_class`, build themselves from `config`, and implement
    `spec`, `encode` and `decode`. `save_pretrained`/`push_to_hub`/`from_pretrained` come from
    `zoo.hub.Pretrained` (config.json + model.safetensors, written whole; loading is strict).
    """

    family: ClassVar[str] = ""
    config_class: ClassVar[type] = object

    def __init__(self, config: Any) -> None:
        super().__init__()
        if not isinstance(config, self.config_class):
            raise ValueError(f"{type(self).__name__} needs a {self.config_class.__name__}, got {type(config).__name__}")
        self.config = config

    @property
    def spec(self) -> TokenSpec:
        raise NotImplementedError

    def encode(self, x: Tensor, **budget: Any) -> Tokens:
        raise NotImplementedError

    def decode(self, tokens: Tokens, **options: Any) -> Tensor:
        raise NotImplementedError

    @property
    def device(self) -> torch.device:
        for t in (*self.parameters(), *self.buffers()):
            return t.device
        return torch.device("cpu")

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


def dumps(obj: Any) -> str:
    return json.dumps(obj, indent=2, sort_keys=True)
