"""A LightningDataModule over the offline image builders (`zoo.data.images`), shared by image recipes.

Train: `build_image_dataset("train", train_size, ...)`; val: `mixed_val_set(val_size)`, the set every
image tokenizer reports on. Batches are dicts with "image": (B, 3, R, R) float in [0, 1] and the
labels of `zoo.data.images.ImageDataset`.
"""

from __future__ import annotations

from typing import Sequence

import torch

from recipes.datamodule import SplitDataModule
from zoo.data.images import SOURCES, ImageDataset, mixed_val_set


class ImageDataModule(SplitDataModule):
    """Args:
        train_size: images in the train build (a larger build extends a smaller one).
        resolution: side R in pixels.
        sources: train sources, names from `zoo.data.images.SOURCES`.
        seed: seed of the train build.
        val_size: images of the mixed-complexity val set.
        batch_size: per device.
        num_workers: DataLoader workers (0 on a shared CPU).
        shuffle_seed: seed of the train order, so a run can be repeated.
    """

    def __init__(self, train_size: int = 20000, resolution: int = 32, sources: Sequence[str] = SOURCES,
                 seed: int = 0, val_size: int = 256, batch_size: int = 64, num_workers: int = 0,
                 shuffle_seed: int = 0) -> None:
        super().__init__(batch_size, num_workers, shuffle_seed)
        self.train_size, self.resolution, self.sources, self.seed = train_size, resolution, tuple(sources), seed
        self.val_size = val_size

    def setup(self, stage: str | None = None) -> None:
        if self.train_set is None and stage in (None, "fit"):
            self.train_set = ImageDataset("train", self.train_size, self.resolution, self.sources, self.seed)
        if self.val_set is None:
            self.val_set = ImageDataset.from_arrays(mixed_val_set(self.val_size, self.resolution))

    def val_images(self, n: int | None = None) -> torch.Tensor:
        """The first n val images as one tensor (B, 3, R, R) in [0, 1] (all when n is None)."""
        self.setup("validate")
        from zoo.data.images import images_to_tensor

        return images_to_tensor(self.val_set.arrays["images"][:n])
