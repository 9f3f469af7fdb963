"""Exporting a trained tokenizer without measuring it (a GPU machine without the metric packages), then measuring
it again elsewhere from the training config (`recipes.export.remeasure`)."""

from __future__ import annotations

import json

import lightning.pytorch as pl
import pytest
import torch
import yaml

from recipes.export import ExportTokenizer, hardware_name, remeasure
from zoo import hub


def _config(directory: str) -> dict:
    export = {"class_path": "recipes.export.ExportTokenizer",
              "init_args": {"directory": directory, "name": "larp-export-test", "data": "eight clips",
                            "recipe": "a test", "notes": "## Notes\n- a note", "measure": False}}
    return {"trainer": {"callbacks": [export]},
            "model": {"class_path": "recipes.larp.LARPModule",
                      "init_args": {"preset": "micro", "eval_tokens": [1, 8], "check_clips": 4, "warmup_steps": 1}},
            "data": {"class_path": "recipes.video_data.VideoDataModule",
                     "init_args": {"train_size": 8, "val_size": 8, "batch_size": 4}}}


def test_export_without_measuring_then_remeasure_from_the_config(tmp_path) -> None:
    from recipes.larp import LARPModule
    from recipes.video_data import VideoDataModule

    directory = tmp_path / "larp"
    cfg = _config(str(directory))
    export = ExportTokenizer(**cfg["trainer"]["callbacks"][0]["init_args"])
    torch.manual_seed(0)
    trainer = pl.Trainer(max_steps=2, accelerator="cpu", logger=False, enable_checkpointing=False,
                         enable_progress_bar=False, enable_model_summary=False, callbacks=[export])
    trainer.fit(LARPModule(**cfg["model"]["init_args"]), datamodule=VideoDataModule(**cfg["data"]["init_args"]))

    log = json.loads((directory / "train_log.json").read_text())
    assert log["metrics"] == {} and log["hardware"] == hardware_name(torch.device("cpu"))
    assert 0 < log["cpu_seconds"] <= log["seconds"] * 4  # the fit's CPU seconds beside its wall seconds
    assert "psnr_n8" not in (directory / "README.md").read_text()
    trained = hub.load_dir(str(directory))  # a str path is accepted as well as a Path

    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(cfg))
    metrics = remeasure(path)
    assert set(metrics) >= {"psnr_n1", "psnr_n8", "ssim_n8", "codebook_perplexity", "val_clips"}
    assert metrics["val_clips"] == 8 and metrics["psnr_n8"] > 0
    after = json.loads((directory / "train_log.json").read_text())
    assert after["seconds"] == log["seconds"] and after["hardware"] == log["hardware"] and after["metrics"] == metrics
    card = (directory / "README.md").read_text()
    assert f"| psnr_n8 | {metrics['psnr_n8']:.4g} |" in card and log["hardware"] in card and "- a note" in card
    again = hub.load_dir(directory)  # the weights are the trained ones, not the fresh module's
    for (k, a), b in zip(trained.state_dict().items(), again.state_dict().values()):
        assert torch.equal(a, b), k


def test_remeasure_needs_exactly_one_export_callback(tmp_path) -> None:
    cfg = _config(str(tmp_path / "larp"))
    cfg["trainer"]["callbacks"] = []
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(cfg))
    with pytest.raises(ValueError, match="one ExportTokenizer"):
        remeasure(path)


def test_hardware_name_names_the_cpu_and_torch() -> None:
    name = hardware_name(torch.device("cpu"))
    assert "CPU" in name and f"({torch.get_num_threads()} threads)" in name and torch.__version__ in name


# ----------------------------------------------------------------------------------------- where training writes


FIT = """
fit:
  class_path: recipes.beast.fit_baseline
  init_args: {{family: binning, name: binning-where, dataset: lasa, num_steps: 20{extra}}}
"""


def test_training_writes_runs_name_prints_how_to_load_and_refuses_what_a_config_cannot_take(tmp_path, monkeypatch,
                                                                                              capsys) -> None:
    import hashlib

    import zoo
    from recipes.train import main as train

    registry = hashlib.sha256(hub.REGISTRY_FILE.read_bytes()).hexdigest()
    shipped = {p: p.stat().st_mtime_ns for p in hub.REPO_CHECKPOINTS.glob("*/*")}
    monkeypatch.chdir(tmp_path)
    (tmp_path / "fit.yaml").write_text(FIT.format(extra=""))
    train(["fit.yaml"])
    out = capsys.readouterr().out
    assert "runs/binning-where/" in out and "zoo.load('runs/binning-where')" in out
    assert zoo.load("runs/binning-where").spec.modality == "action"
    train(["fit.yaml", "--output", "elsewhere/b"])
    assert zoo.load("elsewhere/b").spec.modality == "action"
    for bad in (["fit.yaml", "--trainer.max_steps=3"], ["fit.yaml", "--output"], ["missing.yaml"],
                ["fit.yaml", "--config", "fit.yaml"]):
        with pytest.raises(SystemExit) as info:
            train(bad)
        assert info.value.code == 2
    (tmp_path / "set.yaml").write_text(FIT.format(extra=", output: set/b"))
    with pytest.raises(SystemExit) as info:
        train(["set.yaml", "--output", "other"])  # the config names its folder: --output cannot apply
    assert info.value.code == 2
    (tmp_path / "shipped.yaml").write_text(FIT.format(extra=f", output: {hub.REPO_CHECKPOINTS / 'binning-lasa'}"))
    with pytest.raises(ValueError, match="run folder"):
        train(["shipped.yaml"])
    assert hashlib.sha256(hub.REGISTRY_FILE.read_bytes()).hexdigest() == registry
    assert {p: p.stat().st_mtime_ns for p in hub.REPO_CHECKPOINTS.glob("*/*")} == shipped


def test_a_lightning_run_lands_in_runs_name_with_its_logs(tmp_path, monkeypatch, capsys) -> None:
    from recipes.train import main as train

    cfg = _config("")
    del cfg["trainer"]["callbacks"][0]["init_args"]["directory"]
    cfg["trainer"].update(max_steps=1, accelerator="cpu", logger=False, enable_checkpointing=False,
                          enable_progress_bar=False, enable_model_summary=False)
    monkeypatch.chdir(tmp_path)
    (tmp_path / "larp.yaml").write_text(yaml.safe_dump(cfg))
    train(["larp.yaml"])
    assert "zoo.load('runs/larp-export-test')" in capsys.readouterr().out
    assert hub.load_dir(tmp_path / "runs" / "larp-export-test").spec.modality == "video"
    from recipes.export import run_folder

    for shipped in (hub.REPO_CHECKPOINTS / "larp-tiny-motion32", hub.REPO_CHECKPOINTS / "a" / ".." / "b"):
        with pytest.raises(ValueError, match="run folder"):  # what every export callback writes through
            run_folder(shipped)
