"""One cache for every dataset builder: seeded builds stored as .npz under $ZOO_CACHE/data."""

from __future__ import annotations

import hashlib
import io
import json
from typing import Callable

import numpy as np

from zoo.files import atomic_write_bytes, cache_root


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
    buf = io.BytesIO()
    np.savez(buf, **arrays)
    atomic_write_bytes(path, buf.getvalue())
    atomic_write_bytes(path.with_suffix(".json"), json.dumps(params, sort_keys=True, indent=1).encode())
    return arrays
