"""Sharded, streamable datasets: our builders' output written as litdata chunks, read by any recipe.

Why litdata (Lightning's streaming datasets) and not webdataset tar shards: its loader is stateful, so a
run killed mid-epoch resumes at the same sample with Lightning's `--ckpt_path last` (webdataset restarts
the epoch or needs bespoke skipping); it balances samples across DDP ranks and nodes without the uneven-
shard hangs of tar shards; and it streams from object storage (s3://, gs://, https) with a local cache.

    zoo shards images --split train --n 20000 --out shards/images-train     # write
    zoo train configs/flextok/tiny-nat32.yaml --data recipes.shards.ShardedDataModule \
        --data.train_dir s3://bucket/images-train --data.val_dir s3://bucket/images-val   # read
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import lightning.pytorch as pl
import numpy as np
import torch

SOURCES = ("images", "speech", "music", "lasa", "reaching")


def builder_arrays(source: str, split: str, n: int, **options: Any) -> dict[str, np.ndarray]:
    """The numeric arrays of one builder split, each with a leading sample axis of length n."""
    if source == "images":
        from zoo.data.images import build_image_dataset

        arrays = build_image_dataset(split, n, **options)
    elif source in ("speech", "music"):
        from zoo.data.audio import build_audio_dataset

        arrays = build_audio_dataset(source, split, n, **options)
    elif source == "lasa":
        from zoo.data.actions import load_lasa

        arrays = {"trajectories": load_lasa(split, **options)[0][:n]}
    elif source == "reaching":
        from zoo.data.actions import reaching_split

        arrays = {"trajectories": reaching_split(split, n, **options)}
    else:
        raise ValueError(f"source must be one of {SOURCES}, got {source!r}")
    return {k: v for k, v in arrays.items() if v.dtype.kind in "fiub"}  # captions etc. stay in the builders


@dataclass
class _Sample:
    """Picklable `fn` for litdata.optimize (its workers may be other processes)."""

    arrays: dict[str, np.ndarray]

    def __call__(self, index: int) -> dict[str, Any]:
        return {"index": index, **{k: v[index] for k, v in self.arrays.items()}}


def write_shards(source: str, split: str, n: int, output_dir: str, chunk_bytes: str = "16MB",
                 num_workers: int = 1, **options: Any) -> str:
    """Write n samples of a builder split as litdata chunks under `output_dir` (local path or s3://...)."""
    from litdata import optimize

    if n < 1:
        raise ValueError(f"n must be >= 1, got {n}")
    arrays = builder_arrays(source, split, n, **options)
    optimize(fn=_Sample(arrays), inputs=list(range(len(next(iter(arrays.values()))))), output_dir=output_dir,
             chunk_bytes=chunk_bytes, num_workers=num_workers, mode="overwrite", verbose=False,
             keep_data_ordered=True, start_method="fork")
    return output_dir


def to_item(sample: dict[str, Any]) -> Any:
    """A stored sample → what the in-memory datasets of the recipes yield for the same source."""
    if "images" in sample:  # uint8 (H, W, 3) → {"image": float (3, H, W) in [0, 1], labels...}
        image = torch.as_tensor(np.asarray(sample["images"])).permute(2, 0, 1).float() / 255.0
        return {"image": image, **{k: torch.as_tensor(np.asarray(v)) for k, v in sample.items() if k.startswith("label_")}}
    if "audio" in sample:  # float (S,) → (1, S)
        return torch.as_tensor(np.asarray(sample["audio"]))[None]
    if "trajectories" in sample:
        return torch.as_tensor(np.asarray(sample["trajectories"]))
    raise ValueError(f"unknown sample fields {sorted(sample)}")


class ShardedDataModule(pl.LightningDataModule):
    """Streams shards written by `write_shards` (local folders or object storage), resumable mid-epoch.

    Args:
        train_dir, val_dir: shard folders or URLs (s3://, gs://, ...); val optional.
        batch_size, num_workers: per process; DDP ranks each see a disjoint part of every epoch.
        shuffle, seed: shuffling of chunks and items, reproducible per epoch.
        cache_dir: where remote chunks are cached locally.
    """

    def __init__(self, train_dir: str, val_dir: str | None = None, batch_size: int = 64, num_workers: int = 0,
                 shuffle: bool = True, seed: int = 0, cache_dir: str | None = None) -> None:
        super().__init__()
        self.train_dir, self.val_dir = train_dir, val_dir
        self.batch_size, self.num_workers, self.shuffle, self.seed = batch_size, num_workers, shuffle, seed
        self.cache_dir = cache_dir

    def _dataset(self, directory: str, shuffle: bool):
        from litdata import StreamingDataset

        return StreamingDataset(directory, cache_dir=self.cache_dir, shuffle=shuffle, seed=self.seed, drop_last=True,
                                transform=to_item)

    def _loader(self, directory: str, shuffle: bool):
        from litdata import StreamingDataLoader

        return StreamingDataLoader(self._dataset(directory, shuffle), batch_size=self.batch_size,
                                   num_workers=self.num_workers, drop_last=shuffle)

    def train_dataloader(self):
        return self._loader(self.train_dir, self.shuffle)

    def val_dataloader(self):
        return [] if self.val_dir is None else self._loader(self.val_dir, False)
