"""zoo.image.budget: the budget rule for a target error, and meta["quality_met"] as a user measures it (KARL and CAT)."""

from __future__ import annotations

import pytest
import torch

import zoo
from zoo.data.images import MIXED_VAL_SEED, build_image_dataset, images_to_tensor, real_photo_crops
from zoo.image.budget import NEAR_BEST_DB, choose_budget, reachable_target
from zoo.metrics import mse as image_mse


def test_choose_budget_rules() -> None:
    mse = torch.tensor([[0.02, 0.01, 0.005, 0.0049],    # reaches 0.006 at the 3rd budget; the 4th buys ~0.01 dB
                        [0.05, 0.04, 0.045, 0.06],      # never reaches 0.006: lowest error is the 2nd budget
                        [0.05, 0.0401, 0.04, 0.0399]])  # never reaches it: the 2nd is within 0.1 dB of the lowest
    tokens = torch.tensor([1.0, 2.0, 4.0, 8.0])
    eps = torch.full((3,), 0.006)
    assert choose_budget(mse, tokens, eps).tolist() == [2, 1, 1]
    assert choose_budget(mse, tokens, None, min_gain_db=0.5).tolist() == [2, 1, 1]
    assert choose_budget(mse, tokens, None, min_gain_db=5.0).tolist() == [0, 0, 0]
    assert choose_budget(mse, tokens, eps, min_gain_db=5.0).tolist() == [0, 0, 0]  # the fewer of the two rules
    perm = [3, 1, 0, 2]
    assert choose_budget(mse[:, perm], tokens[perm], eps).tolist() == [3, 1, 1]  # candidates in any order
    # a target only the last 0.02 dB would meet counts as 0.1 dB above the best: 2 tokens, not 8
    assert choose_budget(torch.tensor([[0.02, 0.0101, 0.01, 0.00995]]), tokens, torch.tensor([0.00996])).tolist() == [1]
    # ... so a looser target never keeps more tokens, though the tightest reachable one needs all of them
    curve = torch.tensor([[0.02, 0.0101, 0.01, 0.00995]])
    picks = [int(choose_budget(curve, tokens, torch.tensor([q]))) for q in (1e-4, 0.00995, 0.00996, 0.0101, 0.015, 0.03)]
    assert picks == sorted(picks, reverse=True) == [1, 1, 1, 1, 1, 0]
    floor = reachable_target(torch.tensor([1e-4, 0.5]), torch.tensor([0.01, 0.01]))
    torch.testing.assert_close(floor, torch.tensor([0.01 * 10 ** (NEAR_BEST_DB / 10), 0.5]))
    assert 0 < NEAR_BEST_DB <= 0.5
    with pytest.raises(ValueError, match="quality"):
        choose_budget(mse, tokens)


@pytest.fixture(scope="module")
def varied() -> torch.Tensor:
    """(32, 3, 32, 32): held-out photo crops, flat colours and gradients, which reach a target error very differently."""
    sets = [images_to_tensor(real_photo_crops(12)["images"])]
    sets += [images_to_tensor(build_image_dataset("val", 10, 32, (name,), seed=MIXED_VAL_SEED)["images"])
             for name in ("flat", "gradients")]
    return torch.cat(sets)


@pytest.mark.parametrize("name, search", [("karl-tiny-nat32", [1, 4, 16, 32]), ("cat-tiny-nat32", True)])
def test_quality_met_says_whether_the_decoded_tokens_meet_the_target(name: str, search, varied: torch.Tensor) -> None:
    """Issue 20: `quality=` is a target the tokens meet when they can, or the result says it could not.

    The independent measurement: each image's tokens decoded alone, the error in float64 numpy-style
    arithmetic; quality_met must agree wherever the error is not within float rounding of the target."""
    tok = zoo.load(name).eval()
    calls = [dict(quality=q) for q in (0.016, 0.004, 0.001)] + [dict(search=search, quality=0.004), {}]
    outcomes = torch.zeros(0, dtype=torch.bool)
    for kwargs in calls:
        t = tok.encode(varied, **kwargs)
        eps = kwargs.get("quality", tok.config.default_quality)
        met = t.meta["quality_met"]
        assert met.dtype == torch.bool and met.shape == (len(varied),)
        y = torch.cat([tok.decode(t[i:i + 1]) for i in range(len(varied))]).double()
        err = (y - varied.double()).pow(2).mean(dim=(1, 2, 3))
        clear = (err - eps).abs() > 1e-5 * eps
        assert int(clear.sum()) >= len(varied) - 1, f"{kwargs}: errors within rounding of the target: {err[~clear]}"
        wrong = (met != (err <= eps)) & clear
        assert not bool(wrong.any()), (f"{name} {kwargs}: quality_met {met[wrong].tolist()} but decoded MSE "
                                       f"{err[wrong].tolist()} against {eps}")
        outcomes = torch.cat([outcomes, met])
    assert bool(outcomes.any()) and not bool(outcomes.all()), "the images and targets should give both outcomes"
    assert "quality_met" not in tok.encode(varied[:2], **({"num_tokens": 4} if "num_tokens" in tok.encode_knobs
                                                          else {"ratio": 8})).meta  # a fixed budget has no target


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize("name, search", [("karl-tiny-nat32", [1, 4, 16, 32]), ("cat-tiny-nat32", True)])
def test_search_decodes_each_candidate_once(name: str, search, dtype: torch.dtype, varied: torch.Tensor,
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    """search=True decodes every candidate to measure it; quality_met reuses the chosen candidate's decode
    instead of decoding the kept tokens again, and says what decoding them says."""
    tok = zoo.load(name).eval().to(dtype)
    decoder = "reconstruct" if name.startswith("karl") else "pixels"  # every decode of the family goes through it
    inner, rows = getattr(tok, decoder), []
    monkeypatch.setattr(tok, decoder, lambda z, *args: rows.append(len(z)) or inner(z, *args))
    eps = 0.004
    t = tok.encode(varied, quality=eps, search=search)
    candidates = len(search) if isinstance(search, list) else len(tok.config.ratios)
    assert sum(rows) == candidates * len(varied), "each candidate decoded once, the kept tokens not again"
    err = image_mse(tok.decode(t), varied.to(dtype))
    clear = (err - eps).abs() > 1e-5 * eps
    assert torch.equal(t.meta["quality_met"][clear], (err <= eps)[clear])
