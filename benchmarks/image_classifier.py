"""A small image classifier trained here, whose features define the Fréchet distance of the image benchmarks.

It is not Inception: no pretrained network can be downloaded on these machines. It is a 4-stage CNN
(16-32-64-128 channels, BatchNorm, GELU, global average pool → 128-d features) trained on 20000
train images of `zoo.data.images` (all three sources) to predict, from one shared feature vector:
the source (natural / face / shapes), the natural photo, the face identity, and for shape scenes the
main object's kind, colour and count. The 128-d pooled features feed `zoo.metrics.frechet_distance`.
Weights: benchmarks/image_features_nat32.safetensors (train with `python -m benchmarks.image_classifier`).

    feats = ImageFeatures.load()(images)            # images (B, 3, 32, 32) in [0, 1] → (B, 128)
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np
import torch
from torch import Tensor, nn

WEIGHTS = Path(__file__).resolve().parent / "image_features_nat32.safetensors"
HEADS = {"source": 3, "photo": 14, "face": 80, "kind": 5, "colour": 8, "count": 4}


class ImageFeatures(nn.Module):
    """x: (B, 3, R, R) in [0, 1] → features (B, 128); `logits(x)` gives one logit set per head."""

    def __init__(self, heads: dict[str, int] = HEADS, width: int = 16) -> None:
        super().__init__()
        chans = [3, width, 2 * width, 4 * width, 8 * width]
        layers: list[nn.Module] = []
        for i, (cin, cout) in enumerate(zip(chans[:-1], chans[1:])):
            layers += [nn.Conv2d(cin, cout, 3, stride=1 if i == 0 else 2, padding=1), nn.BatchNorm2d(cout), nn.GELU(),
                       nn.Conv2d(cout, cout, 3, padding=1), nn.BatchNorm2d(cout), nn.GELU()]
        self.body = nn.Sequential(*layers)
        self.dim = chans[-1]
        self.heads = nn.ModuleDict({k: nn.Linear(self.dim, n) for k, n in heads.items()})

    def forward(self, x: Tensor) -> Tensor:
        return self.body(x * 2 - 1).mean((2, 3))

    def logits(self, x: Tensor) -> dict[str, Tensor]:
        f = self.forward(x)
        return {k: h(f) for k, h in self.heads.items()}

    @torch.no_grad()
    def features(self, x: Tensor, batch: int = 256) -> Tensor:
        self.eval()
        return torch.cat([self.forward(c) for c in x.split(batch)])

    @classmethod
    def load(cls, path: Path = WEIGHTS) -> "ImageFeatures":
        from safetensors.torch import load_file

        if not path.is_file():
            raise ValueError(f"no classifier weights at {path}; train them with `python -m benchmarks.image_classifier`")
        model = cls()
        model.load_state_dict(load_file(str(path)), strict=True)
        return model.eval()


def labels(data: dict[str, np.ndarray]) -> dict[str, Tensor]:
    """Per-head targets (-1 where a head does not apply) from `build_image_dataset` arrays."""
    from zoo.data.images import FACE_INDICES, NATURAL_IMAGES

    origin = data["origin"]
    photo = [NATURAL_IMAGES["train"].index(o) if o in NATURAL_IMAGES["train"] else -1 for o in origin]
    face = [int(o[3:]) if o.startswith("lfw") and int(o[3:]) in FACE_INDICES["train"] else -1 for o in origin]
    return {"source": torch.from_numpy(data["source"]), "photo": torch.tensor(photo), "face": torch.tensor(face),
            "kind": torch.from_numpy(data["label_kind"]), "colour": torch.from_numpy(data["label_colour"]),
            "count": torch.from_numpy(data["label_count"])}


def train(n: int = 20000, epochs: int = 3, batch: int = 128, lr: float = 2e-3, seed: int = 0) -> dict[str, float]:
    """Train on the train split, report accuracy per head on the val split, save the weights."""
    from safetensors.torch import save_file

    from zoo.data.images import build_image_dataset, images_to_tensor

    torch.manual_seed(seed)
    data = build_image_dataset("train", n)
    x, y = images_to_tensor(data["images"]), labels(data)
    model = ImageFeatures()
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.05)
    steps = epochs * (n // batch)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, lr, total_steps=steps)
    start = time.time()
    model.train()
    for epoch in range(epochs):
        order = torch.randperm(n)
        for i in range(n // batch):
            idx = order[i * batch:(i + 1) * batch]
            xb = x[idx]
            flip = torch.rand(len(idx)) < 0.5
            xb = torch.where(flip[:, None, None, None], xb.flip(-1), xb)
            out = model.logits(xb)
            loss = sum(nn.functional.cross_entropy(out[k], y[k][idx], ignore_index=-1) for k in HEADS
                       if bool((y[k][idx] >= 0).any()))
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
        print(f"epoch {epoch}: loss {float(loss.detach()):.3f} ({time.time() - start:.0f} s)", flush=True)
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(WEIGHTS))
    # val: only the heads whose classes are shared with train (source, kind, colour, count)
    val = build_image_dataset("val", 1024)
    xv, yv = images_to_tensor(val["images"]), labels(val)
    model.eval()
    with torch.no_grad():
        out = model.logits(xv)
    acc = {}
    for k in ("source", "kind", "colour", "count"):
        keep = yv[k] >= 0
        acc[f"val_acc_{k}"] = float((out[k][keep].argmax(-1) == yv[k][keep]).float().mean())
    acc["train_seconds"] = time.time() - start
    WEIGHTS.with_suffix(".json").write_text(json.dumps(acc, indent=1) + "\n")
    return acc


if __name__ == "__main__":
    torch.set_num_threads(1)
    print(train())
