"""Checkpoints of the reduction modules that are not tokenizers (the host ViT, the learned selector).

Same files as a tokenizer checkpoint (`config.json`, `model.safetensors`, `README.md`) so the tooling
around them is the same, but they are not registered in `zoo/registry.json`: `zoo.load` is for
tokenizers. `config.json` holds `kind` (which class), `config` (its dataclass), `files` (sha256 of
the weights) and `summary` (measured numbers, read back by the tests that check the card).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from pathlib import Path
from typing import Any, TypeVar

from torch import nn

from zoo.data.cache import atomic_write_bytes
from zoo.hub import CARD, CONFIG, REPO_CHECKPOINTS, WEIGHTS, sha256_file
from zoo.tokenizer import config_from_dict

M = TypeVar("M", bound=nn.Module)


def resolve(source: str | Path) -> Path:
    """A directory, or the name of a folder under this repo's `checkpoints/`."""
    path = Path(source)
    if path.is_dir():
        return path
    if (REPO_CHECKPOINTS / str(source)).is_dir():
        return REPO_CHECKPOINTS / str(source)
    raise ValueError(f"no checkpoint directory {str(source)!r} (neither a path nor a folder of {REPO_CHECKPOINTS})")


def save_module(module: nn.Module, directory: str | Path, *, kind: str, card: str | None = None,
                summary: dict[str, Any] | None = None) -> Path:
    """Write `module` (which has a dataclass `config`) as config.json + model.safetensors (+ README.md)."""
    from safetensors.torch import save

    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().cpu().contiguous() for k, v in module.state_dict().items()}
    weights = save(state, metadata={"kind": kind})
    atomic_write_bytes(directory / WEIGHTS, weights)
    config = {"kind": kind, "config": dataclasses.asdict(module.config),  # type: ignore[arg-type]
              "files": {WEIGHTS: hashlib.sha256(weights).hexdigest()}, "summary": summary or {}}
    atomic_write_bytes(directory / CONFIG, (json.dumps(config, indent=2, sort_keys=True) + "\n").encode())
    if card is not None:
        atomic_write_bytes(directory / CARD, card.encode())
    return directory


def read_config(source: str | Path) -> dict[str, Any]:
    return json.loads((resolve(source) / CONFIG).read_text())


def load_module(cls: type[M], source: str | Path, *, kind: str) -> M:
    """Build `cls(config)` from a checkpoint and load its weights strictly, after checking the sha256."""
    from safetensors.torch import load_file

    directory = resolve(source)
    meta = read_config(directory)
    if meta.get("kind") != kind:
        raise ValueError(f"{str(directory)!r} holds a {meta.get('kind')!r} checkpoint, not a {kind!r} one")
    expected = meta["files"][WEIGHTS]
    if (got := sha256_file(directory / WEIGHTS)) != expected:
        raise ValueError(f"sha256 mismatch for {directory / WEIGHTS}: expected {expected[:16]}…, got {got[:16]}…")
    module = cls(config_from_dict(cls.config_class, meta["config"]))  # type: ignore[attr-defined]
    module.load_state_dict(load_file(str(directory / WEIGHTS)), strict=True)
    return module.eval()
