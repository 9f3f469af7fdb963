"""LARP: any number of tokens, the prefix property, deterministic vs sampled SVQ, the prior's gradient,
the training signal, bad input, video files, and the shipped checkpoint's card."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from zoo import hub, metrics
from zoo.video.larp import LARP, SVQ, LARPConfig

SHIPPED = hub.REPO_CHECKPOINTS / "larp-tiny-motion32"
MICRO = dict(frames=8, image_size=16, max_tokens=6, dim=32, encoder_depth=1, decoder_depth=1, heads=2,
             codebook_size=32, code_dim=8)
N = MICRO["max_tokens"]


@pytest.fixture(scope="module")
def tok() -> LARP:
    torch.manual_seed(0)
    return LARP(LARPConfig(**MICRO)).eval()


@pytest.fixture(scope="module")
def videos() -> torch.Tensor:
    return torch.rand(3, 3, 8, 16, 16, generator=torch.Generator().manual_seed(0))


@pytest.mark.parametrize("n", [1, 3, N])
def test_round_trip_for_any_number_of_tokens(tok: LARP, videos: torch.Tensor, n: int) -> None:
    t = tok.encode(videos, num_tokens=n)
    assert t.ids.shape == (3, n) and t.lengths.tolist() == [n] * 3 and t.latents.shape == (3, n, 8)
    assert int(t.ids.min()) >= 0 and int(t.ids.max()) < 32
    y = tok.decode(t)
    assert y.shape == videos.shape and 0 <= float(y.min()) and float(y.max()) <= 1
    # a prefix of a full encode is the short encode, and decodes to the same clip
    full = tok.encode(videos)
    assert torch.equal(full.ids[:, :n], t.ids)
    short = type(full)(ids=full.ids[:, :n], lengths=torch.full((3,), n))
    torch.testing.assert_close(tok.decode(short), y)


def test_per_clip_token_counts_match_uniform_batches(tok: LARP, videos: torch.Tensor) -> None:
    counts = torch.tensor([1, N, 3])
    t = tok.encode(videos, num_tokens=counts)
    assert t.lengths.tolist() == counts.tolist() and (t.ids[0, 1:] == 0).all()
    y = tok.decode(t)
    for i, n in enumerate(counts.tolist()):
        torch.testing.assert_close(y[i:i + 1], tok.decode(tok.encode(videos[i:i + 1], num_tokens=n)), atol=1e-5, rtol=0)


def test_eval_encode_is_deterministic_and_sampling_is_explicit(videos: torch.Tensor) -> None:
    torch.manual_seed(0)
    hot = LARP(LARPConfig(**{**MICRO, "temperature": 1.0})).eval()  # a flat softmax: samples differ from the argmax
    a, b = hot.encode(videos), hot.encode(videos)
    assert torch.equal(a.ids, b.ids)
    torch.manual_seed(1)
    s1 = hot.encode(videos, sample=True)
    torch.manual_seed(1)
    s2 = hot.encode(videos, sample=True)
    assert torch.equal(s1.ids, s2.ids) and not torch.equal(s1.ids, a.ids)
    hot.train()  # training mode does not switch sampling on behind the caller's back
    assert torch.equal(hot.encode(videos).ids, a.ids)


def test_svq_argmax_is_the_nearest_code_in_angle() -> None:
    torch.manual_seed(0)
    svq = SVQ(16, 4, temperature=0.03)
    z = torch.randn(2, 5, 4)
    codes, ids, zn = svq(z, sample=False)
    cos = torch.nn.functional.normalize(z, dim=-1) @ svq.codebook.t()
    assert torch.equal(ids, cos.argmax(-1))
    torch.testing.assert_close(codes, svq.lookup(ids))  # forward value is the code, gradient goes to z
    assert torch.allclose(zn.norm(dim=-1), torch.ones(2, 5)) and torch.allclose(codes.norm(dim=-1), torch.ones(2, 5))


def _module(config: dict | None = None, **kwargs):
    from recipes.larp import LARPModule

    torch.manual_seed(0)
    return LARPModule(config=config or MICRO, prior_dim=32, prior_depth=1, prior_heads=2, **kwargs)


def test_the_prior_gradient_reaches_the_encoder(videos: torch.Tensor) -> None:
    module = _module(ss_peak=1e-9)  # the second round mixes in sampled tokens from the start
    model = module.model
    codes, ids, _ = model.quantize(videos * 2 - 1, N, sample=True)
    loss, _ = module.prior_loss(codes, ids)
    loss.backward()
    for name in ("queries", "patch_embed.weight", "to_code.weight"):
        grad = model.get_parameter(name).grad
        assert grad is not None and float(grad.abs().sum()) > 0, name
    assert model.decoder.blocks[0].mlp.fc1.weight.grad is None  # the prior's loss touches only the encoder
    assert all(p.grad is not None for p in module.prior.parameters())
    assert not any("prior" in k for k in module.tokenizer.state_dict())  # discarded at export

    ablation = _module(prior_weight=0.0)  # the prior still learns, but on detached tokens: it shapes nothing
    ablation.losses(videos)[0]["prior"].backward()
    assert ablation.model.queries.grad is None and ablation.model.to_code.weight.grad is None
    assert all(p.grad is not None for p in ablation.prior.parameters())


def test_dead_codes_are_restarted_on_encoder_outputs() -> None:
    module = _module(restart_threshold=0.5, restart_decay=0.0)
    ids = torch.zeros(2, N, dtype=torch.long)  # only code 0 is used
    z = torch.nn.functional.normalize(torch.randn(2, N, 8), dim=-1)
    before = module.model.svq.embed.detach().clone()
    assert module.restart_dead_codes(ids, z) == 31
    after = module.model.svq.embed.detach()
    assert torch.equal(after[0], before[0]) and not torch.equal(after[1:], before[1:])
    nearest = (torch.nn.functional.normalize(after[1:], dim=-1) @ z.reshape(-1, 8).t()).max(1).values
    assert (nearest > 0.99).all()  # each restarted code sits on one of the batch's encoder outputs
    assert _module(restart_threshold=0.0).restart_dead_codes(ids, z) == 0


def test_scheduled_sampling_ratio_rises_to_its_maximum() -> None:
    module = _module(ss_max_ratio=0.5, ss_peak=0.3, budget_seconds=100.0)
    module.start_time = None
    assert module.ss_ratio() == 0.0
    import time

    module.start_time = time.monotonic() - 15  # 15% of the budget
    assert 0.2 < module.ss_ratio() < 0.3
    module.start_time = time.monotonic() - 60
    assert module.ss_ratio() == 0.5


def test_loss_falls_when_overfitting_a_tiny_batch() -> None:
    from zoo.data.video import build_video_dataset, videos_to_tensor

    module = _module(nested_dropout=False)
    video = videos_to_tensor(build_video_dataset("train", 4, frames=8, resolution=16)["videos"])
    opt = torch.optim.AdamW([*module.model.parameters(), *module.prior.parameters()], lr=3e-3)

    def fixed() -> tuple[float, float]:
        with torch.no_grad(), torch.random.fork_rng():
            torch.manual_seed(0)
            losses = module.losses(video)[0]
            return float(module.total(losses)), float(losses["prior"])

    before, prior_before = fixed()
    for _ in range(80):
        loss = module.total(module.losses(video)[0])
        opt.zero_grad()
        loss.backward()
        opt.step()
    after, prior_after = fixed()
    assert after < 0.5 * before, (before, after)
    assert prior_after < prior_before, (prior_before, prior_after)


@pytest.mark.parametrize("bad, match", [
    (torch.rand(2, 3, 7, 16, 16), "axis T must be 8"),
    (torch.rand(2, 3, 8, 16, 12), "axis W must be 16"),
    (torch.rand(2, 3, 8, 16, 16) * 2, r"values must lie in \[0, 1\]"),
    (torch.rand(2, 3, 8, 16), "must have 5 axes"),
    (torch.rand(2, 1, 8, 16, 16), "axis 1 must have size 3"),
    (torch.full((1, 3, 8, 16, 16), float("nan")), "NaN"),
    (torch.zeros(1, 3, 8, 16, 16, dtype=torch.uint8), "floating"),
])
def test_bad_videos(tok: LARP, bad: torch.Tensor, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        tok.encode(bad)


@pytest.mark.parametrize("n", [0, N + 1, 2.5, True, torch.tensor([1, 2]), torch.tensor([1.0, 2.0, 3.0])])
def test_bad_budgets(tok: LARP, videos: torch.Tensor, n: object) -> None:
    with pytest.raises(ValueError, match="num_tokens"):
        tok.encode(videos, num_tokens=n)


def test_bad_decode_and_config_arguments(tok: LARP, videos: torch.Tensor) -> None:
    with pytest.raises(ValueError, match="sample"):
        tok.encode(videos, sample="yes")
    t = tok.encode(videos)
    with pytest.raises(ValueError, match=r"must lie in \[0, 32\)"):
        tok.decode(type(t)(ids=t.ids + 100, lengths=t.lengths))
    with pytest.raises(ValueError, match="zoo.Tokens"):
        tok.decode(t.ids)
    with pytest.raises(ValueError, match="lengths must lie"):  # more tokens than the model has
        tok.decode(type(t)(ids=torch.zeros(3, N + 2, dtype=torch.long), lengths=torch.full((3,), N + 2)))
    for bad in (dict(frames=10), dict(image_size=20), dict(max_tokens=0), dict(dim=36), dict(temperature=0.0)):
        with pytest.raises(ValueError):
            LARPConfig(**{**MICRO, **bad})
    with pytest.raises(ValueError, match="not a supported config name"):
        LARPConfig.from_name("huge")
    assert LARPConfig.from_name("larp-l").max_tokens == 1024 and not LARPConfig.from_name("larp-s").causal_queries


def test_video_files_round_trip(tmp_path: Path) -> None:
    from zoo.data.video import shapes_clip, videos_to_tensor
    from zoo.io import read_input, write_output

    x = videos_to_tensor(shapes_clip(7, frames=8, resolution=16)[0])[None]  # few colours: a GIF keeps them exactly
    for suffix, tol in ((".npy", 0.0), (".gif", 0.0), (".mp4", 0.1)):
        write_output(tmp_path / f"clip{suffix}", x, "video")
        y = read_input(tmp_path / f"clip{suffix}", "video")
        assert y.shape == x.shape, suffix
        assert float((y - x).abs().mean()) <= tol / 10 and float((y - x).abs().max()) <= tol + 1e-6, suffix
    with pytest.raises(ValueError, match="videos are written as"):
        write_output(tmp_path / "clip.avi", x, "video")
    with pytest.raises(ValueError, match="one clip"):
        write_output(tmp_path / "two.gif", torch.cat([x, x]), "video")
    (tmp_path / "junk.mp4").write_bytes(b"not a video")
    with pytest.raises(ValueError, match="not a readable video"):
        read_input(tmp_path / "junk.mp4", "video")


def test_shipped_checkpoint_reaches_its_card() -> None:
    from zoo.data.video import val_clips, videos_to_tensor

    summary = json.loads((SHIPPED / "config.json").read_text())["summary"]
    tok = hub.load("larp-tiny-motion32")
    n_max = tok.config.max_tokens
    key = next(k for k in summary["metrics"] if k.startswith(f"check_psnr_n{n_max}_first"))
    n = int(key.rsplit("first", 1)[1])
    clips = videos_to_tensor(val_clips(int(summary["metrics"]["val_clips"]))["videos"][:n])
    got = float(metrics.psnr(tok.decode(tok.encode(clips)), clips).mean())
    assert abs(got - summary["metrics"][key]) < 0.05, (got, summary["metrics"][key])
    # all the tokens reconstruct better than one
    assert summary["metrics"][f"psnr_n{n_max}"] > summary["metrics"]["psnr_n1"]
    assert np.isfinite(summary["metrics"]["codebook_perplexity"]) and summary["metrics"]["codebook_perplexity"] > 1


def test_full_attention_queries_cut_prefixes_from_a_full_encode(videos: torch.Tensor) -> None:
    torch.manual_seed(0)
    tok = LARP(LARPConfig(**{**MICRO, "causal_queries": False})).eval()
    full = tok.encode(videos)
    assert torch.equal(tok.encode(videos, num_tokens=2).ids, full.ids[:, :2])
    assert tok.decode(tok.encode(videos, num_tokens=2)).shape == videos.shape


def test_linear_paths_read_only_the_kept_tokens(videos: torch.Tensor) -> None:
    torch.manual_seed(0)
    tok = LARP(LARPConfig(**MICRO)).eval()
    torch.nn.init.normal_(tok.linear_codes.weight, std=0.5)  # zero at init: make the read-out matter
    full = tok.encode(videos)
    n = 2
    kept = type(full)(ids=full.ids[:, :n], lengths=torch.full((3,), n))
    other = full.ids.clone()
    other[:, n:] = (other[:, n:] + 1) % MICRO["codebook_size"]  # change every token past the length
    padded = type(full)(ids=other, lengths=torch.full((3,), n))
    torch.testing.assert_close(tok.decode(padded), tok.decode(kept))
    # ...while each kept token does reach the pixels through both the attention and the linear paths
    changed = full.ids.clone()
    changed[:, n - 1] = (changed[:, n - 1] + 1) % MICRO["codebook_size"]
    assert not torch.allclose(tok.decode(type(full)(ids=changed, lengths=torch.full((3,), n))), tok.decode(kept))
    codes = tok.svq.lookup(full.ids)
    with torch.no_grad():
        with_linear = tok.decode_codes(codes)
        tok.linear_codes.weight.zero_()
        assert not torch.allclose(tok.decode_codes(codes), with_linear)


def test_official_shape_presets_have_no_linear_paths() -> None:
    c = LARPConfig.from_name("larp-s")
    assert not c.token_mixing and c.linear_rank == 0 and not c.causal_queries
    with pytest.raises(ValueError, match="linear_rank"):
        LARPConfig(linear_rank=-1)


def test_svq_takes_the_argmax_until_its_share_of_the_budget(videos: torch.Tensor) -> None:
    import time

    module = _module(argmax_until=0.5, budget_seconds=100.0, config={**MICRO, "temperature": 5.0})
    module.start_time = time.monotonic()  # 0% of the budget: argmax, although τ=5 makes sampling near uniform
    ids = module.losses(videos)[2]
    nearest = module.model.quantize(videos * 2 - 1, N, sample=False)[1]
    assert torch.equal(ids, nearest)
    module.start_time = time.monotonic() - 60  # 60%: sampled
    torch.manual_seed(0)
    assert not torch.equal(module.losses(videos)[2], nearest)
    with pytest.raises(ValueError, match="argmax_until"):
        _module(argmax_until=1.5)


def test_benchmark_pca_reference_rises_with_its_rank() -> None:
    from benchmarks.larp import pca_psnr

    g = torch.Generator().manual_seed(0)
    basis = torch.rand(6, 3 * 4 * 8 * 8, generator=g)  # clips built from 6 patterns: rank 6 reconstructs them
    clips = (torch.rand(40, 6, generator=g) @ basis / 6).view(40, 3, 4, 8, 8)
    got = pca_psnr(clips[:30], clips[30:], (1, 3, 6))
    assert got[1] < got[3] < got[6] and got[6] > 60, got


def test_conv_front_and_back_end_keep_any_prefix_and_start_as_the_linear_decoder(videos: torch.Tensor) -> None:
    torch.manual_seed(0)
    tok = LARP(LARPConfig(**{**MICRO, "conv_channels": 8})).eval()
    assert not any("conv" in k for k in LARP(LARPConfig(**MICRO)).state_dict())  # off by default: old checkpoints load
    full = tok.encode(videos)
    for n in (1, N):
        t = tok.encode(videos, num_tokens=n)
        assert torch.equal(t.ids, full.ids[:, :n]) and tok.decode(t).shape == videos.shape
    features = torch.randn(3, 8, MICRO["frames"], 8, 8)  # (B, c, T, S/2, S/2)
    assert tok.conv_out(features).shape == videos.shape and not tok.conv_out(features).any()  # a new back-end adds 0
    # the reconstruction's gradient reaches the conv front-end and the back-end
    tok.train()
    x = videos * 2 - 1
    loss = torch.nn.functional.mse_loss(tok.decode_codes(tok.quantize(x, N)[0]), x)
    loss.backward()
    assert float(tok.conv_in.net[0].weight.grad.abs().sum()) > 0
    assert float(tok.conv_out.net[-1].weight.grad.abs().sum()) > 0
    with pytest.raises(ValueError, match="conv_channels"):
        LARPConfig(conv_channels=3)
    with pytest.raises(ValueError, match="patch_size"):
        LARPConfig(conv_channels=8, image_size=30, patch_size=5)


def test_full_prefix_sets_the_share_of_steps_that_decode_every_token() -> None:
    torch.manual_seed(0)
    assert {_module(full_prefix=1.0).sample_prefix() for _ in range(20)} == {N}
    half = _module(full_prefix=0.5)
    draws = [half.sample_prefix() for _ in range(200)]
    assert 0.4 < sum(n == N for n in draws) / len(draws) < 0.75 and min(draws) < N
    with pytest.raises(ValueError, match="full_prefix"):
        _module(full_prefix=1.5)


# ----------------------------------------------------------------------------------------- the official release

RELEASE = Path(__file__).parent / "fixtures" / "larp_official"  # made by scripts/make_larp_fixture.py


def _release_io() -> dict[str, torch.Tensor]:
    from safetensors.torch import load_file

    return load_file(str(RELEASE / "io.safetensors"))


def test_official_release_converts_to_identical_ids_and_decodes(tmp_path: Path) -> None:
    assert LARP.is_release(RELEASE) and LARP.is_release(RELEASE / "model.safetensors")
    tok = LARP.from_release(RELEASE)
    io = _release_io()
    t = tok.encode(io["videos"])
    assert torch.equal(t.ids, io["ids"]) and len(set(io["ids"].flatten().tolist())) > 5
    decoded = tok.decode(t)
    torch.testing.assert_close(decoded, io["decoded"].clamp(0, 1), atol=1e-5, rtol=0)
    # what the converted model holds is the official tensors, prior dropped, token-type embeddings folded
    from safetensors.torch import load_file

    official = load_file(str(RELEASE / "model.safetensors"))
    assert any(k.startswith("prior_model.") for k in official)
    assert not any("prior" in k for k in tok.state_dict())
    assert not hasattr(tok.encoder.norm, "weight") and tok.decoder.norm.eps == 1e-6
    assert tok.encoder.blocks[0].attn.qkv.bias is None
    # saved in our format, it loads back to the same model
    torch.testing.assert_close(LARP.from_pretrained(tok.save_pretrained(tmp_path / "larp")).decode(t), decoded)


def test_release_decodes_from_all_tokens_only() -> None:
    tok = LARP.from_release(RELEASE)
    io = _release_io()
    n = tok.config.max_tokens
    with pytest.raises(ValueError, match=f"all {n} tokens only"):
        tok.encode(io["videos"], num_tokens=n // 2)
    with pytest.raises(ValueError, match="without nested token dropout"):
        tok.decode(type(tok.encode(io["videos"]))(ids=io["ids"][:, :4], lengths=torch.full((3,), 4)))
    assert tok.encode(io["videos"], num_tokens=n).ids.shape == (3, n)


def test_release_converter_refuses_what_it_does_not_map(tmp_path: Path) -> None:
    import shutil

    assert not LARP.is_release(tmp_path) and not LARP.is_release(SHIPPED)
    with pytest.raises(ValueError, match="not an official LARP tokenizer release"):
        LARP.from_release(tmp_path)
    shutil.copy(RELEASE / "model.safetensors", tmp_path / "model.safetensors")
    args = json.loads((RELEASE / "config.json").read_text())
    for key, value in (("learned_encoder_patch_pe", True), ("decoder_patch_size", 8), ("transformer_name", "x")):
        (tmp_path / "config.json").write_text(json.dumps({**args, key: value}))
        with pytest.raises(ValueError, match="does not map"):
            LARP.from_release(tmp_path)


def test_official_position_table_matches_the_release_buffers() -> None:
    from safetensors.torch import load_file

    from zoo.video.larp import official_pos_embed_3d

    official = load_file(str(RELEASE / "model.safetensors"))
    table = official_pos_embed_3d(32, (2, 4, 4))
    torch.testing.assert_close(official["encoder_patch_pe"][0], table, atol=1e-6, rtol=0)
    torch.testing.assert_close(official["decoder_patch_query_embed"][0], table, atol=1e-6, rtol=0)


def test_larp_l_parameter_count_matches_the_release() -> None:
    # the release page states 173M for LARP-L-Long-tokenizer (hywang66/LARP README); the prior is not counted
    with torch.device("meta"):
        tok = LARP(LARPConfig.from_name("larp-l"))
    count = sum(p.numel() for p in tok.parameters())
    assert round(count / 1e6) == 173, count


def test_larp_l_long_downloads_converts_and_loads_from_a_local_fake_hub(tmp_path: Path) -> None:
    """`zoo.load("larp-l-long")` against a loopback hub serving the fixture under the release's repo name."""
    from tests.fakehub import load_release_from_fake_hub

    code = ("import torch, zoo; from safetensors.torch import load_file; "
            "io = load_file('tests/fixtures/larp_official/io.safetensors'); tok = zoo.load('larp-l-long'); "
            "print(tok.family, torch.equal(tok.encode(io['videos']).ids, io['ids']))")
    out, requests = load_release_from_fake_hub("hywang66/LARP-L-long-tokenizer", RELEASE, ("config.json", "model.safetensors"),
                                               code, tmp_path)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["larp", "True"]
    assert any("model.safetensors" in r for r in requests)


def test_recipe_fine_tunes_from_a_checkpoint(tok: LARP, tmp_path: Path) -> None:
    """`init_from` (how larp-tiny-motion32 was fine-tuned on the sources of issue 20) starts from the saved weights;
    its config replaces the preset's, and the prior starts afresh."""
    module = _module(config={**MICRO, "max_tokens": 3}, init_from=str(tok.save_pretrained(tmp_path / "larp")))
    assert module.model.config == tok.config and module.prior.pos.shape[0] == tok.config.max_tokens
    state = tok.state_dict()
    for weights in (module.model.state_dict(), module.tokenizer.state_dict()):
        assert weights.keys() == state.keys() and all(torch.equal(v, state[k]) for k, v in weights.items())
