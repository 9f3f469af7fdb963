"""BEAST: spline algebra, bounds, budgets, pinning, and refusal of bad input and bad ids."""

import warnings

import numpy as np
import pytest
import torch

import zoo
from zoo.action.beast import BEAST, BEASTConfig, basis
from zoo.data.actions import load_lasa, reaching_split
from zoo.metrics import jerk


def random_splines(tok: BEAST, n_cp: int, batch: int = 16, steps: int = 60, seed: int = 0) -> torch.Tensor:
    """Trajectories that are themselves splines of the tokenizer's basis (so they are exactly representable)."""
    g = torch.Generator().manual_seed(seed)
    cps = torch.randn(batch, n_cp, tok.config.num_dof, generator=g, dtype=torch.float64)
    return tok._curve(cps, steps)


@pytest.fixture
def tok():
    t = BEAST(BEASTConfig(num_dof=3, num_control_points=8, max_control_points=12, ridge=1e-10))
    return t.fit(torch.cat([random_splines(t, n, 1024, seed=n) for n in (8, 12)]).float())


def test_a_spline_of_the_same_basis_is_reconstructed_exactly(tok):
    x = random_splines(tok, 8, seed=123)
    cps = tok._control_points(x, 8)
    assert torch.allclose(tok._curve(cps, x.shape[1]), x, atol=1e-6)
    tok.fit(x.float())  # bounds that cover x: nothing is clipped
    y = tok.decode(tok.encode(x.float(), continuous=True))
    assert float((y - x).abs().max()) < 1e-4
    # through ids, only quantisation remains: at most half a bin of the widest control point range
    half_bin = max(float((b[1] - b[0]).max()) for b in tok.bounds.values()) / 255 / 2
    assert float((tok.decode(tok.encode(x.float())) - x).abs().max()) <= half_bin + 1e-5


def test_quantisation_error_shrinks_with_the_vocabulary():
    errors = []
    for vocab in (16, 256, 4096):
        t = BEAST(BEASTConfig(num_dof=3, num_control_points=8, max_control_points=8, vocab_size=vocab, ridge=1e-10))
        x = random_splines(t, 8, 64).float()
        t.fit(x)
        errors.append(float((t.decode(t.encode(x)) - x).pow(2).mean()))
    assert errors[0] > 10 * errors[1] > 100 * errors[2]


def test_tokens_are_control_point_major_with_dofs_interleaved(tok):
    x = random_splines(tok, 8, 4).float()
    t = tok.encode(x)
    z = tok.encode(x, continuous=True).latents  # (B, N, D)
    expected = torch.round((z + 1) / 2 * 255).long().reshape(4, -1)
    assert torch.equal(t.ids, expected)
    assert t.ids.shape == (4, 8 * 3) and t.lengths.tolist() == [24] * 4


def test_any_input_length_and_any_output_length(tok):
    for steps in (3, 17, 250):
        x = random_splines(tok, 8, 2, steps=steps).float()
        t = tok.encode(x)
        assert tok.decode(t).shape == (2, steps, 3)
        assert tok.decode(t, num_steps=41).shape == (2, 41, 3)


def test_num_tokens_picks_the_number_of_control_points(tok):
    x = random_splines(tok, 12, 8).float()
    errors = []
    for n in (5, 8, 12):
        t = tok.encode(x, num_tokens=n * 3)
        assert t.ids.shape == (8, n * 3)
        errors.append(float((tok.decode(t) - x).pow(2).mean()))
    assert errors[0] > errors[1] > errors[2]
    with pytest.raises(ValueError, match="multiple of num_dof=3"):
        tok.encode(x, num_tokens=20)
    with pytest.raises(ValueError, match=r"num_tokens must lie in \[15, 36\]"):
        tok.encode(x, num_tokens=39)


def test_per_sample_token_counts_decode_in_one_batch(tok):
    x = random_splines(tok, 12, 4).float()
    a, b = tok.encode(x[:2], num_tokens=15), tok.encode(x[2:], num_tokens=36)
    ids = torch.zeros(4, 36, dtype=torch.long)
    ids[:2, :15], ids[2:] = a.ids, b.ids
    mixed = zoo.Tokens(ids=ids, lengths=torch.tensor([15, 15, 36, 36]), meta={"num_steps": torch.full((4,), 60)})
    y = tok.decode(mixed)
    assert torch.allclose(y[:2], tok.decode(a)) and torch.allclose(y[2:], tok.decode(b))


def test_decoded_trajectories_are_smooth():
    x, _ = load_lasa("val", 100)
    x = torch.from_numpy(x)
    noisy = x + torch.randn_like(x) * 0.5
    t = BEAST(BEASTConfig(num_dof=2)).fit(torch.from_numpy(load_lasa("train", 100)[0]))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        y = t.decode(t.encode(noisy))
    assert float(jerk(y).mean()) < 0.01 * float(jerk(noisy).mean())


def test_pinned_start_pose_is_exact_and_not_a_token():
    cfg = BEASTConfig(num_dof=2, num_control_points=10, pin_start=True)
    x = torch.from_numpy(load_lasa("train", 100)[0])
    t = BEAST(cfg).fit(x)
    tokens = t.encode(x[:5])
    assert tokens.ids.shape == (5, 9 * 2)
    assert torch.equal(tokens.meta["start"], x[:5, 0])
    y = t.decode(tokens)
    assert torch.allclose(y[:, 0], x[:5, 0], atol=1e-5)
    del tokens.meta["start"]
    with pytest.raises(ValueError, match="meta\\['start'\\]"):
        t.decode(tokens)


def test_gripper_dims_use_a_step_spline():
    x = torch.from_numpy(reaching_split("train", 64, 100))
    t = BEAST(BEASTConfig(num_dof=7, gripper_dims=(6,), num_control_points=20, max_control_points=20)).fit(x)
    y = t.decode(t.encode(x[:8]))
    grip = y[..., 6]
    # a degree-0 spline is piecewise constant: at most N distinct values per trajectory
    assert all(len(torch.unique(g.round(decimals=5))) <= 20 for g in grip)
    assert float((grip - x[:8, :, 6]).abs().mean()) < 0.1


def test_bounds_survive_save_and_load_exactly(tok, tmp_path):
    again = zoo.load(tok.save_pretrained(tmp_path / "b"))
    assert sorted(again.bounds) == sorted(tok.bounds) == list(range(5, 13))
    for n in tok.bounds:
        assert np.array_equal(again.bounds[n], tok.bounds[n])
    x = random_splines(tok, 8, 4).float()
    assert torch.equal(tok.encode(x).ids, again.encode(x).ids)


def test_bounds_are_fixed_once_fitted(tok):
    before = {n: b.copy() for n, b in tok.bounds.items()}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        tok.encode(random_splines(tok, 8, 4).float() * 100)  # far outside: clipped, bounds unchanged
    assert all(np.array_equal(before[n], tok.bounds[n]) for n in before)


def test_out_of_range_inputs_warn_that_they_are_clipped(tok):
    with pytest.warns(UserWarning, match="outside the fitted bounds"):
        tok.encode(random_splines(tok, 8, 4).float() * 100)


def test_unfitted_tokenizer_says_so():
    with pytest.raises(ValueError, match="not fitted"):
        BEAST(BEASTConfig(num_dof=2)).encode(torch.zeros(1, 10, 2))


@pytest.mark.parametrize("x, match", [
    (torch.zeros(10, 3), "must have 3 axes"),
    (torch.zeros(0, 10, 3), "empty batch"),
    (torch.zeros(2, 10, 4), "axis D must be 3"),
    (torch.full((2, 10, 3), float("nan")), "NaN"),
    (torch.zeros(2, 10, 3, dtype=torch.long), "floating"),
])
def test_bad_inputs(tok, x, match):
    with pytest.raises(ValueError, match=match):
        tok.encode(x)


def test_bad_ids_are_refused_not_decoded_to_zeros(tok):
    t = tok.encode(random_splines(tok, 8, 2).float())
    t.ids[0, 3] = 256
    with pytest.raises(ValueError, match=r"must lie in \[0, 256\)"):
        tok.decode(t)
    t.ids[0, 3] = -1
    with pytest.raises(ValueError, match="out of range"):
        tok.decode(t)
    short = zoo.Tokens(ids=t.ids[:, :7].clamp(0, 255), lengths=torch.tensor([7, 7]))
    with pytest.raises(ValueError, match="multiples of num_dof"):
        tok.decode(short)
    too_few = zoo.Tokens(ids=t.ids[:, :6].clamp(0, 255), lengths=torch.tensor([6, 6]))
    with pytest.raises(ValueError, match="outside this tokenizer's range"):
        tok.decode(too_few)


@pytest.mark.parametrize("kwargs, match", [
    ({"num_control_points": 4}, "at least 5"),
    ({"num_control_points": 12, "max_control_points": 10}, "num_control_points"),
    ({"gripper_dims": (5,)}, "gripper_dims"),
    ({"vocab_size": 1}, "vocab_size"),
])
def test_bad_configs(kwargs, match):
    with pytest.raises(ValueError, match=match):
        BEASTConfig(num_dof=3, **kwargs)


def test_basis_is_a_partition_of_unity_and_clamped():
    phi = basis(50, 10, 4)
    assert np.allclose(phi.sum(1), 1)
    assert phi[0, 0] == 1 and phi[-1, -1] == 1


def test_shipped_beast_lasa_meets_its_card():
    tok = zoo.load("beast-lasa")
    card = zoo.hub.read_config(zoo.hub.locate("beast-lasa"))["summary"]["metrics"]
    x = torch.from_numpy(load_lasa("val", 100)[0])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        mse = float((tok.decode(tok.encode(x)) - x).pow(2).mean())
    assert mse <= card["val_mse"] * 1.01


def test_recipe_writes_loadable_checkpoints_with_cards(tmp_path):
    from recipes.train import main as train

    for family, init in (("beast", "fit_beast"), ("binning", "fit_baseline"), ("dct-bpe", "fit_baseline")):
        config = tmp_path / f"{family}.yaml"
        extra = "    tokenizer: {num_dof: 2, num_control_points: 8, max_control_points: 9}\n" if family == "beast" \
            else f"    family: {family}\n"
        config.write_text(f"""
fit:
  class_path: recipes.beast.{init}
  init_args:
    name: {family}-test
    dataset: lasa
    num_steps: 50
    augment: dihedral
{extra}""")
        train([str(config), "--output", str(tmp_path / "out" / f"{family}-test")])  # one config, one checkpoint
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["beast-test", "binning-test", "dct-bpe-test"]
    for name in ("beast-test", "binning-test", "dct-bpe-test"):
        tok = zoo.load(tmp_path / "out" / name)
        card = (tmp_path / "out" / name / "README.md").read_text()
        assert "val_mse" in card and "LASA" in card
        assert tok.spec.modality == "action"
