"""What makes a run resumable to the same weights: random-number state saved in every checkpoint.

Lightning already writes checkpoints atomically (a transaction: temp file, then rename) and restores model,
optimiser, scheduler, loop progress and stateful data loaders (litdata's StreamingDataLoader) on
`--ckpt_path last`. It does not restore the random generators, so sampled noise, nested-dropout budgets and
quantizer dropout would differ after a restart; this callback saves and restores them.
"""

from __future__ import annotations

import random
from typing import Any

import lightning.pytorch as pl
import numpy as np
import torch


class RNGState(pl.Callback):
    """Save torch (CPU and CUDA), numpy and python random states in each checkpoint; restore them on resume."""

    def state_dict(self) -> dict[str, Any]:
        # only tensors and plain python values, so the checkpoint loads with torch.load(weights_only=True)
        kind, keys, pos, has_gauss, gauss = np.random.get_state()
        state = {"torch": torch.get_rng_state(), "python": random.getstate(),
                 "numpy": (kind, torch.from_numpy(keys.astype(np.int64)), int(pos), int(has_gauss), float(gauss))}
        if torch.cuda.is_available():
            state["cuda"] = torch.cuda.get_rng_state_all()
        return state

    pending: dict[str, Any] | None = None

    def load_state_dict(self, state: dict[str, Any]) -> None:
        # applied at the next training batch: between restoring and that batch, Lightning creates the
        # data-loader iterator, which draws from torch's generator (the uninterrupted run drew it long before)
        self.pending = state

    def on_train_batch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule, batch: Any, batch_idx: int) -> None:
        if self.pending is not None:
            self._restore(self.pending)
            self.pending = None

    def _restore(self, state: dict[str, Any]) -> None:
        torch.set_rng_state(state["torch"])
        kind, keys, pos, has_gauss, gauss = state["numpy"]
        np.random.set_state((kind, keys.numpy().astype(np.uint32), pos, has_gauss, gauss))
        random.setstate(state["python"])
        if "cuda" in state and torch.cuda.is_available():
            torch.cuda.set_rng_state_all(state["cuda"])
