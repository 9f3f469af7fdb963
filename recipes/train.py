"""`zoo train CONFIG.yaml [--key value ...]`: run a recipe from a YAML config.

Two kinds of config:
- LightningCLI configs (`trainer:`, `model:`, `data:` with class_path / init_args) train with
  Lightning, so `--trainer.strategy=ddp --trainer.devices=2 --trainer.num_nodes=N` scale them out;
- fitting configs (`fit: {class_path: ..., init_args: ...}`) call a function that fits a tokenizer
  from data without gradient training (BEAST bounds, BPE merges).
"""

from __future__ import annotations

import importlib
import sys
from pathlib import Path

import yaml


def instantiate(spec: dict) -> object:
    """Call a config entry's `class_path` (a class or function, "package.module.Name") with its `init_args`."""
    module, _, name = spec["class_path"].rpartition(".")
    return getattr(importlib.import_module(module), name)(**spec.get("init_args", {}))


def run_fit(config: dict) -> object:
    return instantiate(config["fit"])


def main(argv: list[str] | None = None) -> None:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0].startswith("-"):
        raise SystemExit("usage: zoo train CONFIG.yaml [--trainer.max_steps=N ...]")
    path = Path(argv[0])
    if not path.is_file():
        raise SystemExit(f"zoo train: no config file {str(path)!r}")
    config = yaml.safe_load(path.read_text()) or {}
    if "fit" in config:
        run_fit(config)
        return
    import torch
    from lightning.pytorch.cli import LightningCLI

    torch.set_float32_matmul_precision("high")  # TF32 matrix products on GPUs that have them; no effect on a CPU

    # with no logger, Lightning writes the resolved config.yaml into default_root_dir: keep it out of the repo root
    from recipes.resilience import RNGState

    LightningCLI(args=["fit", "--config", str(path), *argv[1:]], save_config_kwargs={"overwrite": True},
                 trainer_defaults={"default_root_dir": "runs", "callbacks": [RNGState()]})


if __name__ == "__main__":
    main()
