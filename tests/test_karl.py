"""KARL: halting monotone in ε, per-sample lengths, fixed budgets, training signal, bad input, the shipped card."""

from __future__ import annotations

import json
import math

import pytest
import torch

from zoo import hub, metrics
from zoo.image.budget import NEAR_BEST_DB
from zoo.image.karl import KARL, KARLConfig
from zoo.tokenizer import Tokens

K = 8
TINY = dict(image_size=16, patch_size=4, max_tokens=K, encoder_dim=32, encoder_depth=1, encoder_heads=2,
            decoder_dim=32, decoder_depth=1, decoder_heads=2)
SHIPPED = hub.REPO_CHECKPOINTS / "karl-tiny-nat32"
QUALITIES = [1e-5, 1e-4, 3e-4, 1e-3, 3e-3, 1e-2, 3e-2, 0.1, 1.0]


def perturbed(config: KARLConfig) -> KARL:
    """A random KARL whose halting curve differs between images (the head starts as a constant)."""
    torch.manual_seed(0)
    model = KARL(config).eval()
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn_like(p) * 0.05)
        model.halt_head[-1].weight.normal_(0, 0.5)
    return model


@pytest.fixture(scope="module")
def tok() -> KARL:
    return perturbed(KARLConfig(**TINY))


@pytest.fixture(scope="module")
def tok_continuous() -> KARL:
    return perturbed(KARLConfig(**TINY, quantizer="none", latent_dim=6))


@pytest.fixture(scope="module")
def images() -> torch.Tensor:
    return torch.rand(6, 3, 16, 16, generator=torch.Generator().manual_seed(1))


@pytest.fixture(scope="module")
def shipped():
    if not (SHIPPED / "config.json").is_file():
        pytest.skip("checkpoints/karl-tiny-nat32 is not trained yet")
    from recipes.image_data import ImageDataModule

    card = json.loads((SHIPPED / "config.json").read_text())["summary"]["metrics"]
    return hub.load(SHIPPED).eval(), ImageDataModule().val_images(), card


def lengths_over_qualities(tok: KARL, images: torch.Tensor, **kwargs) -> torch.Tensor:
    """(len(QUALITIES), B): tokens kept per image at each ε, loosest last."""
    return torch.stack([tok.encode(images, quality=q, **kwargs).lengths for q in QUALITIES])


def test_encode_truncates_per_image(tok: KARL, images: torch.Tensor) -> None:
    t = tok.encode(images, quality=3e-3)
    width = int(t.lengths.max())
    assert t.ids.shape == (6, width) and t.latents.shape == (6, width, 5)
    assert int(t.lengths.min()) >= 1 and width <= K
    assert int(t.ids[~t.mask].abs().sum()) == 0 and float(t.latents[~t.mask].abs().sum()) == 0
    assert int(t.ids.min()) >= 0 and int(t.ids.max()) < tok.spec.vocab_size == 4375
    assert tok.encode(images, quality=1e6).lengths.tolist() == [1] * 6, "a hopeless target still keeps one token"


def test_halting_is_monotone_in_quality_per_image(tok: KARL, images: torch.Tensor) -> None:
    lengths = lengths_over_qualities(tok, images)
    assert bool((lengths[1:] <= lengths[:-1]).all()), f"a looser ε kept more tokens:\n{lengths}"
    assert len(set(lengths.flatten().tolist())) > 2, "the sweep should move the lengths"
    assert any(len(set(row.tolist())) > 1 for row in lengths), "images should differ in how many tokens they need"


def test_halt_threshold_keeps_more_tokens_when_higher(tok: KARL, images: torch.Tensor) -> None:
    low = lengths_over_qualities(tok, images, halt_threshold=0.1)
    high = lengths_over_qualities(tok, images, halt_threshold=0.9)
    assert bool((high >= low).all()) and bool((high > low).any())
    assert torch.equal(lengths_over_qualities(tok, images, halt_threshold=tok.config.halt_threshold),
                       lengths_over_qualities(tok, images))


def test_num_tokens_int_and_per_image(tok: KARL, images: torch.Tensor) -> None:
    for n in (1, 3, K):
        t = tok.encode(images, num_tokens=n)
        assert t.lengths.tolist() == [n] * 6 and t.ids.shape == (6, n)
    ks = torch.tensor([1, 3, K, 2, 5, K])
    t = tok.encode(images, num_tokens=ks)
    assert t.lengths.tolist() == ks.tolist() and t.ids.shape == (6, K)
    assert tok.decode(t).shape == images.shape


def test_budget_and_quality_map_onto_each_other(tok: KARL, images: torch.Tensor) -> None:
    """The ε a fixed budget n is conditioned on is one the halting head maps back to n tokens."""
    curve = tok.halting_curve(tok.patch_features(images * 2 - 1))
    for threshold in (0.2, 0.5, 0.8):
        for n in range(1, K + 1):
            lengths = torch.full((6,), n)
            eps = tok.quality_for_lengths(curve, lengths, threshold)
            assert torch.equal(tok.lengths_for_quality(curve, eps, threshold), lengths)


@pytest.mark.parametrize("which", ["tok", "tok_continuous"])
def test_decode_ignores_tokens_past_each_length(which: str, images: torch.Tensor, request) -> None:
    tok = request.getfixturevalue(which)
    full = tok.encode(images, num_tokens=K)
    lengths = torch.tensor([1, 2, 3, 5, 7, K])
    cut = Tokens(ids=full.ids, lengths=lengths, latents=full.latents)
    y = tok.decode(cut)
    scrambled = Tokens(ids=None if full.ids is None else torch.where(cut.mask, full.ids, (full.ids + 17) % 4375),
                       lengths=lengths, latents=torch.where(cut.mask[..., None], full.latents, -full.latents + 0.3))
    torch.testing.assert_close(tok.decode(scrambled), y, atol=1e-6, rtol=0)
    longer = Tokens(ids=full.ids, lengths=(lengths + 1).clamp(max=K), latents=full.latents)
    assert not torch.allclose(tok.decode(longer)[:5], y[:5]), "a token within the length must change the output"


def test_decode_is_deterministic_and_batch_independent(tok: KARL, images: torch.Tensor) -> None:
    t = tok.encode(images, quality=1e-3)
    y = tok.decode(t)
    assert y.shape == images.shape and float(y.min()) >= 0 and float(y.max()) <= 1
    assert torch.equal(y, tok.decode(t))
    torch.testing.assert_close(tok.decode(t[2]), y[2:3], atol=1e-5, rtol=0)
    torch.testing.assert_close(tok.encode(images[2:3], quality=1e-3).ids, t[2].ids[:, : int(t.lengths[2])])


def test_continuous_variant(tok_continuous: KARL, images: torch.Tensor) -> None:
    t = tok_continuous.encode(images, quality=3e-3)
    assert t.ids is None and t.latents.shape[-1] == 6 and tok_continuous.spec.vocab_size == 0
    assert tok_continuous.decode(t).shape == images.shape


def test_save_load_round_trip(tok: KARL, images: torch.Tensor, tmp_path) -> None:
    tok.save_pretrained(tmp_path / "karl")
    back = hub.load(tmp_path / "karl")
    assert isinstance(back, KARL) and back.config == tok.config
    t = tok.encode(images, quality=1e-3)
    assert torch.equal(back.encode(images, quality=1e-3).ids, t.ids)
    assert torch.equal(back.decode(t), tok.decode(t))


def test_loss_falls_when_overfitting_a_batch() -> None:
    from recipes.karl import KARLModule

    torch.manual_seed(0)
    module = KARLModule(config=TINY, warmup_steps=1, lr=3e-3)
    coarse = torch.rand(8, 3, 4, 4, generator=torch.Generator().manual_seed(2))
    images = torch.nn.functional.interpolate(coarse, size=16, mode="bilinear")  # learnable structure, unlike noise
    opt = torch.optim.AdamW(module.model.parameters(), lr=3e-3)
    with torch.no_grad():
        first = [float(module.losses(images)[k]) for k in ("rec", "halt")]
    for _ in range(60):
        loss = module.losses(images)["loss"]
        opt.zero_grad()
        loss.backward()
        opt.step()
    with torch.no_grad():
        last = [sum(float(module.losses(images)[k]) for _ in range(5)) / 5 for k in ("rec", "halt")]
    assert last[0] < 0.5 * first[0], f"reconstruction loss {first[0]:.4f} → {last[0]:.4f}"
    assert last[1] < first[1], f"halting loss {first[1]:.4f} → {last[1]:.4f}"


@pytest.mark.parametrize("kwargs, match", [
    (dict(quality=0.0), "finite positive"),
    (dict(quality=-1e-3), "finite positive"),
    (dict(quality=float("nan")), "finite positive"),
    (dict(quality=float("inf")), "finite positive"),
    (dict(quality=True), "positive number"),
    (dict(quality="0.01"), "positive number"),
    (dict(quality=torch.tensor([1, 2])), "floating with shape"),
    (dict(quality=torch.full((3,), 1e-3)), "floating with shape"),
    (dict(quality=1e-3, num_tokens=4), "not both"),
    (dict(num_tokens=0), r"\[1, 8\]"),
    (dict(num_tokens=K + 1), r"\[1, 8\]"),
    (dict(num_tokens=2.5), "int"),
    (dict(num_tokens=torch.tensor([1.0, 2.0, 3.0, 4.0, 5.0, 6.0])), "integer with shape"),
    (dict(num_tokens=torch.tensor([0, 1, 2, 3, 4, 5])), r"\[1, 8\]"),
    (dict(halt_threshold=0.0), r"halt_threshold"),
    (dict(halt_threshold=1.0), r"halt_threshold"),
    (dict(search=True, num_tokens=4), "not num_tokens"),
    (dict(search=[]), "non-empty sequence"),
    (dict(search="all"), "non-empty sequence"),
    (dict(search=[0, 4]), "search budget"),
    (dict(search=[K + 1]), "search budget"),
])
def test_bad_budgets(tok: KARL, images: torch.Tensor, kwargs: dict, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        tok.encode(images, **kwargs)


@pytest.mark.parametrize("bad, match", [
    (torch.rand(2, 3, 16, 8), "W must be 16"),
    (torch.rand(2, 3, 32, 32), "H must be 16"),
    (torch.rand(2, 1, 16, 16), "axis 1 must have size 3"),
    (torch.rand(2, 3, 16, 16) * 2, r"values must lie in \[0, 1\]"),
    (torch.randint(0, 2, (2, 3, 16, 16)), "floating"),
    (torch.rand(3, 16, 16), "4 axes"),
])
def test_bad_images(tok: KARL, bad: torch.Tensor, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        tok.encode(bad)


def test_bad_tokens(tok: KARL, tok_continuous: KARL, images: torch.Tensor) -> None:
    t = tok.encode(images, num_tokens=3)
    with pytest.raises(ValueError, match=r"lengths must lie in \[1, 8\]"):
        tok.decode(Tokens(ids=t.ids, lengths=torch.tensor([0, 1, 2, 3, 3, 3])))
    with pytest.raises(ValueError, match="must lie in"):
        tok.decode(Tokens(ids=t.ids + 5000, lengths=t.lengths))
    with pytest.raises(ValueError, match="at most 8"):
        tok.decode(Tokens(ids=torch.zeros(6, K + 1, dtype=torch.long), lengths=t.lengths))
    with pytest.raises(ValueError, match="decodes ids"):
        tok.decode(Tokens(ids=None, lengths=t.lengths, latents=t.latents))
    with pytest.raises(ValueError, match="latents"):
        tok_continuous.decode(Tokens(ids=t.ids, lengths=t.lengths))
    with pytest.raises(ValueError, match="Tokens"):
        tok.decode(t.ids)


def test_bad_configs() -> None:
    with pytest.raises(ValueError, match="not a supported config name"):
        KARLConfig.from_name("huge")
    for bad, match in [(dict(patch_size=5), "multiple"), (dict(quantizer="vq"), "quantizer"),
                       (dict(halt_threshold=1.5), "halt_threshold"), (dict(quality_range=(0.1, 0.01)), "quality_range"),
                       (dict(default_quality=0.0), "default_quality"), (dict(max_tokens=0), "max_tokens")]:
        with pytest.raises(ValueError, match=match):
            KARLConfig(**bad)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")
def test_cuda_matches_cpu(tok: KARL, images: torch.Tensor) -> None:
    gpu = perturbed(KARLConfig(**TINY)).cuda()
    t = gpu.encode(images.cuda(), quality=1e-3)
    assert t.lengths.device.type == "cuda"
    torch.testing.assert_close(gpu.decode(t).cpu(), tok.decode(tok.encode(images, quality=1e-3)), atol=1e-3, rtol=0)


# -- the shipped checkpoint ---------------------------------------------------------------------------


def test_shipped_halting_is_monotone_and_adaptive(shipped) -> None:
    tok, val, _ = shipped
    lengths = lengths_over_qualities(tok, val[:64])
    assert bool((lengths[1:] <= lengths[:-1]).all())
    mid = lengths[QUALITIES.index(3e-3)]
    assert int(mid.max()) - int(mid.min()) >= 4, f"images should need different token counts, got {mid.tolist()}"


def test_shipped_checkpoint_meets_its_card(shipped) -> None:
    tok, val, card = shipped
    q = [k for k in card if k.startswith("check_psnr_q")][0]
    eps, n = float(q.split("_q")[1].split("_first")[0]), int(q.split("_first")[1])
    x = val[:n]
    t = tok.encode(x, quality=eps, min_gain_db=tok.config.min_gain_db)  # the card's protocol: target + the stop
    psnr = float(metrics.psnr(tok.decode(t), x).mean())
    tokens = float(t.lengths.float().mean())
    assert psnr >= card[q] - 0.1, f"PSNR {psnr:.2f} dB at ε={eps:g}, the card says {card[q]:.2f}"
    assert abs(tokens - card[q.replace("psnr", "tokens")]) <= 0.5
    fixed = tok.encode(x, num_tokens=tok.config.max_tokens)
    assert float(metrics.psnr(tok.decode(fixed), x).mean()) > psnr - 0.5, "all K tokens should do no worse"


def test_min_gain_never_keeps_more_tokens(tok: KARL, images: torch.Tensor) -> None:
    plain = lengths_over_qualities(tok, images, min_gain_db=0.0)
    assert torch.equal(plain, lengths_over_qualities(tok, images)), "the default (0) is the paper's rule"
    previous = plain
    for gain in (0.05, 0.2, 1.0, 5.0):
        capped = lengths_over_qualities(tok, images, min_gain_db=gain)
        assert bool((capped <= previous).all()) and bool((capped[1:] <= capped[:-1]).all())
        previous = capped
    assert bool((previous < plain).any()) and int(previous.min()) >= 1
    with pytest.raises(ValueError, match="min_gain_db"):
        tok.encode(images, min_gain_db=-1.0)


def test_encoder_features_are_the_patch_tokens_of_a_full_encode(tok: KARL, images: torch.Tensor) -> None:
    f = tok.encoder_features(images)
    assert f.shape == (len(images), tok.config.num_patches, tok.config.encoder_dim)
    for eps in (1e-3, 5e-2):  # patches never see the target error
        with torch.no_grad():
            _, patches = tok.encode_latents(images * 2 - 1, torch.full((len(images),), eps))
        torch.testing.assert_close(f, patches, atol=1e-5, rtol=1e-5)
    with pytest.raises(ValueError):
        tok.encoder_features(images[:, :2])


def test_search_keeps_measured_budgets(tok: KARL, images: torch.Tensor) -> None:
    from zoo.metrics import mse as image_mse

    t = tok.encode(images, search=True, quality=1e-3, min_gain_db=0.3)
    assert t.lengths.min() >= 1 and t.lengths.max() <= K
    fixed = [tok.encode(images, num_tokens=n) for n in range(1, K + 1)]
    per_budget = torch.stack([image_mse(tok.decode(f), images) for f in fixed], 1)
    psnr = -10 * torch.log10(per_budget)
    n = torch.arange(1, K + 1)
    for i in range(len(images)):  # each image: the tokens of a fixed budget of its length, and the rule's choice
        length = int(t.lengths[i])
        assert torch.equal(fixed[length - 1].ids[i], t.ids[i, :length])
        rd = int((psnr[i] - 0.3 * n).argmax()) + 1
        target = max(1e-3, float(per_budget[i].min()) * 10 ** (NEAR_BEST_DB / 10))  # 0.1 dB above the best at least
        until = int((per_budget[i] <= target).nonzero()[0]) + 1
        assert length == min(rd, until)
    # a subset of budgets is honoured, and a larger λ never keeps more tokens
    sub = tok.encode(images, search=[2, 5], quality=1e-6, min_gain_db=0.01)
    assert set(sub.lengths.tolist()) <= {2, 5}
    loose = tok.encode(images, search=[1, 2, 4, 8], quality=1e-6, min_gain_db=1.0)
    tight = tok.encode(images, search=[1, 2, 4, 8], quality=1e-6, min_gain_db=0.01)
    assert bool((loose.lengths <= tight.lengths).all())


def test_explicit_quality_is_a_target_not_preempted_by_the_min_gain_stop():
    """Issue 20: quality=0.016 and quality=0.0001 gave the same tokens (the 0.2 dB stop fired first)."""
    import zoo
    from zoo.data.images import images_to_tensor, real_photo_crops

    tok = zoo.load("karl-tiny-nat32")
    x = images_to_tensor(real_photo_crops(8)["images"])
    loose, tight = tok.encode(x, quality=0.016), tok.encode(x, quality=0.0001)
    assert tight.lengths.float().mean() > loose.lengths.float().mean()
    assert tight.meta["quality_met"].dtype == torch.bool and not bool(tight.meta["quality_met"].any())  # 40 dB: out of reach
    assert bool(loose.meta["quality_met"].any())
    both = tok.encode(x, quality=0.0001, min_gain_db=0.2)  # the stop still applies when asked for
    assert (both.lengths <= tight.lengths).all() and not bool(both.meta["quality_met"].any())


def test_small_budgets_train_the_smallest_budgets_more_often() -> None:
    from recipes.karl import KARLModule

    torch.manual_seed(0)
    draws = {s: KARLModule(config=dict(TINY, max_tokens=32), small_budgets=s).sample_budgets(4000) for s in (0.0, 1.0)}
    for s, t in draws.items():
        assert int(t.min()) == 1 and int(t.max()) == 32 and len(t.unique()) == 32, s  # every budget still occurs
    share = {s: float((t <= 2).float().mean()) for s, t in draws.items()}
    assert abs(share[0.0] - 2 / 32) < 0.02 and abs(share[1.0] - math.log(3) / math.log(33)) < 0.03, share
    with pytest.raises(ValueError, match="small_budgets"):
        KARLModule(config=TINY, small_budgets=1.5)
