"""Tokens: every layout survives slicing, moving, and a save/load round trip through both formats."""

import numpy as np
import pytest
import torch

from zoo.tokenizer import InputContract, Tokens, TokenSpec, check_ids, check_input

LAYOUTS = {
    "ids": lambda: Tokens(ids=torch.randint(0, 9, (4, 6)), lengths=torch.tensor([6, 3, 1, 0])),
    "ids_multi_codebook": lambda: Tokens(ids=torch.randint(0, 9, (4, 6, 3)), lengths=torch.full((4,), 6),
                                         meta={"num_samples": torch.tensor([10, 11, 12, 13])}),
    "latents": lambda: Tokens(ids=None, lengths=torch.tensor([2, 5, 5, 1]), latents=torch.randn(4, 5, 7)),
    "ids_and_latents": lambda: Tokens(ids=torch.randint(0, 9, (4, 5)), lengths=torch.full((4,), 5),
                                      latents=torch.randn(4, 5, 2), meta={"start": torch.randn(4, 2)}),
}


def assert_equal(a: Tokens, b: Tokens) -> None:
    for name in ("ids", "lengths", "latents"):
        x, y = getattr(a, name), getattr(b, name)
        assert (x is None) == (y is None)
        if x is not None:
            assert x.dtype == y.dtype and torch.equal(x, y)
    assert a.meta.keys() == b.meta.keys()
    for k in a.meta:
        assert torch.equal(a.meta[k], b.meta[k])


@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("suffix", [".npz", ".safetensors"])
def test_save_load_round_trip(layout, suffix, tmp_path):
    t = LAYOUTS[layout]()
    t.save(tmp_path / f"t{suffix}")
    assert_equal(t, Tokens.load(tmp_path / f"t{suffix}"))


@pytest.mark.parametrize("layout", LAYOUTS)
def test_slicing_keeps_every_field_aligned(layout):
    t = LAYOUTS[layout]()
    s = t[1:3]
    assert len(s) == 2
    assert torch.equal(s.lengths, t.lengths[1:3])
    one = t[2]
    assert len(one) == 1 and torch.equal(one.lengths, t.lengths[2:3])
    picked = t[torch.tensor([3, 0])]
    assert torch.equal(picked.lengths, t.lengths[[3, 0]])
    for k in t.meta:
        assert torch.equal(s.meta[k], t.meta[k][1:3])


def test_to_converts_floats_and_keeps_ids_long():
    t = LAYOUTS["ids_and_latents"]().to(torch.float64)
    assert t.ids.dtype == torch.long and t.latents.dtype == torch.float64
    assert t.to("cpu").ids.device.type == "cpu"


def test_mask_marks_valid_positions():
    t = LAYOUTS["ids"]()
    assert t.mask.sum(1).tolist() == [6, 3, 1, 0]


@pytest.mark.parametrize("make, match", [
    (lambda: Tokens(ids=None, lengths=torch.zeros(2, dtype=torch.long)), "neither"),
    (lambda: Tokens(ids=torch.zeros(2, 3, dtype=torch.long), lengths=torch.tensor([4, 1])), "lengths must lie"),
    (lambda: Tokens(ids=torch.zeros(2, 3, dtype=torch.long), lengths=torch.tensor([1, 1, 1])), "batch size"),
    (lambda: Tokens(ids=torch.zeros(2, dtype=torch.long), lengths=torch.tensor([1, 1])), r"\[B, L\]"),
])
def test_inconsistent_tokens_are_refused(make, match):
    with pytest.raises(ValueError, match=match):
        make()


def test_damaged_or_foreign_token_files_are_refused(tmp_path):
    (tmp_path / "junk.npz").write_bytes(b"not a zip")
    with pytest.raises(ValueError, match="not a readable token file"):
        Tokens.load(tmp_path / "junk.npz")
    np.savez(tmp_path / "other.npz", weights=np.zeros(3))
    with pytest.raises(ValueError, match="not a token file"):
        Tokens.load(tmp_path / "other.npz")
    np.savez(tmp_path / "float_ids.npz", ids=np.zeros((1, 2)), lengths=np.array([2]))
    with pytest.raises(ValueError, match="ids must be integers"):
        Tokens.load(tmp_path / "float_ids.npz")
    with pytest.raises(ValueError, match="no token file"):
        Tokens.load(tmp_path / "missing.npz")
    with pytest.raises(ValueError, match=".npz or .safetensors"):
        LAYOUTS["ids"]().save(tmp_path / "t.pt")


CONTRACT = InputContract(layout="B 3 H W", value_range=(0.0, 1.0), sizes={"H": 8}, multiples={"W": 4})


@pytest.mark.parametrize("x, match", [
    (torch.rand(3, 8, 8), "must have 4 axes"),
    (torch.rand(0, 3, 8, 8), "empty batch"),
    (torch.rand(2, 1, 8, 8), "axis 1 must have size 3"),
    (torch.rand(2, 3, 9, 8), "axis H must be 8"),
    (torch.rand(2, 3, 8, 6), "multiple of 4"),
    (torch.full((1, 3, 8, 8), float("nan")), "NaN"),
    (torch.full((1, 3, 8, 8), 2.0), r"\[0, 1\]"),
    (torch.zeros(1, 3, 8, 8, dtype=torch.long), "floating"),
    ([1, 2, 3], "torch.Tensor or numpy"),
])
def test_check_input_names_what_is_wrong(x, match):
    with pytest.raises(ValueError, match=match):
        check_input(x, CONTRACT)


def test_check_input_accepts_numpy_and_other_float_dtypes():
    out = check_input(np.random.rand(2, 3, 8, 4), CONTRACT)
    assert out.dtype == torch.float32 and out.shape == (2, 3, 8, 4)


def test_check_ids_ignores_padding_but_not_valid_positions():
    ids = torch.tensor([[1, 2, 99], [3, -1, 0]])
    check_ids(ids, 10, torch.tensor([2, 1]))  # 99 and -1 are padding
    with pytest.raises(ValueError, match=r"\[0, 10\)"):
        check_ids(ids, 10, torch.tensor([3, 1]))


def test_spec_round_trips_through_dict():
    spec = TokenSpec(modality="image", vocab_size=64000, num_codebooks=1, max_tokens=32, input=CONTRACT)
    assert TokenSpec.from_dict(spec.to_dict()) == spec
    assert spec.bits_per_token == pytest.approx(np.log2(64000))
    with pytest.raises(ValueError, match="modality"):
        TokenSpec(modality="smell", vocab_size=2, num_codebooks=1, max_tokens=1, input=CONTRACT)
