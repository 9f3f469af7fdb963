"""A LightningDataModule over the offline video builder (`zoo.data.video`), shared by video recipes.

Train: `build_video_dataset("train", train_size, ...)`, with random horizontal flips and time
reversal (both keep a clip plausible: bounces, pans and zooms run either way); val: `val_clips(val_size)`,
the set every video tokenizer reports on. Batches are dicts with "video": (B, 3, T, R, R) float in
[0, 1], "source" and "caption".
"""

from __future__ import annotations

from typing import Any, Sequence

import torch

from recipes.datamodule import SplitDataModule
from zoo.data.video import SOURCES, VideoDataset, val_clips, videos_to_tensor


class VideoDataModule(SplitDataModule):
    """Args:
        train_size: clips in the train build (a larger build extends a smaller one).
        frames: T, frames per clip.
        resolution: side R in pixels.
        sources: train sources, names from `zoo.data.video.SOURCES`.
        seed: seed of the train build.
        val_size: clips of the val set.
        batch_size: per device.
        augment: flip train clips left-right and in time, each with probability 1/2.
        num_workers: DataLoader workers (0 on a shared CPU).
        shuffle_seed: seed of the train order, so a run can be repeated.
    """

    def __init__(self, train_size: int = 4000, frames: int = 16, resolution: int = 32, sources: Sequence[str] = SOURCES,
                 seed: int = 0, val_size: int = 96, batch_size: int = 32, augment: bool = True, num_workers: int = 0,
                 shuffle_seed: int = 0) -> None:
        super().__init__(batch_size, num_workers, shuffle_seed)
        self.train_size, self.frames, self.resolution, self.sources = train_size, frames, resolution, tuple(sources)
        self.seed, self.val_size, self.augment = seed, val_size, augment

    def setup(self, stage: str | None = None) -> None:
        if self.train_set is None and stage in (None, "fit"):
            self.train_set = VideoDataset("train", self.train_size, self.frames, self.resolution, self.sources, self.seed)
        if self.val_set is None:
            self.val_set = VideoDataset.from_arrays(val_clips(self.val_size, self.frames, self.resolution))

    def on_after_batch_transfer(self, batch: dict[str, Any], dataloader_idx: int) -> dict[str, Any]:
        if self.augment and self.trainer is not None and self.trainer.training:
            v = batch["video"]  # (B, 3, T, R, R)
            b = v.shape[0]
            flip = (torch.rand(b, device=v.device) < 0.5)[:, None, None, None, None]
            v = torch.where(flip, v.flip(-1), v)
            rev = (torch.rand(b, device=v.device) < 0.5)[:, None, None, None, None]
            batch["video"] = torch.where(rev, v.flip(2), v)
        return batch

    def val_videos(self, n: int | None = None) -> torch.Tensor:
        """The first n val clips as one tensor (B, 3, T, R, R) in [0, 1] (all when n is None)."""
        self.setup("validate")
        return videos_to_tensor(self.val_set.arrays["videos"][:n])
