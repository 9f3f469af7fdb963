"""Building blocks shared by more than one family (one concept per file).

- `patch`: images ↔ patch tokens (`Patchify`, `Unpatchify`) and 2D sin-cos position tables.
- `readout`: the zero-padded prefix of kept codes that a linear read-out to pixels reads.
- `timestep`: the sinusoidal + MLP embedding of a diffusion / flow time.
- `transformer`: a stack of timm ViT blocks with an optional attention mask (`Transformer`), and
  its adaLN-Zero conditioned twin (`AdaLNTransformer`, as in DiT) for flow and diffusion decoders.
- `threads`: how many threads an inference call uses (`op_threads`, `map_threads`).
- `cache`: values made from a module's weights, kept until a weight changes (`cached_on`).

Names resolve on first use, so importing one block (e.g. `zoo.nn.seanet`) does not import the others.
"""

from __future__ import annotations

import importlib
from typing import Any

_WHERE = {
    "Patchify": "patch", "Unpatchify": "patch", "sincos_pos_embed_2d": "patch", "kept_codes": "readout",
    "TimestepEmbedding": "timestep", "Transformer": "transformer", "AdaLNBlock": "transformer",
    "AdaLNTransformer": "transformer", "key_padding_mask": "transformer", "prefix_causal_mask": "transformer",
}
__all__ = sorted(_WHERE)


def __getattr__(name: str) -> Any:
    if name not in _WHERE:
        raise AttributeError(f"module 'zoo.nn' has no attribute {name!r}")
    return getattr(importlib.import_module(f"zoo.nn.{_WHERE[name]}"), name)
