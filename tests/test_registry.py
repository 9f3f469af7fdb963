"""Every registered tokenizer gets the same checks for free: shapes, round trip, determinism, no NaN,
saving, token files, and clear errors on bad input. Family tests add what is particular."""

import warnings

import pytest
import torch

import zoo
from zoo.demo import SAMPLES

NAMES = [r["name"] for r in zoo.list_tokenizers() if r["shipped"]]  # releases would download


@pytest.fixture(scope="module", params=NAMES)
def case(request):
    tok = zoo.load(request.param)
    if tok.spec.modality not in SAMPLES:
        pytest.skip(f"no sample builder for modality {tok.spec.modality!r}")
    x, _ = SAMPLES[tok.spec.modality](tok)
    return tok, x[:4]


def roundtrip(tok, x):
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        t = tok.encode(x)
        return t, tok.decode(t)


def test_tokens_respect_the_spec(case):
    tok, x = case
    t, y = roundtrip(tok, x)
    spec = tok.spec
    assert t.batch_size == x.shape[0]
    assert int(t.lengths.max()) <= spec.max_tokens
    if t.ids is not None:
        assert t.ids.ndim == (2 if spec.num_codebooks == 1 else 3)
        valid = t.ids[t.mask]
        assert int(valid.min()) >= 0 and int(valid.max()) < spec.vocab_size
    if t.latents is not None:
        assert t.latents.shape[-1] == spec.latent_dim


def test_decode_matches_the_input_layout_and_range(case):
    tok, x = case
    _, y = roundtrip(tok, x)
    assert y.shape == x.shape and y.dtype == torch.float32
    assert bool(torch.isfinite(y).all())
    if tok.spec.input.value_range is not None:
        lo, hi = tok.spec.input.value_range
        assert float(y.min()) >= lo - 1e-6 and float(y.max()) <= hi + 1e-6


def test_encode_and_decode_are_deterministic(case):
    tok, x = case
    t1, y1 = roundtrip(tok, x)
    t2, y2 = roundtrip(tok, x)
    assert torch.equal(t1.lengths, t2.lengths)
    if t1.ids is not None:
        assert torch.equal(t1.ids, t2.ids)
    assert torch.equal(y1, y2)


def test_batching_does_not_change_results(case):
    tok, x = case
    t, y = roundtrip(tok, x)
    t1, y1 = roundtrip(tok, x[1:2])
    if t.ids is not None:
        n = int(t1.lengths[0])
        assert torch.equal(t.ids[1, :n], t1.ids[0, :n])
    assert torch.allclose(y[1:2], y1, atol=1e-4)


def test_token_files_and_checkpoints_round_trip(case, tmp_path):
    tok, x = case
    t, y = roundtrip(tok, x)
    t.save(tmp_path / "t.safetensors")
    again = zoo.load(tok.save_pretrained(tmp_path / "ckpt"))
    y2 = again.decode(zoo.Tokens.load(tmp_path / "t.safetensors"))
    assert torch.allclose(y, y2, atol=1e-5)


def test_bad_inputs_raise_value_errors(case):
    tok, x = case
    bad = [x[0], x[:0], torch.full_like(x, float("nan")), x.long()]
    if tok.spec.input.value_range is not None:
        bad.append(x + tok.spec.input.value_range[1] - tok.spec.input.value_range[0] + 1)
    for b in bad:
        with pytest.raises(ValueError):
            tok.encode(b)
