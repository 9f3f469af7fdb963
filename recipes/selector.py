"""Train the learned token selector (`zoo.reduce.select`) for the host ViT and ship it as a checkpoint.

    zoo train configs/reduce/selector.yaml

The host ViT is frozen. Its tokens after the attention of block `layer` (where `patch_timm` reduces)
are the features: the selector samples a hard Gumbel-Softmax keep mask from its logits, the
autoencoder rebuilds every (normed) feature from the kept ones, and the loss is
`mse(reconstruction, features) + sparsity * (keep_rate - target_rate)**2`: a plain `sparsity * keep_rate`
term (the paper's form) either keeps everything or nothing unless its weight is tuned to the data, while
a target rate keeps the mask informative; at inference any budget is taken as the top-k of the logits. The card reports the host's val accuracy
with the selector patched in at several keep ratios.
"""

from __future__ import annotations

import copy
import time
from typing import Any

import torch
import torch.nn.functional as F
from lightning.pytorch.utilities import rank_zero_info
from torch import Tensor
from torch.utils.data import TensorDataset

from recipes.base import Recipe
from recipes.export import announce, run_folder
from recipes.vit_host import ShapesDataModule, augment, evaluate_host  # noqa: F401  (the data module of the config)
from zoo.hub import save_module
from zoo.reduce.host import load_host_classifier
from zoo.reduce.patch import patch_timm
from zoo.reduce.select import LearnedSelector, SelectorConfig

CARD_KEEPS = (0.75, 0.5, 0.3, 0.1)


class SelectorModule(Recipe):
    """Reconstruction + sparsity on a frozen host's features.

    Args:
        host: the frozen host classifier (a name or folder `load_host_classifier` takes).
        config: `SelectorConfig` fields; dim and num_tokens must match the host's.
        lr, weight_decay, warmup_steps, min_lr_ratio: AdamW and the base's schedule; the defaults keep the LR
            constant (no warmup, and a floor of 1 flattens the cosine), as the shipped selector was trained.
        sparsity, target_rate, tau: the keep-rate penalty and the Gumbel-Softmax temperature.
        export_dir: where the checkpoint and its card go at the end of the fit.
    """

    def __init__(self, host: str = "vit-host-shapes32", config: dict[str, Any] | None = None, lr: float = 1e-3,
                 sparsity: float = 2.0, target_rate: float = 0.5, tau: float = 1.0, threads: int = 1,
                 export_dir: str | None = None, weight_decay: float = 0.01, warmup_steps: int = 0,
                 min_lr_ratio: float = 1.0) -> None:
        super().__init__()
        self.save_hyperparameters()
        torch.set_num_threads(threads)
        self.host = load_host_classifier(host)
        self.host.requires_grad_(False)
        cfg = SelectorConfig(**(config or {}))
        if cfg.dim != self.host.config.dim or cfg.num_tokens != self.host.config.num_patches:
            raise ValueError(f"selector dim/num_tokens ({cfg.dim}, {cfg.num_tokens}) must match the host "
                             f"({self.host.config.dim}, {self.host.config.num_patches})")
        self.init_model(LearnedSelector(cfg), ema=False)

    @property
    def selector(self) -> LearnedSelector:
        return self.model

    def decays(self, name: str, p: Tensor) -> bool:
        return True  # weight decay on every parameter, norms and biases too, as the shipped selector was trained

    def minutes(self) -> float:
        return 0.0 if self.start_time is None else (time.monotonic() - self.start_time) / 60

    def features(self, x: Tensor) -> Tensor:
        self.host.eval()
        with torch.no_grad():
            return self.host.features(x, self.selector.config.layer, "attn")[:, 1:]  # drop CLS

    def step(self, x: Tensor) -> dict[str, Tensor]:
        f = self.features(x)
        logits = self.selector.scores(f)
        mask = self.selector.sample_mask(logits, self.hparams.tau)
        rec = F.mse_loss(self.selector.reconstruct(f, mask), self.selector.norm(f))
        rate = mask.mean()
        penalty = (rate - self.hparams.target_rate) ** 2
        return {"loss": rec + self.hparams.sparsity * penalty, "rec": rec, "rate": rate}

    def training_step(self, batch: list[Tensor], _: int) -> Tensor:
        out = self.step(augment(batch[0]))
        self.log_dict({f"train/{k}": v for k, v in out.items()}, prog_bar=True)
        return out["loss"]

    def validation_step(self, batch: list[Tensor], _: int) -> None:
        f = self.features(batch[0])
        k = f.shape[1] // 2
        keep = torch.zeros(f.shape[:2])
        keep.scatter_(1, self.selector.scores(f).topk(k, dim=1).indices, 1.0)
        rec = F.mse_loss(self.selector.reconstruct(f, keep), self.selector.norm(f))
        self.log("val/rec_at_50", rec, prog_bar=True)

    def on_validation_epoch_end(self) -> None:
        logged = {k: round(float(v), 4) for k, v in self.trainer.callback_metrics.items()}
        rank_zero_info(f"step {self.global_step} ({self.minutes():.1f} min): {logged}")

    @torch.no_grad()
    def accuracy_with_selector(self, dataset: TensorDataset, keep: float) -> dict[str, float]:
        host = copy.deepcopy(self.host).eval()
        patch_timm(host.vit, copy.deepcopy(self.selector).eval(), keep=keep, layers=(self.selector.config.layer,),
                   proportional=False)
        return evaluate_host(host, dataset)

    def on_fit_end(self) -> None:
        if self.hparams.export_dir is None or not self.trainer.is_global_zero:
            return
        directory = run_folder(self.hparams.export_dir)
        minutes = self.minutes()
        self.selector.eval()
        val = self.trainer.datamodule.val_set
        acc = {str(k): self.accuracy_with_selector(val, k) for k in CARD_KEEPS}
        summary = {"val_accuracy_at_keep": acc, "val_size": len(val), "host": self.hparams.host,
                   "train_minutes": minutes, "global_step": self.trainer.global_step}
        save_module(self.selector, directory, summary=summary,
                    card=selector_card(self.selector.config, acc, len(val), minutes, self.trainer.global_step,
                                       self.hparams))
        announce(directory, "zoo.reduce.select.load_selector")


def selector_card(config: SelectorConfig, acc: dict[str, dict[str, float]], val_size: int, minutes: float,
                  steps: int, hp: Any) -> str:
    rows = "\n".join(f"| {k} | {v['all']:.4f} | {v['mean']:.4f} |" for k, v in acc.items())
    return f"""# selector-vit-host-shapes32

A learned token selector ("When Less is Enough", Gumbel-Softmax keep mask + reconstruction autoencoder)
for the host ViT `vit-host-shapes32`: it scores the {config.num_tokens} patch tokens after the attention of
block {config.layer} and keeps the best `keep` of them.

    from zoo.reduce import patch_timm
    from zoo.reduce.host import load_host_classifier
    from zoo.reduce.select import load_selector
    host, sel = load_host_classifier(), load_selector()
    patch_timm(host.vit, sel, keep=0.5, layers=(sel.config.layer,), proportional=False)

## Data
`zoo.data.images` shape scenes (train split) through the frozen host; measured on {val_size} val scenes.

## Recipe
`zoo train configs/reduce/selector.yaml` (recipes/selector.py): sparsity {hp.sparsity} x (keep rate -
{hp.target_rate})^2, tau {hp.tau},
lr {hp.lr}; {steps} steps, {minutes:.1f} minutes on CPU, 1 thread, torch {torch.__version__}.

## Measured (host accuracy on the val split with the selector patched in)
| keep | all three right | mean of heads |
|---|---|---|
{rows}

## Licence
Apache-2.0; trained here on data built offline by `zoo.data`.
"""
