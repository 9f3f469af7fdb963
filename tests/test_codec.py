"""Codec: lengths, bitrate knob, chunked == whole, training signal, bad input, the shipped card, the CLI."""

from __future__ import annotations

import json

import numpy as np
import pytest
import soundfile as sf
import torch

import zoo
from zoo import hub, metrics
from zoo.audio.codec import Codec, CodecConfig
from zoo.data.audio import build_audio_dataset, have_audio_tools
from zoo.tokenizer import Tokens

SHIPPED = hub.REPO_CHECKPOINTS / "codec-small-speech16k"
needs_speech = pytest.mark.skipif(not have_audio_tools("speech"), reason="espeak-ng is not installed")


def harmonic(batch: int, samples: int, seed: int = 0) -> torch.Tensor:
    """(B, 1, S) voiced-speech-like test signals: a few harmonics with a wobbling pitch, in [-0.8, 0.8]."""
    g = torch.Generator().manual_seed(seed)
    t = torch.arange(samples) / 16000
    f0 = 100 + 150 * torch.rand(batch, 1, generator=g)
    phase = 2 * torch.pi * torch.cumsum(f0 * (1 + 0.05 * torch.sin(2 * torch.pi * 3 * t)), -1) / 16000
    x = sum(torch.sin(k * phase) / k for k in range(1, 6))
    x = x * (0.5 + 0.5 * torch.sin(2 * torch.pi * 2 * t))  # syllable-like envelope
    return (0.8 * x / x.abs().amax(-1, keepdim=True))[:, None]


TINY_ISTFT = dict(decoder="istft", decoder_dim=16, decoder_blocks=(1, 1))


@pytest.fixture(scope="module", params=["seanet", "istft"])
def codec(request) -> Codec:
    """A tiny codec (each decoder) whose codebooks were k-means-initialised by one training pass (so codes vary)."""
    torch.manual_seed(0)
    m = Codec(CodecConfig.from_name("tiny", dilations=(1, 3, 9), **(TINY_ISTFT if request.param == "istft" else {})))
    m.train()
    m(harmonic(8, 3200, seed=1))
    return m.eval()


@pytest.mark.parametrize("samples", [1, 319, 320, 321, 4001])
def test_any_length_round_trips_to_the_same_length(codec, samples):
    x = harmonic(2, samples)
    t = codec.encode(x)
    frames = -(-samples // codec.config.hop)
    assert t.ids.shape == (2, frames, codec.config.num_codebooks)
    assert t.lengths.tolist() == [frames, frames]
    assert t.meta["num_samples"].tolist() == [samples, samples]
    y = codec.decode(t)
    assert y.shape == x.shape and bool(torch.isfinite(y).all()) and float(y.abs().max()) <= 1


def test_seanet_elu_is_torch_elu_at_inference_and_in_training():
    """The inference form of ELU equals torch's; with autograd on it is torch's op and gradients flow."""
    import torch.nn.functional as F

    from zoo.nn.seanet import ELU

    x = torch.linspace(-30, 30, 10001).reshape(1, 1, -1)
    with torch.no_grad():
        torch.testing.assert_close(ELU()(x), F.elu(x), atol=2e-7, rtol=0)
    w = x.clone().requires_grad_(True)
    ELU()(w).sum().backward()
    torch.testing.assert_close(w.grad, torch.where(x > 0, 1.0, torch.exp(x)))
    with torch.no_grad():
        assert ELU()(x).data_ptr() != x.data_ptr() and torch.equal(x, torch.linspace(-30, 30, 10001).reshape(1, 1, -1))


def _training_layers(net: torch.nn.Module, x: torch.Tensor) -> torch.Tensor:
    """A SEANet stack as trained: weight-norm parametrizations, torch's convolutions and ELU."""
    with torch.enable_grad():
        return net(x).detach()


@pytest.mark.parametrize("preset, tile", [("tiny", 16384), ("small", 16384), ("small", 97), ("tiny", 10)])
def test_seanet_inference_path_equals_the_training_layers(preset, tile):
    """Without autograd SEANet runs folded weights, per-tap products and time windows (`tile` samples,
    here also tiny ones so that windows meet the edges): the same function."""
    from zoo.nn.seanet import inference_plan

    torch.manual_seed(0)
    m = Codec(CodecConfig.from_name(preset)).eval()
    x = harmonic(3, 320 * 7)
    z = _training_layers(m.encoder.net, x)
    with torch.no_grad():
        for net, v, want in ((m.encoder.net, x, z), (m.decoder.net, z, _training_layers(m.decoder.net, z))):
            for stage in inference_plan(net, tile):
                v = stage(v)
            torch.testing.assert_close(v, want, atol=1e-5, rtol=0)


def test_inference_path_gives_the_training_layers_ids_and_audio(codec, monkeypatch):
    from zoo.nn.seanet import _SEANet

    if codec.config.decoder != "seanet":
        pytest.skip("the encoder is the seanet case's; an istft decoder has no separate inference path")
    x = harmonic(2, 16000)
    fast = codec.encode(x)
    y = codec.decode(fast)
    monkeypatch.setattr(_SEANet, "forward", lambda self, v: _training_layers(self.net, v))
    slow = codec.encode(x)
    assert torch.equal(fast.ids, slow.ids)
    torch.testing.assert_close(y, codec.decode(slow), atol=1e-5, rtol=0)


def test_overlap_add_inverts_a_stft():
    """The inverse-STFT head's overlap-add gives a signal back from its own STFT frames (windowed once
    by the STFT, once by overlap_add, divided by the squared window's envelope)."""
    from zoo.nn.istft import overlap_add

    hop, n = 80, 320
    x = harmonic(2, 40 * hop)[:, 0]
    window = torch.hann_window(n)
    spec = torch.stft(x, n, hop, window=window, center=True, return_complex=True)  # frame t centred on t·hop
    frames = torch.fft.irfft(spec.transpose(1, 2), n=n)[:, :40]  # (B, 40, n)
    y = overlap_add(frames, window, hop)  # centres frame t on t·hop + hop/2: x delayed by hop/2
    assert y.shape == (2, 40 * hop)
    torch.testing.assert_close(y[:, n:-n], x[:, n - hop // 2:-n - hop // 2], atol=1e-4, rtol=0)


def test_istft_decoder_lengths_reach_and_config():
    from zoo.nn.istft import ISTFTDecoder

    d = ISTFTDecoder(8, 320, dim=16, blocks=(1, 1), upsample=2).eval()
    z = torch.randn(2, 8, 7)
    with torch.no_grad():
        y = d(z)
        assert y.shape == (2, 1, 7 * 320) and bool(torch.isfinite(y).all())
        # a change to the last frame moves only samples within the decoder's declared reach of it
        z2 = z.clone()
        z2[..., -1] += 1
        moved = (d(z2) - y).abs()[0, 0] > 1e-7
    m = Codec(CodecConfig.from_name("tiny", **TINY_ISTFT))
    first = int(moved.nonzero()[0])
    assert first >= 7 * 320 - 160 - m.decoder_context * 320
    with pytest.raises(ValueError, match="multiple of 2·upsample"):
        ISTFTDecoder(8, 320, upsample=3)
    for upsample in (1, 3, 4):  # odd and even: T · hop samples
        assert ISTFTDecoder(8, 480, dim=16, blocks=(0, 1), upsample=upsample)(z).shape == (2, 1, 7 * 480)
    with pytest.raises(ValueError, match="decoder="):
        CodecConfig(decoder="wavenet")


def test_inference_weights_follow_the_parameters():
    """The folded weights are a cache: loading other weights or an optimiser step must refresh it."""
    torch.manual_seed(0)
    a, b = Codec(CodecConfig.from_name("tiny")).eval(), Codec(CodecConfig.from_name("tiny")).eval()
    x = harmonic(1, 3200)
    with torch.no_grad():
        a.encoder(x)  # builds a's cache
        a.load_state_dict(b.state_dict())
        torch.testing.assert_close(a.encoder(x), b.encoder(x), atol=1e-6, rtol=0)
    a.train()
    torch.optim.SGD(a.parameters(), lr=0.1).zero_grad()
    loss = a(x).audio.square().mean() + a(x).latents.square().mean()
    loss.backward()
    torch.optim.SGD(a.parameters(), lr=0.1).step()
    a.eval()
    with torch.no_grad():
        torch.testing.assert_close(a.encoder(x), _training_layers(a.encoder.net, x), atol=1e-5, rtol=0)
        assert not torch.allclose(a.encoder(x), b.encoder(x))


@pytest.mark.parametrize("cin, cout, k, dilation, padding, batch", [
    (1, 16, 7, 1, 3, 2), (16, 1, 7, 1, 3, 1), (16, 8, 3, 3, 3, 3), (5, 4, 3, 2, 0, 2), (1, 3, 5, 2, 1, 1),
])
def test_conv_by_taps_is_conv1d(cin, cout, k, dilation, padding, batch):
    import torch.nn.functional as F

    from zoo.nn.seanet import conv_by_taps

    g = torch.Generator().manual_seed(0)
    x, w, b = torch.randn(batch, cin, 101, generator=g), torch.randn(cout, cin, k, generator=g), torch.randn(cout, generator=g)
    torch.testing.assert_close(conv_by_taps(x, w, b, padding, dilation),
                               F.conv1d(x, w, b, padding=padding, dilation=dilation), atol=1e-5, rtol=0)


@pytest.mark.parametrize("batch, cin, cout, stride, steps, bias", [
    (1, 3, 2, 2, 1, True), (2, 5, 7, 3, 10, True), (3, 4, 6, 4, 7, False), (1, 8, 5, 5, 2, True),
])
def test_two_tap_is_the_strided_and_the_transposed_convolution(batch, cin, cout, stride, steps, bias):
    """Winograd's F(2, 2) over frames equals kernel-2s convolutions, odd and even lengths, with and without bias."""
    import torch.nn.functional as F

    from zoo.nn.seanet import strided_taps, transposed_taps, two_tap

    g = torch.Generator().manual_seed(steps)
    b = torch.randn(cout, generator=g) if bias else None
    x = torch.randn(batch, cin, (steps + 1) * stride, generator=g)  # whole frames: `steps` outputs
    w = torch.randn(cout, cin, 2 * stride, generator=g)
    frames = x.transpose(1, 2).reshape(batch, steps + 1, stride * cin)
    y = two_tap(frames, *strided_taps(w), b).transpose(1, 2)
    torch.testing.assert_close(y, F.conv1d(x, w, b, stride=stride), atol=1e-5, rtol=0)
    wt, xt = torch.randn(cin, cout, 2 * stride, generator=g), torch.randn(batch, cin, steps, generator=g)
    padded = F.pad(xt, (1, 1)).transpose(1, 2).contiguous()
    y = two_tap(padded, *transposed_taps(wt), None if b is None else b.repeat(stride))
    torch.testing.assert_close(y.reshape(batch, (steps + 1) * stride, cout).transpose(1, 2),
                               F.conv_transpose1d(xt, wt, b, stride=stride), atol=1e-5, rtol=0)


@pytest.mark.parametrize("pad_mode", ["constant", "replicate", "reflect"])
def test_wide_resampling_layers_run_as_two_tap_and_equal_torch(pad_mode, monkeypatch):
    """SEANet's wide strided and transposed convolutions (EnCodec/Mimi layers, fast or on torch's kernels, an ELU
    written into the padded buffer) take the two-tap path at inference and give torch's outputs."""
    import torch.nn.functional as F

    import zoo.audio.streaming as streaming
    from zoo.audio.streaming import Conv, ConvTranspose, DeferredELU

    calls = []
    monkeypatch.setattr(streaming, "two_tap", lambda *a, f=streaming.two_tap: calls.append(1) or f(*a))
    torch.manual_seed(0)
    x = torch.randn(2, 64, 603)  # not a whole number of strides; 151 frames (`two_tap_pays`)
    for fast in (False, True):
        conv = Conv(64, 512, 8, 4, causal=pad_mode != "reflect", pad_mode=pad_mode, fast=fast).eval()
        elu = DeferredELU(conv) if fast else torch.nn.Identity()
        with torch.no_grad():
            y = conv(elu(x))
        with torch.enable_grad():
            want = conv(F.elu(x) if fast else x)
        torch.testing.assert_close(y, want.detach(), atol=2e-5, rtol=0)
        up = ConvTranspose(256, 128, 8, 4, causal=pad_mode != "reflect", fast=fast).eval()
        z = torch.randn(2, 256, 131)
        with torch.no_grad():
            y = up(z)
        with torch.enable_grad():
            torch.testing.assert_close(y, up(z).detach(), atol=2e-5, rtol=0)
    assert len(calls) == 4
    with torch.no_grad():
        conv(x[..., :400])  # too few frames to outweigh reading the taps: the convolution
    assert len(calls) == 4


def _audio_presets() -> list:
    """(config class, preset config) of every audio family's presets (Mimi: its one architecture, the default)."""
    from zoo.audio import codec, dac, encodec
    from zoo.audio.mimi import MimiConfig

    configs = [(m.PRESETS, cls) for m, cls in ((codec, CodecConfig), (dac, dac.DACConfig), (encodec, encodec.EncodecConfig))]
    return [cls.from_name(n) for presets, cls in configs for n in presets] + [MimiConfig()]


def test_every_audio_config_takes_its_bitrate_from_one_helper():
    """One formula (zoo.audio.rvq.CodebookRate) serves the four audio configs, with the values their own copies gave:
    frames/s x q x log2(codebook_size) / 1000 for every preset and every q (the codec wrote int(log2): its
    codebook sizes are powers of two)."""
    import math

    from zoo.audio.rvq import CodebookRate

    for c in _audio_presets():
        assert isinstance(c, CodebookRate) and "kbps" not in vars(type(c)) and "bitrates" not in vars(type(c)), type(c)
        bits = int(math.log2(c.codebook_size)) if isinstance(c, CodecConfig) else math.log2(c.codebook_size)
        old = [c.frame_rate * q * bits / 1000 for q in range(1, c.num_codebooks + 1)]
        assert [c.kbps(q) for q in range(1, c.num_codebooks + 1)] == old == c.bitrates, type(c)


def test_bitrate_and_codebooks_map_onto_each_other():
    c = CodecConfig.from_name("small")
    m = Codec(c)
    assert c.frame_rate == 50 and c.hop == 320
    assert c.bitrates == [0.5, 1.0, 1.5, 2.0, 2.5, 3.0, 3.5, 4.0]
    for q, kbps in enumerate(c.bitrates, start=1):
        assert m.codebooks_for(bitrate=kbps) == q and c.kbps(q) == kbps
    assert m.codebooks_for() == 8 and m.codebooks_for(num_codebooks=3) == 3
    for bad in (0.7, 6.0, 0.0, -1.5, True):
        with pytest.raises(ValueError, match="bitrate"):
            m.codebooks_for(bitrate=bad)
    for bad in (0, 9, 2.0):
        with pytest.raises(ValueError, match="num_codebooks"):
            m.codebooks_for(num_codebooks=bad)
    with pytest.raises(ValueError, match="not both"):
        m.codebooks_for(bitrate=1.5, num_codebooks=3)


def test_fewer_codebooks_are_a_prefix_and_decode(codec):
    x = harmonic(2, 4000)
    full = codec.encode(x)
    for q in range(1, codec.config.num_codebooks + 1):
        t = codec.encode(x, num_codebooks=q)
        assert torch.equal(t.ids, full.ids[..., :q])  # residual VQ is greedy: coarse codes are a prefix
        assert codec.decode(t).shape == x.shape
    assert codec.encode(x, bitrate=codec.config.kbps(2)).ids.shape[-1] == 2


def test_codes_vary_so_the_checks_below_mean_something(codec):
    ids = codec.encode(harmonic(2, 8000)).ids
    assert ids[..., 0].unique().numel() > 3


def test_chunked_encoding_and_decoding_equal_whole_file(codec):
    x = harmonic(2, 16000 + 123, seed=3)
    whole = codec.encode(x, chunk_seconds=100.0)
    chunked = codec.encode(x, chunk_seconds=0.1)  # 5-frame chunks: many seams
    assert torch.equal(whole.ids, chunked.ids)
    y_whole, y_chunked = codec.decode(whole, chunk_seconds=100.0), codec.decode(whole, chunk_seconds=0.1)
    torch.testing.assert_close(y_chunked, y_whole, atol=1e-5, rtol=0)


def test_chunking_without_enough_context_would_show_seams(codec, monkeypatch):
    """The control for the test above: with too little context the results do differ."""
    x = harmonic(2, 16000 + 123, seed=3)
    whole = codec.encode(x, chunk_seconds=100.0)
    monkeypatch.setattr(codec, "decoder_context", 0)
    y_whole, y_bad = codec.decode(whole, chunk_seconds=100.0), codec.decode(whole, chunk_seconds=0.1)
    assert float((y_whole - y_bad).abs().max()) > 1e-4


def test_encode_and_decode_are_deterministic_and_batch_independent(codec):
    x = harmonic(3, 5000, seed=4)
    a, b = codec.encode(x), codec.encode(x)
    assert torch.equal(a.ids, b.ids)
    assert torch.equal(codec.encode(x[1:2]).ids, a.ids[1:2])
    torch.testing.assert_close(codec.decode(a[1]), codec.decode(a)[1:2], atol=1e-5, rtol=0)
    assert torch.equal(codec.decode(a), codec.decode(b))


def test_inference_does_not_change_the_model():
    """vector-quantize-pytorch k-means-initialises on first use, even in eval; our encode must not."""
    m = Codec(CodecConfig.from_name("tiny")).eval()
    before = {k: v.clone() for k, v in m.state_dict().items()}
    m.encode(harmonic(2, 4000))
    assert all(torch.equal(before[k], v) for k, v in m.state_dict().items())


@pytest.mark.parametrize("bad, match", [
    (torch.zeros(1, 2, 1600), "axis 1"),                     # stereo
    (torch.zeros(1, 1600), "3 axes"),                        # no channel axis
    (torch.full((1, 1, 1600), float("nan")), "NaN"),
    (torch.zeros(1, 1, 0), "empty"),
    (torch.zeros(0, 1, 1600), "empty"),
    (torch.full((1, 1, 1600), 1.5), r"\[-1, 1\]"),
    (torch.zeros(1, 1, 1600, dtype=torch.int16), "floating"),
])
def test_bad_audio_is_refused(codec, bad, match):
    with pytest.raises(ValueError, match=match):
        codec.encode(bad)


def test_wrong_sample_rate_and_bad_tokens_are_refused(codec):
    with pytest.raises(ValueError, match="8000 Hz"):
        codec.encode(harmonic(1, 1600), sample_rate=8000)
    t = codec.encode(harmonic(1, 1600))
    with pytest.raises(ValueError, match="must lie in"):
        codec.decode(Tokens(ids=t.ids + codec.config.codebook_size, lengths=t.lengths, meta=t.meta))
    with pytest.raises(ValueError, match=r"\[B, L, q\] \(q <= 4 codebooks\)"):
        codec.decode(Tokens(ids=t.ids[..., 0], lengths=t.lengths))
    with pytest.raises(ValueError, match="num_samples"):
        codec.decode(t, num_samples=10**9)


def test_config_is_checked():
    with pytest.raises(ValueError, match="not a supported config name"):
        CodecConfig.from_name("huge")
    with pytest.raises(ValueError, match="power of two"):
        CodecConfig(codebook_size=1000)
    with pytest.raises(ValueError, match="multiple of the hop"):
        CodecConfig(strides=(3, 7))


def test_save_and_load_round_trip(codec, tmp_path):
    x = harmonic(2, 3000)
    codec.save_pretrained(tmp_path / "c")
    again = zoo.load(tmp_path / "c")
    assert isinstance(again, Codec)
    assert torch.equal(again.encode(x).ids, codec.encode(x).ids)


@pytest.mark.parametrize("decoder", [{}, TINY_ISTFT])
def test_reconstruction_loss_falls_when_overfitting_one_batch(decoder):
    from recipes.codec import CodecModule

    torch.manual_seed(0)
    module = CodecModule(preset="tiny", config={"dilations": (1, 3), **decoder})
    module.tokenizer.train()
    x = harmonic(4, 3200, seed=5)
    opt = torch.optim.AdamW(module.tokenizer.parameters(), lr=3e-3)
    losses = []
    for _ in range(60):
        _, parts = module.reconstruction_losses(x)
        loss = 15 * parts["mel"] + parts["l1"] + 0.25 * parts["commitment"]
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(float(loss.detach()))
    assert np.mean(losses[-5:]) < 0.7 * np.mean(losses[:5]), losses[::10]


def test_recipe_continues_from_a_checkpoint(codec, tmp_path):
    """`init_from` (how codec-small-speech16k was continued) starts from the saved weights and codebooks."""
    from recipes.codec import CodecModule

    module = CodecModule(init_from=str(codec.save_pretrained(tmp_path / "codec")))
    assert module.tokenizer.training and module.tokenizer.config == codec.config
    state = codec.state_dict()
    assert all(torch.equal(v, state[k]) for k, v in module.tokenizer.state_dict().items())


def test_discriminator_losses():
    from recipes.codec import MultiScaleSTFTDiscriminator, discriminator_loss, generator_losses

    torch.manual_seed(0)
    d = MultiScaleSTFTDiscriminator(channels=4)
    x, noise = harmonic(2, 4000), 0.3 * torch.randn(2, 1, 4000)
    adv, feat = generator_losses(d(x), d(x))
    assert float(feat) == 0.0 and float(adv) > 0
    opt = torch.optim.Adam(d.parameters(), lr=1e-3)
    first = None
    for _ in range(15):  # the discriminator learns to tell the signal from noise
        loss = discriminator_loss(d(x), d(noise))
        first = float(loss) if first is None else first
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert float(loss) < first


@needs_speech
def test_recipe_runs_with_the_adversarial_loss(tmp_path):
    import lightning.pytorch as pl

    from recipes.audio_data import AudioDataModule
    from recipes.codec import CodecModule

    data = AudioDataModule(speech_clips=4, music_clips=0, val_speech_clips=2, val_music_clips=0,
                           clip_seconds=0.5, segment_seconds=0.2, val_seconds=0.5, batch_size=2)
    module = CodecModule(preset="tiny", adversarial_start=1, warmup_steps=1, disc_channels=4, val_codebooks=(1, 4))
    trainer = pl.Trainer(max_steps=8, accelerator="cpu", logger=False, enable_checkpointing=False,
                         enable_progress_bar=False, enable_model_summary=False, default_root_dir=tmp_path,
                         limit_val_batches=1, val_check_interval=2, check_val_every_n_epoch=None)
    trainer.fit(module, data)
    logged = trainer.callback_metrics
    assert float(logged["train/adversarial"]) > 0 and "train/discriminator" in logged
    assert "val/speech_mel_1.2kbps" in logged


# ----------------------------------------------------------------------------------------- the shipped checkpoint


needs_shipped = pytest.mark.skipif(not (SHIPPED / "config.json").is_file(), reason="codec-small-speech16k not trained yet")


@needs_shipped
@needs_speech
def test_shipped_checkpoint_meets_its_card():
    summary = json.loads((SHIPPED / "config.json").read_text())["summary"]
    card, val = summary["metrics"], summary["val_set"]
    codec = zoo.load("codec-small-speech16k")
    data = build_audio_dataset("speech", "val", val["n_clips"], val["clip_seconds"], 16000, val["seed"])
    x = torch.from_numpy(data["audio"][:, :round(val["val_seconds"] * 16000)])[:, None]
    y = codec.decode(codec.encode(x, bitrate=1.5))
    stoi = float(metrics.stoi(y, x).mean())
    assert abs(stoi - card["speech_stoi_1.5kbps"]) < 0.02, (stoi, card["speech_stoi_1.5kbps"])
    y8 = codec.decode(codec.encode(x))
    assert float(metrics.mel_distance(y8, x).mean()) < float(metrics.mel_distance(y, x).mean())  # more bits help


def test_cli_encodes_and_decodes_wav_files(codec, tmp_path):
    from zoo.cli import main

    name = str(codec.save_pretrained(tmp_path / "codec"))
    x = harmonic(1, 16000 + 77)[0, 0].numpy()
    sf.write(tmp_path / "in.wav", x, 16000)
    assert main(["encode", name, str(tmp_path / "in.wav"), "-o", str(tmp_path / "t.npz"), "--num-codebooks", "3"]) == 0
    t = Tokens.load(tmp_path / "t.npz")
    assert t.ids.shape == (1, 51, 3)
    assert main(["decode", name, str(tmp_path / "t.npz"), "-o", str(tmp_path / "out.wav")]) == 0
    y, rate = sf.read(tmp_path / "out.wav")
    assert rate == 16000 and y.shape == x.shape
    sf.write(tmp_path / "8k.wav", x[:8000], 8000)  # one second at 8 kHz: the processor resamples it
    assert main(["encode", name, str(tmp_path / "8k.wav"), "-o", str(tmp_path / "t2.npz")]) == 0
    assert Tokens.load(tmp_path / "t2.npz").ids.shape[1] == 16000 // codec.config.hop
    assert main(["encode", name, str(tmp_path / "8k.wav"), "-o", str(tmp_path / "t3.npz"), "--raw"]) == 2  # no processor: refused


def test_complex_spectral_distance_sees_phase_that_the_mel_distance_does_not():
    from recipes.codec import complex_spectral_distance

    x = harmonic(2, 8000, seed=6)
    shifted = torch.roll(x, 3, dims=-1)  # the same spectrum, every phase moved
    assert float(complex_spectral_distance(x, x)) < 1e-6
    assert float(metrics.mel_distance(shifted, x).mean()) < 0.05
    assert float(complex_spectral_distance(shifted, x)) > 10 * float(complex_spectral_distance(x * 1.01, x))
    silent = torch.zeros(1, 1, 3200, requires_grad=True)  # |X| = 0 everywhere: the 1e-8 under the power
    complex_spectral_distance(silent, x[:1, :, :3200]).backward()
    assert bool(torch.isfinite(silent.grad).all()) and float(silent.grad.abs().sum()) > 0


def test_recipe_trains_with_the_complex_spectral_loss():
    from recipes.codec import CodecModule

    torch.manual_seed(0)
    module = CodecModule(preset="tiny", weights={"complex": 5.0})
    module.tokenizer.train()
    _, parts = module.reconstruction_losses(harmonic(2, 3200))
    assert float(parts["complex"]) > 0
    (5 * parts["complex"]).backward()
    assert all(bool(torch.isfinite(p.grad).all()) for p in module.tokenizer.decoder.parameters() if p.grad is not None)


@needs_shipped
def test_recipe_continues_from_a_registered_name():
    from recipes.codec import CodecModule

    module = CodecModule(init_from="codec-small-speech16k")
    assert module.tokenizer.config == zoo.load("codec-small-speech16k").config
    with pytest.raises(ValueError, match="not a registered tokenizer name"):
        CodecModule(init_from="codec-nonexistent")
