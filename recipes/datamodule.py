"""The part every in-memory DataModule of the recipes shares: batch checks and the two DataLoaders.

Subclasses build `train_set` and `val_set` in `setup` (`recipes.image_data`, `recipes.video_data`).
The train order is shuffled from `shuffle_seed`, so a run can be repeated; the last partial batch is
dropped in training and kept in validation.
"""

from __future__ import annotations

import lightning.pytorch as pl
import torch
from torch.utils.data import DataLoader, Dataset


class SplitDataModule(pl.LightningDataModule):
    """Args:
        batch_size: per device.
        num_workers: DataLoader workers (0 on a shared CPU).
        shuffle_seed: seed of the train order.
    """

    def __init__(self, batch_size: int, num_workers: int = 0, shuffle_seed: int = 0) -> None:
        super().__init__()
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        self.batch_size, self.num_workers, self.shuffle_seed = batch_size, num_workers, shuffle_seed
        self.train_set: Dataset | None = None
        self.val_set: Dataset | None = None

    def train_dataloader(self) -> DataLoader:
        g = torch.Generator().manual_seed(self.shuffle_seed)
        return DataLoader(self.train_set, batch_size=self.batch_size, shuffle=True, drop_last=True, generator=g,
                          num_workers=self.num_workers, persistent_workers=self.num_workers > 0)

    def val_dataloader(self) -> DataLoader:
        return DataLoader(self.val_set, batch_size=self.batch_size, shuffle=False, num_workers=self.num_workers)
