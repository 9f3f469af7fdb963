"""Token reduction behind one interface: `reduce(x, keep=...)` and a patcher for timm ViTs.

    from zoo.reduce import reduce, patch_timm, ToMe
    red = reduce(x, keep=0.5, method="tome")      # x: (B, N, D) -> Reduced(x (B, M, D), sizes, source)
    patch_timm(vit, ToMe(), keep=0.5)             # reduce inside a timm VisionTransformer
    patch_timm(vit, ToMe(), r=8)                  # or official ToMe's schedule: 8 tokens merged per block

Reducers: ToMe (merge.py), PrunePool and RandomDrop (prune.py), VQToken (vq.py, also a Tokenizer),
LearnedSelector (select.py, trained by recipes/selector.py). The host ViT they are measured on is in
host.py (`load_host_classifier`).
"""

from __future__ import annotations

from typing import Any

from torch import Tensor

from zoo.reduce.base import Keep, Reduced, Reducer, pool, resolve_keep
from zoo.reduce.merge import ToMe
from zoo.reduce.prune import PrunePool, RandomDrop
from zoo.reduce.vq import VQToken, VQTokenConfig

METHODS: dict[str, type[Reducer]] = {"tome": ToMe, "prune": PrunePool, "random": RandomDrop}

__all__ = ["reduce", "Reduced", "Reducer", "ToMe", "PrunePool", "RandomDrop", "VQToken", "VQTokenConfig",
           "patch_timm", "unpatch_timm", "pool", "resolve_keep", "METHODS"]


def __getattr__(name: str) -> Any:
    """`patch_timm` / `unpatch_timm` import timm (seconds), so they load on first use."""
    if name in ("patch_timm", "unpatch_timm"):
        from zoo.reduce import patch

        return getattr(patch, name)
    raise AttributeError(f"module 'zoo.reduce' has no attribute {name!r}")


def reduce(x: Tensor, keep: Keep, method: str = "tome", *, sizes: Tensor | None = None, metric: Tensor | None = None,
           importance: Tensor | None = None, protect: int = 0, **options: Any) -> Reduced:
    """Reduce (B, N, D) tokens to `keep` per sample with a named method.

    Args:
        x: (B, N, D) tokens.
        keep: int count or float ratio in (0, 1] of the unprotected tokens, or one per sample.
        method: "tome" (merge), "prune" (PPT-style prune/pool; options policy=, threshold=),
            "random" (options seed=), or "vq" (VQToken k-means; options as `VQTokenConfig`).
        sizes, metric, importance, protect: see `Reducer.forward`.
    """
    if method == "vq":
        reducer: Reducer = VQToken(VQTokenConfig(dim=x.shape[-1], **options))
    elif method in METHODS:
        reducer = METHODS[method](**options)
    else:
        raise ValueError(f"method={method!r} is not one of {sorted([*METHODS, 'vq'])}")
    return reducer(x, keep, sizes=sizes, metric=metric, importance=importance, protect=protect)
