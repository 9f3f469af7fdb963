"""Image dataset builders: determinism, layout, splits, complexity, captions, cache, bad input."""

from __future__ import annotations

import re

import numpy as np
import pytest
import torch

from zoo.data import images as zi
from zoo.data.images import (COUNT_WORDS, KINDS, LEVELS, PLURALS, SOURCES, ImageDataset, build_image_dataset,
                             images_to_tensor, mixed_val_set, png_complexity, render_scene)


@pytest.fixture(autouse=True)
def _cache(tmp_path, monkeypatch):
    monkeypatch.setenv("ZOO_CACHE", str(tmp_path / "cache"))


def _assert_same(a: dict[str, np.ndarray], b: dict[str, np.ndarray]) -> None:
    assert a.keys() == b.keys()
    for k in a:
        assert a[k].dtype == b[k].dtype and np.array_equal(a[k], b[k]), k


def test_layout_dtypes_and_ranges():
    n, r = 15, 16
    d = build_image_dataset("train", n, resolution=r)
    assert d["images"].shape == (n, r, r, 3) and d["images"].dtype == np.uint8
    for k in ("source", "complexity", "png_bytes", "label_kind", "label_colour", "label_count"):
        assert d[k].shape == (n,) and d[k].dtype == np.int64, k
    assert d["captions"].dtype.kind == "U" and d["origin"].dtype.kind == "U"
    # round-robin over sources, each with real content
    assert d["source"].tolist() == [i % 3 for i in range(n)]
    assert all(d["images"][i].std() > 0 for i in range(n))
    shapes, other = d["source"] == SOURCES.index("shapes"), d["source"] != SOURCES.index("shapes")
    assert d["complexity"][shapes].tolist() == [j % len(LEVELS) for j in range(shapes.sum())]
    assert (d["complexity"][other] == -1).all() and (d["label_kind"][other] == -1).all()
    assert (d["captions"][other] == "").all() and all(c for c in d["captions"][shapes])
    assert d["label_kind"][shapes].max() < len(KINDS) and d["label_count"][shapes].min() >= 0
    assert (d["png_bytes"] == [png_complexity(im) for im in d["images"]]).all()

    x = images_to_tensor(d["images"])
    assert x.shape == (n, 3, r, r) and x.dtype == torch.float32
    assert 0.0 <= x.min() and x.max() <= 1.0
    assert torch.equal(x[3, :, 2, 5], torch.from_numpy(d["images"][3, 2, 5]).float() / 255)


def test_deterministic_across_builds(tmp_path, monkeypatch):
    a = build_image_dataset("val", 9, resolution=32, seed=3)
    monkeypatch.setenv("ZOO_CACHE", str(tmp_path / "other"))  # force a fresh build
    _assert_same(a, build_image_dataset("val", 9, resolution=32, seed=3))
    other_seed = build_image_dataset("val", 9, resolution=32, seed=4)
    assert not np.array_equal(a["images"], other_seed["images"])


def test_larger_build_extends_smaller():
    small, big = build_image_dataset("train", 6, 16), build_image_dataset("train", 12, 16)
    for k in small:
        assert np.array_equal(small[k], big[k][:6]), k


def test_parallel_build_is_the_same_bytes(tmp_path, monkeypatch):
    sources = zi.ALL_SOURCES  # every builder, so each one's seeding is position-free
    serial = build_image_dataset("train", 23, 16, sources=sources)
    monkeypatch.setenv("ZOO_CACHE", str(tmp_path / "other"))  # force a fresh build
    _assert_same(serial, build_image_dataset("train", 23, 16, sources=sources, workers=3))
    for bad in (-1, 1.5, True):
        with pytest.raises(ValueError, match="workers must be an int >= 0"):
            build_image_dataset("train", 23, 16, workers=bad)


def test_cache_hit_returns_identical_arrays(tmp_path):
    a = build_image_dataset("train", 6, 16, sources=("shapes", "faces"))
    files = list((tmp_path / "cache" / "data" / "images").glob("*.npz"))
    assert len(files) == 1
    _assert_same(a, build_image_dataset("train", 6, 16, sources=("shapes", "faces")))


def test_train_val_disjoint_by_source():
    tr = build_image_dataset("train", 60, 16)
    va = build_image_dataset("val", 60, 16)
    assert not set(tr["origin"]) & set(va["origin"])
    nat = SOURCES.index("natural")
    assert set(tr["origin"][tr["source"] == nat]) == set(zi.NATURAL_IMAGES["train"])
    assert set(va["origin"][va["source"] == nat]) == set(zi.NATURAL_IMAGES["val"])
    assert not set(zi.NATURAL_IMAGES["train"]) & set(zi.NATURAL_IMAGES["val"])
    assert not set(zi.FACE_INDICES["train"]) & set(zi.FACE_INDICES["val"])
    # shape scene seeds: train below 2**63, val at or above
    seeds = lambda d: [int(o[len("shapes"):]) for o in d["origin"][d["source"] == SOURCES.index("shapes")]]
    assert max(seeds(tr)) < 2**63 <= min(seeds(va))


def test_complexity_grows_with_level():
    mean_png = [np.mean([png_complexity(render_scene(s, level, 32).image) for s in range(24)])
                for level in range(len(LEVELS))]
    assert all(a < b for a, b in zip(mean_png, mean_png[1:])), mean_png
    assert all(render_scene(s, 0, 32).count == 1 for s in range(10))


def test_captions_match_labels():
    d = build_image_dataset("val", 40, 32, sources=("shapes",))
    colours = list(zi.COLOURS)
    for cap, kind, colour, count in zip(d["captions"], d["label_kind"], d["label_colour"], d["label_count"]):
        words = re.split(r", | and | on ", str(cap))[0].split()  # the main object comes first
        if count == 0:
            assert words[0] == ("an" if words[1][0] in "aeiou" else "a") and words[-1] == KINDS[kind]
        else:
            assert words[0] == COUNT_WORDS[count] and words[-1] == PLURALS[KINDS[kind]]
        assert words[-2] == colours[colour]
        # distractors never repeat the main kind+colour, so the count is exact
        others = re.split(r", | and ", str(cap).split(" on ")[0])[1:]
        main = ([colours[colour], KINDS[kind]], [colours[colour], PLURALS[KINDS[kind]]])
        assert not any(o.split()[-2:] in main for o in others)


def test_mixed_val_set_is_balanced():
    d = mixed_val_set(n=30, resolution=16)
    assert np.bincount(d["source"], minlength=3).tolist() == [10, 10, 10]
    shapes = d["complexity"][d["source"] == SOURCES.index("shapes")]
    assert np.bincount(shapes).tolist() == [2] * len(LEVELS)
    _assert_same(d, build_image_dataset("val", 30, 16, seed=zi.MIXED_VAL_SEED))


def test_torch_dataset_and_loader():
    ds = ImageDataset("train", 7, resolution=16)
    item = ds[2]
    assert item["image"].shape == (3, 16, 16) and item["image"].dtype == torch.float32
    assert item["source"] == SOURCES.index("shapes") and item["caption"]
    batch = next(iter(torch.utils.data.DataLoader(ds, batch_size=4)))
    assert batch["image"].shape == (4, 3, 16, 16) and batch["label_kind"].shape == (4,)
    assert len(ImageDataset.from_arrays(ds.arrays)) == 7


@pytest.mark.parametrize("kwargs, match", [
    (dict(split="test"), "split='test' is not one of"),
    (dict(sources=("natural", "clouds")), "unknown: \\['clouds'\\]"),
    (dict(sources=()), "at least one"),
    (dict(resolution=48), "resolution=48 is not one of"),
    (dict(n=0), "n=0 must be"),
    (dict(seed=-1), "seed=-1 must be"),
])
def test_bad_arguments(kwargs, match):
    args = dict(split="train", n=4, resolution=16) | kwargs
    with pytest.raises(ValueError, match=match):
        build_image_dataset(**args)


def test_bad_images():
    with pytest.raises(ValueError, match="uint8"):
        png_complexity(np.zeros((8, 8, 3), np.float32))
    with pytest.raises(ValueError, match="uint8"):
        images_to_tensor(np.zeros((2, 3, 8, 8), np.uint8))
    with pytest.raises(ValueError, match="level=5"):
        render_scene(0, 5)


def test_source_weights_set_each_sources_share_of_the_batches():
    from recipes.image_data import ImageDataModule

    sources = ("flat", "gradients")
    names = [zi.ALL_SOURCES.index(s) for s in sources]

    def shares(**kwargs) -> torch.Tensor:
        dm = ImageDataModule(train_size=40, sources=sources, batch_size=8, **kwargs)
        dm.setup("fit")
        seen = torch.cat([b["source"] for _ in range(10) for b in dm.train_dataloader()])
        return torch.stack([(seen == n).float().mean() for n in names])

    assert torch.equal(shares(), torch.tensor([0.5, 0.5]))  # the balanced build, shuffled
    weighted = shares(source_weights={"flat": 3.0})  # gradients left out: weight 1
    assert abs(float(weighted[0]) - 0.75) < 0.06, weighted
    assert torch.equal(shares(source_weights={"gradients": 0.0}), torch.tensor([1.0, 0.0]))
    a, b = (ImageDataModule(train_size=40, sources=sources, batch_size=8, source_weights={"flat": 2}) for _ in "ab")
    for dm in (a, b):
        dm.setup("fit")
    assert all(torch.equal(x["image"], y["image"]) for x, y in zip(a.train_dataloader(), b.train_dataloader()))
    for bad in ({"faces": 1.0}, {"flat": -1.0}, {"flat": float("nan")}, {"flat": 0.0, "gradients": 0.0}):
        with pytest.raises(ValueError, match="source_weights"):
            ImageDataModule(sources=sources, source_weights=bad)
