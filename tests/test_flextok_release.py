"""The released FlexTok: exact against the official code (fixture), Hydra-tree checks, presets, contract."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import textwrap
import warnings
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file

import zoo
from zoo import hub
from tests.fakehub import serve
from zoo.image.flextok_release import (PRESETS, RELEASES, VAE_FILES, VAE_REPO, FlexTokRelease, FlexTokReleaseConfig,
                                       LicenceNotice, _release_files)
from zoo.tokenizer import Tokens

FIXTURE = Path(__file__).parent / "fixtures" / "flextok_release"  # scripts/make_flextok_fixture.py, apple/ml-flextok@87d00cc


@pytest.fixture(scope="module")
def tok() -> FlexTokRelease:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", LicenceNotice)
        return FlexTokRelease.from_release(FIXTURE)


@pytest.fixture(scope="module")
def io() -> dict[str, torch.Tensor]:
    return load_file(str(FIXTURE / "io.safetensors"))


def test_fixture_ids_are_the_official_ids(tok: FlexTokRelease, io: dict) -> None:
    images = (io["images"] + 1) / 2
    torch.testing.assert_close(tok.latents(io["images"]), io["latents"], atol=1e-6, rtol=0)
    t = tok.encode(images)
    assert torch.equal(t.ids, io["ids"])
    for k in (1, 3, 5):  # causal registers: a budget gives the prefix of the full encode
        assert torch.equal(tok.encode(images, num_tokens=k).ids, io["ids"][:, :k])


def test_fixture_decoder_step_matches_the_official_decoder(tok: FlexTokRelease, io: dict) -> None:
    codes = tok.fsq.indices_to_codes(io["ids"])
    keep = io["keep_k"]
    with torch.no_grad():
        v = tok.velocity(io["noise"], io["t"], codes, keep)
        torch.testing.assert_close(v, io["velocity_cond"], atol=1e-5, rtol=0)
        # the same step with only the kept registers run (dropped ones folded into one weighted token)
        for i, k in enumerate(keep.tolist()):
            alone = tok.velocity(io["noise"][i:i + 1], io["t"][i:i + 1], codes[i:i + 1, :k], keep[i:i + 1])
            torch.testing.assert_close(alone, io["velocity_cond"][i:i + 1], atol=1e-5, rtol=0)
        torch.testing.assert_close(tok.velocity(io["noise"], io["t"], None, None), io["velocity_uncond"], atol=1e-5, rtol=0)
        latent = tok.sample(io["noise"], codes, keep, steps=3, guidance=2.5)  # APG, as the official pipeline
        torch.testing.assert_close(latent, io["detok_apg"], atol=1e-5, rtol=0)
        torch.testing.assert_close(tok.pixels(latent), io["detok_images"], atol=1e-5, rtol=0)
        assert not torch.allclose(tok.velocity(io["noise"], io["t"], codes, keep.clamp(max=2)), v, atol=1e-3)


def test_vae_inside_the_release_file(tmp_path: Path, tok: FlexTokRelease) -> None:
    """A release whose model.safetensors carries the VAE (vae.vae.* keys) needs no VAE folder."""
    folder = tmp_path / "release"
    folder.mkdir()
    shutil.copy(FIXTURE / "config.json", folder / "config.json")
    state = load_file(str(FIXTURE / "model.safetensors"))
    vae = load_file(str(FIXTURE / "vae" / "diffusion_pytorch_model.safetensors"))
    save_file({**state, **{f"vae.vae.{k}": v for k, v in vae.items()}}, str(folder / "model.safetensors"))
    with pytest.raises(ValueError):  # the shape of the VAE is read from its config when there is one
        FlexTokRelease.from_release(folder)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", LicenceNotice)
        other = FlexTokRelease.from_release(folder, vae=FIXTURE / "vae")
    for (k, a), b in zip(tok.state_dict().items(), other.state_dict().values()):
        assert torch.equal(a, b), k


def _single_file(folder: Path, state: dict[str, torch.Tensor]) -> Path:
    """The release as the official README links it: model.safetensors alone, the Hydra tree in its header,
    each top-level entry stored as str(value) (flextok/utils/checkpoint.py:save_safetensors at 87d00cc)."""
    tree = json.loads((FIXTURE / "config.json").read_text())
    metadata = {"_target_": "flextok.flextok_wrapper.FlexTok", **{k: str(v) for k, v in tree.items()}}
    folder.mkdir()
    save_file(state, str(folder / "model.safetensors"), metadata=metadata)
    return folder / "model.safetensors"


def test_single_file_release_with_the_tree_in_its_header(tmp_path: Path, tok: FlexTokRelease, io: dict,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    state = load_file(str(FIXTURE / "model.safetensors"))
    vae = load_file(str(FIXTURE / "vae" / "diffusion_pytorch_model.safetensors"))
    weights = _single_file(tmp_path / "alone", {**state, **{f"vae.vae.{k}": v for k, v in vae.items()}})
    assert FlexTokRelease.is_release(weights) and FlexTokRelease.is_release(weights.parent)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", LicenceNotice)
        other = FlexTokRelease.from_release(weights, vae=FIXTURE / "vae")
    for (k, a), b in zip(tok.state_dict().items(), other.state_dict().values()):
        assert torch.equal(a, b), k
    assert torch.equal(other.encode((io["images"] + 1) / 2).ids, io["ids"])
    # without the VAE inside, the vae/ folder beside the file serves, as for a downloaded folder; and
    # zoo.load takes the file as a user downloaded it (converted once into the cache)
    weights = _single_file(tmp_path / "beside", state)
    shutil.copytree(FIXTURE / "vae", weights.parent / "vae")
    monkeypatch.setenv("ZOO_CACHE", str(tmp_path / "cache"))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", LicenceNotice)
        loaded = zoo.load(weights)
    assert isinstance(loaded, FlexTokRelease) and torch.equal(loaded.encode((io["images"] + 1) / 2).ids, io["ids"])


def test_single_file_header_is_read_as_literals_only(tmp_path: Path) -> None:
    state = load_file(str(FIXTURE / "model.safetensors"))
    weights = _single_file(tmp_path / "bare", {})
    save_file(state, str(weights), metadata={"encoder": "__import__('os').system('true')"})  # a string, never run
    assert not FlexTokRelease.is_release(weights)
    save_file(state, str(weights), metadata={"encoder": "[" * 100_000 + "]" * 100_000})
    assert not FlexTokRelease.is_release(weights)
    assert isinstance(_release_files(weights)[0]["encoder"], str)  # Python's parser caps the nesting itself
    save_file(state, str(weights), metadata={"encoder": "x" * (1 << 21)})
    with pytest.raises(ValueError, match="over"):
        _release_files(weights)


def test_licence_is_announced_and_carried() -> None:
    with pytest.warns(LicenceNotice, match="non-commercial"):
        FlexTokRelease.from_release(FIXTURE)
    for name, entry in RELEASES.items():
        assert entry["non_commercial"] and "non-commercial" in entry["summary"]["description"], name
        registered = hub._names()[name].release
        assert registered.non_commercial and registered.hf_repo == entry["hf_repo"] and registered.files == entry["files"]


def _run(code: str, env: dict[str, str]) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True,
                          env={**os.environ, **env}, cwd=Path(__file__).parents[1], timeout=300)


def test_download_convert_load_against_a_loopback_hub(tmp_path: Path, io: dict) -> None:
    """`zoo.load(name)` fetches the release and, from its own repo, the VAE; converts once; loads offline after."""
    routes = {f"/org/flextok-test/resolve/main/{f}": (FIXTURE / f).read_bytes() for f in ("config.json", "model.safetensors")}
    routes.update({f"/{VAE_REPO}/resolve/main/{f}": (FIXTURE / "vae" / f).read_bytes() for f in VAE_FILES})
    code = """
        import warnings, torch, zoo
        from zoo import hub
        from zoo.image.flextok_release import LICENCE, LICENCE_URL
        hub.register_release("flextok-test", "flextok-release", hf_repo="org/flextok-test",
                             files=("config.json", "model.safetensors"), license=LICENCE, license_url=LICENCE_URL,
                             non_commercial=True)
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            tok = zoo.load("flextok-test")
        print(type(tok).__name__, any("commercial" in str(w.message) for w in caught))
        images = torch.load(IMAGES)
        print(tok.encode(images).ids.flatten().tolist())
    """.replace("IMAGES", repr(str(tmp_path / "images.pt")))
    torch.save((io["images"] + 1) / 2, tmp_path / "images.pt")
    env = {"ZOO_CACHE": str(tmp_path / "cache"), "HF_HUB_OFFLINE": "0"}
    with serve(routes, hf=True) as (base, requests):
        out = _run(code, {**env, "HF_ENDPOINT": base})
        assert out.returncode == 0, out.stderr[-3000:]
        assert any(VAE_REPO in r for r in requests)
    lines = out.stdout.splitlines()
    assert lines[0] == "FlexTokRelease True"
    assert lines[1] == str(io["ids"].flatten().tolist())
    out = _run(code, {**env, "HF_HUB_OFFLINE": "1"})  # the hub is gone: the converted checkpoint loads from the cache
    assert out.returncode == 0, out.stderr[-3000:]
    assert out.stdout.splitlines()[1] == lines[1]


def test_is_release() -> None:
    assert FlexTokRelease.is_release(FIXTURE) and FlexTokRelease.is_release(FIXTURE / "model.safetensors")
    assert not FlexTokRelease.is_release(FIXTURE / "vae")
    assert not FlexTokRelease.is_release(Path(__file__).parent)


def _edited(tmp_path: Path, edit) -> Path:
    folder = tmp_path / "edited"
    shutil.copytree(FIXTURE, folder)
    tree = json.loads((folder / "config.json").read_text())
    edit(tree)
    (folder / "config.json").write_text(json.dumps(tree))
    return folder


@pytest.mark.parametrize("edit, match", [
    (lambda t: t["decoder"]["module_dict"]["dec_latent_dropout"].update(_target_="os.system"), "os.system"),
    (lambda t: t["encoder"]["module_dict"]["enc_transformer"].update(qkv_bias=True), "qkv_bias"),
    (lambda t: t["decoder"]["module_dict"]["dec_transformer"].update(adaLN_expansion=3), "adaLN_expansion"),
    (lambda t: t["decoder"]["module_dict"]["dec_seq_packer"].update(per_subseq_embs=False), "per-subsequence"),
    (lambda t: t["encoder"]["module_dict"]["enc_seq_packer"].update(mask_mode="full"), "mask_mode"),
    (lambda t: t["decoder"]["module_dict"].pop("dec_time_embedder"), "TimestepEmbedder"),
])
def test_the_tree_is_checked_not_executed(tmp_path: Path, edit, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        FlexTokRelease.from_release(_edited(tmp_path, edit))


def test_a_repa_projector_is_dropped(tmp_path: Path, tok: FlexTokRelease) -> None:
    folder = _edited(tmp_path, lambda t: t["decoder"]["module_dict"].update(dec_repa={
        "_target_": "flextok.model.postprocessors.heads.MLPHead", "read_key": "dec_repa_in", "write_key": "dec_repa_out",
        "dim": 64, "dim_out": 32, "num_layers": 2, "use_mup_readout": False}))
    state = load_file(str(folder / "model.safetensors"))
    state["decoder.module_dict.dec_repa.out_proj.weight"] = torch.ones(32, 256)
    save_file(state, str(folder / "model.safetensors"))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", LicenceNotice)
        other = FlexTokRelease.from_release(folder)
    assert all(torch.equal(a, b) for a, b in zip(tok.state_dict().values(), other.state_dict().values()))


def test_unused_release_tensors_are_refused(tmp_path: Path) -> None:
    folder = tmp_path / "extra"
    shutil.copytree(FIXTURE, folder)
    state = load_file(str(folder / "model.safetensors"))
    state["decoder.module_dict.dec_extra.weight"] = torch.zeros(2)
    save_file(state, str(folder / "model.safetensors"))
    with pytest.raises(ValueError, match="unexpected tensors"):
        FlexTokRelease.from_release(folder)


def test_decode_contract(tok: FlexTokRelease, io: dict) -> None:
    images = (io["images"] + 1) / 2
    t = tok.encode(images, num_tokens=torch.tensor([2, 5]))
    x = tok.decode(t, steps=2, guidance=1.0, seed=0)
    assert x.shape == images.shape and float(x.min()) >= 0 and float(x.max()) <= 1
    assert torch.equal(x, tok.decode(t, steps=2, guidance=1.0, seed=0))
    assert not torch.equal(x, tok.decode(t, steps=2, guidance=3.0, seed=0))
    with pytest.raises(ValueError, match="num_tokens"):
        tok.encode(images, num_tokens=9)
    with pytest.raises(ValueError, match="guidance"):
        tok.decode(t, guidance=-1.0)
    with pytest.raises(ValueError, match="lengths"):
        tok.decode(Tokens(ids=t.ids, lengths=torch.zeros(2, dtype=torch.long)))


def _expected_params(c: FlexTokReleaseConfig) -> int:
    """Independent count from the official layout (bias-free attention, SwiGLU 2/3 width, per-block adaLN)."""
    levels, ch, p, k = len(c.fsq_levels), c.latent_channels, c.patch_size, c.num_registers

    def block(d: int, modulated: bool) -> int:
        hidden = int(2 * int(d * c.mlp_ratio) / 3)
        return 4 * d * d + 3 * d * hidden + (c.adaln_expansion * 6 * d * (d + 1) if modulated else 0)

    e, d = c.encoder_dim, c.decoder_dim
    encoder = (ch * p * p + 1) * e + k * e + c.encoder_depth * block(e, False) + (e + 1) * levels
    decoder = ((levels + 1) * d + k * d + 2 * d + (ch * p * p + 1) * d + (256 + 1) * d + (d + 1) * d
               + c.decoder_depth * block(d, True) + (d + 1) * 2 * d + (d + 1) * ch * p * p)
    return encoder + decoder


@pytest.mark.parametrize("name", sorted(PRESETS))
def test_release_presets_build_with_the_official_parameter_count(name: str) -> None:
    config = FlexTokReleaseConfig.from_name(name)
    with torch.device("meta"):
        model = FlexTokRelease(config)
    n = sum(p.numel() for key, p in model.named_parameters() if not key.startswith("vae."))
    assert n == _expected_params(config)
    small = FlexTokRelease(FlexTokReleaseConfig.from_name(name, image_size=32, encoder_depth=1, decoder_depth=1,
                                                          vae=dict(_TINY_VAE), num_registers=4))
    x = torch.rand(1, 3, 32, 32)
    t = small.encode(x, num_tokens=2)
    assert small.decode(t, steps=1, guidance=2.0).shape == x.shape


_TINY_VAE = dict(in_channels=3, out_channels=3, latent_channels=16, block_out_channels=[8, 8, 8, 8],
                 down_block_types=["DownEncoderBlock2D"] * 4, up_block_types=["UpDecoderBlock2D"] * 4,
                 layers_per_block=1, norm_num_groups=4)


def test_bad_release_config() -> None:
    with pytest.raises(ValueError, match="multiple of the VAE"):
        FlexTokReleaseConfig(image_size=250)
    with pytest.raises(ValueError, match="adaln_expansion"):
        FlexTokReleaseConfig(adaln_expansion=3)
    with pytest.raises(ValueError, match="not a supported config name"):
        FlexTokReleaseConfig.from_name("d99")
