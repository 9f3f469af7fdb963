"""Train the host ViT classifier (`zoo.reduce.host`) on shape scenes and ship it as a checkpoint.

    zoo train configs/reduce/vit_host.yaml

Data: `zoo.data.images` shape scenes (all complexity levels), train split for training, val split
(disjoint scene seeds) for the card. Augmentation: flips and 90-degree rotations, which keep kind,
colour and count. Loss: the sum of the three heads' cross-entropies (label smoothing 0.1). The cosine learning-rate decay
follows max(step / max_steps, elapsed / budget_seconds) (`recipes.base`), so a time-limited run on a busy machine still
ends at a low learning rate.
"""

from __future__ import annotations

import time
from typing import Any

import lightning.pytorch as pl
import torch
import torch.nn.functional as F
from lightning.pytorch.utilities import rank_zero_info
from torch import Tensor
from torch.utils.data import DataLoader, TensorDataset

from recipes.base import Recipe
from recipes.export import announce, run_folder
from zoo.data.images import build_image_dataset, images_to_tensor
from zoo.hub import save_module
from zoo.reduce.host import HEADS, HostClassifier, HostConfig, host_accuracy


def shape_tensors(split: str, n: int, seed: int = 0, resolution: int = 32) -> TensorDataset:
    """(images (n, 3, R, R) in [0, 1], kind, colour, count - 1) of `n` shape scenes of `split`."""
    a = build_image_dataset(split, n, resolution, ("shapes",), seed=seed)
    labels = [torch.from_numpy(a[f"label_{h}"]) for h in HEADS]
    return TensorDataset(images_to_tensor(a["images"]), *labels)



@torch.no_grad()
def evaluate_host(host: torch.nn.Module, dataset: TensorDataset, batch: int = 500) -> dict[str, float]:
    """Accuracy per head (and all three) of a host classifier over a TensorDataset (images, *labels)."""
    x, *y = dataset.tensors
    logits: dict[str, list[Tensor]] = {h: [] for h in HEADS}
    for i in range(0, len(x), batch):
        for h, v in host(x[i:i + batch]).items():
            logits[h].append(v)
    return host_accuracy({h: torch.cat(v) for h, v in logits.items()}, dict(zip(HEADS, y)))

class ShapesDataModule(pl.LightningDataModule):
    """Shape scenes as (image, kind, colour, count - 1) batches."""

    def __init__(self, train_size: int = 40000, val_size: int = 1000, batch_size: int = 128, seed: int = 0) -> None:
        super().__init__()
        self.save_hyperparameters()
        self.train_set: TensorDataset | None = None
        self.val_set: TensorDataset | None = None

    def setup(self, stage: str | None = None) -> None:
        hp = self.hparams
        if self.train_set is None:
            self.train_set = shape_tensors("train", hp.train_size, hp.seed)
            self.val_set = shape_tensors("val", hp.val_size, hp.seed)

    def train_dataloader(self) -> DataLoader:
        g = torch.Generator().manual_seed(self.hparams.seed)
        return DataLoader(self.train_set, self.hparams.batch_size, shuffle=True, drop_last=True, generator=g)

    def val_dataloader(self) -> DataLoader:
        return DataLoader(self.val_set, 500)


def augment(x: Tensor) -> Tensor:
    """Random flips and quarter turns per batch half; x: (B, 3, H, W)."""
    k = int(torch.randint(4, ()))
    x = torch.rot90(x, k, dims=(2, 3))
    flip = torch.rand(x.shape[0], device=x.device) < 0.5
    return torch.where(flip[:, None, None, None], x.flip(3), x)


class HostModule(Recipe):
    """Cross-entropy on the three heads, AdamW, linear warm-up then cosine decay (`recipes.base`)."""

    no_decay_keys = ("pos_embed",)

    def __init__(self, config: dict[str, Any] | None = None, lr: float = 1e-3, weight_decay: float = 0.05,
                 warmup_steps: int = 100, label_smoothing: float = 0.1, threads: int = 1,
                 budget_seconds: float | None = None, export_dir: str | None = None) -> None:
        super().__init__()
        self.save_hyperparameters()
        torch.set_num_threads(threads)
        self.init_model(HostClassifier(HostConfig(**(config or {}))), ema=False)
        self.start = time.time()

    @property
    def host(self) -> HostClassifier:
        return self.model

    def loss(self, batch: list[Tensor]) -> tuple[Tensor, dict[str, Tensor], dict[str, Tensor]]:
        x, *y = batch
        labels = dict(zip(HEADS, y))
        logits = self.host(x)
        loss = sum(F.cross_entropy(logits[h], labels[h], label_smoothing=self.hparams.label_smoothing) for h in HEADS)
        return loss, logits, labels

    def training_step(self, batch: list[Tensor], _: int) -> Tensor:
        x, *y = batch
        loss, _, _ = self.loss([augment(x), *y])
        self.log("train/loss", loss, prog_bar=True)
        return loss

    def validation_step(self, batch: list[Tensor], _: int) -> None:
        loss, logits, labels = self.loss(batch)
        self.log("val/loss", loss, prog_bar=True)
        for k, v in host_accuracy(logits, labels).items():
            self.log(f"val/acc_{k}", v, prog_bar=k == "all")

    def on_validation_epoch_end(self) -> None:
        logged = {k: round(float(v), 4) for k, v in self.trainer.callback_metrics.items() if k.startswith("val/")}
        rank_zero_info(f"step {self.global_step} ({(time.time() - self.start) / 60:.1f} min): {logged}")

    def on_fit_start(self) -> None:
        super().on_fit_start()
        self.start = time.time()

    @torch.no_grad()
    def evaluate(self, dataset: TensorDataset) -> dict[str, float]:
        self.host.eval()
        return evaluate_host(self.host, dataset)

    def on_fit_end(self) -> None:
        if self.hparams.export_dir is None or not self.trainer.is_global_zero:
            return
        directory = run_folder(self.hparams.export_dir)
        minutes = (time.time() - self.start) / 60
        dm = self.trainer.datamodule
        acc = self.evaluate(dm.val_set)
        summary = {"val_accuracy": acc, "val_size": len(dm.val_set), "train_minutes": minutes,
                   "global_step": self.trainer.global_step}
        save_module(self.host, directory, summary=summary,
                    card=host_card(self.host.config, acc, len(dm.val_set), dm.hparams, minutes, self.trainer.global_step))
        announce(directory, "zoo.reduce.host.load_host_classifier")


def host_card(config: HostConfig, acc: dict[str, float], val_size: int, data: Any, minutes: float, steps: int) -> str:
    rows = "\n".join(f"| {k} | {v:.4f} |" for k, v in acc.items())
    return f"""# vit-host-shapes32

A small timm ViT ({config.depth} blocks, dim {config.dim}, {config.num_heads} heads, patch {config.patch_size} on
{config.image_size}x{config.image_size}: {config.num_patches} patch tokens + CLS) that names the main object of a
shape scene: its kind (5), colour (8) and count (1-4). It is the host on which `zoo.reduce` measures
token reduction, and a judge of generated shape images.

    from zoo.reduce.host import load_host_classifier
    host = load_host_classifier()
    host.predict(images)   # images (B, 3, 32, 32) in [0, 1] -> kind, colour, count, names, probs

## Data
`zoo.data.images` shape scenes, all five complexity levels: {data.train_size} train scenes (seed {data.seed}),
flips and quarter turns as augmentation; measured on {val_size} val scenes (disjoint seeds).

## Recipe
`zoo train configs/reduce/vit_host.yaml` (recipes/vit_host.py): {steps} steps of batch {data.batch_size},
{minutes:.1f} minutes on CPU, 1 thread, torch {torch.__version__}.

## Measured (val split)
| accuracy | value |
|---|---|
{rows}

`all` = kind, colour and count all right; `mean` = mean of the three heads.

## Licence
Apache-2.0; trained here on data built offline by `zoo.data`.
"""
