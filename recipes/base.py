"""What the gradient-trained recipes share: the model and its weight average, AdamW in two groups, one LR schedule.

`Recipe` is the base LightningModule. A subclass calls `self.init_model(model)` (or `self.init_preset(...)`
for a tokenizer family) after `save_hyperparameters()`, writes its losses, and gets:

- `tokenizer`: what is validated and exported (`ExportTokenizer`): the weight average (EMA) when kept;
- the EMA, updated in `optimizer_step` (so a checkpoint written by a callback already holds this step's
  average), warming up as (1 + step) / (10 + step) before it reaches `hparams.ema_decay`;
- `configure_optimizers`: AdamW over `param_groups()` (weight decay on matrices only; `no_decay_keys` names
  more) with `lr_factor` per step and group.

The one schedule is `warmup_cosine`: a linear warmup times a cosine from 1 to `min_lr_ratio` over
`budget_progress`, the fraction of the run done, by steps (`trainer.max_steps`) or by seconds
(`hparams.budget_seconds`, the one name of the time budget) whichever is further along, so a run cut by
the clock on a busy machine still ends its schedule. The clock is wall time (`time.monotonic`) unless a `CPUBudget`
callback is on: then `budget_seconds` are CPU seconds of the process (all threads), the callback stops the run
when they are spent, and a budget means the same work however loaded the machine is. A recipe that trains in phases (CAT: the autoencoder,
then its estimator) gives each parameter group a `phase`, the (start, end) fraction of the budget it trains
in: the same warmup and cosine run inside the phase, and the group's LR is zero outside it. A phase that a
recipe starts at a step rather than at a fraction (a GAN's discriminator, from its `adversarial_start` batch)
gives the group a `start_step`: the phase begins at that step, wherever the budget then stands.

A recipe that steps several optimisers by hand (a GAN: generator and discriminator) lists the parameter
groups of each in `optimizer_groups()`; every optimiser is AdamW on the same schedule, with `hparams.betas`
unless a group carries its own `betas` (or any other AdamW option, such as `weight_decay`).
"""

from __future__ import annotations

import copy
import math
import time
from typing import Any, Iterable

import lightning.pytorch as pl
import torch
from torch import Tensor, nn


def budget_progress(module: pl.LightningModule, step: int | None = None) -> float:
    """Fraction in [0, 1] of the budget `module` has used: steps or seconds, whichever is further along.

    Args:
        module: reads `trainer.max_steps` (when attached), `hparams.budget_seconds`, `start_time` and `clock`
            (default `time.monotonic`; `CPUBudget` sets `cpu_seconds`).
        step: the step count to use (default `module.global_step`).
    """
    frac = 0.0
    trainer = module._trainer
    if trainer is not None and trainer.max_steps and trainer.max_steps > 0:
        frac = (module.global_step if step is None else step) / trainer.max_steps
    budget, start = module.hparams.get("budget_seconds"), getattr(module, "start_time", None)
    if budget and start is not None:
        frac = max(frac, (getattr(module, "clock", time.monotonic)() - start) / budget)
    return min(frac, 1.0)


def cpu_seconds() -> float:
    """CPU seconds (user + system) this process has used, summed over all its threads."""
    return time.process_time()


def warmup_cosine(step: int, warmup_steps: int, progress: float, min_ratio: float = 0.0) -> float:
    """LR factor: a linear warmup over `warmup_steps` (counted from `step` 0) times a cosine from 1 to
    `min_ratio` over `progress` in [0, 1]."""
    cosine = 0.5 * (1 + math.cos(math.pi * min(max(progress, 0.0), 1.0)))
    return min(1.0, (step + 1) / max(1, warmup_steps)) * (min_ratio + (1 - min_ratio) * cosine)


def log_uniform_ints(k_max: int, shape: tuple[int, ...] = (), device: torch.device | str | None = None) -> Tensor:
    """Integers in 1..k_max, log-uniform (each doubling equally likely, every value possible): floor(exp(u)),
    u uniform in [0, log(k_max + 1))."""
    u = torch.rand(shape, device=device) * math.log(k_max + 1)
    return u.exp().floor().long().clamp(1, k_max)


def ema_decay(limit: float, step: int) -> float:
    """The EMA decay at `step`: (1 + step) / (10 + step), capped at `limit`."""
    return min(limit, (1 + step) / (10 + step))


@torch.no_grad()
def update_average(average: Iterable[Tensor], params: Iterable[Tensor], decay: float) -> None:
    """average <- decay·average + (1 - decay)·params, pairwise."""
    for e, p in zip(average, params):
        e.lerp_(p.detach(), 1 - decay)


class Recipe(pl.LightningModule):
    """Base of the gradient-trained recipes (see the module docstring).

    Hyperparameters it reads (declare those you use in the subclass's `__init__`): lr, weight_decay,
    betas, warmup_steps, min_lr_ratio (default 0), budget_seconds, ema_decay.
    """

    no_decay_keys: tuple[str, ...] = ()  # parameters whose names contain one of these get no weight decay

    def init_model(self, model: nn.Module, ema: bool = True) -> None:
        """Hold `model` as `self.model`, and a frozen copy as its weight average when `ema`."""
        self.model = model
        self.ema = copy.deepcopy(model).requires_grad_(False).eval() if ema else None
        self.start_time: float | None = None

    def init_preset(self, family: type, preset: str, config: dict[str, Any] | None = None,
                    init_from: str | None = None, ema: bool = True) -> None:
        """`init_model` of a tokenizer family: its `config_class.from_name(preset, **config)`, or the
        checkpoint `init_from` (anything `zoo.load` accepts; its config replaces `preset`/`config`)."""
        if init_from:
            from zoo import hub

            model = hub.load_dir(hub.locate(init_from), family=family.family).train()
        else:
            model = family(family.config_class.from_name(preset, **(config or {})))
        self.init_model(model, ema=ema)

    @property
    def tokenizer(self) -> nn.Module:
        """What is validated and exported: the weight average when kept, else the model."""
        return self.ema if self.ema is not None else self.model

    # -- the clock, the average -------------------------------------------------------------------------

    clock = staticmethod(time.monotonic)  # what `budget_seconds` count; `CPUBudget` sets `cpu_seconds`

    def on_fit_start(self) -> None:
        self.start_time = self.clock()

    def progress(self) -> float:
        """Fraction of the budget used: steps or seconds, whichever is further along."""
        return budget_progress(self)

    def ema_step(self) -> int:
        """The step count the average warms up over (a recipe with two optimisers counts one of them)."""
        return self.global_step

    def optimizer_step(self, *args: Any, **kwargs: Any) -> None:
        super().optimizer_step(*args, **kwargs)
        # here, not in on_train_batch_end: callbacks (ModelCheckpoint) run before the module's batch-end hook,
        # so an average updated there would be missing its last step in a checkpoint and lost on resume
        if self.ema is not None:
            self.update_ema()

    @torch.no_grad()
    def update_ema(self) -> None:
        update_average(self.ema.parameters(), self.model.parameters(),
                       ema_decay(self.hparams.ema_decay, self.ema_step()))

    # -- optimiser and schedule -------------------------------------------------------------------------

    def decays(self, name: str, p: Tensor) -> bool:
        """Whether a parameter gets weight decay: matrices, unless named in `no_decay_keys`."""
        return p.ndim >= 2 and not any(k in name for k in self.no_decay_keys)

    def param_groups(self, *modules: nn.Module, **options: Any) -> list[dict[str, Any]]:
        """Two AdamW groups over `modules` (default `self.model`): weight decay, and none; `options` go into
        both (an `lr`, or a `phase` and `warmup_steps` for `lr_factor`)."""
        named = [(n, p) for m in (modules or (self.model,)) for n, p in m.named_parameters()]
        return [{"params": [p for n, p in named if self.decays(n, p)], "weight_decay": self.hparams.weight_decay,
                 **options},
                {"params": [p for n, p in named if not self.decays(n, p)], "weight_decay": 0.0, **options}]

    def lr_factor(self, step: int, group: dict[str, Any] | None = None) -> float:
        """The LR multiplier of a parameter group at scheduler step `step` (the one schedule).

        The group trains in its `phase`, a (start, end) fraction of the budget (default: all of it), or from its
        `start_step` on (default 0) to the phase's end: a linear warmup over its `warmup_steps` (default
        `hparams.warmup_steps`) from the phase's first step, times a cosine from where the phase began (`start`,
        or the budget's progress at `start_step`) to its end, down to `hparams.min_lr_ratio`; zero before the
        phase, and after it when it ends early.
        """
        hp, group = self.hparams, group or {}
        start, end = group.get("phase", (0.0, 1.0))
        start_step = group.get("start_step", 0)
        progress = self.progress()
        if progress < start or step < start_step or (end < 1 and progress >= end):
            return 0.0
        first = 0
        if start > 0 or start_step > 0:  # a later phase: warmup and cosine count from where it began
            first, start = self.phase_starts.setdefault((start, start_step),
                                                        (step, progress if start_step else start))
        return warmup_cosine(step - first, group.get("warmup_steps", hp.warmup_steps),
                             (progress - start) / (end - start), hp.get("min_lr_ratio", 0.0))

    def optimizer_groups(self) -> list[list[dict[str, Any]]]:
        """The parameter groups of each optimiser: one, over `param_groups()`. A recipe that steps several by
        hand (`automatic_optimization = False`: a GAN's generator and discriminator) lists them in order."""
        return [self.param_groups()]

    def configure_optimizers(self) -> Any:
        hp = self.hparams
        self.phase_starts: dict[tuple[float, int], tuple[int, float]] = {}  # phase -> (first step, progress then)
        optimizers = [torch.optim.AdamW(groups, lr=hp.lr, betas=tuple(hp.get("betas", (0.9, 0.999))))
                      for groups in self.optimizer_groups()]
        schedulers = [torch.optim.lr_scheduler.LambdaLR(
            opt, [lambda step, group=group: self.lr_factor(step, group) for group in opt.param_groups])
            for opt in optimizers]
        if len(optimizers) > 1 or not self.automatic_optimization:  # stepped by the recipe's training_step,
            return optimizers, schedulers                                # schedulers too
        return {"optimizer": optimizers[0], "lr_scheduler": {"scheduler": schedulers[0], "interval": "step"}}


class CPUBudget(pl.Callback):
    """Stop training once the process has used `seconds` of CPU time since the fit started (`cpu_seconds`: user +
    system, all threads), so a budget means CPU-minutes whatever else runs on the machine; the export callbacks
    still run at the end of the fit.

    While it is on, a `Recipe`'s time budget counts the same CPU seconds (its `clock`), so the LR cosine (and CAT's
    phases) end where the run stops. The module's `budget_seconds` must then be unset or equal to `seconds`.
    Set `trainer.max_time` well above it (a wall-clock safety net) or leave it out.
    """

    def __init__(self, seconds: float) -> None:
        if not seconds > 0:
            raise ValueError(f"CPUBudget needs seconds > 0, got {seconds!r}")
        self.seconds = float(seconds)
        self.start: float | None = None

    def on_fit_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        budget = pl_module.hparams.get("budget_seconds")
        if budget is not None and float(budget) != self.seconds:
            raise ValueError(f"model budget_seconds={budget} but CPUBudget(seconds={self.seconds:g}): with a CPU "
                             "budget the schedule counts CPU seconds too; set them equal (or leave budget_seconds out)")
        self.start = cpu_seconds()
        if isinstance(pl_module, Recipe):
            pl_module.clock = cpu_seconds
            pl_module.start_time = self.start

    def used(self) -> float:
        """CPU seconds used since the fit started (0 before)."""
        return 0.0 if self.start is None else cpu_seconds() - self.start

    def on_train_batch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule, *args: Any) -> None:
        if self.used() >= self.seconds:
            trainer.should_stop = True
