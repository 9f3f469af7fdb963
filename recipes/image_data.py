"""A LightningDataModule over the offline image builders (`zoo.data.images`), shared by image recipes.

Train: `build_image_dataset("train", train_size, ...)`; val: `mixed_val_set(val_size)`, the set every
image tokenizer reports on. Batches are dicts with "image": (B, 3, R, R) float in [0, 1] and the
labels of `zoo.data.images.ImageDataset`. `source_weights` draws the train order with replacement so each
source's share of the batches is proportional to its weight (the build itself stays balanced round-robin).
"""

from __future__ import annotations

from typing import Mapping, Sequence

import torch
from torch.utils.data import DataLoader, WeightedRandomSampler

from recipes.datamodule import SplitDataModule
from zoo.data.images import ALL_SOURCES, SOURCES, ImageDataset, mixed_val_set


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
        source_weights: relative share of the batches per train source (sources left out weigh 1); None
            shuffles the balanced build (every source equally often). E.g. ``{flat: 2}`` shows flat colours
            twice as often as each other source.
    """

    def __init__(self, train_size: int = 20000, resolution: int = 32, sources: Sequence[str] = SOURCES,
                 seed: int = 0, val_size: int = 256, batch_size: int = 64, num_workers: int = 0,
                 shuffle_seed: int = 0, source_weights: Mapping[str, float] | None = None) -> None:
        super().__init__(batch_size, num_workers, shuffle_seed)
        self.train_size, self.resolution, self.sources, self.seed = train_size, resolution, tuple(sources), seed
        self.val_size = val_size
        weights = dict(source_weights or {})
        bad = {k: v for k, v in weights.items() if k not in self.sources or not float(v) >= 0}
        if bad or (weights and not any(weights.get(s, 1.0) > 0 for s in self.sources)):
            raise ValueError(f"source_weights={weights!r} must map train sources {self.sources} to weights >= 0, "
                             f"not all zero; bad entries: {bad}")
        self.source_weights = weights or None

    def setup(self, stage: str | None = None) -> None:
        if self.train_set is None and stage in (None, "fit"):
            self.train_set = ImageDataset("train", self.train_size, self.resolution, self.sources, self.seed)
        if self.val_set is None:
            self.val_set = ImageDataset.from_arrays(mixed_val_set(self.val_size, self.resolution))

    def train_dataloader(self) -> DataLoader:
        if self.source_weights is None:
            return super().train_dataloader()
        names = [ALL_SOURCES[i] for i in self.train_set.arrays["source"]]
        weights = torch.tensor([float(self.source_weights.get(n, 1.0)) for n in names], dtype=torch.float64)
        g = torch.Generator().manual_seed(self.shuffle_seed)
        sampler = WeightedRandomSampler(weights, len(weights), replacement=True, generator=g)
        return DataLoader(self.train_set, batch_size=self.batch_size, sampler=sampler, drop_last=True,
                          num_workers=self.num_workers, persistent_workers=self.num_workers > 0)

    def val_images(self, n: int | None = None) -> torch.Tensor:
        """The first n val images as one tensor (B, 3, R, R) in [0, 1] (all when n is None)."""
        self.setup("validate")
        from zoo.data.images import images_to_tensor

        return images_to_tensor(self.val_set.arrays["images"][:n])
