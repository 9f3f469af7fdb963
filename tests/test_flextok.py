"""FlexTok: the prefix property, per-sample k, seeded decoding, training signal, bad input, the shipped card."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from zoo import hub, metrics
from zoo.image.flextok import PRESETS, FlexTok, FlexTokConfig
from zoo.tokenizer import Tokens

K = 8
TINY = dict(image_size=16, patch_size=4, num_registers=K, encoder_dim=32, encoder_depth=1, encoder_heads=2,
            decoder_dim=32, decoder_depth=1, decoder_heads=2, steps=3)
SHIPPED = hub.REPO_CHECKPOINTS / "flextok-tiny-nat32"


@pytest.fixture(scope="module")
def tok() -> FlexTok:
    torch.manual_seed(0)
    model = FlexTok(FlexTokConfig(**TINY)).eval()
    with torch.no_grad():  # the decoder starts as the zero map (adaLN-Zero); give it some signal to carry
        for p in model.parameters():
            p.add_(torch.randn_like(p) * 0.05)
    return model


@pytest.fixture(scope="module")
def images() -> torch.Tensor:
    return torch.rand(6, 3, 16, 16, generator=torch.Generator().manual_seed(1))


def test_encode_shapes_and_prefix_property(tok: FlexTok, images: torch.Tensor) -> None:
    full = tok.encode(images)
    assert full.ids.shape == (6, K) and full.lengths.tolist() == [K] * 6
    assert int(full.ids.min()) >= 0 and int(full.ids.max()) < tok.spec.vocab_size == 64000
    for k in range(1, K + 1):
        t = tok.encode(images, num_tokens=k)
        assert t.ids.shape == (6, k)
        assert torch.equal(t.ids, full.ids[:, :k]), f"the first {k} tokens must not depend on the budget"


def test_per_sample_budget(tok: FlexTok, images: torch.Tensor) -> None:
    ks = torch.tensor([1, 3, K, 2, 5, K])
    t = tok.encode(images, num_tokens=ks)
    assert t.lengths.tolist() == ks.tolist() and t.ids.shape == (6, K)
    full = tok.encode(images)
    assert torch.equal(t.ids[t.mask], full.ids[t.mask])
    assert int(t.ids[~t.mask].abs().sum()) == 0  # padding is zeros


@pytest.mark.parametrize("k", range(1, K + 1))
def test_every_prefix_decodes(tok: FlexTok, images: torch.Tensor, k: int) -> None:
    x_hat = tok.decode(tok.encode(images, num_tokens=k))
    assert x_hat.shape == images.shape
    assert bool(torch.isfinite(x_hat).all()) and float(x_hat.min()) >= 0 and float(x_hat.max()) <= 1


def test_mixed_k_batch_matches_uniform_batches(tok: FlexTok, images: torch.Tensor) -> None:
    """Padding and masking a mixed batch gives what decoding each k alone (same noise) gives."""
    ks = torch.tensor([1, 3, K, 2, 5, K])
    mixed = tok.decode(tok.encode(images, num_tokens=ks), seed=3)
    for i, k in enumerate(ks.tolist()):
        alone = tok.decode(tok.encode(images, num_tokens=k), seed=3)
        torch.testing.assert_close(mixed[i], alone[i], atol=1e-5, rtol=0)


def test_a_prefix_of_tokens_decodes_like_a_short_encode(tok: FlexTok, images: torch.Tensor) -> None:
    full = tok.encode(images)
    cut = Tokens(ids=full.ids, lengths=torch.full((6,), 3))
    torch.testing.assert_close(tok.decode(cut, seed=0), tok.decode(tok.encode(images, num_tokens=3), seed=0))


def test_dropped_codes_reach_neither_the_readout_nor_the_decoder(tok: FlexTok) -> None:
    """Our linear paths (read-out, slot mixing) must treat a code past a sample's length as absent."""
    g = torch.Generator().manual_seed(2)
    codes = torch.rand(2, K, 6, generator=g) * 2 - 1
    other = codes.clone()
    other[0, 3:] = -other[0, 3:]  # only codes that sample 0 drops
    lengths = torch.tensor([3, K])
    z, t = torch.randn(2, 3, 16, 16, generator=g), torch.tensor([0.0, 0.5])
    with torch.no_grad():
        torch.testing.assert_close(tok.readout(other, lengths), tok.readout(codes, lengths))
        torch.testing.assert_close(tok.denoise(z, t, other, lengths), tok.denoise(z, t, codes, lengths))
        assert not torch.allclose(tok.readout(other, lengths.fill_(K)), tok.readout(codes, lengths))
        assert not torch.allclose(tok.denoise(z, t, other, lengths), tok.denoise(z, t, codes, lengths))
    fresh = FlexTok(FlexTokConfig(**TINY))
    with torch.no_grad():  # zero-init: the read-out starts as a constant image, whatever the codes
        r = fresh.readout(codes, torch.tensor([3, K]))
    torch.testing.assert_close(r[0], r[1])


def test_official_presets_have_none_of_our_additions() -> None:
    for name in ("d12-d12", "d18-d18"):
        c = FlexTokConfig.from_name(name)
        assert not (c.pooled_condition or c.token_mixing or c.linear_readout or c.code_norm), name
    plain = FlexTok(FlexTokConfig(**TINY, pooled_condition=False, token_mixing=False, linear_readout=False, code_norm=False))
    assert plain.readout(torch.zeros(1, 2, 6), torch.tensor([2])) is None
    names = {n.split(".")[0] for n, _ in plain.named_parameters()}
    assert not names & {"patch_to_register", "slot_to_patch", "linear_head", "coarse_patch", "code_norm", "pool_proj"}


@pytest.mark.parametrize("name", sorted(PRESETS))
def test_every_preset_builds_and_runs(name: str) -> None:
    """Every named preset's blocks construct and run (one block per stack keeps the big ones cheap)."""
    config = FlexTokConfig.from_name(name, encoder_depth=1, decoder_depth=1)
    model = FlexTok(config).eval()
    b, k = 2, min(4, config.num_registers)
    x = torch.rand(b, config.in_channels, config.image_size, config.image_size)
    with torch.no_grad():
        codes, ids = model.quantize(x * 2 - 1, k)
        out = model.denoise(x, torch.rand(b), codes, torch.tensor([k, 1]))
    assert ids.shape == (b, k) and out.shape == x.shape and bool(torch.isfinite(out).all())


def test_encoder_features_are_the_patch_tokens_of_a_full_encode(tok: FlexTok, images: torch.Tensor) -> None:
    from einops import repeat

    from zoo.nn.transformer import prefix_causal_mask

    f = tok.encoder_features(images)
    n, k = tok.config.num_patches, tok.config.num_registers
    assert f.shape == (len(images), n, tok.config.encoder_dim)
    with torch.no_grad():
        seq = torch.cat([tok.enc_patch(images * 2 - 1) + tok.enc_pos,
                         repeat(tok.registers, "k d -> b k d", b=len(images))], 1)
        full = tok.encoder(seq, prefix_causal_mask(n, k))
    torch.testing.assert_close(f, full[:, :n], atol=1e-5, rtol=1e-5)
    with pytest.raises(ValueError):
        tok.encoder_features(images[:, :, :8])


def test_seeded_decode_is_reproducible(tok: FlexTok, images: torch.Tensor) -> None:
    t = tok.encode(images, num_tokens=4)
    a, b = tok.decode(t, seed=7), tok.decode(t, seed=7)
    assert torch.equal(a, b)
    assert not torch.allclose(a, tok.decode(t, seed=8))
    torch.manual_seed(123)
    assert torch.equal(a, tok.decode(t, seed=7)), "a seeded decode must not depend on the global RNG"


def test_a_seed_decodes_an_image_the_same_alone_or_in_a_batch(tok: FlexTok, images: torch.Tensor) -> None:
    t = tok.encode(images, num_tokens=3)
    batch = tok.decode(t, seed=5)
    torch.testing.assert_close(batch[2:3], tok.decode(t[2], seed=5), atol=1e-5, rtol=0)
    per_image = tok.decode(t, seed=torch.arange(6))
    torch.testing.assert_close(per_image[4:5], tok.decode(t[4], seed=torch.tensor([4])), atol=1e-5, rtol=0)
    assert not torch.allclose(per_image[0], per_image[1]) or not torch.equal(t.ids[0], t.ids[1])
    with pytest.raises(ValueError, match="seed"):
        tok.decode(t, seed=torch.arange(2))


def test_guidance_and_steps_change_the_output(tok: FlexTok, images: torch.Tensor) -> None:
    t = tok.encode(images, num_tokens=2)
    plain = tok.decode(t, guidance=1.0)
    assert not torch.allclose(plain, tok.decode(t, guidance=3.0))
    assert not torch.allclose(plain, tok.decode(t, steps=1))


def test_save_load_round_trip(tok: FlexTok, images: torch.Tensor, tmp_path: Path) -> None:
    tok.save_pretrained(tmp_path / "ft")
    back = hub.load(tmp_path / "ft")
    assert isinstance(back, FlexTok) and back.config == tok.config
    t = tok.encode(images, num_tokens=5)
    assert torch.equal(back.encode(images, num_tokens=5).ids, t.ids)
    assert torch.equal(back.decode(t, seed=1), tok.decode(t, seed=1))


@pytest.mark.parametrize("bad, match", [
    (torch.rand(2, 3, 16, 8), "W must be 16"),
    (torch.rand(2, 3, 32, 32), "H must be 16"),
    (torch.rand(2, 1, 16, 16), "axis 1 must have size 3"),
    (torch.rand(2, 3, 16, 16) * 2, r"values must lie in \[0, 1\]"),
    (torch.rand(2, 3, 16, 16) - 1, r"values must lie in \[0, 1\]"),
    (torch.randint(0, 2, (2, 3, 16, 16)), "floating"),
])
def test_bad_images(tok: FlexTok, bad: torch.Tensor, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        tok.encode(bad)


@pytest.mark.parametrize("k", [0, K + 1, -1, 2.5, True, torch.tensor([1, 2]), torch.tensor([0, 1, 1, 1, 1, 1]),
                               torch.full((6,), K + 1), torch.full((6,), 2.0)])
def test_bad_budget(tok: FlexTok, images: torch.Tensor, k: object) -> None:
    with pytest.raises(ValueError, match="num_tokens"):
        tok.encode(images, num_tokens=k)


def test_bad_decode_arguments(tok: FlexTok, images: torch.Tensor) -> None:
    t = tok.encode(images, num_tokens=2)
    with pytest.raises(ValueError, match="steps"):
        tok.decode(t, steps=0)
    with pytest.raises(ValueError, match="guidance"):
        tok.decode(t, guidance=-1.0)
    with pytest.raises(ValueError, match=r"ids must lie in \[0, 64000\)"):
        tok.decode(Tokens(ids=torch.full((6, 2), 64000), lengths=torch.full((6,), 2)))
    with pytest.raises(ValueError, match="lengths must lie in"):
        tok.decode(Tokens(ids=torch.zeros(6, 2, dtype=torch.long), lengths=torch.zeros(6, dtype=torch.long)))


def test_bad_config() -> None:
    with pytest.raises(ValueError, match="multiple of patch_size"):
        FlexTokConfig(image_size=30, patch_size=8)
    with pytest.raises(ValueError, match="heads"):
        FlexTokConfig(decoder_dim=96, decoder_heads=5)
    with pytest.raises(ValueError, match="not a supported config name"):
        FlexTokConfig.from_name("huge")
    assert FlexTokConfig.from_name("d12-d12").num_registers == 256


def test_loss_falls_when_overfitting_a_tiny_batch() -> None:
    from recipes.flextok import FlexTokModule

    torch.manual_seed(0)
    module = FlexTokModule(config=TINY, p_uncond=0.0, nested_dropout=True)
    from zoo.data.images import build_image_dataset, images_to_tensor

    images = images_to_tensor(build_image_dataset("train", 8, resolution=16)["images"])

    def fixed_loss() -> float:
        with torch.no_grad(), torch.random.fork_rng():
            torch.manual_seed(0)
            return sum(float(module.flow_loss(images, k)) for k in (1, 4, K)) / 3

    before = fixed_loss()
    opt = torch.optim.AdamW(module.model.parameters(), lr=3e-3)
    for _ in range(150):
        loss = module.flow_loss(images, module.sample_prefix())
        opt.zero_grad()
        loss.backward()
        opt.step()
    after = fixed_loss()
    assert after < 0.5 * before, (before, after)


def test_loss_parts_and_readout_weight() -> None:
    from recipes.flextok import FlexTokModule

    images = torch.rand(4, 3, 16, 16, generator=torch.Generator().manual_seed(3))
    parts = {}
    for w in (0.0, 2.0):
        torch.manual_seed(0)
        module = FlexTokModule(config=TINY, readout_weight=w)
        with torch.no_grad():
            torch.manual_seed(1)
            parts[w] = module.losses(images, 3)
    assert float(parts[0.0]["readout"]) > 0
    torch.testing.assert_close(parts[0.0]["loss"], parts[0.0]["flow"])
    torch.testing.assert_close(parts[2.0]["loss"], parts[2.0]["flow"] + 2.0 * parts[2.0]["readout"])
    torch.testing.assert_close(parts[2.0]["flow"], parts[0.0]["flow"])


def test_shared_blocks() -> None:
    from zoo.nn import Patchify, Unpatchify, prefix_causal_mask

    mask = prefix_causal_mask(3, 4)
    assert mask[:3, :3].all() and not mask[:3, 3:].any()  # free tokens never see the causal ones
    assert mask[3:, :3].all() and torch.equal(mask[3:, 3:], torch.ones(4, 4, dtype=torch.bool).tril())
    patch, unpatch = Patchify(3, 4, 48), Unpatchify(48, 4, 3)
    with torch.no_grad():  # identity maps: the layouts must be exact inverses
        patch.proj.weight.copy_(torch.eye(48))
        patch.proj.bias.zero_()
        unpatch.proj.weight.copy_(torch.eye(48))
        unpatch.proj.bias.zero_()
    x = torch.rand(2, 3, 8, 12)
    tokens = patch(x)
    assert tokens.shape == (2, 6, 48)
    torch.testing.assert_close(unpatch(tokens, (2, 3)), x)


def test_prefix_sampling_covers_every_k() -> None:
    from recipes.flextok import FlexTokModule

    torch.manual_seed(0)
    module = FlexTokModule(config=TINY)
    seen = {module.sample_prefix() for _ in range(2000)}
    assert seen == set(range(1, K + 1))
    assert {FlexTokModule(config=TINY, nested_dropout=False).sample_prefix() for _ in range(20)} == {K}
    big = dict(TINY, num_registers=64)
    modules = {u: FlexTokModule(config=big, uniform_prefix=u) for u in (0.0, 1.0)}
    mean = {u: sum(m.sample_prefix() for _ in range(3000)) / 3000 for u, m in modules.items()}
    assert abs(mean[1.0] - 32.5) < 2 and mean[0.0] < 20, mean  # uniform vs log-uniform over 1..64


@pytest.mark.parametrize("steps", [1, 8])
def test_card_description_counts_steps(steps: int) -> None:
    from recipes.flextok import FlexTokModule

    text = FlexTokModule(config=dict(TINY, steps=steps)).card_summary()["description"]
    assert f"({steps} Euler {'step' if steps == 1 else 'steps'} by default)" in text


@pytest.mark.skipif(not (SHIPPED / "config.json").is_file(), reason="checkpoint not shipped yet")
def test_shipped_checkpoint_keeps_its_ids() -> None:
    """Speed work must not change what the shipped model emits (ids recorded by scripts/make_flextok_ids_fixture.py)."""
    from safetensors.torch import load_file

    ref = load_file(str(Path(__file__).parent / "fixtures" / "flextok_tiny_nat32_ids.safetensors"))
    tok = hub.load("flextok-tiny-nat32")
    images = ref["pixels"].float() / 255
    assert torch.equal(tok.encode(images).ids, ref["ids"])
    assert torch.equal(tok.encode(images, num_tokens=8).ids, ref["ids"][:, :8])


@pytest.mark.skipif(not (SHIPPED / "config.json").is_file(), reason="checkpoint not shipped yet")
def test_shipped_checkpoint_reaches_its_card() -> None:
    from zoo.data.images import images_to_tensor, mixed_val_set

    summary = json.loads((SHIPPED / "config.json").read_text())["summary"]
    tok = hub.load("flextok-tiny-nat32")
    k_max = tok.config.num_registers
    key = next(k for k in summary["metrics"] if k.startswith(f"check_psnr_k{k_max}_first"))
    n = int(key.rsplit("first", 1)[1])
    images = images_to_tensor(mixed_val_set(256)["images"][:n])
    steps = int(summary["metrics"]["decode_steps"])
    x_hat = tok.decode(tok.encode(images, num_tokens=k_max), steps=steps, seed=0)
    got = float(metrics.psnr(x_hat, images).mean())
    assert abs(got - summary["metrics"][key]) < 0.2, (got, summary["metrics"][key])
