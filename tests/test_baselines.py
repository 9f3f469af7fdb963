"""The binning and DCT+BPE baselines: round trips, budgets, fitted state, and strict decoding."""

from pathlib import Path

import pytest
import torch

import zoo
from zoo.action.baselines import DCTBPE, Binning, BinningConfig, DCTBPEConfig
from zoo.data.actions import reaching_split


@pytest.fixture(scope="module")
def data():
    return torch.from_numpy(reaching_split("train", 256, 50)), torch.from_numpy(reaching_split("val", 32, 50))


def test_binning_round_trip_error_is_within_half_a_bin(data):
    train, val = data
    tok = Binning(BinningConfig(num_dof=7, num_steps=50)).fit(train)
    t = tok.encode(val)
    assert t.ids.shape == (32, 50 * 7)
    half_bin = float((tok.bounds[1] - tok.bounds[0]).max()) / 255 / 2
    assert float((tok.decode(t) - val).abs().max()) <= half_bin + 1e-6


def test_binning_budget_resamples_time(data):
    train, val = data
    tok = Binning(BinningConfig(num_dof=7, num_steps=50)).fit(train)
    t = tok.encode(val, num_tokens=70)
    assert t.ids.shape == (32, 70)
    assert tok.decode(t).shape == val.shape
    with pytest.raises(ValueError, match="multiple of num_dof=7"):
        tok.encode(val, num_tokens=71)


def test_dct_bpe_compresses_and_round_trips(data):
    train, val = data
    tok = DCTBPE(DCTBPEConfig(num_dof=7, num_steps=50, scale=20, vocab_size=1024)).fit(train)
    t = tok.encode(val)
    assert float(t.lengths.float().mean()) < 50 * 7 / 3  # BPE merges the many zero coefficients
    y = tok.decode(t)
    assert y.shape == val.shape
    assert float((y - val).pow(2).mean()) < 0.01
    finer = DCTBPE(DCTBPEConfig(num_dof=7, num_steps=50, scale=100, vocab_size=2048)).fit(train)
    assert float((finer.decode(finer.encode(val)) - val).pow(2).mean()) < float((y - val).pow(2).mean())


def test_dct_bpe_state_survives_save_and_load(data, tmp_path):
    train, val = data
    tok = DCTBPE(DCTBPEConfig(num_dof=7, num_steps=50, scale=20)).fit(train)
    again = zoo.load(tok.save_pretrained(tmp_path / "fast"))
    assert torch.equal(again.encode(val).ids, tok.encode(val).ids)


def test_dct_bpe_refuses_what_it_cannot_do(data):
    train, val = data
    tok = DCTBPE(DCTBPEConfig(num_dof=7, num_steps=50, scale=20)).fit(train)
    with pytest.raises(ValueError, match="takes no knobs.*num_tokens.*cannot honour a budget"):
        tok.encode(val, num_tokens=10)
    t = tok.encode(val[:2])
    truncated = zoo.Tokens(ids=t.ids, lengths=t.lengths - 1, meta=t.meta)
    with pytest.raises(ValueError, match="truncated or malformed"):
        tok.decode(truncated)
    t.ids[0, 0] = tok.vocab_size
    with pytest.raises(ValueError, match="out of range"):
        tok.decode(t)
    with pytest.raises(ValueError, match="not fitted"):
        DCTBPE(DCTBPEConfig(num_dof=7)).encode(val)
    with pytest.raises(ValueError, match="vocab_size must exceed"):
        DCTBPEConfig(num_dof=7, scale=100, vocab_size=512)


# ----------------------------------------------------------------------------------------- FAST's release layout

FAST = Path(__file__).parent / "fixtures" / "fast_release"  # FAST's official processor's files and outputs,
# made by scripts/make_fast_fixture.py running processing_action_tokenizer.py (UniversalActionProcessor)


@pytest.mark.parametrize("case", ["in_range", "wide", "float32"])
def test_fast_release_loads_to_identical_tokens_and_decodes(case):
    import numpy as np

    io = np.load(FAST / "io.npz")
    assert DCTBPE.is_release(FAST) and DCTBPE.is_release(FAST / "tokenizer.json")
    tok = DCTBPE.from_release(FAST)
    actions = torch.from_numpy(io[f"{case}.actions"])
    t = tok.encode(actions)
    assert t.lengths.tolist() == io[f"{case}.lengths"].tolist()
    assert torch.equal(t.ids, torch.from_numpy(io[f"{case}.ids"]))
    decoded = tok.decode(t)
    assert decoded.shape == actions.shape  # any length and any dofs: no resampling, no fitted bounds
    torch.testing.assert_close(decoded.double(), torch.from_numpy(io[f"{case}.decoded"]), atol=1e-5, rtol=0)
    if case == "in_range":  # FAST's own rounding error only: within half a quantisation step per coefficient
        assert float((decoded - actions.float()).abs().max()) < 0.5 / 10 * actions.shape[1] ** 0.5


def test_fast_release_survives_our_checkpoint_and_needs_sizes_from_somewhere(tmp_path):
    import numpy as np

    io = np.load(FAST / "io.npz")
    tok = DCTBPE.from_release(FAST)
    actions = torch.from_numpy(io["in_range.actions"])
    t = tok.encode(actions)
    again = zoo.load(tok.save_pretrained(tmp_path / "fast"))
    assert torch.equal(again.encode(actions).ids, t.ids)
    bare = zoo.Tokens(ids=t.ids, lengths=t.lengths)  # as an LLM would emit them: no recorded sizes
    with pytest.raises(ValueError, match="num_steps=T, num_dof=D"):
        tok.decode(bare)
    torch.testing.assert_close(tok.decode(bare, num_steps=12, num_dof=3), tok.decode(t))
    with pytest.raises(ValueError, match="truncated or malformed"):
        tok.decode(bare, num_steps=12, num_dof=4)
    with pytest.raises(ValueError, match="from_release"):
        tok.fit(actions)


def test_fast_release_refuses_what_is_not_one(tmp_path):
    import json
    import shutil

    assert not DCTBPE.is_release(tmp_path)
    with pytest.raises(ValueError, match="not a FAST tokenizer release"):
        DCTBPE.from_release(tmp_path)
    shutil.copy(FAST / "tokenizer.json", tmp_path / "tokenizer.json")
    config = json.loads((FAST / "processor_config.json").read_text())
    (tmp_path / "processor_config.json").write_text(json.dumps({**config, "min_token": "low"}))
    with pytest.raises(ValueError, match="min_token must be an integer"):
        DCTBPE.from_release(tmp_path)
    (tmp_path / "processor_config.json").write_text(json.dumps(config))
    (tmp_path / "tokenizer.json").write_text("{not json")
    with pytest.raises(ValueError, match="not a tokenizers file"):
        DCTBPE.from_release(tmp_path)
    with pytest.raises(ValueError, match="resample=True needs"):
        DCTBPEConfig(num_dof=None, min_token=0)


def test_fast_universal_downloads_converts_and_loads_from_a_local_fake_hub(tmp_path):
    """`zoo.load("fast-universal")` against a loopback hub serving the fixture under the release's repo name."""
    from tests.fakehub import load_release_from_fake_hub

    code = ("import numpy as np, torch, zoo; io = np.load('tests/fixtures/fast_release/io.npz'); "
            "tok = zoo.load('fast-universal')\n"
            "for case in ('in_range', 'wide'):\n"
            "    t = tok.encode(torch.from_numpy(io[case + '.actions']))\n"
            "    gap = (tok.decode(t).double() - torch.from_numpy(io[case + '.decoded'])).abs().max().item()\n"
            "    print(tok.family, torch.equal(t.ids, torch.from_numpy(io[case + '.ids'])), gap <= 1e-5)")
    import json

    from zoo import hub

    release = hub._names()["fast-universal"].release
    assert release.hf_repo == "physical-intelligence/fast" and len(release.revision) == 40  # pinned to a commit
    out, requests = load_release_from_fake_hub(release.hf_repo, FAST, release.files, code, tmp_path,
                                               revision=release.revision)  # served at that commit only
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["dct-bpe", "True", "True"] * 2, out.stdout
    assert any(f"/resolve/{release.revision}/processor_config.json" in r for r in requests)
    config = json.loads((tmp_path / "checkpoints" / "fast-universal" / "config.json").read_text())
    assert config["source"]["revision"] == config["source"]["commit"] == release.revision
