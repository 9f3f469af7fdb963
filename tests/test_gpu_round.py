"""recipes.gpu_round: run folders, prebuilt data arguments, and packing that comes back whole."""

from __future__ import annotations

import io
import tarfile
from pathlib import Path

import pytest

from recipes import gpu_round

CONFIG = {
    "trainer": {"callbacks": [{"class_path": "recipes.goals.GoalCurve", "init_args": {"directory": "runs/x"}},
                              {"class_path": "recipes.export.ExportTokenizer",
                               "init_args": {"directory": "runs/karl-gpu/checkpoint", "name": "karl"}}]},
    "data": {"class_path": "recipes.image_data.ImageDataModule",
             "init_args": {"train_size": 200000, "sources": ["natural", "flat"]}},
}


def test_run_folder_is_the_export_directory_parent():
    assert gpu_round.run_dir(CONFIG, Path("configs/karl/a.yaml")) == Path("runs/karl-gpu")
    assert gpu_round.run_dir({}, Path("configs/karl/a.yaml")) == Path("runs/a")


def test_data_overrides_shape_the_prebuilt_set():
    args = gpu_round.data_args(CONFIG, ["--trainer.max_time=00:00:00:20", "--data.init_args.train_size=1400",
                                        "--data.init_args.sources=[flat]"])
    assert args == {"train_size": 1400, "sources": ["flat"]}
    assert CONFIG["data"]["init_args"]["train_size"] == 200000  # the config itself is untouched
    assert gpu_round.data_args({"data": {"class_path": "recipes.video_data.VideoDataModule"}}, []) is None


@pytest.mark.parametrize("size, parts", [(1000, 1), (300_000, 3)])
def test_packed_parts_join_into_the_folder(tmp_path, size, parts):
    folder = tmp_path / "runs" / "karl-gpu"
    (folder / "checkpoint").mkdir(parents=True)
    payload = bytes(range(256)) * (size // 256)
    (folder / "checkpoint" / "model.safetensors").write_bytes(payload)
    (folder / "goal_curve.csv").write_text("step,psnr\n0,18.0\n")
    out = tmp_path / "out"
    out.mkdir()
    paths = gpu_round.pack(folder, out, part_bytes=120_000)
    assert len(paths) == parts and all(p.stat().st_size <= 120_000 for p in paths)
    joined = b"".join(p.read_bytes() for p in sorted(paths))
    with tarfile.open(fileobj=io.BytesIO(joined)) as tar:
        assert tar.extractfile("karl-gpu/checkpoint/model.safetensors").read() == payload
        assert tar.extractfile("karl-gpu/goal_curve.csv").read() == b"step,psnr\n0,18.0\n"


def test_missing_config_is_refused(tmp_path, capsys):
    with pytest.raises(SystemExit):
        gpu_round.main([str(tmp_path / "nope.yaml")])
    assert "no config file" in capsys.readouterr().err
