"""Make tests/fixtures/tome_official: official ToMe's outputs on tiny timm ViTs, to check ours without its code.

Official ToMe (facebookresearch/ToMe, CC BY-NC 4.0) is not on PyPI; this script imports its `tome` package from a
checkout at OFFICIAL_COMMIT, builds tiny timm ViTs (with a CLS token, with CLS + distillation token, without
prefix tokens), randomises every tensor that starts constant or near zero (biases, LayerNorms, CLS and
distillation tokens) so that each takes part, patches them with `tome.patch.timm`, and for each schedule in
SCHEDULES saves the official logits and final token sizes. The weights travel in the fixture (timm's own init may
change between versions). tests/test_reduce.py loads them into the same timm classes, patches with
`patch_timm(vit, ToMe(), r=...)`, and requires the same sizes and logits within 1e-5.

    git --git-dir /path/to/ToMe.git archive af95e4b | tar x -C /tmp/tome
    python scripts/make_tome_fixture.py --official /tmp/tome
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import torch
from safetensors.torch import save_file

OFFICIAL_REPO = "https://github.com/facebookresearch/ToMe"
OFFICIAL_COMMIT = "af95e4b"
OUT = Path(__file__).resolve().parent.parent / "tests" / "fixtures" / "tome_official"
TINY = dict(img_size=32, patch_size=8, embed_dim=24, depth=3, num_heads=2, num_classes=5)
KINDS = {  # name -> (timm class, extra constructor arguments)
    "cls": ("VisionTransformer", {}),
    "distilled": ("VisionTransformerDistilled", {}),
    "no-cls": ("VisionTransformer", {"class_token": False, "global_pool": "avg"}),
}
SCHEDULES = {"r3": 3, "r5-0-4": [5, 0, 4], "r100": 100}  # r=100 is clipped to half the tokens in every block


def build(kind: str) -> torch.nn.Module:
    from timm.models.deit import VisionTransformerDistilled
    from timm.models.vision_transformer import VisionTransformer

    cls_name, extra = KINDS[kind]
    cls = {"VisionTransformer": VisionTransformer, "VisionTransformerDistilled": VisionTransformerDistilled}[cls_name]
    return cls(**TINY, **extra).eval()


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--official", required=True, help="a checkout of facebookresearch/ToMe")
    args = p.parse_args()
    sys.path.insert(0, args.official)
    import timm
    import tome  # the official package, as it is

    OUT.mkdir(parents=True, exist_ok=True)
    gen = torch.Generator().manual_seed(0)
    images = torch.rand(3, 3, 32, 32, generator=gen)
    for kind in KINDS:
        torch.manual_seed(1)
        vit = build(kind)
        with torch.no_grad():
            for name, t in vit.named_parameters():
                if name.endswith("bias") or "norm" in name or name in ("cls_token", "dist_token"):
                    t.add_(0.2 * torch.randn(t.shape, generator=gen))
        tensors = {f"model.{k}": v.contiguous() for k, v in vit.state_dict().items()}
        tome.patch.timm(vit)
        for sched, r in SCHEDULES.items():
            vit.r = r
            with torch.no_grad():
                tensors[f"{sched}.logits"] = vit(images)
            tensors[f"{sched}.sizes"] = vit._tome_info["size"][..., 0].contiguous()
        tensors["images"] = images
        save_file(tensors, OUT / f"{kind}.safetensors")
    source = {"official_repo": OFFICIAL_REPO, "official_commit": OFFICIAL_COMMIT, "script": "scripts/make_tome_fixture.py",
              "license": "CC-BY-NC-4.0 (the official code; this fixture holds only its outputs)",
              "timm": timm.__version__, "torch": torch.__version__, "tiny": TINY, "kinds": KINDS, "schedules": SCHEDULES}
    (OUT / "SOURCE.json").write_text(json.dumps(source, indent=2) + "\n")


if __name__ == "__main__":
    main()
