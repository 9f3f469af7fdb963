"""`zoo train CONFIG.yaml [--config STAGE.yaml ...] [--output DIR] [--key value ...]`: run a recipe from YAML.

Two kinds of config:
- LightningCLI configs (`trainer:`, `model:`, `data:` with class_path / init_args) train with
  Lightning, so `--trainer.strategy=ddp --trainer.devices=2 --trainer.num_nodes=N` scale them out. A
  later stage composes its base: `zoo train base.yaml --config stage2.yaml` (the second file's keys
  replace the first's, as LightningCLI merges them);
- fitting configs (`fit: {class_path: ..., init_args: ...}`) call a function that fits a tokenizer
  from data without gradient training (BEAST bounds, BPE merges). They take `--output` and nothing else.

A run writes one checkpoint, into `runs/<name>/` by default (`--output DIR` elsewhere), never into the
shipped `checkpoints/` folders or `zoo/registry.json`; it ends by printing the folder and the `zoo.load(...)`
line that loads it. Lightning's own files (logs, `last.ckpt` unless a callback names its dirpath) go beside
it, in `<folder>.lightning/` (`trainer.default_root_dir`), since a checkpoint folder is swapped in whole
when written. A flag a config cannot take is refused (exit code 2).
"""

from __future__ import annotations

import importlib
import sys
from pathlib import Path
from typing import Any

import yaml

RUNS = Path("runs")
EXPORTS = ("ExportTokenizer", "ExportLM")  # the callbacks that write a run's checkpoint


def instantiate(spec: dict) -> object:
    """Call a config entry's `class_path` (a class or function, "package.module.Name") with its `init_args`."""
    module, _, name = spec["class_path"].rpartition(".")
    return getattr(importlib.import_module(module), name)(**spec.get("init_args", {}))


def run_fit(config: dict) -> object:
    return instantiate(config["fit"])


def export_args(config: dict[str, Any]) -> dict[str, Any] | None:
    """The init_args of the config's export callback (None when it has none)."""
    for cb in (config.get("trainer") or {}).get("callbacks") or []:
        if isinstance(cb, dict) and str(cb.get("class_path", "")).rpartition(".")[2] in EXPORTS:
            return cb.setdefault("init_args", {})
    return None


def _usage(message: str) -> SystemExit:
    print(f"zoo train: {message}", file=sys.stderr)
    return SystemExit(2)


def _split(argv: list[str]) -> tuple[list[Path], str | None, list[str]]:
    """argv after the first config → (every config file in order, --output, the other flags)."""
    configs, output, rest, i = [Path(argv[0])], None, [], 1
    while i < len(argv):
        arg = argv[i]
        key, eq, value = arg.partition("=")
        if key in ("--config", "--output"):
            if not eq:
                if i + 1 >= len(argv):
                    raise _usage(f"{key} needs a value")
                i, value = i + 1, argv[i + 1]
            if key == "--config":
                configs.append(Path(value))
            else:
                output = value
        else:
            rest.append(arg)
        i += 1
    for path in configs:
        if not path.is_file():
            raise _usage(f"no config file {str(path)!r}")
    return configs, output, rest


def main(argv: list[str] | None = None) -> None:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0].startswith("-"):
        raise _usage("usage: zoo train CONFIG.yaml [--config STAGE.yaml ...] [--output DIR] [--trainer.max_steps=N ...]")
    paths, output, rest = _split(argv)
    config: dict[str, Any] = {}
    last_callbacks = 0  # the stage whose trainer.callbacks list the others' `callbacks+` append to
    for i, path in enumerate(paths):  # later stages replace the keys they name (a shallow merge per section)
        part = yaml.safe_load(path.read_text()) or {}
        if not isinstance(part, dict):
            raise _usage(f"{path} is not a YAML mapping")
        if isinstance(part.get("trainer"), dict) and "callbacks" in part["trainer"]:
            last_callbacks = i
        for key, value in part.items():
            config[key] = {**config[key], **value} if isinstance(value, dict) and isinstance(config.get(key), dict) \
                else value
    if "fit" in config:
        if rest or len(paths) > 1:
            raise _usage(f"a fitting config ({paths[0]}) takes only --output DIR; got {' '.join(rest + argv[1:2])}")
        args = config["fit"].setdefault("init_args", {})
        if "output" in args and output is not None:
            raise _usage(f"{paths[-1]} sets output: {args['output']}; drop it there or drop --output")
        args["output"] = str(output or args.get("output") or RUNS / str(args.get("name", "fit")))
        run_fit(config)
        return
    export = export_args(config)
    if export is not None and export.get("directory") and output is not None:
        raise _usage(f"{paths[-1]} sets the export directory {export['directory']}; drop it there or drop --output")
    if any(a.startswith("--trainer.default_root_dir") for a in rest):
        raise _usage("use --output DIR, not --trainer.default_root_dir (a run's logs and checkpoint share one folder)")
    name = (export or {}).get("name") or paths[-1].stem
    root = str(output or (export or {}).get("directory") or RUNS / name)
    stages = [str(p) for p in paths]
    if export is not None:  # the export callback writes the run folder: a stage after the list's own says where
        import tempfile

        export["directory"] = root
        stage = Path(tempfile.mkdtemp(prefix="zoo-train-")) / "output.yaml"
        stage.write_text(yaml.safe_dump({"trainer": {"callbacks": config["trainer"]["callbacks"]}}))
        stages.insert(last_callbacks + 1, str(stage))  # before overlays that append (`callbacks+:`)
    # Lightning's own files go beside the run folder, unless the config names a place for them
    lightning_root = [] if "default_root_dir" in (config.get("trainer") or {}) else \
        [f"--trainer.default_root_dir={root.rstrip('/')}.lightning"]

    import torch
    from lightning.pytorch.cli import LightningCLI

    from recipes.resilience import RNGState

    torch.set_float32_matmul_precision("high")  # TF32 matrix products on GPUs that have them; no effect on a CPU
    LightningCLI(args=["fit", *(a for p in stages for a in ("--config", p)), *rest, *lightning_root],
                 save_config_kwargs={"overwrite": True}, trainer_defaults={"callbacks": [RNGState()]})


if __name__ == "__main__":
    main()
