"""Put any reducer inside a timm VisionTransformer, keeping PyTorch's fused attention.

    import timm
    from zoo.reduce import ToMe, patch_timm
    model = timm.create_model("vit_small_patch16_224", pretrained=True)
    patch_timm(model, ToMe(), r=8)                       # ToMe's schedule: every block merges 8 tokens
    patch_timm(model, ToMe(), keep=0.5, layers=(0,))     # or any reducer to a budget, in chosen blocks
    model.zoo_reduce.keep = 0.3                          # change the budget (or `.r`) at any time
    logits = model(images)
    model.zoo_reduce.last                                # Reduced: sizes and source map of the last batch

In each reducing block the reducer runs between attention and MLP (as in ToMe and PPT), so that
block's MLP and every later block see fewer tokens. Two schedules:
- `r=` (ToMe only): official ToMe's constant schedule, `model.r = 8` in its code: each block removes r
  tokens (an int, or one per block), with the official matching and token order, so the outputs are
  official ToMe's (`zoo.reduce.merge.merge_r`).
- `keep=` + `layers=` (any reducer): `keep` is the share (or count, or one per sample) of *patch* tokens
  left after the last reducing block; with several `layers` the tokens shrink geometrically towards it.
CLS and other prefix tokens (distillation token, registers) are protected either way.

Which towers: timm `VisionTransformer` and its subclasses (DeiT distilled keeps its own position
embedding and heads) built from plain `Block`s with timm `Attention`: ViT, DeiT, DINOv2 (with
registers), CLIP and SigLIP image towers. EVA and RoPE ViTs are refused: their rotary position
embedding is tied to each token's place on the patch grid, which merging removes.

Attention always goes through `torch.nn.functional.scaled_dot_product_attention` (flash / memory
efficient / fused CPU kernels). The official ToMe patch computes the attention matrix by hand to add
proportional attention; we pass log(size) as an additive float mask instead (-inf on the padding of
samples that kept fewer tokens). The matching metric (keys averaged over heads) and the importance
(CLS attention times value norm) are computed only in reducing blocks and only when the reducer asks;
the importance needs only the CLS query row, never the full attention matrix.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Sequence

import torch
import torch.nn.functional as F
from timm.layers import Attention
from timm.models.vision_transformer import Block, VisionTransformer
from torch import Tensor

from zoo.reduce.base import Keep, Reduced, Reducer, resolve_keep
from zoo.reduce.merge import ToMe, merge_r


@dataclass
class ReduceState:
    """What a patched model reduces, and what it did on the last batch.

    Args:
        reducer: the `Reducer` to run.
        keep: patch tokens left after the last reducing block (ratio, count, or one per sample).
        layers: indices of the blocks that reduce.
        proportional: add log(size) to the attention logits (proportional attention).
    """

    reducer: Reducer
    keep: Keep = 1.0
    layers: tuple[int, ...] = (0,)
    proportional: bool = True
    prefix: int = 1
    r: int | tuple[int, ...] | None = None
    last: Reduced | None = None
    sizes: Tensor | None = field(default=None, repr=False)
    _final: Tensor | None = field(default=None, repr=False)
    _start: int = 0
    _source: Tensor | None = field(default=None, repr=False)

    def begin(self, x: Tensor) -> None:
        """Reset per-batch state; x: (B, N, D) tokens entering the first block."""
        self.sizes, self.last, self._final, self._start = None, None, None, x.shape[1] - self.prefix
        self._source = None

    def r_at(self, layer: int) -> int:
        """Tokens block `layer` removes under ToMe's schedule (0 without one)."""
        if self.r is None:
            return 0
        return self.r if isinstance(self.r, int) else (self.r[layer] if layer < len(self.r) else 0)

    def merge_r(self, x: Tensor, layer: int, metric: Tensor) -> Tensor:
        """ToMe's step in block `layer`; x: (B, N, D) -> (B, N - r, D)."""
        x, self.sizes, slot = merge_r(x, self.sizes, metric, self.r_at(layer), self.prefix)
        self._source = slot if self._source is None else slot.gather(1, self._source)
        self.last = Reduced(x, self.sizes, self._source)
        return x

    def bias(self, x: Tensor) -> Tensor | None:
        """(B, 1, 1, N) additive attention bias, or None while no token has been reduced."""
        if self.sizes is None:
            return None
        sizes = self.sizes.to(x.dtype)
        bias = sizes.log() if self.proportional else torch.zeros_like(sizes)
        bias = bias.masked_fill(sizes <= 0, float("-inf"))
        return bias[:, None, None, :]

    def reduce(self, x: Tensor, layer: int, metric: Tensor | None, importance: Tensor | None) -> Tensor:
        """Run the reducer in block `layer`; x: (B, N, D) -> (B, M, D)."""
        b = x.shape[0]
        if self._final is None:
            start = torch.full((b,), self._start, dtype=torch.long, device=x.device)
            self._final = resolve_keep(self.keep, start)
        step = self.layers.index(layer) + 1
        frac = (self._final.double() / self._start) ** (step / len(self.layers))
        count = torch.round(frac * self._start).long().clamp(min=1)
        if step == len(self.layers):
            count = self._final
        red = self.reducer(x, keep=count, sizes=self.sizes, metric=metric, importance=importance, protect=self.prefix)
        self.sizes = red.sizes
        self.last = red if self.last is None else self.last.then(red)
        return red.x


def attend(attn: torch.nn.Module, x: Tensor, bias: Tensor | None, *, metric: bool = False,
           importance: bool = False) -> tuple[Tensor, Tensor | None, Tensor | None]:
    """timm `Attention` forward through fused SDPA, with the reducers' signals on the side.

    Args:
        attn: a timm `Attention` module (its weights are used as they are).
        x: (B, N, C) normed tokens; bias: (B, 1, 1, N) additive logits bias or None.
        metric: also return the keys averaged over heads, (B, N, head_dim).
        importance: also return CLS attention x value norm averaged over heads, (B, N).
    """
    b, n, _ = x.shape
    gate = attn.gate(x).sigmoid() if getattr(attn, "gate", None) is not None else None
    qkv = attn.qkv(x).reshape(b, n, 3, attn.num_heads, attn.head_dim).permute(2, 0, 3, 1, 4)
    q, k, v = qkv.unbind(0)  # each (B, H, N, hd)
    q, k = attn.q_norm(q), attn.k_norm(k)
    y = F.scaled_dot_product_attention(q, k, v, attn_mask=bias,
                                       dropout_p=attn.attn_drop.p if attn.training else 0.0)
    y = y.transpose(1, 2).reshape(b, n, -1)
    y = attn.norm(y)
    if gate is not None:
        y = y * gate
    y = attn.proj_drop(attn.proj(y))
    key_metric = k.mean(1) if metric else None
    imp = None
    if importance:
        logits = (q[:, :, :1] * attn.scale) @ k.transpose(-2, -1)  # (B, H, 1, N): the CLS row only
        if bias is not None:
            logits = logits + bias[:, :, :1]
        cls_attn = logits.softmax(-1).squeeze(2)  # (B, H, N)
        imp = (cls_attn * v.norm(dim=-1)).mean(1)
    return y, key_metric, imp


class ReducingBlock(Block):
    """A timm `Block` that reduces its tokens between attention and MLP when its index is listed."""

    _zoo_state: ReduceState
    _zoo_index: int

    def forward(self, x: Tensor, attn_mask: Tensor | None = None, is_causal: bool = False) -> Tensor:
        if attn_mask is not None or is_causal:
            raise ValueError("a model patched by zoo.reduce takes no attn_mask / is_causal (it builds its own)")
        st = self._zoo_state
        if st.r is not None:  # ToMe's schedule
            merges = st.r_at(self._zoo_index) > 0
            y, metric, _ = attend(self.attn, self.norm1(x), st.bias(x), metric=merges)
            x = x + self.drop_path1(self.ls1(y))
            if merges:
                x = st.merge_r(x, self._zoo_index, metric)
            return x + self.drop_path2(self.ls2(self.mlp(self.norm2(x))))
        here = self._zoo_index in st.layers and not _keeps_all(st.keep)
        needs = st.reducer.needs if here else ()
        y, metric, importance = attend(self.attn, self.norm1(x), st.bias(x), metric="metric" in needs,
                                       importance="importance" in needs and st.prefix > 0)
        x = x + self.drop_path1(self.ls1(y))
        if here:
            x = st.reduce(x, self._zoo_index, metric, importance)
        return x + self.drop_path2(self.ls2(self.mlp(self.norm2(x))))


class ReducingVisionTransformer(VisionTransformer):
    """A timm `VisionTransformer` whose blocks are `ReducingBlock`s sharing one `ReduceState`.

    `patch_timm` gives a model a subclass of this and of its own class (`_reducing_class`), so a
    subclass's own position embedding, tokens and heads (DeiT distilled) stay as they are.
    """

    zoo_reduce: ReduceState

    def forward_features(self, x: Tensor, attn_mask: Tensor | None = None, is_causal: bool = False) -> Tensor:
        if attn_mask is not None or is_causal:
            raise ValueError("a model patched by zoo.reduce takes no attn_mask / is_causal (it builds its own)")
        x = self.norm_pre(self.patch_drop(self._pos_embed(self.patch_embed(x))))
        self.zoo_reduce.begin(x)
        for blk in self.blocks:
            x = blk(x)
        return self.norm(x)


def patch_timm(model: VisionTransformer, reducer: Reducer, keep: Keep = 1.0, layers: Sequence[int] = (0,),
               proportional: bool = True, *, r: int | Sequence[int] | None = None) -> VisionTransformer:
    """Make `model` (in place) reduce its tokens with `reducer`; returns it.

    Args:
        model: a timm `VisionTransformer` (or subclass, e.g. DeiT distilled) whose blocks are plain `Block`s.
        reducer: any `Reducer` (ToMe, PrunePool, RandomDrop, LearnedSelector, ...).
        keep: patch tokens left after the last reducing block; change later via `model.zoo_reduce.keep`.
        layers: block indices that reduce (0 = in the first block).
        proportional: proportional attention (log size added to the logits) after merging.
        r: ToMe's constant schedule instead of `keep`/`layers` (ToMe only): every block removes r tokens
            (an int, or one int per block), as official ToMe's `model.r = r`; change via `model.zoo_reduce.r`.
    """
    if not isinstance(model, VisionTransformer):
        kind = type(model).__name__
        if kind == "Eva" or "rope" in kind.lower():
            raise ValueError(f"patch_timm does not support EVA / RoPE ViTs (timm {kind}): their rotary position "
                             "embedding is tied to each token's place on the patch grid, which merging removes")
        raise ValueError(f"patch_timm expects a timm VisionTransformer, got {kind}")
    if not isinstance(reducer, Reducer):
        raise ValueError(f"reducer must be a zoo.reduce Reducer, got {type(reducer).__name__}")
    depth = len(model.blocks)
    layers = tuple(sorted(set(int(i) for i in layers)))
    if not layers or any(not 0 <= i < depth for i in layers):
        raise ValueError(f"layers={layers} must be block indices in [0, {depth})")
    if any(type(b) not in (Block, ReducingBlock) for b in model.blocks) or \
            any(type(b.attn) is not Attention for b in model.blocks):
        raise ValueError("patch_timm supports timm ViTs built from plain `Block`s with timm `Attention` (got "
                         f"{sorted({f'{type(b).__name__}/{type(b.attn).__name__}' for b in model.blocks})})")
    if r is not None:
        r = _check_r(r, depth)
        if not isinstance(reducer, ToMe):
            raise ValueError(f"r= is ToMe's schedule and needs a ToMe reducer, got {type(reducer).__name__}; "
                             "other reducers take keep= and layers=")
        if not _keeps_all(keep) or layers != (0,):
            raise ValueError("give either r= (ToMe's schedule) or keep= with layers=, not both")
    if model.global_pool in ("avg", "map") and model.num_prefix_tokens == 0:
        # an unweighted pool over merged tokens would be biased; ViTs with a CLS token are the main target
        import warnings

        warnings.warn(f"global_pool={model.global_pool!r} pools reduced tokens without their sizes", stacklevel=2)
    state = ReduceState(reducer=reducer, keep=keep, layers=layers, proportional=proportional,
                        prefix=model.num_prefix_tokens, r=r)
    if not isinstance(model, ReducingVisionTransformer):
        model._zoo_class = type(model)
        model.__class__ = _reducing_class(type(model))
    model.zoo_reduce = state
    for i, blk in enumerate(model.blocks):
        blk.__class__ = ReducingBlock
        blk._zoo_state, blk._zoo_index = state, i
    if isinstance(reducer, torch.nn.Module):
        model.zoo_reducer = reducer  # registered, so .to(device) and state_dict follow a learned reducer
    return model


def unpatch_timm(model: VisionTransformer) -> VisionTransformer:
    """Undo `patch_timm` (in place)."""
    if isinstance(model, ReducingVisionTransformer):
        model.__class__ = model._zoo_class
        for blk in model.blocks:
            blk.__class__ = Block
        if "zoo_reducer" in model._modules:
            del model._modules["zoo_reducer"]
    return model


def _keeps_all(keep: Keep) -> bool:
    return isinstance(keep, float) and keep == 1.0


def _check_r(r: int | Sequence[int], depth: int) -> int | tuple[int, ...]:
    values = [r] if isinstance(r, int) else list(r)
    if any(isinstance(v, bool) or not isinstance(v, int) or v < 0 for v in values) or \
            (not isinstance(r, int) and len(values) != depth):
        raise ValueError(f"r must be an int >= 0 (tokens each block removes) or {depth} of them, one per block; got {r!r}")
    return r if isinstance(r, int) else tuple(values)


_CLASSES: dict[type, type] = {}


def _reducing_class(cls: type) -> type:
    """`ReducingVisionTransformer` over `cls`: our forward_features, everything else `cls`'s own."""
    if cls is VisionTransformer:
        return ReducingVisionTransformer
    if cls not in _CLASSES:
        _CLASSES[cls] = type(f"Reducing{cls.__name__}", (ReducingVisionTransformer, cls), {})
    return _CLASSES[cls]
