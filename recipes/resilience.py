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
        state = {"torch": torch.get_rng_state(), "numpy": np.random.get_state(), "python": random.getstate()}
        if torch.cuda.is_available():
            state["cuda"] = torch.cuda.get_rng_state_all()
        return state

    def load_state_dict(self, state: dict[str, Any]) -> None:
        torch.set_rng_state(state["torch"])
        np.random.set_state(state["numpy"])
        random.setstate(state["python"])
        if "cuda" in state and torch.cuda.is_available():
            torch.cuda.set_rng_state_all(state["cuda"])
