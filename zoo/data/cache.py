"""One cache for every dataset builder: seeded builds stored as .npz under $ZOO_CACHE/data."""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from pathlib import Path
from typing import Callable

import numpy as np


def cache_root() -> Path:
    """The user cache (`$ZOO_CACHE`, default `~/.cache/zoo`)."""
    return Path(os.environ.get("ZOO_CACHE", Path.home() / ".cache" / "zoo")).expanduser()


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write `data` to `path` so that readers see either nothing or the whole file (write, then rename)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o644)  # mkstemp makes 0600; a shared cache or checkpoint must be readable by others
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def cached_arrays(builder: str, params: dict, build: Callable[[], dict[str, np.ndarray]]) -> dict[str, np.ndarray]:
    """Return `build()`'s arrays, computed once per (builder, params) and stored as .npz in the cache.

    Args:
        builder: a short name for the dataset builder (becomes a folder name).
        params: everything the output depends on (seed, sizes, version); JSON-serialisable.
        build: computes the arrays; called only on a cache miss.
    """
    key = hashlib.sha256(json.dumps(params, sort_keys=True).encode()).hexdigest()[:16]
    path = cache_root() / "data" / builder / f"{key}.npz"
    if path.exists():
        with np.load(path, allow_pickle=False) as f:
            return {k: f[k] for k in f.files}
    arrays = build()
    import io

    buf = io.BytesIO()
    np.savez(buf, **arrays)
    atomic_write_bytes(path, buf.getvalue())
    (path.with_suffix(".json")).write_text(json.dumps(params, sort_keys=True, indent=1))
    return arrays
