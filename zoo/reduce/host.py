"""The host ViT: a small timm VisionTransformer that classifies shape scenes, to measure reducers on.

Trained here (`recipes/vit_host.py`, `configs/reduce/vit_host.yaml`) on the procedural shape scenes of
`zoo.data.images`; it predicts the main object's kind (`KINDS`), colour (`COLOURS`) and count
(`COUNT_WORDS`, count - 1) from one 32x32 image. The timm model is kept intact (`host.vit`, one head
of 5 + 8 + 4 logits) so `zoo.reduce.patch.patch_timm` can put any reducer inside it.

    host = load_host_classifier()                  # checkpoints/vit-host-shapes32
    pred = host.predict(images)                    # images: (B, 3, 32, 32) in [0, 1]
    pred["kind"], pred["colour"], pred["count"]    # LongTensor [B] each (count is 1..4)
    pred["names"][0]                               # ("circle", "red", 2)
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch
from timm.layers import PatchEmbed
from timm.models.vision_transformer import VisionTransformer
from torch import Tensor, nn

from zoo.data.images import COLOURS, COUNT_WORDS, KINDS
from zoo import hub
from zoo.tokenizer import InputContract, check_fields, check_input, check_weights, transformer_weights

HEADS: dict[str, int] = {"kind": len(KINDS), "colour": len(COLOURS), "count": len(COUNT_WORDS)}
DEFAULT_CHECKPOINT = "vit-host-shapes32"


@dataclass
class HostConfig:
    """Args:
        image_size: side of the square input.
        patch_size: side of a patch; (image_size / patch_size)**2 patch tokens plus one CLS token.
        dim, depth, num_heads, mlp_ratio: the transformer.
        drop_path: stochastic depth during training.
        conv_stem: embed patches with a few stride-2 convolutions instead of one linear projection
            (Xiao et al. 2021, "Early Convolutions Help Transformers See Better"): the same
            tokens, but a ViT trained from scratch on little data and compute learns much faster.
    """

    image_size: int = 32
    patch_size: int = 4
    dim: int = 128
    depth: int = 6
    num_heads: int = 4
    mlp_ratio: float = 4.0
    drop_path: float = 0.05
    conv_stem: bool = True

    def __post_init__(self) -> None:
        check_fields(self, image_size=(1, 4096), patch_size=(1, 512), dim=(1, 8192), depth=(1, 128), num_heads=(1, 256),
                     mlp_ratio=(0.1, 64), drop_path=(0, 1))
        check_weights(self, transformer_weights((self.dim, self.depth)), "transformer weights")
        if self.image_size % self.patch_size:
            raise ValueError(f"image_size={self.image_size} must be a multiple of patch_size={self.patch_size}")
        if self.conv_stem and (self.patch_size & (self.patch_size - 1) or self.patch_size < 2):
            raise ValueError(f"conv_stem needs a power-of-two patch_size >= 2, got {self.patch_size}")
        if self.dim % self.num_heads:
            raise ValueError(f"dim={self.dim} must be a multiple of num_heads={self.num_heads}")

    @property
    def num_patches(self) -> int:
        return (self.image_size // self.patch_size) ** 2


class ConvStemEmbed(PatchEmbed):
    """timm's PatchEmbed with its projection replaced by log2(patch) stride-2 3x3 convolutions + a 1x1."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        dim, p = self.proj.out_channels, self.patch_size[0]
        layers: list[nn.Module] = []
        c_in, c = self.proj.in_channels, max(dim // 4, 16)
        while p > 1:
            layers += [nn.Conv2d(c_in, c, 3, stride=2, padding=1), nn.GELU()]
            c_in, c, p = c, min(c * 2, dim), p // 2
        self.proj = nn.Sequential(*layers, nn.Conv2d(c_in, dim, 1))


class HostClassifier(hub.Pretrained, nn.Module):
    """ViT over (B, 3, S, S) images in [0, 1] -> logits for kind, colour and count."""

    family = "vit-host"
    config_class = HostConfig

    def __init__(self, config: HostConfig) -> None:
        super().__init__()
        self.config = config
        self.vit = VisionTransformer(
            img_size=config.image_size, patch_size=config.patch_size, embed_dim=config.dim, depth=config.depth,
            num_heads=config.num_heads, mlp_ratio=config.mlp_ratio, num_classes=sum(HEADS.values()),
            drop_path_rate=config.drop_path, global_pool="token", class_token=True,
            embed_layer=ConvStemEmbed if config.conv_stem else PatchEmbed,
        )
        # the data are in [0, 1]; centring them is part of the model, not of the caller
        self.register_buffer("mean", torch.full((1, 3, 1, 1), 0.5), persistent=False)
        self.register_buffer("std", torch.full((1, 3, 1, 1), 0.25), persistent=False)

    @property
    def contract(self) -> InputContract:
        s = self.config.image_size
        return InputContract("B 3 H W", value_range=(0.0, 1.0), sizes={"H": s, "W": s})

    def forward(self, images: Tensor) -> dict[str, Tensor]:
        """images: (B, 3, S, S) in [0, 1] -> {"kind": (B, 5), "colour": (B, 8), "count": (B, 4)} logits."""
        logits = self.vit((images - self.mean) / self.std)
        return dict(zip(HEADS, logits.split(list(HEADS.values()), dim=-1)))

    def features(self, images: Tensor, layer: int, where: str = "block") -> Tensor:
        """Tokens inside the ViT: (B, 3, S, S) in [0, 1] -> (B, 1 + N, D), CLS first.

        Args:
            layer: block index.
            where: "attn" = after that block's attention residual (where `patch_timm` reduces),
                "block" = after the whole block.
        """
        if not 0 <= layer < self.config.depth or where not in ("attn", "block"):
            raise ValueError(f"layer={layer} must be in [0, {self.config.depth}) and where={where!r} 'attn' or 'block'")
        vit = self.vit
        x = vit.norm_pre(vit.patch_drop(vit._pos_embed(vit.patch_embed((images - self.mean) / self.std))))
        for blk in vit.blocks[:layer]:
            x = blk(x)
        blk = vit.blocks[layer]
        if where == "block":
            return blk(x)
        return x + blk.drop_path1(blk.ls1(blk.attn(blk.norm1(x))))

    @torch.no_grad()
    def predict(self, images: Tensor) -> dict[str, object]:
        """Labels of the main object of each image.

        Args:
            images: (B, 3, S, S) in [0, 1], any float dtype, on the model's device.

        Returns:
            kind, colour: LongTensor [B], indices into `zoo.data.images.KINDS` / `COLOURS`;
            count: LongTensor [B] in 1..4; probs: {head: (B, classes)}; names: [(kind, colour, count)].
        """
        x = check_input(images, self.contract, name="images").to(next(self.parameters()).device)
        was_training = self.training
        self.eval()
        logits = self(x)
        self.train(was_training)
        kind, colour = logits["kind"].argmax(-1), logits["colour"].argmax(-1)
        count = logits["count"].argmax(-1) + 1
        colour_names = list(COLOURS)
        names = [(KINDS[k], colour_names[c], n) for k, c, n in zip(kind.tolist(), colour.tolist(), count.tolist())]
        return {"kind": kind, "colour": colour, "count": count, "names": names,
                "probs": {h: v.softmax(-1) for h, v in logits.items()}}


def host_accuracy(logits: dict[str, Tensor], labels: dict[str, Tensor]) -> dict[str, float]:
    """Per-head accuracy, their mean, and `all` (kind, colour and count all right).

    Args:
        logits: {head: (B, classes)}; labels: {head: LongTensor [B]} (count as count - 1).
    """
    right = {h: logits[h].argmax(-1) == labels[h] for h in HEADS}
    out = {h: r.float().mean().item() for h, r in right.items()}
    out["mean"] = sum(out[h] for h in HEADS) / len(HEADS)
    out["all"] = torch.stack(list(right.values())).all(0).float().mean().item()
    return out


def load_host_classifier(source: str | Path = DEFAULT_CHECKPOINT, device: str | torch.device = "cpu") -> HostClassifier:
    """The shipped host ViT (or one at `source`), in eval mode on `device`."""
    return hub.load(source, family=HostClassifier.family, device=device)


hub.register_family(HostClassifier)
