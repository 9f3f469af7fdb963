"""DAC: parity with transformers' DacModel through every release format, lengths, chunking, knobs, sniffing.

The reference is transformers' DacModel at random init (a small config with an odd stride, as the 16 and
24 kHz releases have), weight-normalised, with every parameter randomised (Snake alphas, biases, gains,
codebooks) so that codes vary. It is saved in the three layouts the releases come in: the official pickle
(state_dict with weight_g/weight_v, metadata.kwargs, written here by an independent name table), a
transformers folder with weight norm folded (descript/dac_*) and one with weight norm kept.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from tests.fakehub import checkpoint_routes, serve
from zoo.audio.dac import DAC, DACConfig
from zoo.audio.weights import fold_weight_norm
from zoo.tokenizer import Tokens

transformers = pytest.importorskip("transformers")

RATES = (2, 3, 5)  # hop 30; the stride-5 transposed conv makes the decoder 8 samples short, as in 16 kHz
SR = 16000


def reference_model():
    """transformers' DacModel, weight-normalised, every parameter random."""
    from torch.nn.utils.parametrizations import weight_norm
    from transformers import DacConfig, DacModel

    torch.manual_seed(0)
    config = DacConfig(encoder_hidden_size=4, downsampling_ratios=list(RATES), decoder_hidden_size=48,
                       n_codebooks=6, codebook_size=64, codebook_dim=4, sampling_rate=SR)
    model = DacModel(config).eval()
    for m in model.modules():
        if isinstance(m, (torch.nn.Conv1d, torch.nn.ConvTranspose1d)):
            weight_norm(m)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith("alpha"):
                p.uniform_(0.3, 2.0)
            elif name.endswith("original0"):  # g: per-channel gain
                p.uniform_(0.5, 1.5)
            elif name.endswith("codebook.weight"):
                p.normal_()
            else:  # v and biases
                p.normal_(0, 0.3 if name.endswith("bias") else 1.0)
            if "res_unit" in name and "conv2" in name and name.endswith("original0"):
                p.mul_(0.2)  # residual branches small, as trained ones are: activations stay O(1)
        # pre-tanh output of std 0.5 (a trained decoder does not sit in tanh's flat tails)
        out = model.decoder.conv2
        hidden = {}
        out.register_forward_hook(lambda m, i, o: hidden.setdefault("y", o))
        model(signal(1, 3000, seed=9))
        scale = 0.5 / float(hidden["y"].std())
        out.parametrizations.weight.original0.mul_(scale)
        out.bias.mul_(scale)
        out._forward_hooks.clear()
    return model


def official_state(model) -> dict[str, torch.Tensor]:
    """The official release's state_dict for a transformers model: its own module tree's names, weight_g/v.

    Written from the official Encoder/Decoder Sequentials (encoder.block = [conv, EncoderBlock..., Snake,
    conv], EncoderBlock.block = [3 residual units, Snake, conv]; decoder.model = [conv, DecoderBlock...,
    Snake, conv, Tanh], DecoderBlock.block = [Snake, conv_t, 3 residual units]; a residual unit's block =
    [Snake, conv, Snake, conv]), independently of the converter's table.
    """
    n = len(RATES)
    pairs = {"encoder.conv1": "encoder.block.0", "encoder.snake1": f"encoder.block.{n + 1}",
             "encoder.conv2": f"encoder.block.{n + 2}", "decoder.conv1": "decoder.model.0",
             "decoder.snake1": f"decoder.model.{n + 1}", "decoder.conv2": f"decoder.model.{n + 2}"}
    for i in range(n):
        enc, dec = f"encoder.block.{i + 1}.block", f"decoder.model.{i + 1}.block"
        pairs[f"encoder.block.{i}.snake1"], pairs[f"encoder.block.{i}.conv1"] = f"{enc}.3", f"{enc}.4"
        pairs[f"decoder.block.{i}.snake1"], pairs[f"decoder.block.{i}.conv_t1"] = f"{dec}.0", f"{dec}.1"
        for u in range(3):
            for j, layer in enumerate(("snake1", "conv1", "snake2", "conv2")):
                pairs[f"encoder.block.{i}.res_unit{u + 1}.{layer}"] = f"{enc}.{u}.block.{j}"
                pairs[f"decoder.block.{i}.res_unit{u + 1}.{layer}"] = f"{dec}.{u + 2}.block.{j}"
    out = {}
    for name, p in model.state_dict().items():
        module, _, leaf = name.partition(".parametrizations.") if ".parametrizations." in name else name.rpartition(".")
        leaf = {"weight.original0": "weight_g", "weight.original1": "weight_v"}.get(leaf, leaf)
        out[f"{pairs.get(module, module)}.{leaf}"] = p.clone()
    return out


@pytest.fixture(scope="module")
def releases(tmp_path_factory):
    """The reference model and the same weights in each release layout."""
    from torch.nn.utils import parametrize

    model = reference_model()
    root = tmp_path_factory.mktemp("dac-releases")
    kwargs = dict(encoder_dim=4, encoder_rates=list(RATES), latent_dim=32, decoder_dim=48,
                  decoder_rates=list(RATES[::-1]), n_codebooks=6, codebook_size=64, codebook_dim=4,
                  quantizer_dropout=0.5, sample_rate=SR)
    torch.save({"state_dict": official_state(model), "metadata": {"kwargs": kwargs}}, root / "weights.pth")
    model.save_pretrained(root / "hf-weight-norm")
    folded = reference_model()
    for m in folded.modules():
        if parametrize.is_parametrized(m):
            parametrize.remove_parametrizations(m, "weight", leave_parametrized=True)
    folded.save_pretrained(root / "hf")
    return model, root


def signal(batch: int, samples: int, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    t = torch.arange(samples) / SR
    f0 = 100 + 300 * torch.rand(batch, 1, generator=g)
    x = torch.sin(2 * torch.pi * f0 * t) + 0.3 * torch.randn(batch, samples, generator=g)
    return (0.9 * x / x.abs().amax(-1, keepdim=True))[:, None]


FORMATS = ["weights.pth", "hf", "hf-weight-norm", "hf/model.safetensors"]


@pytest.mark.parametrize("fmt", FORMATS)
@pytest.mark.parametrize("q", [1, 3, 6])
def test_ids_and_audio_match_transformers(releases, fmt, q):
    model, root = releases
    ours = DAC.from_release(root / fmt)
    x = signal(2, 2999)  # not a multiple of the hop: the reference pads on the right
    padded = F.pad(x, (0, -x.shape[-1] % 30))
    with torch.no_grad():
        codes = model.encode(padded, n_quantizers=q).audio_codes  # (B, q, T)
        audio = model.decode(audio_codes=codes).audio_values[..., : x.shape[-1]]  # (B, S'), S' <= S
    t = ours.encode(x, num_codebooks=q)
    assert t.ids.shape == (2, 100, q)
    assert torch.equal(t.ids, codes.transpose(1, 2))
    assert len(t.ids[..., 0].unique()) >= 10  # the codes vary
    y = ours.decode(t)
    assert y.shape == x.shape
    assert audio.shape[-1] == 2992  # 100 frames decode to 100·30 - 8 samples
    assert float((y[:, 0, :2992] - audio).abs().max()) <= 1e-5
    assert float(audio.abs().max()) > 0.1
    assert torch.equal(y[..., 2992:], torch.zeros(2, 1, 7))  # what the decoder does not make: zeros


def test_formats_convert_to_the_same_weights(releases):
    _, root = releases
    states = [DAC.from_release(root / f).state_dict() for f in FORMATS]
    for state in states[1:]:
        assert state.keys() == states[0].keys()
        for k in state:
            torch.testing.assert_close(state[k], states[0][k], rtol=0, atol=1e-6)


def test_config_comes_from_the_release(releases):
    _, root = releases
    c = DAC.from_release(root / "weights.pth").config
    assert (c.encoder_dim, c.encoder_rates, c.latent_dim, c.decoder_dim, c.decoder_rates) == (4, RATES, 32, 48, RATES[::-1])
    assert (c.num_codebooks, c.codebook_size, c.codebook_dim, c.sample_rate) == (6, 64, 4, SR)
    assert DAC.from_release(root / "hf").config == c


def test_bare_safetensors_of_an_unknown_architecture_needs_its_config(releases, tmp_path):
    _, root = releases
    (tmp_path / "model.safetensors").write_bytes((root / "hf" / "model.safetensors").read_bytes())
    with pytest.raises(ValueError, match="config.json"):
        DAC.from_release(tmp_path / "model.safetensors")


def test_is_release_sniffs_without_loading(releases, tmp_path):
    _, root = releases
    for f in FORMATS:
        assert DAC.is_release(root / f)
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "encodec"}))
    torch.save({"state_dict": {"w": torch.zeros(1)}}, tmp_path / "other.pth")
    (tmp_path / "junk.pth").write_bytes(b"not a pickle")
    for p in (tmp_path, tmp_path / "other.pth", tmp_path / "junk.pth", tmp_path / "missing"):
        assert not DAC.is_release(p)


def test_bad_release_files_are_value_errors(tmp_path):
    (tmp_path / "junk.pth").write_bytes(b"not a pickle")
    torch.save({"state_dict": {}}, tmp_path / "nometa.pth")
    for name in ("junk.pth", "nometa.pth", "missing.pth"):
        with pytest.raises(ValueError):
            DAC.from_release(tmp_path / name)


def test_fold_weight_norm_matches_torch():
    from torch.nn.utils.parametrizations import weight_norm

    for conv in (torch.nn.Conv1d(3, 5, 4), torch.nn.ConvTranspose1d(3, 5, 4, stride=2)):
        weight_norm(conv)
        with torch.no_grad():
            conv.parametrizations.weight.original0.uniform_(0.5, 2)
        state = fold_weight_norm(dict(conv.state_dict()))
        assert set(state) == {"weight", "bias"}
        torch.testing.assert_close(state["weight"], conv.weight, rtol=0, atol=0)


# ----------------------------------------------------------------------------------------- our model alone


@pytest.fixture(scope="module")
def dac(releases):
    return DAC.from_release(releases[1] / "hf")


@pytest.mark.parametrize("samples", [1, 29, 30, 2992, 2993, 3000, 3001])
def test_any_length_decodes_to_its_own_length(dac, samples):
    x = signal(1, samples)
    t = dac.encode(x)
    assert t.ids.shape == (1, math.ceil(samples / 30), 6)
    y = dac.decode(t)
    assert y.shape == x.shape and bool(torch.isfinite(y).all()) and float(y.abs().max()) < 1
    bare = Tokens(ids=t.ids, lengths=t.lengths)  # no recorded length: what the frames decode to
    assert dac.decode(bare).shape[-1] == dac.decoder.output_length(t.ids.shape[1]) == t.ids.shape[1] * 30 - 8


def test_chunked_equals_whole(dac):
    """Chunks of 0.1 s (53 frames, context included) give the whole-file ids and audio."""
    x = signal(2, 16000, seed=3)
    whole = DAC(DACConfig(**{**dac.config.__dict__, "chunk_seconds": 100.0}))
    whole.load_state_dict(dac.state_dict())
    chunked = DAC(DACConfig(**{**dac.config.__dict__, "chunk_seconds": 0.1}))
    chunked.load_state_dict(dac.state_dict())
    a, b = whole.encode(x), chunked.encode(x)
    assert torch.equal(a.ids, b.ids)
    # force: a different chunk_seconds changes the config fingerprint, not what the tokens mean
    assert float((whole.decode(a) - chunked.decode(a, force=True)).abs().max()) <= 1e-5


def test_inference_plan_equals_the_layers(dac):
    """Without autograd the encoder and decoder run as tiled windows; the result is the layer-by-layer one."""
    x = signal(2, 6000, seed=4)
    with torch.no_grad():
        z_plan, y_plan = dac.encoder(x), dac.decoder(dac.encoder(x))
    with torch.enable_grad():
        z, y = dac.encoder(x), dac.decoder(dac.encoder(x))
    z, y = z.detach(), y.detach()
    assert float((z - z_plan).abs().max()) <= 1e-5 * float(z.abs().max())
    assert float((y - y_plan).abs().max()) <= 1e-5


def test_inference_plan_follows_the_weights(dac):
    """The plan holds copies of the weights: a change in place (an optimiser step, a load) must rebuild it."""
    model = DAC(DACConfig(**dac.config.__dict__))
    model.load_state_dict(dac.state_dict())
    x = signal(1, 3000, seed=5)
    for stack, inputs in ((model.encoder, x), (model.decoder, dac.encoder(x).detach())):
        with torch.no_grad():
            before = stack(inputs)  # builds the plan
            for p in stack.parameters():
                p.mul_(0.9)  # the same tensors, changed in place
            after = stack(inputs)
        with torch.enable_grad():
            layers = stack(inputs).detach()  # module by module, from the parameters themselves
        assert not torch.allclose(after, before)
        assert float((after - layers).abs().max()) <= 1e-5 * float(layers.abs().max())


def test_bitrate_picks_the_codebooks_that_fit(dac):
    per = dac.config.kbps(1)  # 533.33 Hz x 6 bits
    assert dac.codebooks_for(bitrate=3 * per) == 3
    assert dac.codebooks_for(bitrate=3.5 * per) == 3
    assert dac.codebooks_for(bitrate=100 * per) == 6
    assert dac.encode(signal(1, 300), bitrate=2 * per).ids.shape[-1] == 2
    for bad in (dict(bitrate=0.5 * per), dict(bitrate=True), dict(num_codebooks=0), dict(num_codebooks=7),
                dict(bitrate=per, num_codebooks=1)):
        with pytest.raises(ValueError):
            dac.encode(signal(1, 300), **bad)


def test_bad_input_is_refused(dac):
    for bad in (torch.zeros(1, 2, 300), torch.zeros(300), torch.full((1, 1, 300), 2.0),
                torch.full((1, 1, 300), float("nan")), torch.zeros(1, 1, 300, dtype=torch.long)):
        with pytest.raises(ValueError):
            dac.encode(bad)
    t = dac.encode(signal(1, 300))
    with pytest.raises(ValueError):
        dac.decode(Tokens(ids=t.ids[..., :0], lengths=t.lengths))
    with pytest.raises(ValueError):
        dac.decode(Tokens(ids=t.ids + 64, lengths=t.lengths))
    with pytest.raises(ValueError):
        dac.decode(t, num_samples=10_000)


def test_properties(dac):
    assert (dac.sample_rate, dac.channels) == (SR, 1)
    assert dac.frame_rate == pytest.approx(SR / 30)
    assert DAC.encode_knobs == ("bitrate", "num_codebooks") and DAC.decode_options == ("num_samples",)


def test_presets_match_the_releases():
    """Frame rates and bitrates the releases state: 50 Hz / 6 kbps, 75 Hz / 24 kbps, 86.1 Hz / 7.75 kbps."""
    for name, rate, kbps in (("16khz", 50, 6.0), ("24khz", 75, 24.0), ("44khz", 44100 / 512, 7.75)):
        c = DACConfig.from_name(name)
        assert c.frame_rate == pytest.approx(rate) and c.kbps(c.num_codebooks) == pytest.approx(kbps, abs=0.01)
    with pytest.raises(ValueError):
        DACConfig.from_name("8khz")


def test_save_and_load_round_trip(dac, tmp_path):
    from zoo import hub

    dac.save_pretrained(tmp_path / "ckpt")
    loaded = hub.load(tmp_path / "ckpt")
    x = signal(1, 900)
    assert isinstance(loaded, DAC) and torch.equal(loaded.encode(x).ids, dac.encode(x).ids)


# ----------------------------------------------------------------------------------------- download, convert, load


def _run(code: str, env: dict) -> subprocess.CompletedProcess:
    root = Path(__file__).resolve().parents[1]
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          env={**os.environ, **env}, cwd=root, timeout=300)


PROBE = """
import torch, zoo
tok = zoo.load({name!r})
x = torch.rand(1, 1, 600, generator=torch.Generator().manual_seed(0)) - 0.5
print(type(tok).__name__, tok.encode(x).ids.flatten().tolist())
"""


def test_registered_release_downloads_converts_and_loads_from_a_fake_hub(releases, tmp_path):
    """`zoo.load("dac-16khz")` against a loopback Hugging Face hub holding the (small) release files: converted
    once into the cache with the licence on its card, then loaded offline without converting again."""
    from zoo import hub

    _, root = releases
    entry = hub._names()["dac-16khz"]
    prefix = f"/{entry.release.hf_repo}/resolve/{entry.release.revision}"
    routes = checkpoint_routes(root / "hf", prefix)
    cache = str(tmp_path / "cache")
    expected = DAC.from_release(root / "hf")
    g = torch.Generator().manual_seed(0)
    want = expected.encode(torch.rand(1, 1, 600, generator=g) - 0.5).ids.flatten().tolist()
    with serve(routes, hf=True) as (base, requests):
        out = _run(PROBE.format(name="dac-16khz"), {"HF_ENDPOINT": base, "ZOO_CACHE": cache, "HF_HUB_OFFLINE": "0"})
        assert out.returncode == 0, out.stderr
        assert any(r.endswith("/model.safetensors") for r in requests)
    name, ids = out.stdout.split(" ", 1)
    assert name == "DAC" and json.loads(ids) == want
    converted = Path(cache) / "checkpoints" / "dac-16khz"
    config = json.loads((converted / "config.json").read_text())
    assert config["family"] == "dac" and config["license"]["spdx"] == "MIT"
    assert "MIT" in (converted / "README.md").read_text()
    # no hub now: the converted copy loads; so does the official pickle of the same weights, by path
    probes = PROBE.format(name="dac-16khz") + PROBE.format(name=str(root / "weights.pth"))
    out = _run(probes, {"HF_HUB_OFFLINE": "1", "ZOO_CACHE": cache})
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    assert len(lines) == 2 and all(json.loads(line.split(" ", 1)[1]) == want for line in lines)


def test_official_pickle_from_a_loopback_url(releases, tmp_path):
    """A release registered by URL: the official .pth, sha256 checked, converted on first load."""
    _, root = releases
    data = (root / "weights.pth").read_bytes()
    sha = hashlib.sha256(data).hexdigest()
    g = torch.Generator().manual_seed(0)
    want = DAC.from_release(root / "weights.pth").encode(torch.rand(1, 1, 600, generator=g) - 0.5).ids.flatten().tolist()
    cache = str(tmp_path / "cache")
    with serve({"/dac/weights_16khz.pth": data}) as (base, _):
        register = (f'import zoo.hub as hub\nhub.register_release("dac-by-url", "dac", files=("weights_16khz.pth",), '
                    f'url={base + "/dac"!r}, sha256={{"weights_16khz.pth": {sha!r}}}, license="MIT", license_url="https://x")\n')
        out = _run(register + PROBE.format(name="dac-by-url"), {"ZOO_CACHE": cache})
        assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout.split(" ", 1)[1]) == want
    assert (Path(cache) / "checkpoints" / "dac-by-url" / "config.json").is_file()


def test_official_dac_release_converts_exactly(tmp_path):
    """The official code (descript-audio-codec 1.0.0) at a tiny config with randomised weight norms, biases, Snake
    alphas and codebooks, saved by it in the release layout (scripts/make_dac_official_fixture.py): our importer's
    model gives its ids and its audio within 1e-5."""
    from safetensors.torch import load_file

    fixture = Path(__file__).parent / "fixtures" / "dac_official"
    path = tmp_path / "weights.pth"
    path.write_bytes((fixture / "weights.pth").read_bytes())
    assert DAC.is_release(path)
    ours = DAC.from_release(path)
    assert ours.config.encoder_rates == (2, 4, 5) and ours.config.num_codebooks == 4
    io = load_file(str(fixture / "io.safetensors"))
    x = io["audio"]
    for q in (1, 2, 4):
        t = ours.encode(x, num_codebooks=q)
        assert torch.equal(t.ids, io[f"codes_{q}"].transpose(1, 2)), q
        assert len(t.ids.unique()) > 8
        torch.testing.assert_close(ours.decode(t), io[f"decoded_{q}"][..., :x.shape[-1]], atol=1e-5, rtol=0)
