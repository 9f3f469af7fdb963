"""Write a trained tokenizer as a checkpoint folder: weights, config, and a model card with metrics.

Training writes into its run folder (`runs/<name>/` by default, see `recipes.train`), never into the
shipped `checkpoints/` or `zoo/registry.json`: a maintainer copies a reviewed run folder there and
re-indexes (`zoo.hub.write_index()`).
"""

from __future__ import annotations

import json
import platform
import time
from pathlib import Path
from typing import Any

import lightning.pytorch as pl
import torch

from zoo import hub


def run_folder(directory: str | Path) -> Path:
    """`directory` as a training output, refused when it is (or lies inside) a shipped checkpoint folder."""
    directory = Path(directory)
    if directory.resolve().is_relative_to(hub.REPO_CHECKPOINTS.resolve()):
        raise ValueError(f"training writes into its own run folder, not the shipped {directory}: use --output DIR "
                         "(default runs/<name>/), then copy the reviewed folder into checkpoints/")
    return directory


def announce(directory: str | Path, loader: str = "zoo.load") -> None:
    """The last lines of a run: where its checkpoint is and how to load it."""
    print(f"\ncheckpoint written to {directory}/\n  {loader}({str(directory)!r})", flush=True)


def write_checkpoint(tokenizer: Any, directory: str | Path, *, name: str, summary: dict[str, Any],
                     metrics: dict[str, float], data: str, recipe: str, train_seconds: float,
                     notes: str = "", hardware: str | None = None) -> Path:
    """Save `tokenizer` with a model card.

    `hardware` names what trained it (`hardware_name()` of the training device); default: this machine's CPU.
    """
    directory = Path(directory)
    hardware = hardware or hardware_name(torch.device("cpu"))
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
`{recipe}`; {train_seconds / 60:.1f} minutes on {hardware}.

## Measured (held-out validation data)
| metric | value |
|---|---|
{rows}

{notes}

## Licence
Weights: Apache-2.0, trained by the zoo recipe above on data built offline by `zoo.data`.
"""
    summary = {**summary, "metrics": metrics}
    hub.save_module(tokenizer, directory, card=card, summary=summary)
    return directory


def hardware_name(device: torch.device) -> str:
    """What a card says trained a checkpoint: the GPU's name, or the CPU and its threads; and the torch version."""
    if device.type == "cuda":
        what = f"1 {torch.cuda.get_device_name(device)} GPU"
    else:
        what = f"{platform.machine()} {device.type.upper()} ({torch.get_num_threads()} threads)"
    return f"{what}, torch {torch.__version__}"


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
                     recipe=recipe, train_seconds=log["seconds"], notes=notes, hardware=log.get("hardware"))
    log.update(metrics=metrics, **(log_extra or {}))
    (directory / "train_log.json").write_text(json.dumps(log, indent=1))
    return metrics


class ExportTokenizer(pl.Callback):
    """At the end of `fit`, save `pl_module.tokenizer` (EMA weights if averaged) as a checkpoint folder:
    `directory` (`zoo train` sets it to the run folder, runs/<name>/), else `<trainer.default_root_dir>/<name>`.

    The LightningModule may define `card_metrics(datamodule) -> dict` (measured on validation data)
    and `card_summary() -> dict` (tokens, bits, description) for the card and `zoo list`.
    """

    def __init__(self, directory: str | None = None, name: str = "", data: str = "", recipe: str = "",
                 notes: str = "", measure: bool = True) -> None:
        if not name:
            raise ValueError("ExportTokenizer needs the checkpoint's name (name: ...)")
        self.directory, self.name, self.data, self.recipe, self.notes = directory, name, data, recipe, notes
        self.measure = measure
        self.start, self.start_cpu = time.time(), time.process_time()
        self.earlier_seconds = 0.0  # training time of the runs this one resumed (restored from the checkpoint)

    def on_fit_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self.start, self.start_cpu = time.time(), time.process_time()

    def state_dict(self) -> dict[str, float]:
        return {"train_seconds": self.earlier_seconds + time.time() - self.start}

    def load_state_dict(self, state: dict[str, float]) -> None:
        self.earlier_seconds = float(state.get("train_seconds", 0.0))

    def on_fit_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if not trainer.is_global_zero:
            return
        seconds = self.earlier_seconds + time.time() - self.start
        cpu_seconds = time.process_time() - self.start_cpu  # of this fit, before the card's measurement
        pl_module.eval()
        measure = self.measure and hasattr(pl_module, "card_metrics")
        metrics = pl_module.card_metrics(trainer.datamodule) if measure else {}
        summary = pl_module.card_summary() if hasattr(pl_module, "card_summary") else {}
        hardware = hardware_name(trainer.strategy.root_device)  # the module is back on the CPU by now
        directory = run_folder(self.directory or Path(trainer.default_root_dir) / self.name)
        directory.mkdir(parents=True, exist_ok=True)
        (directory / "train_log.json").write_text(json.dumps(
            {"seconds": seconds, "cpu_seconds": round(cpu_seconds, 1),
             "global_step": trainer.global_step, "hardware": hardware, "metrics": metrics}, indent=1))
        write_checkpoint(pl_module.tokenizer, directory, name=self.name, summary=summary, metrics=metrics,
                         data=self.data, recipe=self.recipe, train_seconds=seconds, notes=self.notes, hardware=hardware)
        announce(directory)


def remeasure(config: str | Path, directory: str | Path | None = None, notes: str | None = None) -> dict[str, float]:
    """Measure the checkpoint that `config`'s ExportTokenizer wrote again and rewrite its card.

    `directory`: the run folder (default: the callback's directory, else runs/<name>/).
    `notes`: the card's notes (default: the callback's).

    For a run exported with `measure: false` (trained where the metric packages are missing, e.g. a GPU
    machine without pesq) or after a change to decoding: builds the config's module and data, loads the
    saved tokenizer's weights into `module.tokenizer`, and calls `rewrite_card` (the training time and
    hardware recorded at export are kept).

        python -c "from recipes.export import remeasure; remeasure('configs/larp/tiny-motion32.yaml')"
    """
    import yaml

    from recipes.train import RUNS, instantiate

    cfg = yaml.safe_load(Path(config).read_text())
    exports = [c["init_args"] for c in cfg.get("trainer", {}).get("callbacks", [])
               if c.get("class_path", "").rpartition(".")[2] == "ExportTokenizer"]
    if len(exports) != 1:
        raise ValueError(f"{config}: expected one ExportTokenizer callback in trainer.callbacks, found {len(exports)}")
    export = exports[0]
    directory = Path(directory or export.get("directory") or RUNS / export["name"])
    module, datamodule = instantiate(cfg["model"]), instantiate(cfg["data"])
    datamodule.setup("validate")
    module.tokenizer.load_state_dict(hub.load_dir(directory).state_dict())
    module.eval()
    return rewrite_card(module, directory, datamodule, name=export["name"], data=export.get("data", ""),
                        recipe=export.get("recipe", ""), notes=export.get("notes", "") if notes is None else notes)
