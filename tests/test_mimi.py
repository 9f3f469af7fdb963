"""Mimi: parity with transformers' MimiModel at random init (ids identical, audio within 1e-5, several codebook
counts), streaming and chunking equal a whole-file pass, both transformers key layouts convert, bad input."""

from __future__ import annotations

import pytest
import torch

from zoo.audio.mimi import Mimi, MimiConfig
from zoo.tokenizer import Tokens

transformers = pytest.importorskip("transformers")

SMALL = dict(hidden_size=32, num_filters=4, num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=4,
             intermediate_size=64, codebook_size=64, codebook_dim=16, vector_quantization_hidden_dimension=16,
             num_quantizers=8, sliding_window=6, upsample_groups=32)


def hf_mimi(seed: int = 0) -> torch.nn.Module:
    """transformers' MimiModel, small, with random biases, norms, layer scales and codebooks (so codes vary)."""
    from transformers import MimiConfig as HFConfig
    from transformers import MimiModel

    torch.manual_seed(seed)
    return randomise_hf_mimi(MimiModel(HFConfig(**SMALL)), seed)


@torch.no_grad()
def randomise_hf_mimi(model: torch.nn.Module, seed: int = 0) -> torch.nn.Module:
    """Random biases, norms, layer scales and codebooks in a transformers MimiModel (what init leaves constant),
    so that every tensor matters and codes vary; also used by benchmarks/audio_releases.py."""
    g = torch.Generator().manual_seed(seed)
    for name, p in model.named_parameters():
        if name.endswith("bias") or "norm" in name or "scale" in name:
            p.copy_(torch.randn(p.shape, generator=g) * 0.1 + (1.0 if name.endswith("norm.weight") else 0.0))
    for name, b in model.named_buffers():
        if name.endswith("embed_sum"):
            b.copy_(torch.randn(b.shape, generator=g) * 0.5)
        elif name.endswith("cluster_usage"):
            b.copy_(torch.rand(b.shape, generator=g) + 0.5)
    return model.eval()


def audio(samples: int, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return (0.3 * torch.randn(2, 1, samples, generator=g)).clamp(-1, 1)


@pytest.fixture(scope="module")
def pair(tmp_path_factory):
    ref = hf_mimi()
    folder = tmp_path_factory.mktemp("mimi") / "hf"
    ref.save_pretrained(folder)
    return ref, Mimi.from_release(folder), folder


def test_transformers_folder_converts_exactly(pair):
    ref, ours, folder = pair
    assert Mimi.is_release(folder) and ours.frame_rate == 12.5
    x = audio(24000 * 2 + 333)  # 26 frames, a partial last one; longer than the attention context
    for q in (1, 2, 8):
        with torch.no_grad():
            codes = ref.encode(x, num_quantizers=q).audio_codes  # (B, q, T)
            y = ref.decode(codes).audio_values[..., :x.shape[-1]]
        t = ours.encode(x, num_codebooks=q)
        assert torch.equal(t.ids, codes.transpose(1, 2)), q
        assert len(t.ids.unique()) > 8
        torch.testing.assert_close(ours.decode(t), y, atol=1e-5, rtol=0)
    assert torch.equal(ours.encode(x, bitrate=0.6).ids, ours.encode(x, num_codebooks=8).ids)  # 8 x 12.5 Hz x 6 bits


def test_wide_levels_on_two_tap_products_convert_exactly(tmp_path, monkeypatch):
    """Levels as wide as the release's outer ones run their resampling as `two_tap` products: still the reference's
    ids, and audio as close to exact arithmetic as the reference's own (at this width random weights reach a peak
    of 17, where float32 rounding alone is 2e-5: the reference run in float64 is the yardstick)."""
    from transformers import MimiConfig as HFConfig
    from transformers import MimiModel

    import zoo.audio.streaming as streaming
    from benchmarks.audio_releases import _in_float64

    calls = []
    monkeypatch.setattr(streaming, "two_tap", lambda *a, f=streaming.two_tap: calls.append(1) or f(*a))
    torch.manual_seed(1)
    ref = randomise_hf_mimi(MimiModel(HFConfig(**dict(SMALL, num_filters=32, hidden_size=64, upsample_groups=64))), 1)
    ref.save_pretrained(tmp_path)
    ours = Mimi.from_release(tmp_path)
    exact = _in_float64(ref)
    x = audio(24000 * 6 + 555, seed=1)  # long enough for the products to pay (`two_tap_pays`)
    for q in (1, 8):
        with torch.no_grad():
            codes = ref.encode(x, num_quantizers=q).audio_codes
            y = ref.decode(codes).audio_values[..., :x.shape[-1]]
            y64 = exact.decode(codes).audio_values[..., :x.shape[-1]]
        t = ours.encode(x, num_codebooks=q)
        encoded = len(calls)
        assert torch.equal(t.ids, codes.transpose(1, 2)), q
        error, reference_error = (ours.decode(t) - y64).abs().max(), (y - y64).abs().max()
        assert error <= 1.5 * reference_error, (q, float(error), float(reference_error))
        assert encoded and len(calls) > encoded  # both sides took the products
        calls.clear()


def test_registered_mimi_downloads_its_pinned_commit_from_a_fake_hub(pair, tmp_path):
    """`zoo.load("mimi")` against a loopback hub serving the small transformers folder as kyutai/mimi at the pinned
    commit only: downloaded, converted once (the commit recorded), same codes as the converter in this process."""
    import json
    import textwrap

    from tests.fakehub import load_release_from_fake_hub
    from zoo import hub

    _, ours, folder = pair
    release = hub._names()["mimi"].release
    assert release.hf_repo == "kyutai/mimi" and len(release.revision) == 40
    x = audio(24000 // 2)
    torch.save({"x": x, "ids": ours.encode(x, num_codebooks=8).ids}, tmp_path / "io.pt")
    code = textwrap.dedent(f"""
        import torch, zoo
        io = torch.load({str(tmp_path / 'io.pt')!r})
        tok = zoo.load("mimi")
        print(tok.family, torch.equal(tok.encode(io["x"], num_codebooks=8).ids, io["ids"]))
    """)
    out, requests = load_release_from_fake_hub(release.hf_repo, folder, release.files, code, tmp_path / "cache",
                                               revision=release.revision)
    assert out.returncode == 0, out.stderr[-3000:]
    assert out.stdout.split() == ["mimi", "True"], out.stdout
    assert any(f"/resolve/{release.revision}/model.safetensors" in r for r in requests)
    source = json.loads((tmp_path / "cache" / "checkpoints" / "mimi" / "config.json").read_text())["source"]
    assert source["revision"] == source["commit"] == release.revision


def test_older_transformers_layout_converts(pair, tmp_path):
    """kyutai/mimi was saved by transformers 4.x: encoder.layers.*, encoder_transformer.*, downsample.*, ..."""
    from safetensors.torch import load_file, save_file

    _, ours, folder = pair
    state = load_file(str(folder / "model.safetensors"))
    old = {}
    for k, v in state.items():
        for new, was in (("encoder.encoder_seanet.", "encoder."), ("decoder.decoder_seanet.", "decoder."),
                         ("encoder.encoder_transformer.", "encoder_transformer."),
                         ("decoder.decoder_transformer.", "decoder_transformer."),
                         ("encoder.downsample.", "downsample."), ("decoder.upsample.", "upsample.")):
            if k.startswith(new):
                k = was + k[len(new):]
                break
        old[k] = v
    (tmp_path / "old").mkdir()
    save_file(old, str(tmp_path / "old" / "model.safetensors"))
    (tmp_path / "old" / "config.json").write_text((folder / "config.json").read_text())
    again = Mimi.from_release(tmp_path / "old")
    for (k, a), b in zip(ours.state_dict().items(), again.state_dict().values()):
        assert torch.equal(a, b), k


def test_stream_and_chunks_equal_whole_file(pair):
    _, ours, _ = pair
    x = audio(24000 + 1234, seed=1)
    whole = ours.encode(x, num_codebooks=4).ids
    g = torch.Generator().manual_seed(0)
    stream, pieces, i = ours.encode_stream(num_codebooks=4), [], 0
    while i < x.shape[-1]:
        n = int(torch.randint(1, 3000, (1,), generator=g))
        pieces.append(stream(x[..., i:i + n]))
        i += n
    assert torch.equal(torch.cat(pieces + [stream.flush()], dim=1), whole)
    assert torch.equal(ours.encode(x, num_codebooks=4, chunk_seconds=0.25).ids, whole)
    t = Tokens(ids=whole, lengths=torch.full((2,), whole.shape[1]))
    full = ours.decode(t)
    decoder, out = ours.decode_stream(), []
    for j in range(whole.shape[1]):
        out.append(decoder(whole[:, j:j + 1]))
    y = torch.cat(out + [decoder.flush()], dim=-1)
    scale = float(full.abs().max())
    torch.testing.assert_close(y / scale, full / scale, atol=1e-5, rtol=0)


def test_bad_input_is_refused(pair, tmp_path):
    _, ours, _ = pair
    with pytest.raises(ValueError, match="bitrate"):
        ours.encode(audio(2000), bitrate=1.0)
    with pytest.raises(ValueError, match="24000 Hz"):
        ours.encode(audio(2000), sample_rate=16000)
    with pytest.raises(ValueError, match="num_codebooks"):
        ours.encode(audio(2000), num_codebooks=9)
    with pytest.raises(ValueError, match="not a Mimi release"):
        Mimi.from_release(tmp_path)
    assert not Mimi.is_release(tmp_path)


def test_preset_size_matches_transformers():
    """The released architecture (transformers' default MimiConfig): same parameter count as ours."""
    from transformers import MimiConfig as HFConfig
    from transformers import MimiModel

    ref = MimiModel(HFConfig())
    ours = Mimi(MimiConfig())
    assert sum(p.numel() for p in ours.parameters()) == sum(p.numel() for p in ref.parameters())
