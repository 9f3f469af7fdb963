"""Tokens: every layout survives slicing, moving, and a save/load round trip through both formats."""

import numpy as np
import pytest
import torch

from zoo.tokenizer import InputContract, Tokens, TokenSpec, check_ids, check_input, length_mask

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


def test_length_mask_numpy_and_torch_agree():
    lengths = torch.tensor([0, 3, 5, 1])
    mask = length_mask(lengths, 5)
    assert mask.dtype == torch.bool and mask.sum(1).tolist() == lengths.tolist()
    assert all(bool(mask[b, :n].all()) and not bool(mask[b, n:].any()) for b, n in enumerate(lengths.tolist()))
    as_numpy = length_mask(lengths.numpy(), 5)
    assert isinstance(as_numpy, np.ndarray) and (as_numpy == mask.numpy()).all()


def test_spec_round_trips_through_dict():
    spec = TokenSpec(modality="image", vocab_size=64000, num_codebooks=1, max_tokens=32, input=CONTRACT)
    assert TokenSpec.from_dict(spec.to_dict()) == spec
    assert spec.bits_per_token == pytest.approx(np.log2(64000))
    with pytest.raises(ValueError, match="modality"):
        TokenSpec(modality="smell", vocab_size=2, num_codebooks=1, max_tokens=1, input=CONTRACT)


# ----------------------------------------------------------------------------------------- the budget contract

import inspect  # noqa: E402
import warnings  # noqa: E402

import zoo  # noqa: E402
from zoo import hub  # noqa: E402
from zoo.tokenizer import Provenance, Tokenizer, keyword_names  # noqa: E402

FAMILIES = sorted(f for f, info in hub._families().items() if info["tokenizer"])


@pytest.mark.parametrize("family", FAMILIES)
def test_declared_knobs_are_exactly_the_keyword_arguments(family):
    cls = hub.family_class(family)
    for method, declared in (("encode", cls.encode_knobs), ("decode", cls.decode_options)):
        fn = getattr(cls, method)
        assert getattr(fn, "_zoo_contract", False), f"{cls.__name__}.{method} bypasses the base class checks"
        assert sorted(keyword_names(fn)) == sorted(declared)
        positional = [p.name for p in inspect.signature(fn).parameters.values()
                      if p.kind is not inspect.Parameter.KEYWORD_ONLY]
        assert len(positional) == 2, f"{cls.__name__}.{method} takes one input, then keywords; got {positional}"


def test_a_family_that_lies_about_its_knobs_is_refused_at_definition():
    with pytest.raises(TypeError, match="encode_knobs"):
        class Liar(Tokenizer):  # noqa: F841
            encode_knobs = ("num_tokens",)
            decode_options = ()

            def encode(self, x, *, quality=None):
                return None
    with pytest.raises(TypeError, match="does not declare decode_options"):
        class Silent(Tokenizer):  # noqa: F841
            encode_knobs = ()

            def encode(self, x):
                return None

            def decode(self, tokens, *, steps=1):
                return None


@pytest.fixture(scope="module")
def beast():
    return zoo.load("beast-lasa")


@pytest.fixture(scope="module")
def trajectories():
    from zoo.data.actions import load_lasa

    return torch.as_tensor(np.stack(load_lasa("val", 100)[0][:6]), dtype=torch.float32)


@pytest.mark.parametrize("call, match", [
    (lambda t, x: t.encode(x, quality=0.1), r"BEAST.encode takes num_tokens, continuous .*got 'quality'"),
    (lambda t, x: t.encode(x, num_steps=10), r"num_steps is a decode option"),
    (lambda t, x: t.encode(x, 20), r"as keywords \(num_tokens, continuous\)"),
    (lambda t, x: t.decode(t.encode(x), steps=8), r"BEAST.decode takes num_steps .*got 'steps'"),
    (lambda t, x: t.decode(t.encode(x), num_tokens=8), r"num_tokens is a encode knob|num_tokens is an encode knob"),
    (lambda t, x: t.encode(x, batch_size=0), r"batch_size"),
])
def test_unknown_knobs_are_value_errors_naming_the_knobs(beast, trajectories, call, match):
    with pytest.raises(ValueError, match=match):
        call(beast, trajectories)


def test_tokens_record_their_tokenizer_and_a_foreign_decoder_refuses_them(beast, trajectories, tmp_path):
    t = beast.encode(trajectories)
    assert t.provenance == Provenance("beast-lasa", beast.fingerprint)
    assert t[1:3].provenance == t.provenance and t.to("cpu").provenance == t.provenance
    binning = zoo.load("binning-lasa")
    other = zoo.load("beast-reaching7")
    assert len({beast.fingerprint, binning.fingerprint, other.fingerprint}) == 3
    for suffix in (".npz", ".safetensors"):
        t.save(tmp_path / f"t{suffix}")
        loaded = Tokens.load(tmp_path / f"t{suffix}")
        assert loaded.provenance == t.provenance
        assert torch.equal(beast.decode(loaded), beast.decode(t))
        with pytest.raises(ValueError, match=r"made by 'beast-lasa'.*force=True"):
            binning.decode(loaded)
        assert binning.decode(loaded, force=True).shape[0] == len(trajectories)  # the brave get what they asked for


def test_the_fingerprint_follows_the_config_not_the_path(beast, tmp_path):
    copy = zoo.load(beast.save_pretrained(tmp_path / "copy"))
    assert copy.fingerprint == beast.fingerprint and copy.name != beast.name
    t = copy.encode(torch.rand(2, 50, 2))
    assert beast.decode(t).shape == (2, 50, 2)  # same tokenizer under another name


def test_old_token_files_without_provenance_still_decode_with_a_warning(beast, trajectories, tmp_path):
    t = beast.encode(trajectories)
    np.savez(tmp_path / "old.npz", ids=t.ids.numpy(), lengths=t.lengths.numpy(), **{"meta.num_steps": t.meta["num_steps"].numpy()})
    with pytest.warns(UserWarning, match="does not say which tokenizer made it"):
        old = Tokens.load(tmp_path / "old.npz")
    assert old.provenance is None
    assert torch.equal(beast.decode(old), beast.decode(t))


def test_chunked_encode_and_decode_give_the_same_ids_and_outputs(beast, trajectories):
    whole = beast.encode(trajectories)
    chunked = beast.encode(trajectories, batch_size=4)
    assert torch.equal(whole.ids, chunked.ids) and torch.equal(whole.meta["num_steps"], chunked.meta["num_steps"])
    # outputs agree to float rounding: BLAS sums in another order for another batch shape
    assert torch.allclose(beast.decode(whole), beast.decode(whole, batch_size=4), atol=1e-5, rtol=0)


def test_cat_pads_the_token_axis():
    a = Tokens(ids=torch.ones(2, 3, dtype=torch.long), lengths=torch.tensor([3, 2]), latents=torch.ones(2, 3, 4))
    b = Tokens(ids=torch.ones(1, 5, dtype=torch.long), lengths=torch.tensor([5]), latents=torch.ones(1, 5, 4))
    t = Tokens.cat([a, b])
    assert t.ids.shape == (3, 5) and int(t.ids[:2, 3:].abs().sum()) == 0 and t.latents.shape == (3, 5, 4)
    with pytest.raises(ValueError, match="same fields"):
        Tokens.cat([a, Tokens(ids=None, lengths=torch.tensor([1]), latents=torch.ones(1, 1, 4))])


def test_a_compressed_bomb_is_refused_from_its_header(tmp_path):
    path = tmp_path / "bomb.npz"
    np.savez_compressed(path, ids=np.zeros((1, 40_000_000), dtype=np.int64), lengths=np.array([40_000_000]))
    assert path.stat().st_size < 1_000_000  # 320 MB of ids in well under 1 MB
    with pytest.raises(ValueError, match="over the limit"):
        Tokens.load(path)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        assert Tokens.load(path, max_bytes=1 << 30).ids.shape == (1, 40_000_000)  # the explicit override
