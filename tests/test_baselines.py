"""The binning and DCT+BPE baselines: round trips, budgets, fitted state, and strict decoding."""

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
