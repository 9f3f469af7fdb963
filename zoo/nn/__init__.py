"""Building blocks shared by more than one family (one concept per file).

- `patch`: images ↔ patch tokens (`Patchify`, `Unpatchify`) and 2D sin-cos position tables.
- `readout`: the zero-padded prefix of kept codes that a linear read-out to pixels reads.
- `timestep`: the sinusoidal + MLP embedding of a diffusion / flow time.
- `transformer`: a stack of timm ViT blocks with an optional attention mask (`Transformer`), and
  its adaLN-Zero conditioned twin (`AdaLNTransformer`, as in DiT) for flow and diffusion decoders.
"""

from zoo.nn.patch import Patchify, Unpatchify, sincos_pos_embed_2d
from zoo.nn.readout import kept_codes
from zoo.nn.timestep import TimestepEmbedding
from zoo.nn.transformer import AdaLNBlock, AdaLNTransformer, Transformer, key_padding_mask, prefix_causal_mask

__all__ = ["Patchify", "Unpatchify", "sincos_pos_embed_2d", "TimestepEmbedding", "Transformer",
           "AdaLNBlock", "AdaLNTransformer", "key_padding_mask", "prefix_causal_mask", "kept_codes"]
