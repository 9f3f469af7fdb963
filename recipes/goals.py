"""Quality against training time on held-out real inputs, per source, while a run trains.

`GoalCurve` measures the module's tokenizer every `every_n_steps` on `zoo.data.images.source_val_sets`
(held-out photo crops, faces, shapes, flat colours, gradients, textures; sources and photos never trained on),
or for a video tokenizer (`val_sets="video"`) on `zoo.data.video.source_val_clips` (val photos, faces and seeds)
at each budget it is given, and appends one row per (source, budget) to ``<directory>/goal_curve.csv``
with the step, the wall seconds and the process CPU seconds since the fit started. The curve of issue 20
(quality vs training time for the retrained checkpoints) is read from that file by `benchmarks/real_inputs.py`.
"""

from __future__ import annotations

import csv
import time
from pathlib import Path
from typing import Any

import lightning.pytorch as pl
import torch

from zoo import metrics
from zoo.data.images import images_to_tensor, source_val_sets
from zoo.data.video import source_val_clips, videos_to_tensor

FIELDS = ("step", "wall_s", "cpu_s", "source", "budget", "psnr", "tokens")


class GoalCurve(pl.Callback):
    """Args:
        directory: where goal_curve.csv goes (created).
        budgets: encode keyword arguments to measure, each a dict (e.g. ``{"num_tokens": 8}``); its label in
            the CSV is ``k=v`` joined by commas.
        decode: keyword arguments of every decode (e.g. ``{"seed": 0}``).
        every_n_steps: how often; also measured before the first step and after the last.
        n: images (or clips) per source.
        val_sets: "images" (`source_val_sets`) or "video" (`source_val_clips`).
    """

    def __init__(self, directory: str, budgets: list[dict[str, Any]], decode: dict[str, Any] | None = None,
                 every_n_steps: int = 500, n: int = 48, val_sets: str = "images") -> None:
        if every_n_steps < 1:
            raise ValueError(f"every_n_steps must be >= 1, got {every_n_steps}")
        if val_sets not in ("images", "video"):
            raise ValueError(f"val_sets must be 'images' or 'video', got {val_sets!r}")
        self.val_sets = val_sets
        self.path = Path(directory) / "goal_curve.csv"
        self.budgets, self.decode, self.every, self.n = budgets, dict(decode or {}), every_n_steps, n
        self.start_wall, self.start_cpu = time.time(), time.process_time()
        self.sets: dict[str, torch.Tensor] = {}

    def on_fit_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self.start_wall, self.start_cpu = time.time(), time.process_time()
        if self.val_sets == "video":
            self.sets = {k: videos_to_tensor(v["videos"]) for k, v in source_val_clips(self.n).items()}
        else:
            self.sets = {k: images_to_tensor(v["images"]) for k, v in source_val_sets(self.n).items()}
        self.path.parent.mkdir(parents=True, exist_ok=True)
        if not self.path.exists():
            with self.path.open("w", newline="") as f:
                csv.writer(f).writerow(FIELDS)
        self.measure(trainer, pl_module)

    def on_train_batch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule, *args: Any) -> None:
        if trainer.global_step % self.every == 0:
            self.measure(trainer, pl_module)

    def on_fit_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self.measure(trainer, pl_module)

    @torch.no_grad()
    def measure(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if not trainer.is_global_zero:
            return
        tok = pl_module.tokenizer
        was_training = tok.training
        tok.eval()
        wall, cpu = time.time() - self.start_wall, time.process_time() - self.start_cpu
        rows = []
        for source, images in self.sets.items():
            images = images.to(pl_module.device)
            for budget in self.budgets:
                t = tok.encode(images, **budget)
                psnr = metrics.psnr(tok.decode(t, **self.decode), images).mean()
                label = ",".join(f"{k}={v}" for k, v in budget.items())
                rows.append((trainer.global_step, round(wall, 1), round(cpu, 1), source, label,
                             round(float(psnr), 3), round(float(t.lengths.float().mean()), 2)))
        with self.path.open("a", newline="") as f:
            csv.writer(f).writerows(rows)
        tok.train(was_training)
