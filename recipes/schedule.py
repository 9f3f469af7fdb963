"""What the gradient-trained recipes share: a budget clock for the LR schedule, and weight averaging.

Each recipe's LR factor is `warmup_cosine` over `budget_progress`: the fraction of the run done, by steps
(`trainer.max_steps`) or by seconds (the module's `hparams.budget_seconds` since `start_time`),
whichever is further along, so a run cut by the clock on a busy machine still ends its schedule.
The weight average (EMA) warms up as (1 + step) / (10 + step) before it reaches its decay.
"""

from __future__ import annotations

import math
import time
from typing import Iterable

import lightning.pytorch as pl
import torch
from torch import Tensor


def budget_progress(module: pl.LightningModule, step: int | None = None) -> float:
    """Fraction in [0, 1] of the budget `module` has used: steps or seconds, whichever is further along.

    Args:
        module: reads `trainer.max_steps` (when attached), `hparams.budget_seconds` and `start_time`.
        step: the step count to use (default `module.global_step`).
    """
    frac = 0.0
    trainer = module._trainer
    if trainer is not None and trainer.max_steps and trainer.max_steps > 0:
        frac = (module.global_step if step is None else step) / trainer.max_steps
    budget, start = module.hparams.get("budget_seconds"), getattr(module, "start_time", None)
    if budget and start is not None:
        frac = max(frac, (time.monotonic() - start) / budget)
    return min(frac, 1.0)


def warmup_cosine(step: int, warmup_steps: int, progress: float) -> float:
    """LR factor: a linear warmup over `warmup_steps` (counted from `step` 0) times a cosine from 1 to 0
    over `progress` in [0, 1]."""
    return min(1.0, (step + 1) / max(1, warmup_steps)) * 0.5 * (1 + math.cos(math.pi * progress))


def ema_decay(limit: float, step: int) -> float:
    """The EMA decay at `step`: (1 + step) / (10 + step), capped at `limit`."""
    return min(limit, (1 + step) / (10 + step))


@torch.no_grad()
def update_average(average: Iterable[Tensor], params: Iterable[Tensor], decay: float) -> None:
    """average <- decay·average + (1 - decay)·params, pairwise."""
    for e, p in zip(average, params):
        e.lerp_(p.detach(), 1 - decay)
