"""Speech (espeak-ng) and music (fluidsynth) clip builders: contract, determinism, splits, cache."""

from __future__ import annotations

import subprocess

import numpy as np
import pytest
import torch

from zoo.data import audio
from zoo.data.audio import PEAK, SPEECH_VOICES, AudioClipDataset, build_audio_dataset, have_audio_tools

needs = {
    "speech": pytest.mark.skipif(not have_audio_tools("speech"),
                                 reason="espeak-ng is not installed (apt-get install espeak-ng)"),
    "music": pytest.mark.skipif(not have_audio_tools("music"),
                                reason="fluidsynth or its soundfont is not installed "
                                       "(apt-get install fluidsynth fluid-soundfont-gm)"),
}
KINDS = [pytest.param(k, marks=needs[k]) for k in ("speech", "music")]
SECONDS = 0.25  # short clips keep every build well under a second


@pytest.fixture(autouse=True)
def _cache(tmp_path, monkeypatch):
    monkeypatch.setenv("ZOO_CACHE", str(tmp_path / "cache"))


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("sample_rate", [16000, 8000])
def test_contract(kind, sample_rate):
    data = build_audio_dataset(kind, "train", n_clips=3, clip_seconds=SECONDS, sample_rate=sample_rate)
    x = data["audio"]
    assert x.shape == (3, round(SECONDS * sample_rate)) and x.dtype == np.float32
    assert np.isfinite(x).all()
    np.testing.assert_allclose(np.abs(x).max(axis=1), PEAK, rtol=1e-5)
    assert (np.sqrt((x**2).mean(axis=1)) > 0.02).all(), "a clip is (nearly) silent"
    assert data["source"].shape == (3,) and data["source"].dtype.kind == "U"
    if kind == "speech":
        assert data["text"].shape == (3,) and all(len(t.split()) >= 2 for t in data["text"])
    else:
        assert "text" not in data


@pytest.mark.parametrize("kind", KINDS)
def test_deterministic(kind, tmp_path, monkeypatch):
    a = build_audio_dataset(kind, "val", n_clips=3, clip_seconds=SECONDS, seed=1)
    monkeypatch.setenv("ZOO_CACHE", str(tmp_path / "other"))  # force a second, independent build
    b = build_audio_dataset(kind, "val", n_clips=3, clip_seconds=SECONDS, seed=1)
    assert a.keys() == b.keys()
    for k in a:
        np.testing.assert_array_equal(a[k], b[k])
    # Clip i depends only on (seed, split, i): a smaller build is a prefix of a larger one ...
    c = build_audio_dataset(kind, "val", n_clips=2, clip_seconds=SECONDS, seed=1)
    np.testing.assert_array_equal(c["audio"], a["audio"][:2])
    # ... and another seed gives other clips.
    d = build_audio_dataset(kind, "val", n_clips=3, clip_seconds=SECONDS, seed=2)
    assert not np.array_equal(d["audio"], a["audio"])


def test_voice_lists_disjoint():
    train, val = set(SPEECH_VOICES["train"]), set(SPEECH_VOICES["val"])
    assert len(train) >= 20 and len(val) >= 6 and not train & val
    # Val speakers are unseen timbres (variants) of languages that train covers.
    variant = lambda v: v.split("+")[1]  # noqa: E731
    assert not {variant(v) for v in train} & {variant(v) for v in val}
    assert {audio._language(v) for v in val} <= {audio._language(v) for v in train}
    assert len({audio._language(v) for v in train}) >= 6


@needs["speech"]
def test_every_voice_variant_exists():
    """espeak-ng silently ignores an unknown variant (and variants of some names, e.g. 'en-gb+f1')."""
    def say(voice: str) -> bytes:
        return subprocess.run(["espeak-ng", "-v", voice, "--stdout", "hello world"],
                              check=True, capture_output=True).stdout
    for voice in SPEECH_VOICES["train"] + SPEECH_VOICES["val"]:
        assert say(voice) != say(voice.split("+")[0]), f"variant of {voice!r} has no effect"


@needs["speech"]
def test_speech_splits_by_voice():
    n_train, n_val = len(SPEECH_VOICES["train"]), len(SPEECH_VOICES["val"])
    train = build_audio_dataset("speech", "train", n_clips=n_train, clip_seconds=0.1)
    val = build_audio_dataset("speech", "val", n_clips=n_val, clip_seconds=0.1)
    # Round-robin: a build of one clip per voice covers every voice of its split once.
    assert sorted(train["source"]) == sorted(SPEECH_VOICES["train"])
    assert sorted(val["source"]) == sorted(SPEECH_VOICES["val"])


@needs["music"]
def test_music_splits_by_piece():
    train = build_audio_dataset("music", "train", n_clips=4, clip_seconds=SECONDS)
    val = build_audio_dataset("music", "val", n_clips=4, clip_seconds=SECONDS)
    assert not set(train["source"]) & set(val["source"])
    assert len(set(train["source"])) == 4
    for v in val["audio"]:
        assert not any(np.allclose(v, t, atol=1e-3) for t in train["audio"])


@needs["music"]
def test_cache_hit(monkeypatch):
    first = build_audio_dataset("music", "train", n_clips=2, clip_seconds=SECONDS)

    def fail(*args, **kwargs):
        raise AssertionError("rebuilt despite a cached copy")

    monkeypatch.setattr(audio, "_build_music", fail)
    again = build_audio_dataset("music", "train", n_clips=2, clip_seconds=SECONDS)
    np.testing.assert_array_equal(first["audio"], again["audio"])
    with pytest.raises(AssertionError, match="rebuilt"):  # other params are another cache entry
        build_audio_dataset("music", "train", n_clips=3, clip_seconds=SECONDS)


@pytest.mark.parametrize("kwargs, match", [
    (dict(kind="noise"), "kind='noise'"),
    (dict(split="test"), "split='test'"),
    (dict(n_clips=0), "n_clips=0"),
    (dict(n_clips=2.5), "n_clips=2.5"),
    (dict(clip_seconds=0.0), "clip_seconds=0.0"),
    (dict(clip_seconds=100), "clip_seconds=100"),
    (dict(sample_rate=4000), "sample_rate=4000"),
    (dict(seed=-1), "seed=-1"),
])
def test_bad_arguments(kwargs, match):
    args = dict(kind="speech", split="train", n_clips=1) | kwargs
    with pytest.raises(ValueError, match=match):
        build_audio_dataset(**args)


@pytest.mark.parametrize("kind, package", [("speech", "espeak-ng"), ("music", "fluidsynth")])
def test_missing_tools_named(kind, package, monkeypatch):
    monkeypatch.setattr(audio.shutil, "which", lambda name: None)
    assert not have_audio_tools(kind)
    with pytest.raises(RuntimeError, match=f"apt-get install .*{package}"):
        build_audio_dataset(kind, "train", n_clips=1, clip_seconds=SECONDS)


def test_dataset_crops():
    clips = torch.randn(3, 100).numpy()
    val = AudioClipDataset(clips, segment_samples=40)
    assert len(val) == 3
    x = val[1]
    assert x.shape == (1, 40) and x.dtype == torch.float32
    torch.testing.assert_close(x, torch.from_numpy(clips[1:2, :40]))
    torch.testing.assert_close(val[1], x)  # the same crop every time
    train = AudioClipDataset(clips, segment_samples=40, random_crop=True)
    torch.manual_seed(0)
    starts = set()
    for _ in range(20):
        y = train[2][0].numpy()
        start = int(np.flatnonzero(np.isclose(clips[2], y[0]))[0])
        np.testing.assert_array_equal(y, clips[2, start:start + 40])
        starts.add(start)
    assert len(starts) > 1
    assert AudioClipDataset(clips)[0].shape == (1, 100)


@pytest.mark.parametrize("kwargs, match", [
    (dict(audio=np.zeros((3,))), "shape"),
    (dict(audio=np.zeros((0, 10))), "shape"),
    (dict(audio=np.zeros((2, 10)), segment_samples=11), "segment_samples=11"),
    (dict(audio=np.zeros((2, 10)), segment_samples=0), "segment_samples=0"),
])
def test_dataset_bad_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        AudioClipDataset(**kwargs)


@needs["speech"]
def test_dataset_build():
    ds = AudioClipDataset.build("speech", "train", n_clips=2, segment_samples=1000, clip_seconds=SECONDS)
    assert ds.random_crop and len(ds) == 2 and ds[0].shape == (1, 1000)
    assert not AudioClipDataset.build("speech", "val", n_clips=2, clip_seconds=SECONDS).random_crop
