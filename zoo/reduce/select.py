"""Learned selector: a Gumbel-Softmax keep mask trained so that the kept tokens can rebuild the dropped ones.

Paper: "When Less is Enough: Adaptive Token Reduction for Efficient Image Representation"
(Allakhverdov et al., 2025, https://arxiv.org/abs/2503.16660).

A small scorer gives every token a keep logit from its own feature and the mean feature of its image.
During training (`recipes/selector.py`) a hard Gumbel-Softmax sample of those logits decides which
tokens are kept (straight-through gradients); a small transformer autoencoder sees the kept features
and a learned mask token (plus position) at the dropped places, and must reconstruct every feature;
a sparsity weight pushes the keep rate down. Tokens that others can be rebuilt from score high.
At inference the selector keeps the `keep` highest-scoring tokens of each sample (any budget, per
sample) and drops the rest; the decoder is not needed then.

    sel = load_selector()                          # checkpoints/selector-vit-host-shapes32
    patch_timm(host.vit, sel, keep=0.5, layers=(sel.config.layer,))
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from timm.models.vision_transformer import Block
from torch import Tensor, nn

from zoo.reduce.base import Reducer, keep_top
from zoo import hub
from zoo.tokenizer import check_fields, check_weights, transformer_weights

DEFAULT_CHECKPOINT = "selector-vit-host-shapes32"


@dataclass
class SelectorConfig:
    """Args:
        dim: D of the features it selects from.
        num_tokens: N, token positions the decoder knows (the host's patch tokens).
        hidden: width of the scorer MLP.
        decoder_depth, decoder_heads: the reconstruction transformer (training only).
        layer: the host block in which it was trained to select (features after that block's attention).
    """

    dim: int = 128
    num_tokens: int = 64
    hidden: int = 128
    decoder_depth: int = 2
    decoder_heads: int = 4
    layer: int = 0

    def __post_init__(self) -> None:
        check_fields(self, dim=(1, 8192), num_tokens=(2, 1 << 20), hidden=(1, 65536), decoder_depth=(0, 128),
                     decoder_heads=(1, 256), layer=(0, 1024))
        check_weights(self, transformer_weights((self.dim, self.decoder_depth)) + self.dim * self.num_tokens
                      + 2 * self.dim * self.hidden)
        if self.dim % self.decoder_heads:
            raise ValueError(f"dim={self.dim} must be a multiple of decoder_heads={self.decoder_heads}")
        if self.num_tokens < 2:
            raise ValueError(f"num_tokens={self.num_tokens} must be >= 2")


class LearnedSelector(hub.Pretrained, Reducer):
    """Keep the highest-scoring tokens; scores come from a scorer trained with a reconstruction autoencoder."""

    family = "selector"
    config_class = SelectorConfig

    def __init__(self, config: SelectorConfig) -> None:
        super().__init__()
        self.config = config
        d = config.dim
        self.norm = nn.LayerNorm(d, elementwise_affine=False)
        self.scorer = nn.Sequential(nn.Linear(2 * d, config.hidden), nn.GELU(), nn.Linear(config.hidden, 1))
        self.mask_token = nn.Parameter(torch.zeros(d))
        self.pos = nn.Parameter(torch.randn(config.num_tokens, d) * 0.02)
        self.decoder = nn.Sequential(*[Block(d, config.decoder_heads) for _ in range(config.decoder_depth)])
        self.head = nn.Sequential(nn.LayerNorm(d), nn.Linear(d, d))

    def scores(self, x: Tensor, valid: Tensor | None = None) -> Tensor:
        """Keep logits. x: (B, N, D) features; valid: (B, N) bool or None -> (B, N)."""
        h = self.norm(x)
        w = torch.ones(h.shape[:2], device=h.device, dtype=h.dtype) if valid is None else valid.to(h.dtype)
        ctx = (h * w[..., None]).sum(1) / w.sum(1, keepdim=True).clamp(min=1)  # (B, D) image context
        return self.scorer(torch.cat([h, ctx[:, None].expand_as(h)], -1)).squeeze(-1)

    def sample_mask(self, logits: Tensor, tau: float = 1.0) -> Tensor:
        """Hard Gumbel-Softmax keep mask (B, N) in {0, 1} with straight-through gradients (training)."""
        two = torch.stack([logits, torch.zeros_like(logits)], -1)  # (keep, drop) logits
        return F.gumbel_softmax(two, tau=tau, hard=True)[..., 0]

    def reconstruct(self, x: Tensor, keep: Tensor) -> Tensor:
        """Rebuild normed features from the kept ones.

        Args:
            x: (B, N, D) features; keep: (B, N) mask in [0, 1] (1 = kept).

        Returns:
            (B, N, D) reconstruction of `self.norm(x)`.
        """
        if x.shape[1] != self.config.num_tokens:
            raise ValueError(f"the decoder knows {self.config.num_tokens} positions, got N={x.shape[1]}")
        h = self.norm(x)
        m = keep[..., None].to(h.dtype)
        h = m * h + (1 - m) * self.mask_token + self.pos
        return self.head(self.decoder(h))

    def assign(self, x: Tensor, sizes: Tensor, counts: Tensor, *, metric: Tensor,
               importance: Tensor | None, offset: int = 0) -> Tensor:
        valid = sizes > 0
        kept = keep_top(self.scores(x, valid).float(), counts, valid)
        arange = torch.arange(x.shape[1], device=x.device).expand(kept.shape)
        return torch.where(kept, arange, -1)


def load_selector(source: str | Path = DEFAULT_CHECKPOINT, device: str | torch.device = "cpu") -> LearnedSelector:
    """The shipped selector for the host ViT (or one at `source`), in eval mode."""
    return hub.load(source, family=LearnedSelector.family, device=device)


hub.register_family(LearnedSelector)
