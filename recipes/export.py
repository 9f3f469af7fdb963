"""Write a trained tokenizer as a shipped checkpoint: weights, config, and a model card with metrics."""

from __future__ import annotations

import json
import platform
import time
from pathlib import Path
from typing import Any

import lightning.pytorch as pl
import torch

from zoo import hub


def write_checkpoint(tokenizer: Any, directory: str | Path, *, name: str, summary: dict[str, Any],
                     metrics: dict[str, float], data: str, recipe: str, train_seconds: float,
                     notes: str = "", index: bool = True) -> Path:
    """Save `tokenizer` with a model card; re-index checkpoints/ when the folder lives there."""
    directory = Path(directory)
    rows = "\n".join(f"| {k} | {v:.4g} |" if isinstance(v, float) else f"| {k} | {v} |" for k, v in metrics.items())
    card = f"""# {name}

{summary.get('description', '')}

| | |
|---|---|
| family | `{tokenizer.family}` |
| modality | {tokenizer.spec.modality} |
| tokens | {summary.get('tokens', tokenizer.spec.max_tokens)} |
| vocabulary | {tokenizer.spec.vocab_size} x {tokenizer.spec.num_codebooks} codebook(s) |
| input | {tokenizer.spec.input.describe()} |

## Data
{data}

## Recipe
`{recipe}`; {train_seconds / 60:.1f} minutes on {platform.machine()} CPU ({torch.get_num_threads()} threads), torch {torch.__version__}.

## Measured (held-out validation data)
| metric | value |
|---|---|
{rows}

{notes}

## Licence
Weights: Apache-2.0, trained by the zoo recipe above on data built offline by `zoo.data`.
"""
    summary = {**summary, "metrics": metrics}
    hub.save_checkpoint(tokenizer, directory, card=card, summary=summary)
    if index and directory.resolve().parent == hub.REPO_CHECKPOINTS:
        hub.index_checkpoints()
    return directory


def rewrite_card(module: Any, directory: str | Path, datamodule: Any, *, name: str, data: str, recipe: str,
                 notes: str = "", log_extra: dict[str, Any] | None = None) -> dict[str, float]:
    """Measure `module.tokenizer` again and rewrite the checkpoint at `directory` (after a change to decoding
    or to inference defaults), keeping the training time recorded in its train_log.json.

    Args:
        module: a recipe's LightningModule whose `tokenizer` holds the saved weights, with `card_metrics`
            and `card_summary`.
        datamodule: what `card_metrics` measures on.
        log_extra: more entries for train_log.json (e.g. how inference defaults were chosen).
    Returns:
        The new metrics.
    """
    directory = Path(directory)
    log = json.loads((directory / "train_log.json").read_text())
    metrics = module.card_metrics(datamodule)
    write_checkpoint(module.tokenizer, directory, name=name, summary=module.card_summary(), metrics=metrics, data=data,
                     recipe=recipe, train_seconds=log["seconds"], notes=notes)
    log.update(metrics=metrics, **(log_extra or {}))
    (directory / "train_log.json").write_text(json.dumps(log, indent=1))
    return metrics


class ExportTokenizer(pl.Callback):
    """At the end of `fit`, save `pl_module.tokenizer` (EMA weights if averaged) as a checkpoint folder.

    The LightningModule may define `card_metrics(datamodule) -> dict` (measured on validation data)
    and `card_summary() -> dict` (tokens, bits, description) for the card and `zoo list`.
    """

    def __init__(self, directory: str, name: str, data: str = "", recipe: str = "", notes: str = "") -> None:
        self.directory, self.name, self.data, self.recipe, self.notes = directory, name, data, recipe, notes
        self.start = time.time()
        self.earlier_seconds = 0.0  # training time of the runs this one resumed (restored from the checkpoint)

    def on_fit_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self.start = time.time()

    def state_dict(self) -> dict[str, float]:
        return {"train_seconds": self.earlier_seconds + time.time() - self.start}

    def load_state_dict(self, state: dict[str, float]) -> None:
        self.earlier_seconds = float(state.get("train_seconds", 0.0))

    def on_fit_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if not trainer.is_global_zero:
            return
        seconds = self.earlier_seconds + time.time() - self.start
        pl_module.eval()
        metrics = pl_module.card_metrics(trainer.datamodule) if hasattr(pl_module, "card_metrics") else {}
        summary = pl_module.card_summary() if hasattr(pl_module, "card_summary") else {}
        Path(self.directory).mkdir(parents=True, exist_ok=True)
        (Path(self.directory) / "train_log.json").write_text(json.dumps(
            {"seconds": seconds, "global_step": trainer.global_step, "metrics": metrics}, indent=1))
        write_checkpoint(pl_module.tokenizer, self.directory, name=self.name, summary=summary, metrics=metrics,
                         data=self.data, recipe=self.recipe, train_seconds=seconds, notes=self.notes)
