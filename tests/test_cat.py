"""CAT: fixed and adaptive ratios, per-sample lengths, both latent kinds, training signal, bad input, the shipped card."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from recipes.cat import CATModule, measure
from zoo import hub
from zoo.data.images import images_to_tensor, mixed_val_set, render_scene
from zoo.image.budget import NEAR_BEST_DB
from zoo.image.cat import CAT, CATConfig
from zoo.tokenizer import Tokens

TINY = dict(image_size=16, channels=(8, 16, 16), ratios=(4, 8, 16), estimator_dim=8)
TOKENS = {4: 16, 8: 4, 16: 1}  # 16x16 images: grids 4x4, 2x2, 1x1
SHIPPED = hub.REPO_CHECKPOINTS / "cat-tiny-nat32"


def tiny(quantizer: str) -> CAT:
    torch.manual_seed(0)
    return CAT(CATConfig(**TINY, quantizer=quantizer)).eval()


@pytest.fixture(scope="module", params=["fsq", "kl"])
def tok(request) -> CAT:
    return tiny(request.param)


@pytest.fixture(scope="module")
def images() -> torch.Tensor:
    return torch.rand(6, 3, 16, 16, generator=torch.Generator().manual_seed(1))


@pytest.fixture(scope="module")
def scenes() -> torch.Tensor:
    """Six 16x16 flat shape scenes: learnable, unlike uniform noise."""
    return images_to_tensor(np.stack([render_scene(s, 0, 16).image for s in range(6)]))


@pytest.fixture(scope="module")
def shipped() -> CAT:
    return hub.load("cat-tiny-nat32")


# ----------------------------------------------------------------------------------------- fixed ratios


@pytest.mark.parametrize("ratio", [4, 8, 16])
def test_fixed_ratio(tok: CAT, images: torch.Tensor, ratio: int) -> None:
    t = tok.encode(images, ratio=ratio)
    n = TOKENS[ratio]
    assert t.lengths.tolist() == [n] * 6 and t.meta["ratio"].tolist() == [ratio] * 6
    assert t.latents.shape == (6, n, tok.config.code_dim)
    if tok.config.quantizer == "fsq":
        assert t.ids.shape == (6, n) and 0 <= int(t.ids.min()) and int(t.ids.max()) < tok.spec.vocab_size
    else:
        assert t.ids is None and tok.spec.vocab_size == 0
    x_hat = tok.decode(t)
    assert x_hat.shape == images.shape and float(x_hat.min()) >= 0 and float(x_hat.max()) <= 1


def test_mixed_ratios_decode_like_each_ratio_alone(tok: CAT, images: torch.Tensor) -> None:
    ratios = torch.tensor([4, 16, 8, 4, 16, 8])
    t = tok.encode(images, ratio=ratios)
    assert t.lengths.tolist() == [TOKENS[r] for r in ratios.tolist()] and t.width == 16
    mixed = tok.decode(t)
    for r in (4, 8, 16):
        rows = ratios == r
        alone = tok.encode(images[rows], ratio=r)
        assert torch.equal(t.latents[rows, : TOKENS[r]], alone.latents)
        torch.testing.assert_close(mixed[rows], tok.decode(alone), atol=1e-5, rtol=0)


def test_decode_reads_the_ratio_from_the_lengths_and_ignores_padding(tok: CAT, images: torch.Tensor) -> None:
    t = tok.encode(images, ratio=torch.tensor([4, 16, 8, 4, 16, 8]))
    ref = tok.decode(t)
    pad = ~t.mask
    noisy = Tokens(ids=None if t.ids is None else t.ids.masked_fill(pad, 7),
                   lengths=t.lengths, latents=t.latents.masked_fill(pad[..., None], 3.0))  # no meta: lengths say it
    assert torch.equal(tok.decode(noisy), ref)
    short = Tokens(ids=None if t.ids is None else t.ids[:, :4], lengths=torch.full((6,), 4),
                   latents=t.latents[:, :4])  # every image cut to the 2x2 grid: decodes as ratio 8
    assert torch.equal(tok.decode(short), tok.decode(Tokens(ids=short.ids, lengths=short.lengths, latents=short.latents,
                                                            meta={"ratio": torch.full((6,), 8)})))
    with pytest.raises(ValueError, match="does not match the lengths"):
        tok.decode(Tokens(ids=t.ids, lengths=t.lengths, latents=t.latents, meta={"ratio": torch.full((6,), 4)}))
    with pytest.raises(ValueError, match="lengths must be one of"):
        tok.decode(Tokens(ids=t.ids, lengths=torch.full((6,), 5), latents=t.latents))


# ----------------------------------------------------------------------------------------- auto


def test_choose_levels_takes_the_coarsest_ratio_that_meets_the_target() -> None:
    tok = tiny("fsq")
    pred = torch.tensor([[40.0, 35.0, 31.0], [40.0, 29.0, 25.0], [28.0, 27.0, 20.0], [33.0, 30.0, 31.0]])
    assert tok.choose_levels(pred, 1e-3).tolist() == [2, 0, 0, 2]  # 30 dB
    assert tok.choose_levels(pred, 10 ** -2.6).tolist() == [2, 1, 1, 2]  # 26 dB
    # out of reach: the coarsest predicted within 0.1 dB of the best, not blindly the finest
    assert tok.choose_levels(torch.tensor([[25.0, 24.95, 20.0], [25.0, 24.8, 24.79]]), 1e-3).tolist() == [1, 0]


def test_auto_follows_the_estimator(tok: CAT, images: torch.Tensor) -> None:
    pred = tok.predict_psnr(images)
    assert pred.shape == (6, 3) and bool((pred[:, :-1] >= pred[:, 1:]).all()), "finer ratios predict no less PSNR"
    eps = float(10 ** (-pred[:, 1].median() / 10))  # half the images meet it at the medium ratio
    t = tok.encode(images, ratio="auto", quality=eps)
    want = torch.tensor(tok.config.ratios)[tok.choose_levels(pred, eps)]
    assert torch.equal(t.meta["ratio"], want)
    assert torch.equal(tok.decode(t), tok.decode(tok.encode(images, ratio=want)))
    assert torch.equal(t.lengths, tok.encode(images, quality=np.float64(eps)).lengths)  # numpy scalars work too
    assert torch.equal(tok.encode(images, ratio=np.int64(8)).lengths, torch.full((6,), 4))


def test_search_keeps_the_ratio_the_measured_errors_call_for(tok: CAT, images: torch.Tensor) -> None:
    from zoo.metrics import mse as image_mse

    ratios = tok.config.ratios
    mse = torch.stack([image_mse(tok.decode(tok.encode(images, ratio=r)), images) for r in ratios], 1)  # finest first
    eps = float(mse[:, 1].median())  # about half the images meet it at the medium ratio
    t = tok.encode(images, search=True, quality=eps)
    for i in range(len(images)):
        target = max(eps, float(mse[i].min()) * 10 ** (NEAR_BEST_DB / 10))  # eps, or 0.1 dB above the best if that is more
        want = max(j for j in range(len(ratios)) if mse[i, j] <= target)  # the coarsest that meets it
        assert int(t.meta["ratio"][i]) == ratios[want]
    assert torch.equal(tok.decode(t), tok.decode(tok.encode(images, ratio=t.meta["ratio"])))
    tokens = torch.tensor([float(tok.config.num_tokens(r)) for r in ratios])
    near = torch.stack([torch.nonzero(row <= row.min() * 10 ** (NEAR_BEST_DB / 10)).max() for row in mse])
    for lam in (0.01, 1.0):  # rate-distortion: the ratio maximising PSNR - λ·tokens, or the coarser target choice
        t = tok.encode(images, search=True, quality=1e-9, min_gain_db=lam)
        want = torch.maximum((-10 * torch.log10(mse) - lam * tokens).argmax(1), near)  # a larger index is coarser
        assert torch.equal(t.meta["ratio"], torch.tensor(ratios)[want])


def test_looser_quality_never_picks_a_finer_ratio(shipped: CAT) -> None:
    x = images_to_tensor(mixed_val_set()["images"][:48])
    previous = None
    for eps in (1e-4, 3e-4, 1e-3, 3e-3, 1e-2, 3e-2):
        t = shipped.encode(x, ratio="auto", quality=eps)
        if previous is not None:
            assert bool((t.meta["ratio"] >= previous).all()), f"eps={eps} picked a finer ratio for some image"
        previous = t.meta["ratio"]
    assert int(previous.max()) == 16, "at 15 dB (eps 0.03) some val image should take the coarsest ratio"


def test_auto_picks_coarser_ratios_for_flat_scenes_than_for_textured_ones(shipped: CAT) -> None:
    flat, textured = (images_to_tensor(np.stack([render_scene(10_000 + s, level).image for s in range(16)])) for level in (0, 4))
    ratios = {}
    for eps in (shipped.config.default_quality, 1e-3, 3e-3, 1e-2, 3e-2):
        ratios[eps] = [float(shipped.encode(x, quality=eps).meta["ratio"].float().mean()) for x in (flat, textured)]
        assert ratios[eps][0] >= ratios[eps][1], f"eps={eps}: flat scenes got finer ratios than textured ones ({ratios})"
    assert ratios[shipped.config.default_quality][0] > ratios[shipped.config.default_quality][1], ratios
    assert any(f >= 2 * t for f, t in ratios.values()), f"nowhere a clear difference: {ratios}"


# ----------------------------------------------------------------------------------------- both variants, saving


def test_save_load_round_trip(tok: CAT, images: torch.Tensor, tmp_path) -> None:
    back = hub.load(tok.save_pretrained(tmp_path / "cat"))
    assert isinstance(back, CAT) and back.config == tok.config
    t = tok.encode(images, ratio=torch.tensor([4, 8, 16, 4, 8, 16]))
    t2 = back.encode(images, ratio=torch.tensor([4, 8, 16, 4, 8, 16]))
    assert torch.equal(t.latents, t2.latents) and torch.equal(back.decode(t), tok.decode(t))
    t.save(tmp_path / "t.safetensors")
    assert torch.equal(back.decode(Tokens.load(tmp_path / "t.safetensors")), tok.decode(t))


@pytest.mark.parametrize("quantizer", ["fsq", "kl"])
def test_loss_falls_when_overfitting_a_batch(quantizer: str, scenes: torch.Tensor) -> None:
    torch.manual_seed(0)
    module = CATModule(config={**TINY, "quantizer": quantizer})
    opt = torch.optim.Adam(module.model.parameters(), lr=3e-3)
    losses = []
    for _ in range(40):
        loss = module.ae_losses(scenes)["loss"]
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < 0.5 * losses[0], losses[::8]


def test_estimator_learns_the_frozen_autoencoder_psnr(images: torch.Tensor) -> None:
    torch.manual_seed(0)
    module = CATModule(config=TINY)
    before = [p.clone() for p in module.ema.parameters()]
    opt = torch.optim.Adam(module.model.estimator.parameters(), lr=1e-2)
    losses = []
    for _ in range(40):
        loss = module.estimator_loss(images)["loss"]
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < 0.5 * losses[0], losses[::8]
    assert all(torch.equal(a, b) for a, b in zip(before, module.ema.parameters())), "phase 2 must not move the autoencoder"


# ----------------------------------------------------------------------------------------- the shipped card


def test_shipped_checkpoint_meets_its_card(shipped: CAT) -> None:
    card = json.loads((SHIPPED / "config.json").read_text())["summary"]["metrics"]
    n = int(next(k for k in card if k.startswith("check_auto_psnr_first")).rsplit("first", 1)[1])
    x = images_to_tensor(mixed_val_set()["images"][:n])
    got = measure(shipped, x, (), check_images=n)
    assert got[f"check_psnr_r4_first{n}"] == pytest.approx(card[f"check_psnr_r4_first{n}"], abs=0.05)
    assert got[f"check_auto_psnr_first{n}"] == pytest.approx(card[f"check_auto_psnr_first{n}"], abs=0.05)
    # and the adaptive encode uses fewer tokens than the finest grid at a PSNR above the medium grid's
    t = shipped.encode(x)
    assert float(t.lengths.float().mean()) < 64
    assert got[f"check_auto_psnr_first{n}"] > got["psnr_r8"]


# ----------------------------------------------------------------------------------------- bad input


@pytest.mark.parametrize("bad, match", [
    (torch.rand(2, 3, 16, 8), "W must be 16"),
    (torch.rand(2, 3, 32, 32), "H must be 16"),
    (torch.rand(2, 1, 16, 16), "axis 1 must have size 3"),
    (torch.rand(2, 3, 16, 16) * 2, r"values must lie in \[0, 1\]"),
    (torch.randint(0, 2, (2, 3, 16, 16)), "floating"),
    (torch.full((2, 3, 16, 16), float("nan")), "NaN"),
])
def test_bad_images(tok: CAT, bad: torch.Tensor, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        tok.encode(bad)


@pytest.mark.parametrize("kwargs, match", [
    (dict(ratio=5), r"ratio \[5\] is not one of"),
    (dict(ratio="fine"), "ratio must be 'auto'"),
    (dict(ratio=True), "ratio must be 'auto'"),
    (dict(ratio=4.0), "ratio must be 'auto'"),
    (dict(ratio=torch.tensor([4, 8])), "one per image"),
    (dict(ratio=torch.full((6,), 4.0)), "one per image"),
    (dict(ratio=torch.tensor([4, 8, 3, 4, 4, 4])), r"ratio \[3\] is not one of"),
    (dict(ratio=8, quality=1e-3), "applies to ratio='auto' only"),
    (dict(search=True, min_gain_db=-0.1), "min_gain_db"),
    (dict(ratio="auto", min_gain_db=0.1), "min_gain_db"),
    (dict(search=True, min_gain_db=float("inf")), "min_gain_db"),
    (dict(quality=0.0), "quality is a target mean squared error"),
    (dict(quality=-1e-3), "quality is a target mean squared error"),
    (dict(quality=2.0), "quality is a target mean squared error"),
    (dict(quality=float("nan")), "quality is a target mean squared error"),
    (dict(quality=True), "quality is a target mean squared error"),
    (dict(quality="high"), "quality is a target mean squared error"),
])
def test_bad_budget(tok: CAT, images: torch.Tensor, kwargs: dict, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        tok.encode(images, **kwargs)


def test_bad_tokens() -> None:
    fsq, kl = tiny("fsq"), tiny("kl")
    x = torch.rand(2, 3, 16, 16)
    with pytest.raises(ValueError, match="decodes ids"):
        fsq.decode(kl.encode(x, ratio=4), force=True)  # past the provenance check, to the layout check
    with pytest.raises(ValueError, match="channels"):
        kl.decode(Tokens(ids=None, lengths=torch.full((2,), 16), latents=torch.zeros(2, 16, 6)))
    with pytest.raises(ValueError, match=r"ids must lie in \[0, 64000\)"):
        fsq.decode(Tokens(ids=torch.full((2, 16), 64000), lengths=torch.full((2,), 16)))
    with pytest.raises(ValueError, match="zoo.Tokens"):
        fsq.decode(torch.zeros(2, 16, dtype=torch.long))


def test_bad_config() -> None:
    with pytest.raises(ValueError, match="quantizer"):
        CATConfig(quantizer="vq")
    with pytest.raises(ValueError, match="twice the previous"):
        CATConfig(ratios=(4, 8, 32))
    with pytest.raises(ValueError, match=r"2 \*\* \(len\(channels\) - 1\)"):
        CATConfig(ratios=(8, 16, 32))
    with pytest.raises(ValueError, match="multiple of the coarsest ratio"):
        CATConfig(image_size=40)
    with pytest.raises(ValueError, match="multiples of 8"):
        CATConfig(channels=(12, 32, 128))
    with pytest.raises(ValueError, match="not a supported config name"):
        CATConfig.from_name("huge")
    assert CATConfig.from_name("tiny-kl").quantizer == "kl"


def test_the_recipe_runs_both_phases_and_exports(tmp_path) -> None:
    """A few Lightning steps: phase 1 moves the autoencoder, phase 2 only the estimator; the export loads."""
    import lightning.pytorch as pl

    from recipes.export import ExportTokenizer
    from recipes.image_data import ImageDataModule

    torch.manual_seed(0)
    module = CATModule(config=TINY, warmup_steps=1, ae_fraction=0.5, eval_qualities=(0.01,), check_images=8)
    phases: list[int] = []

    class Watch(pl.Callback):
        def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
            phases.append(pl_module.phase)
            if pl_module.phase == 2 and not hasattr(self, "ae"):
                self.ae = {n: p.clone() for n, p in pl_module.ema.named_parameters() if not n.startswith("estimator.")}
                self.est = [p.clone() for p in pl_module.ema.estimator.parameters()]

    watch = Watch()
    trainer = pl.Trainer(max_steps=8, logger=False, enable_checkpointing=False, enable_progress_bar=False,
                         enable_model_summary=False, limit_val_batches=0, accelerator="cpu",
                         callbacks=[watch, ExportTokenizer(str(tmp_path / "cat"), name="cat-test")])
    trainer.fit(module, ImageDataModule(train_size=64, resolution=16, val_size=16, batch_size=8))
    assert phases == [1] * 4 + [2] * 4, phases
    ema = dict(module.ema.named_parameters())
    assert all(torch.equal(ema[n], p) for n, p in watch.ae.items()), "phase 2 moved the autoencoder"
    assert any(not torch.equal(a, b) for a, b in zip(watch.est, module.ema.estimator.parameters())), "phase 2 left the estimator"
    back = hub.load(tmp_path / "cat")
    card = json.loads((tmp_path / "cat" / "config.json").read_text())["summary"]["metrics"]
    assert isinstance(back, CAT) and "psnr_r4" in card and "auto_tokens_q0.01" in card


def test_encoder_features_are_one_token_per_finest_cell(tok: CAT, images: torch.Tensor) -> None:
    f = tok.encoder_features(images)
    assert f.shape == (len(images), TOKENS[4], TINY["channels"][-1])
    with torch.no_grad():
        grid = tok.features(images * 2 - 1)  # (B, C, 4, 4)
    torch.testing.assert_close(f[:, 5], grid[:, :, 1, 1])  # row-major: token 5 is cell (1, 1)
    with pytest.raises(ValueError):
        tok.encoder_features(images * 3)
