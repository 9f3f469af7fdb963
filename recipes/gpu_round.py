"""Several training configs at once on one GPU, under one deadline, packed for the trip back.

    python -m recipes.gpu_round CONFIG.yaml [CONFIG.yaml ...] [--deadline 560] [--out DIR] [-- --key=value ...]

A lent GPU machine is bare and short-lived: this builds each image config's train set once, in all the
machine's cores (`build_image_dataset(..., workers=)`, the same bytes as a serial build, cached where the runs
read it), starts `zoo train CONFIG` for every config side by side (small models leave most of an H200 idle, so
three runs share it well), stops whatever still runs at `--deadline` seconds after the start, and packs each
run folder (`runs/<name>/`: checkpoint, goal_curve.csv, logs) as a tar into `--out`, split into parts of at
most `--part-mib` MiB (`cat NAME.tar.part-* | tar x` joins them). Arguments after `--` go to every run
(`--trainer.accelerator=cpu --trainer.max_time=00:00:00:20` makes a CPU smoke run); `--data.init_args.*`
among them also shape the prebuilt train sets.
"""

from __future__ import annotations

import argparse
import io
import os
import signal
import subprocess
import sys
import tarfile
import time
from pathlib import Path
from typing import Any

import yaml


def run_dir(config: dict[str, Any], path: Path) -> Path:
    """The folder a config's run writes: the GoalCurve/logger folder (parent of the export directory)."""
    for cb in config.get("trainer", {}).get("callbacks", []):
        if cb.get("class_path", "").endswith("ExportTokenizer") and cb.get("init_args", {}).get("directory"):
            return Path(cb["init_args"]["directory"]).parent
    return Path("runs") / path.stem


def data_args(config: dict[str, Any], extra: list[str]) -> dict[str, Any] | None:
    """The ImageDataModule arguments of a config with the `--data.init_args.K=V` overrides applied, else None."""
    data = config.get("data") or {}
    if not str(data.get("class_path", "")).endswith("ImageDataModule"):
        return None
    args = dict(data.get("init_args") or {})
    for a in extra:
        if a.startswith("--data.init_args.") and "=" in a:
            key, value = a[len("--data.init_args."):].split("=", 1)
            args[key] = yaml.safe_load(value)
    return args


def prebuild(configs: list[tuple[Path, dict[str, Any]]], extra: list[str], workers: int) -> None:
    from recipes.image_data import ImageDataModule
    from zoo.data.images import build_image_dataset, mixed_val_set, source_val_sets

    done = set()
    for _, config in configs:
        args = data_args(config, extra)
        if args is None:
            continue
        data = ImageDataModule(**args)  # its own defaults and checks: the sets its setup() will ask for
        key = (data.train_size, data.resolution, data.sources, data.seed)
        if key in done:
            continue
        t = time.time()
        build_image_dataset("train", *key[:3], seed=key[3], workers=workers)
        mixed_val_set(data.val_size, data.resolution)
        done.add(key)
        print(f"[gpu_round] built train set {key[0]} x {key[1]}px of {len(key[2])} sources in {time.time() - t:.1f} s",
              flush=True)
    if done:
        source_val_sets(48)  # what GoalCurve measures on


def pack(folder: Path, out: Path, part_bytes: int) -> list[Path]:
    """`folder` as NAME.tar in `out`, or NAME.tar.part-aa, -ab, ... when larger than `part_bytes`."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        tar.add(folder, arcname=folder.name)
    data = buf.getvalue()
    if len(data) <= part_bytes:
        paths = [out / f"{folder.name}.tar"]
        paths[0].write_bytes(data)
        return paths
    paths = []
    for i, start in enumerate(range(0, len(data), part_bytes)):
        p = out / f"{folder.name}.tar.part-{chr(97 + i // 26)}{chr(97 + i % 26)}"
        p.write_bytes(data[start:start + part_bytes])
        paths.append(p)
    return paths


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    extra = argv[argv.index("--") + 1:] if "--" in argv else []
    argv = argv[:argv.index("--")] if "--" in argv else argv
    parser = argparse.ArgumentParser(prog="python -m recipes.gpu_round", description=__doc__.split("\n")[0])
    parser.add_argument("configs", nargs="+", type=Path)
    parser.add_argument("--deadline", type=float, default=560.0, help="seconds after the start to stop every run")
    parser.add_argument("--out", type=Path, default=None, help="where the packed runs go (default: none packed)")
    parser.add_argument("--part-mib", type=float, default=15.0)
    parser.add_argument("--workers", type=int, default=max(1, (os.cpu_count() or 2) - 2),
                        help="processes that build the train sets")
    parser.add_argument("--threads", type=int, default=2, help="OMP threads per run")
    args = parser.parse_args(argv)
    start = time.time()
    configs = []
    for path in args.configs:
        if not path.is_file():
            parser.error(f"no config file {path}")
        configs.append((path, yaml.safe_load(path.read_text()) or {}))
    prebuild(configs, extra, args.workers)
    env = {**os.environ, "OMP_NUM_THREADS": str(args.threads), "PYTHONUNBUFFERED": "1"}
    procs = []
    for path, config in configs:
        folder = run_dir(config, path)
        folder.mkdir(parents=True, exist_ok=True)
        log = (folder / "train.log").open("w")
        cmd = [sys.executable, "-m", "recipes.train", str(path), *extra]
        procs.append((path, folder, log, subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=env,
                                                          start_new_session=True)))
        print(f"[gpu_round] started {' '.join(cmd)} -> {folder}", flush=True)
    while any(p.poll() is None for *_, p in procs) and time.time() - start < args.deadline:
        time.sleep(2)
    for path, _, _, p in procs:
        if p.poll() is None:
            print(f"[gpu_round] {path}: still running at the deadline, stopped", flush=True)
            os.killpg(p.pid, signal.SIGTERM)
    time.sleep(3)
    codes = []
    for path, folder, log, p in procs:
        if p.poll() is None:
            os.killpg(p.pid, signal.SIGKILL)
        codes.append(p.wait())
        log.close()
        print(f"[gpu_round] {path}: exit {codes[-1]}, {time.time() - start:.0f} s; last lines of {folder}/train.log:\n"
              + "\n".join((folder / "train.log").read_text(errors="replace").splitlines()[-6:]), flush=True)
        curve = folder / "goal_curve.csv"
        if curve.exists():
            print("\n".join(curve.read_text().splitlines()[-12:]), flush=True)
    if args.out is not None:
        args.out.mkdir(parents=True, exist_ok=True)
        for _, folder, _, _ in procs:
            for p in pack(folder, args.out, int(args.part_mib * 2**20)):
                print(f"[gpu_round] packed {p} ({p.stat().st_size / 2**20:.1f} MiB)", flush=True)
    return 0 if all(c == 0 for c in codes) else 1


if __name__ == "__main__":
    sys.exit(main())
