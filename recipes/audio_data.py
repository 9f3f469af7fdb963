"""AudioDataModule: speech (espeak-ng) and music (fluidsynth) clips from zoo.data.audio, as Lightning data.

Train: random crops of `segment_seconds` from `speech_clips` + `music_clips` training clips (the mix
is set by the two counts). Val: fixed crops from held-out voices and pieces (see zoo.data.audio).
"""

from __future__ import annotations

import lightning.pytorch as pl
import torch
from torch.utils.data import ConcatDataset, DataLoader

from zoo.data.audio import AudioClipDataset, build_audio_dataset


class AudioDataModule(pl.LightningDataModule):
    """Args:
        speech_clips / music_clips: training clips of each kind (0 leaves the kind out).
        val_speech_clips / val_music_clips: validation clips of each kind.
        clip_seconds: length of the built clips.
        segment_seconds: training crop length.
        val_seconds: validation crop length (<= clip_seconds).
        sample_rate: Hz.
        batch_size: training batch size.
        num_workers: DataLoader workers (0 keeps one process on a shared CPU).
        seed: dataset seed (voices, texts, pieces).
    """

    def __init__(self, speech_clips: int = 3000, music_clips: int = 1000, val_speech_clips: int = 32,
                 val_music_clips: int = 32, clip_seconds: float = 2.0, segment_seconds: float = 0.5,
                 val_seconds: float = 2.0, sample_rate: int = 16000, batch_size: int = 16,
                 num_workers: int = 0, seed: int = 0) -> None:
        super().__init__()
        if speech_clips + music_clips < 1:
            raise ValueError("speech_clips + music_clips must be >= 1 (no training data asked for)")
        if not 0 < segment_seconds <= clip_seconds or not 0 < val_seconds <= clip_seconds:
            raise ValueError(f"segment_seconds={segment_seconds} and val_seconds={val_seconds} must lie in "
                             f"(0, clip_seconds={clip_seconds}]")
        self.save_hyperparameters()

    def _build(self, kind: str, split: str, n: int, seconds: float) -> AudioClipDataset | None:
        h = self.hparams
        if n == 0:
            return None
        audio = build_audio_dataset(kind, split, n, h.clip_seconds, h.sample_rate, h.seed)["audio"]
        return AudioClipDataset(audio, round(seconds * h.sample_rate), random_crop=split == "train")

    def setup(self, stage: str | None = None) -> None:
        h = self.hparams
        if stage in (None, "fit"):
            train = [self._build(k, "train", n, h.segment_seconds) for k, n in (("speech", h.speech_clips), ("music", h.music_clips))]
            self.train_set = ConcatDataset([d for d in train if d is not None])
        self.val_sets = {k: d for k, n in (("speech", h.val_speech_clips), ("music", h.val_music_clips))
                         if (d := self._build(k, "val", n, h.val_seconds)) is not None}

    def train_dataloader(self) -> DataLoader:
        return DataLoader(self.train_set, batch_size=self.hparams.batch_size, shuffle=True, drop_last=True,
                          num_workers=self.hparams.num_workers, persistent_workers=self.hparams.num_workers > 0)

    def val_dataloader(self) -> list[DataLoader]:
        return [DataLoader(d, batch_size=8) for d in self.val_sets.values()]

    def val_batch(self, kind: str = "speech") -> torch.Tensor:
        """All validation clips of `kind` as one batch (B, 1, L), for card metrics."""
        if kind not in self.val_sets:
            raise ValueError(f"no {kind!r} validation clips were asked for (val_{kind}_clips=0)")
        d = self.val_sets[kind]
        return torch.stack([d[i] for i in range(len(d))])
