"""EnCodec: parity with the official package and transformers at random init (each release layout), streaming
and chunking equal a whole-file pass, checkpoints round-trip, bad input is refused."""

from __future__ import annotations

import pytest
import torch

from zoo import hub
from zoo.audio.encodec import EnCodec, EncodecConfig
from zoo.tokenizer import Tokens

official = pytest.importorskip("encodec")
transformers = pytest.importorskip("transformers")


def randomise(model: torch.nn.Module, seed: int) -> torch.nn.Module:
    """Make what init leaves at zero or one (biases, weight-norm gains, group norms, codebooks) random, so that
    codes vary and a mis-mapped weight shows."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            gain = "weight_g" in name or "original0" in name or name.endswith("norm.weight")
            if name.endswith("bias") or gain:
                p.copy_(torch.randn(p.shape, generator=g) * 0.3 + (1.0 if gain else 0.0))
        for name, b in model.named_buffers():
            if name.endswith("codebook.embed"):
                b.copy_(torch.randn(b.shape, generator=g) * 0.5)
    return model.eval()


def official_model(stereo48: bool, seed: int = 0) -> torch.nn.Module:
    """The official EncodecModel, small (4 filters, 16 dims, 8 codebooks of 1024), 24 kHz or 48 kHz style."""
    from encodec import EncodecModel
    from encodec import modules as m
    from encodec import quantization as qt

    torch.manual_seed(seed)
    kw = dict(channels=2, norm="time_group_norm", causal=False) if stereo48 else dict(channels=1, causal=True)
    encoder = m.SEANetEncoder(dimension=16, n_filters=4, **kw)
    decoder = m.SEANetDecoder(dimension=16, n_filters=4, **kw)
    quantizer = qt.ResidualVectorQuantizer(dimension=16, n_q=8, bins=1024)
    if stereo48:
        model = EncodecModel(encoder, decoder, quantizer, [3.0, 6.0, 12.0, 24.0], 48000, 2, normalize=True, segment=1.0)
    else:
        model = EncodecModel(encoder, decoder, quantizer, [1.5, 3.0, 6.0], 24000, 1)
    return randomise(model, seed)


def hf_model(stereo48: bool, seed: int = 0) -> torch.nn.Module:
    from transformers import EncodecConfig as HFConfig
    from transformers import EncodecModel

    torch.manual_seed(seed)
    kw = dict(num_filters=4, hidden_size=16, codebook_dim=16, codebook_size=1024, target_bandwidths=[1.5, 3.0, 6.0])
    if stereo48:
        kw.update(sampling_rate=48000, audio_channels=2, use_causal_conv=False, norm_type="time_group_norm",
                  normalize=True, chunk_length_s=1.0, overlap=0.01, target_bandwidths=[3.0, 6.0, 12.0])
    return randomise(EncodecModel(HFConfig(**kw)), seed)


def audio(channels: int, samples: int, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return (0.3 * torch.randn(2, channels, samples, generator=g)).clamp(-1, 1)


def official_codes(ref, x: torch.Tensor, bandwidth: float) -> tuple[torch.Tensor, torch.Tensor]:
    """(ids (B, T, q) over all segments, audio) from the official model."""
    ref.set_target_bandwidth(bandwidth)
    with torch.no_grad():
        frames = ref.encode(x)
        y = ref.decode(frames)[..., :x.shape[-1]]
    return torch.cat([codes.transpose(1, 2) for codes, _ in frames], dim=1), y


def hf_codes(ref, x: torch.Tensor, bandwidth: float, ours: EnCodec) -> tuple[torch.Tensor, torch.Tensor]:
    with torch.no_grad():
        enc = ref.encode(x, bandwidth=bandwidth)
        y = ref.decode(enc.audio_codes, enc.audio_scales, last_frame_pad_length=enc.last_frame_pad_length)[0]
    codes = enc.audio_codes  # (segments, B, q, frames), the last segment padded
    frames = ours.segment_frames(x.shape[-1]) if ours.config.segment else [codes.shape[-1]]
    return torch.cat([codes[i][..., :f].transpose(1, 2) for i, f in enumerate(frames)], dim=1), y[..., :x.shape[-1]]


@pytest.mark.parametrize("stereo48", [False, True], ids=["24khz", "48khz"])
def test_official_th_converts_exactly(tmp_path, stereo48):
    ref = official_model(stereo48)
    path = tmp_path / ("encodec_48khz-test.th" if stereo48 else "encodec_24khz-test.th")
    torch.save(ref.state_dict(), path)
    assert EnCodec.is_release(path)
    ours = EnCodec.from_release(path)
    assert (ours.sample_rate, ours.channels, ours.frame_rate) == ((48000, 2, 150) if stereo48 else (24000, 1, 75))
    x = audio(ours.channels, int(ours.sample_rate * 2.1) + 13)  # 3 segments at 48 kHz, a partial last frame
    for kbps in ([3.0, 6.0, 12.0] if stereo48 else [1.5, 3.0, 6.0]):
        ids, y = official_codes(ref, x, kbps)
        t = ours.encode(x, bitrate=kbps)
        assert t.ids.shape == ids.shape and torch.equal(t.ids, ids), kbps
        assert len(ids.unique()) > 20  # codes vary
        out = ours.decode(t)
        assert out.shape == x.shape
        torch.testing.assert_close(out, y, atol=1e-5, rtol=0)


@pytest.mark.parametrize("stereo48", [False, True], ids=["24khz", "48khz"])
def test_transformers_folder_converts_exactly(tmp_path, stereo48):
    ref = hf_model(stereo48, seed=1)
    ref.save_pretrained(tmp_path / "hf")
    assert EnCodec.is_release(tmp_path / "hf")
    ours = EnCodec.from_release(tmp_path / "hf")
    x = audio(ours.channels, int(ours.sample_rate * 1.6) + 5, seed=1)
    for kbps in ref.config.target_bandwidths:
        ids, y = hf_codes(ref, x, kbps, ours)
        t = ours.encode(x, bitrate=kbps)
        assert torch.equal(t.ids, ids), kbps
        torch.testing.assert_close(ours.decode(t), y, atol=1e-5, rtol=0)


def test_old_transformers_weight_norm_names_convert(tmp_path):
    """Hub copies saved by older transformers name weight norm weight_g / weight_v."""
    from safetensors.torch import load_file, save_file

    ref = hf_model(False, seed=2)
    ref.save_pretrained(tmp_path / "hf")
    state = load_file(str(tmp_path / "hf" / "model.safetensors"))
    renamed = {k.replace("parametrizations.weight.original0", "weight_g").replace("parametrizations.weight.original1",
                                                                                  "weight_v"): v for k, v in state.items()}
    assert renamed != state
    save_file(renamed, str(tmp_path / "hf" / "model.safetensors"))
    ours, new = EnCodec.from_release(tmp_path / "hf"), EnCodec.from_release(tmp_path / "hf")
    x = audio(1, 5000)
    assert torch.equal(ours.encode(x).ids, new.encode(x).ids)
    ids, _ = hf_codes(ref, x, 6.0, ours)
    assert torch.equal(ours.encode(x, bitrate=6.0).ids, ids)


@pytest.fixture(scope="module")
def causal(tmp_path_factory) -> EnCodec:
    path = tmp_path_factory.mktemp("th") / "encodec_24khz-test.th"
    torch.save(official_model(False, seed=3).state_dict(), path)
    return EnCodec.from_release(path)


def test_stream_in_pieces_equals_whole_file(causal):
    x = audio(1, 12000 + 77, seed=4)
    whole = causal.encode(x, bitrate=6.0).ids
    g = torch.Generator().manual_seed(0)
    for high in (40, 700, 5000):  # pieces far smaller than a frame, about two frames, many frames
        stream, pieces, i = causal.encode_stream(bitrate=6.0), [], 0
        while i < x.shape[-1]:
            n = int(torch.randint(1, high, (1,), generator=g))
            pieces.append(stream(x[..., i:i + n]))
            i += n
        ids = torch.cat(pieces + [stream.flush()], dim=1)
        assert torch.equal(ids, whole), high
    full = causal.decoder(causal._dequantize(whole))
    decoder, out, j = causal.decode_stream(), [], 0
    while j < whole.shape[1]:
        n = int(torch.randint(1, 4, (1,), generator=g))
        out.append(decoder(whole[:, j:j + n]))
        j += n
    y = torch.cat(out + [decoder.flush()], dim=-1)
    torch.testing.assert_close(y, full, atol=1e-5, rtol=0)
    with pytest.raises(ValueError, match="flushed"):
        decoder(whole[:, :1])


def test_long_files_in_chunks_equal_whole_file(causal):
    x = audio(1, 3 * 24000 + 1, seed=5)
    t = causal.encode(x, num_codebooks=4)
    chunked = causal.encode(x, num_codebooks=4, chunk_seconds=0.25)
    assert torch.equal(chunked.ids, t.ids)
    torch.testing.assert_close(causal.decode(t, chunk_seconds=0.2), causal.decode(t), atol=1e-5, rtol=0)


@pytest.mark.parametrize("samples", [1, 319, 320, 321, 2000])
def test_any_length_round_trips(causal, samples):
    x = audio(1, samples)
    t = causal.encode(x, num_codebooks=2)
    assert t.ids.shape == (2, -(-samples // 320), 2)
    assert causal.decode(t).shape == x.shape


def test_save_and_load_round_trip(tmp_path, causal):
    causal.save_pretrained(tmp_path / "ck")
    back = hub.load_dir(tmp_path / "ck")
    x = audio(1, 4000)
    t = causal.encode(x)
    assert torch.equal(back.encode(x).ids, t.ids)
    torch.testing.assert_close(back.decode(t), causal.decode(t), atol=0, rtol=0)


def test_bad_input_is_refused(causal, tmp_path):
    with pytest.raises(ValueError, match="bitrate"):
        causal.encode(audio(1, 800), bitrate=1.0)
    with pytest.raises(ValueError, match="not both"):
        causal.encode(audio(1, 800), bitrate=1.5, num_codebooks=2)
    with pytest.raises(ValueError, match="24000 Hz"):
        causal.encode(audio(1, 800), sample_rate=16000)
    with pytest.raises(ValueError, match="size 1"):
        causal.encode(audio(2, 800))
    with pytest.raises(ValueError, match="num_samples"):
        causal.decode(causal.encode(audio(1, 800)), num_samples=10**6)
    with pytest.raises(ValueError, match="codebooks"):
        causal.decode(Tokens(ids=torch.zeros(1, 3, 9, dtype=torch.long), lengths=torch.tensor([3])))
    with pytest.raises(ValueError, match="does not stream"):
        EnCodec(EncodecConfig.from_name("48khz", num_filters=2, num_codebooks=2)).encode_stream()
    with pytest.raises(ValueError, match="not an EnCodec release"):
        EnCodec.from_release(tmp_path)
    (tmp_path / "x.th").write_bytes(b"")
    assert not EnCodec.is_release(tmp_path) and not EnCodec.is_release(tmp_path / "x.th")
    with pytest.raises(ValueError, match="not a supported config name"):
        EncodecConfig.from_name("96khz")


def test_48khz_tokens_carry_their_segment_scales():
    torch.manual_seed(0)
    tok = EnCodec(EncodecConfig.from_name("48khz", num_filters=2, dimension=8, num_codebooks=2, codebook_size=16))
    x = audio(2, 48000 * 2 + 100)
    t = tok.encode(x)
    assert t.meta["scales"].shape == (2, 3) and t.ids.shape[1] == sum(tok.segment_frames(x.shape[-1]))
    assert tok.decode(t).shape == x.shape
    with pytest.raises(ValueError, match="scales"):
        tok.decode(Tokens(ids=t.ids, lengths=t.lengths, meta={"num_samples": t.meta["num_samples"]}))


def test_48khz_segments_in_batches_equal_one_at_a_time(monkeypatch):
    """The skip LSTM runs segments of one length as a batch (`Stack.run_many`); any batch size gives the same."""
    import zoo.audio.encodec as module

    torch.manual_seed(0)
    tok = randomise(EnCodec(EncodecConfig.from_name("48khz", num_filters=2, dimension=8, num_codebooks=4,
                                                    codebook_size=64)), seed=6)
    tok.codebooks.normal_(0, 0.5, generator=torch.Generator().manual_seed(6))
    x = audio(2, 48000 * 5 + 300, seed=6)  # 6 segments: 5 of 48000 samples, then 1 of 2700
    batched = tok.encode(x)
    assert len(batched.ids.unique()) > 20  # codes vary
    y = tok.decode(batched)
    monkeypatch.setattr(module, "SEGMENT_BATCH", 2)  # runs of 2, 2, 1, then the short one
    assert module.runs(tok.segment_frames(x.shape[-1]), 2) == [range(0, 2), range(2, 4), range(4, 5), range(5, 6)]
    t = tok.encode(x)
    assert torch.equal(t.ids, batched.ids) and torch.equal(t.meta["scales"], batched.meta["scales"])
    torch.testing.assert_close(tok.decode(t), y, atol=1e-6, rtol=0)


def test_preset_sizes_match_the_releases():
    """Parameter counts of the real architectures (the official package builds the same at random init)."""
    from encodec import EncodecModel

    for name, build in (("24khz", EncodecModel.encodec_model_24khz), ("48khz", EncodecModel.encodec_model_48khz)):
        ref = build(pretrained=False)
        ours = EnCodec(EncodecConfig.from_name(name))
        assert sum(p.numel() for p in ours.parameters()) == sum(p.numel() for p in ref.parameters()) - sum(
            p.numel() for n, p in ref.named_parameters() if "weight_g" in n)


def test_load_of_a_downloaded_release_converts_it(tmp_path, monkeypatch):
    """zoo.load(path) of a release file or folder a user downloaded converts it once into the cache."""
    import zoo

    monkeypatch.setenv("ZOO_CACHE", str(tmp_path / "cache"))
    ref = official_model(False, seed=6)
    torch.save(ref.state_dict(), tmp_path / "encodec_24khz-d7cc33bc.th")
    tok = zoo.load(tmp_path / "encodec_24khz-d7cc33bc.th")
    assert isinstance(tok, EnCodec)
    x = audio(1, 3000)
    assert torch.equal(tok.encode(x, bitrate=3.0).ids, official_codes(ref, x, 3.0)[0])
    assert zoo.load(tmp_path).family == "encodec"  # the folder holding it


def test_registered_release_downloads_converts_and_loads_from_a_fake_hub(tmp_path):
    """`zoo.load("encodec-24khz")` against a loopback hub serving a small transformers folder: it downloads,
    converts once and loads strictly; the second load converts nothing."""
    import json
    import os
    import subprocess
    import sys
    import textwrap
    from pathlib import Path

    from tests.fakehub import serve

    ref = hf_model(False, seed=7)
    ref.save_pretrained(tmp_path / "hf")
    x = audio(1, 4000)
    torch.save({"x": x, "ids": EnCodec.from_release(tmp_path / "hf").encode(x, bitrate=3.0).ids}, tmp_path / "io.pt")
    from zoo import hub

    release = hub._names()["encodec-24khz"].release
    assert release.hf_repo == "facebook/encodec_24khz" and len(release.revision) == 40  # pinned to a commit
    prefix = f"/{release.hf_repo}/resolve/{release.revision}"  # served at that commit only
    routes = {f"{prefix}/{p.name}": p.read_bytes() for p in (tmp_path / "hf").iterdir()}
    code = textwrap.dedent(f"""
        import torch, zoo
        io = torch.load({str(tmp_path / 'io.pt')!r})
        tok = zoo.load("encodec-24khz")
        print(torch.equal(tok.encode(io["x"], bitrate=3.0).ids, io["ids"]), tok.family)
        print(sorted(p.name for p in (zoo.hub.cache_root() / "checkpoints" / "encodec-24khz").iterdir()))
    """)
    root = Path(__file__).resolve().parent.parent
    env = {**os.environ, "ZOO_CACHE": str(tmp_path / "cache"), "HF_HUB_OFFLINE": "0",
           "PYTHONPATH": f"{root}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}
    with serve(routes, hf=True) as (base, requests):
        out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=root, timeout=300,
                             env={**env, "HF_ENDPOINT": base})
        assert out.returncode == 0, out.stderr[-3000:]
        assert out.stdout.splitlines()[0] == "True encodec"
        assert "model.safetensors" in out.stdout and "config.json" in out.stdout
        assert any(r.endswith(f"{prefix}/model.safetensors") for r in requests)
    source = json.loads((tmp_path / "cache" / "checkpoints" / "encodec-24khz" / "config.json").read_text())["source"]
    assert source["revision"] == source["commit"] == release.revision
    again = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=root, timeout=300,
                           env={**env, "HF_HUB_OFFLINE": "1"})  # the hub is gone: the converted copy loads
    assert again.returncode == 0 and again.stdout.splitlines()[0] == "True encodec", again.stderr[-3000:]


def test_a_vocabulary_holds_encodec_at_a_chosen_bitrate(causal):
    """Into the LLM: an entry of 6 kbps (8 of the 8 codebooks here would be all; take 3 kbps = 4) round-trips."""
    from zoo.llm import Entry, Vocabulary

    vocab = Vocabulary(text_size=100, entries=[Entry.from_tokenizer("speech", causal, bitrate=3.0)])
    assert vocab.entries[0].num_codebooks == 4
    t = causal.encode(audio(1, 3000)[:1], **vocab.entries[0].encode_kwargs)
    ids = vocab.to_llm(t, "speech")
    back = vocab.from_llm(ids[0])[-1].tokens()
    assert torch.equal(back.ids, t.ids)
