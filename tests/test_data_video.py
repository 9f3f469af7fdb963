"""Video clip builders: determinism, layout and range, motion, splits by source, caching, bad input."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from zoo.data import video as zv
from zoo.data.images import FACE_INDICES, NATURAL_IMAGES
from zoo.data.video import SOURCES, VideoDataset, build_video_dataset, shapes_clip, val_clips, videos_to_tensor


@pytest.fixture(autouse=True)
def _cache(tmp_path, monkeypatch):
    monkeypatch.setenv("ZOO_CACHE", str(tmp_path / "cache"))


def _same(a: dict[str, np.ndarray], b: dict[str, np.ndarray]) -> bool:
    return a.keys() == b.keys() and all(a[k].dtype == b[k].dtype and np.array_equal(a[k], b[k]) for k in a)


def test_layout_range_and_motion():
    n, t, r = 6, 8, 16
    d = build_video_dataset("train", n, frames=t, resolution=r)
    assert d["videos"].shape == (n, t, r, r, 3) and d["videos"].dtype == np.uint8
    assert d["source"].tolist() == [i % 3 for i in range(n)]
    assert all(d["captions"]) and d["captions"].dtype.kind == "U" and d["origin"].dtype.kind == "U"
    for clip in d["videos"]:  # every clip has content and moves
        assert clip.std() > 0
        assert np.abs(clip[-1].astype(int) - clip[0].astype(int)).mean() > 0.5
    x = videos_to_tensor(d["videos"])
    assert x.shape == (n, 3, t, r, r) and x.dtype == torch.float32
    assert 0.0 <= float(x.min()) and float(x.max()) <= 1.0
    assert torch.equal(x[2, :, 3, 4, 5], torch.from_numpy(d["videos"][2, 3, 4, 5]).float() / 255)
    item = VideoDataset("train", n, frames=t, resolution=r)[1]
    assert item["video"].shape == (3, t, r, r) and item["source"] == 1 and item["caption"]


def test_deterministic_cached_and_extending(tmp_path, monkeypatch):
    a = build_video_dataset("val", 6, frames=4, resolution=16, seed=3)
    files = list((tmp_path / "cache" / "data" / "video").glob("*.npz"))
    assert len(files) == 1  # cached once
    assert _same(a, build_video_dataset("val", 6, frames=4, resolution=16, seed=3))  # from the cache
    monkeypatch.setenv("ZOO_CACHE", str(tmp_path / "other"))  # a fresh build gives the same bytes
    assert _same(a, build_video_dataset("val", 6, frames=4, resolution=16, seed=3))
    assert not np.array_equal(a["videos"], build_video_dataset("val", 6, frames=4, resolution=16, seed=4)["videos"])
    bigger = build_video_dataset("val", 9, frames=4, resolution=16, seed=3)
    assert all(np.array_equal(a[k], bigger[k][:6]) for k in a)


def test_splits_use_disjoint_sources():
    n = 3 * 30  # cycles past every val photo and many faces
    train = build_video_dataset("train", n, frames=2, resolution=16)
    val = build_video_dataset("val", n, frames=2, resolution=16)
    assert not set(train["origin"]) & set(val["origin"])
    pans = SOURCES.index("pans")
    assert set(train["origin"][train["source"] == pans]) <= set(NATURAL_IMAGES["train"])
    assert set(val["origin"][val["source"] == pans]) <= set(NATURAL_IMAGES["val"])
    faces = val["origin"][val["source"] == SOURCES.index("faces")]
    assert {int(o[3:]) for o in faces} <= set(FACE_INDICES["val"])
    shapes = val["origin"][val["source"] == SOURCES.index("shapes")]
    assert all(int(o[6:]) >= 2**63 for o in shapes)
    assert _same(val_clips(6, frames=2, resolution=16), build_video_dataset("val", 6, 2, 16, seed=zv.VAL_SEED))


def test_shapes_bounce_inside_the_frame():
    clip, caption = shapes_clip(12345, frames=48, resolution=16)
    assert "bouncing" in caption and clip.shape == (48, 16, 16, 3)
    # shapes never leave: every frame keeps roughly the same amount of non-background colour
    bg = np.median(clip.reshape(48, -1, 3), axis=1)
    ink = (np.abs(clip.astype(int) - bg[:, None, None]).sum(-1) > 60).sum((1, 2))
    assert ink.min() > 0.4 * ink.max()


@pytest.mark.parametrize("kwargs", [dict(split="test"), dict(n=0), dict(frames=0), dict(resolution=20),
                                    dict(sources=("shapes", "movies")), dict(sources=()), dict(seed=-1)])
def test_bad_arguments(kwargs):
    args = dict(split="train", n=2, frames=4, resolution=16)
    with pytest.raises(ValueError):
        build_video_dataset(**{**args, **kwargs})
    with pytest.raises(ValueError, match="uint8"):
        videos_to_tensor(np.zeros((2, 4, 8, 8, 3), np.float32))


NEW_SOURCES = ("still", "objects", "fades", "patterns")  # the sources of issue 20: what users bring


@pytest.mark.parametrize("name", NEW_SOURCES)
def test_new_sources_are_deterministic_and_split_by_source(name, tmp_path, monkeypatch):
    n = 2 * len(NATURAL_IMAGES["train"])  # cycles past every train and val photo
    train = build_video_dataset("train", n, frames=4, resolution=16, sources=(name,))
    val = build_video_dataset("val", n, frames=4, resolution=16, sources=(name,))
    monkeypatch.setenv("ZOO_CACHE", str(tmp_path / "other"))  # a fresh build gives the same bytes
    assert _same(val, build_video_dataset("val", n, frames=4, resolution=16, sources=(name,)))
    assert (train["source"] == zv.ALL_SOURCES.index(name)).all()
    assert not set(train["origin"]) & set(val["origin"])
    if name in ("still", "objects"):  # photos: val photos never appear in train
        assert set(train["origin"]) <= set(NATURAL_IMAGES["train"])
        assert set(val["origin"]) == set(NATURAL_IMAGES["val"])
    else:  # scene seeds: val seeds lie in [2**63, 2**64), train seeds below
        assert all(int(o[len(name):]) >= 2**63 for o in val["origin"])
        assert all(int(o[len(name):]) < 2**63 for o in train["origin"])


def test_new_sources_move_as_described():
    d = {name: build_video_dataset("val", 12, frames=16, resolution=32, sources=(name,))["videos"].astype(int)
         for name in NEW_SOURCES}
    still = d["still"]
    assert (still == still[:, :1]).all() and still.std(axis=(1, 2, 3, 4)).min() > 2  # one photo, repeated exactly
    change = np.abs(np.diff(d["fades"], axis=1)).max(axis=(2, 3, 4))  # (N, T-1) largest step between frames
    assert (change.max(1) == 0).any() and (change.max(1) > 0).any() and change.max() <= 10  # some still, all slow
    for name in ("objects", "patterns"):
        assert np.abs(d[name][:, -1] - d[name][:, 0]).mean(axis=(1, 2, 3)).min() > 0.5  # every clip moves
    mixed = build_video_dataset("val", 7, frames=4, resolution=16, sources=zv.ALL_SOURCES)
    assert mixed["source"].tolist() == list(range(7))
    sets = zv.source_val_clips(2, frames=4, resolution=16)
    assert list(sets) == list(zv.ALL_SOURCES) and all(len(s["videos"]) == 2 for s in sets.values())
