"""Processors (`zoo.processing`): any image, clip or recording to a tokenizer's contract and back (issue 20 item 1)."""

from __future__ import annotations

import math
import warnings

import numpy as np
import pytest
import torch
from PIL import Image

import zoo
from zoo.cli import main
from zoo.processing import (AudioProcessor, ImageProcessor, VideoProcessor, image_to_tensor, processor_for)
from zoo.tokenizer import InputContract, TokenSpec


def smooth_image(h: int, w: int) -> torch.Tensor:
    """(3, h, w) in [0, 1]: low-frequency content that survives resizing down and up."""
    y, x = torch.meshgrid(torch.linspace(0, 1, h), torch.linspace(0, 1, w), indexing="ij")
    return torch.stack([x, y, 0.5 + 0.4 * torch.sin(2 * math.pi * (x + y) / 2)])


# ----------------------------------------------------------------------------------------- image modes


def test_image_modes_become_rgb_in_unit_range():
    half_red = image_to_tensor(Image.new("RGBA", (4, 3), (255, 0, 0, 128)), background=1.0)
    assert half_red.shape == (3, 3, 4)
    assert torch.allclose(half_red[:, 0, 0], torch.tensor([1.0, 127 / 255, 127 / 255]), atol=2e-3)  # over white
    over_black = image_to_tensor(Image.new("RGBA", (2, 2), (255, 0, 0, 128)), background=0.0)
    assert torch.allclose(over_black[:, 0, 0], torch.tensor([128 / 255, 0, 0]), atol=2e-3)
    white16 = image_to_tensor(Image.fromarray(np.full((5, 6), 65535, np.uint16)))
    assert white16.shape == (3, 5, 6) and torch.allclose(white16, torch.ones_like(white16))
    mid16 = image_to_tensor(np.full((2, 2), 32768, np.uint16))
    assert abs(float(mid16.mean()) - 0.5) < 1e-4  # 16 bits kept, not clipped to 8-bit white
    grey = image_to_tensor(Image.new("L", (3, 3), 51))
    assert torch.allclose(grey, torch.full((3, 3, 3), 0.2))
    pal = Image.new("P", (3, 2))
    pal.putpalette([0, 255, 0] * 256)
    assert torch.allclose(image_to_tensor(pal)[:, 0, 0], torch.tensor([0.0, 1.0, 0.0]))
    assert image_to_tensor(torch.full((3, 2, 2), 255, dtype=torch.uint8)).max() == 1.0


@pytest.mark.parametrize("bad, match", [
    (torch.full((3, 4, 4), 2.0), r"\[0, 1\]"),
    (torch.rand(5, 4, 4), r"\(1\|3\|4, H, W\)"),
    (np.zeros((4, 4, 2), np.uint8), r"\(H, W\)"),
    (np.zeros((4, 4), np.int32), "uint8, uint16"),
    ("not-a-file.png", "not a readable image"),
])
def test_bad_images_are_value_errors(bad, match):
    with pytest.raises(ValueError, match=match):
        image_to_tensor(bad)


# ----------------------------------------------------------------------------------------- resizing and back


@pytest.mark.parametrize("fit", ["stretch", "crop", "pad"])
def test_image_processor_reaches_the_contract_and_comes_back(fit):
    proc = ImageProcessor((32, 32), fit=fit)
    images = [smooth_image(60, 80), smooth_image(90, 40), smooth_image(32, 32)]
    p = proc(images)
    assert p.batch.shape == (3, 3, 32, 32) and p.batch.min() >= 0 and p.batch.max() <= 1
    out = proc.invert(p.batch, p.meta)
    for x, y in zip(images, out):
        if fit == "crop":  # the centre crop, at the input's scale
            side = min(x.shape[1:])
            assert y.shape == (3, side, side)
            top, left = (x.shape[1] - side) // 2, (x.shape[2] - side) // 2
            x = x[:, top: top + side, left: left + side]
        assert y.shape == x.shape
        assert (y - x).abs().mean() < 0.02, fit  # smooth content survives down and up
    assert torch.equal(out[2], images[2]) or fit != "stretch"  # already at the contract: untouched


def test_image_processor_takes_a_batch_and_records_sizes():
    proc = ImageProcessor((16, 24))
    p = proc(torch.rand(2, 3, 40, 50))
    assert p.batch.shape == (2, 3, 16, 24)
    assert p.meta["input_shape"].tolist() == [[40, 50], [40, 50]]
    assert p.meta["input_index"].tolist() == [0, 1]


# ----------------------------------------------------------------------------------------- video segments


def test_video_processor_segments_and_joins():
    proc = VideoProcessor(16, ImageProcessor((32, 32)))
    long_clip = torch.rand(3, 40, 32, 32)
    short = torch.rand(3, 5, 20, 24)
    p = proc([long_clip, short])
    assert p.batch.shape == (4, 3, 16, 32, 32)
    assert p.meta["input_index"].tolist() == [0, 0, 0, 1] and p.meta["input_segment"].tolist() == [0, 1, 2, 0]
    assert torch.equal(p.batch[2, :, 8:], long_clip[:, 39:40].expand(-1, 8, -1, -1))  # padded with the last frame
    out = proc.invert(p.batch, p.meta)
    assert torch.equal(out[0], long_clip)  # at the contract's size: segmenting alone is exact
    assert out[1].shape == (3, 5, 20, 24)
    with pytest.raises(ValueError, match="input_index"):
        proc.invert(p.batch, {})


# ----------------------------------------------------------------------------------------- audio


def test_audio_processor_resamples_downmixes_and_restores():
    proc = AudioProcessor(16000, channels=1)
    t = torch.arange(44100) / 44100
    stereo = torch.stack([0.5 * torch.sin(2 * math.pi * 440 * t), 0.3 * torch.sin(2 * math.pi * 440 * t)])
    p = proc((stereo, 44100))
    assert p.batch.shape == (1, 1, 16000)
    assert p.meta["input_rate"].tolist() == [44100] and p.meta["input_shape"].tolist() == [[2, 44100]]
    assert abs(float(p.batch.abs().max()) - 0.4) < 0.01  # the channel mean
    back = proc.invert(p.batch, p.meta)[0]
    assert back.shape == (2, 44100)
    mid = slice(1000, -1000)  # away from the resampler's edge effects
    err = (back[:, mid] - stereo.mean(0, keepdim=True)[:, mid]).pow(2).mean() / stereo.mean(0)[mid].pow(2).mean()
    assert err < 1e-3


def test_audio_overshoot_is_clamped_with_a_note():
    proc = AudioProcessor(16000)
    t = torch.arange(44100) / 44100
    square = 0.99 * torch.sign(torch.sin(2 * math.pi * 220 * t))
    with pytest.warns(UserWarning, match="ringing"):
        p = proc((square, 44100))
    assert float(p.batch.abs().max()) <= 1.0
    unclamped = AudioProcessor(16000, clamp=False)
    assert float(unclamped((square, 44100)).batch.abs().max()) > 1.05  # the overshoot is real


def test_audio_segments_rejoin_exactly_and_int16_is_scaled():
    proc = AudioProcessor(16000, segment_seconds=0.25, multiple=320)
    x = torch.rand(1, 9000) * 2 - 1
    p = proc(x)
    assert p.batch.shape[0] == math.ceil(9000 / 4160) and p.batch.shape[-1] == 4160  # 0.25 s rounded up to 320s
    assert torch.equal(proc.invert(p.batch, p.meta)[0], x)
    ints = AudioProcessor(16000)(torch.tensor([[16384, -32768]], dtype=torch.int16)).batch
    assert ints.flatten().tolist() == [0.5, -1.0]
    with pytest.raises(ValueError, match="float in"):
        proc(torch.zeros(1, 10, dtype=torch.int32))


# ----------------------------------------------------------------------------------------- contracts and tokenizers


def test_contract_records_processor_options_and_old_configs_get_defaults():
    c = InputContract("B 3 H W", sizes={"H": 32, "W": 32})
    assert c.processor["interpolation"] == "bicubic" and c.processor["fit"] == "stretch"
    spec = TokenSpec("image", 16, 1, 4, c)
    d = spec.to_dict()
    assert d["input"]["processor"]["interpolation"] == "bicubic"  # written to config.json
    del d["input"]["processor"]  # a config.json written before processors existed
    assert TokenSpec.from_dict(d).input.processor == c.processor
    assert InputContract("B T D").processor == {}
    custom = InputContract("B 3 H W", sizes={"H": 8, "W": 8}, processor={"interpolation": "bilinear"})
    assert processor_for(custom).interpolation == "bilinear"
    with pytest.raises(ValueError, match="unknown image processor option"):
        processor_for(c, interpolaton="nearest")


@pytest.mark.parametrize("name", [n for n in ("flextok-tiny-nat32", "karl-tiny-nat32", "cat-tiny-nat32",
                                              "larp-tiny-motion32", "codec-small-speech16k", "beast-lasa")])
def test_every_shipped_tokenizer_has_its_processor(name):
    tok = zoo.load(name)
    proc = processor_for(tok)
    if tok.spec.modality == "action":
        assert proc is None
        return
    assert proc.modality == tok.spec.modality
    if tok.spec.modality == "image":
        assert proc.size == (tok.spec.input.sizes["H"], tok.spec.input.sizes["W"])
        x = proc([smooth_image(45, 70)]).batch
    elif tok.spec.modality == "video":
        assert proc.frames == tok.spec.input.sizes["T"]
        x = proc(torch.rand(3, 20, 24, 40)).batch
    else:
        assert proc.sample_rate == tok.spec.input.sample_rate
        x = proc((torch.rand(2, 4410) - 0.5, 44100)).batch
    tok.encode(x)  # what the processor makes meets the contract


# ----------------------------------------------------------------------------------------- the command line


def test_cli_encodes_any_image_and_decodes_at_its_size(tmp_path, capsys):
    src = tmp_path / "photo.png"
    Image.fromarray((np.random.default_rng(0).random((61, 47, 4)) * 255).astype(np.uint8), "RGBA").save(src)
    tokens, out = tmp_path / "t.npz", tmp_path / "recon.png"
    assert main(["encode", "flextok-tiny-nat32", str(src), "-o", str(tokens), "--num-tokens", "4"]) == 0
    assert main(["decode", "flextok-tiny-nat32", str(tokens), "-o", str(out), "-O", "steps=1"]) == 0
    assert Image.open(out).size == (47, 61)
    assert main(["encode", "flextok-tiny-nat32", str(src), "-o", str(tokens), "--raw"]) == 2
    assert "must be 32" in capsys.readouterr().err


def test_cli_encodes_any_recording_and_decodes_at_its_rate(tmp_path):
    import soundfile as sf

    src = tmp_path / "stereo.wav"
    t = np.arange(22050) / 22050
    sf.write(src, np.stack([np.sin(2 * np.pi * 300 * t), np.sign(np.sin(2 * np.pi * 200 * t))], 1).astype(np.float32) * 0.99,
             22050)
    tokens, out = tmp_path / "t.npz", tmp_path / "recon.wav"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the square wave's resampling overshoot is clamped with a warning
        assert main(["encode", "codec-small-speech16k", str(src), "-o", str(tokens)]) == 0
    assert main(["decode", "codec-small-speech16k", str(tokens), "-o", str(out)]) == 0
    data, rate = sf.read(out)
    assert rate == 22050 and data.shape == (22050, 2)


def test_cli_info_prints_the_processor(capsys):
    assert main(["info", "larp-tiny-motion32"]) == 0
    out = capsys.readouterr().out
    assert "processor:" in out and "segments of 16 frames" in out and "bicubic" in out
