"""The hub: names, folders, hf-hub and URLs; every failure the issue lists is triggered for real."""

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch

import zoo
from zoo import hub
from zoo.action.beast import BEAST, BEASTConfig
from tests.fakehub import checkpoint_routes, serve

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture
def beast_dir(tmp_path):
    rng = np.random.default_rng(0)
    x = np.cumsum(rng.normal(size=(64, 30, 3)), axis=1).astype(np.float32)
    tok = BEAST(BEASTConfig(num_dof=3, num_control_points=6, max_control_points=8)).fit(x)
    return tok.save_pretrained(tmp_path / "ckpt", card="# test card\n")


def test_save_then_load_is_identical(beast_dir):
    tok = zoo.load(beast_dir)
    again = zoo.load(str(beast_dir))
    assert tok.family == "beast" and tok.config == again.config
    for n in tok.bounds:
        np.testing.assert_array_equal(tok.bounds[n], again.bounds[n])
    assert (beast_dir / "README.md").read_text() == "# test card\n"
    assert set(os.listdir(beast_dir)) == {"config.json", "model.safetensors", "README.md"}


def test_unknown_name_suggests_close_matches():
    with pytest.raises(ValueError, match="did you mean 'beast-lasa'"):
        zoo.load("beast-lasaa")
    with pytest.raises(ValueError, match="not a registered tokenizer name"):
        zoo.load("qqqqqqqq")


def test_missing_file(beast_dir):
    (beast_dir / "model.safetensors").unlink()
    with pytest.raises(ValueError, match="missing"):
        zoo.load(beast_dir)
    with pytest.raises(ValueError, match="not a checkpoint directory"):
        zoo.load(beast_dir / "nothing-here")


def test_hash_mismatch(beast_dir):
    weights = beast_dir / "model.safetensors"
    data = bytearray(weights.read_bytes())
    data[-1] ^= 0xFF
    weights.write_bytes(bytes(data))
    with pytest.raises(ValueError, match="sha256 mismatch"):
        zoo.load(beast_dir)


def test_truncated_file_is_refused_even_when_its_hash_is_recorded(beast_dir):
    weights = beast_dir / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:20])
    config = json.loads((beast_dir / "config.json").read_text())
    config["files"]["model.safetensors"] = hub.sha256_file(weights)  # the hash alone cannot catch this
    (beast_dir / "config.json").write_text(json.dumps(config))
    with pytest.raises(ValueError, match="truncated or not a safetensors file"):
        zoo.load(beast_dir)


def test_missing_or_unexpected_keys_are_refused(beast_dir):
    from safetensors.torch import save_file

    save_file({"stray.weight": torch.zeros(2)}, str(beast_dir / "model.safetensors"))
    config = json.loads((beast_dir / "config.json").read_text())
    config["files"]["model.safetensors"] = hub.sha256_file(beast_dir / "model.safetensors")
    (beast_dir / "config.json").write_text(json.dumps(config))
    with pytest.raises(ValueError, match="unexpected.*stray.weight"):
        zoo.load(beast_dir)


def test_checkpoint_of_another_family(beast_dir):
    from zoo.action.baselines import Binning

    with pytest.raises(ValueError, match="holds a 'beast' model, not a 'binning' one"):
        Binning.from_pretrained(beast_dir)
    with pytest.raises(ValueError, match="expected family 'binning'"):
        hub.load_dir(beast_dir, family="binning")
    config = json.loads((beast_dir / "config.json").read_text())
    config["family"] = "no-such-family"
    (beast_dir / "config.json").write_text(json.dumps(config))
    with pytest.raises(ValueError, match="unknown family 'no-such-family'"):
        zoo.load(beast_dir)


def test_config_with_unknown_field_is_refused(beast_dir):
    config = json.loads((beast_dir / "config.json").read_text())
    config["config"]["num_dofs"] = 3
    (beast_dir / "config.json").write_text(json.dumps(config))
    with pytest.raises(ValueError, match=r"no field\(s\) \['num_dofs'\]"):
        zoo.load(beast_dir)


def test_url_loads_into_cache_checks_hashes_and_then_works_offline(beast_dir, monkeypatch, tmp_path):
    config_sha = hub.sha256_file(beast_dir / "config.json")
    with serve(checkpoint_routes(beast_dir, "/ckpt")) as (base, requests):
        tok = zoo.load(f"{base}/ckpt", sha256=config_sha)
        assert tok.family == "beast"
        n = len(requests)
        zoo.load(f"{base}/ckpt", sha256=config_sha)  # cached: nothing fetched again
        assert len(requests) == n
        with pytest.raises(ValueError, match="sha256 mismatch.*nothing was written"):
            zoo.load(f"{base}/ckpt", sha256="0" * 64)
        with pytest.raises(ValueError, match="needs the sha256"):
            zoo.load(f"{base}/ckpt")
        with pytest.raises(ValueError, match="could not download"):
            zoo.load(f"{base}/elsewhere", sha256=config_sha)
    monkeypatch.setenv("ZOO_CACHE", str(tmp_path / "empty-cache"))
    monkeypatch.setenv("ZOO_OFFLINE", "1")
    with pytest.raises(ValueError, match="not cached and downloads are disabled"):
        zoo.load(f"{base}/ckpt", sha256=config_sha)


def test_registered_name_fetches_from_its_url_with_recorded_hashes(beast_dir):
    sha = {n: hub.sha256_file(beast_dir / n) for n in ("config.json", "model.safetensors")}
    with serve(checkpoint_routes(beast_dir, "/files/my-beast")) as (base, _):
        zoo.register("my-beast-url", "beast", sha256=sha, url=f"{base}/files/my-beast")
        assert zoo.load("my-beast-url").family == "beast"
        zoo.register("my-beast-bad", "beast", sha256={**sha, "model.safetensors": "f" * 64}, url=f"{base}/files/my-beast")
        with pytest.raises(ValueError, match="sha256 mismatch"):
            zoo.load("my-beast-bad")
    with pytest.raises(ValueError, match="unknown family"):
        zoo.register("x", "no-such-family")


def _run(code: str, env: dict) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True,
                          env={**os.environ, **env}, cwd=ROOT, timeout=120)


def test_hf_hub_source_against_a_loopback_hub(beast_dir, tmp_path):
    """huggingface_hub reads HF_ENDPOINT at import, so the loads run in fresh processes."""
    routes = checkpoint_routes(beast_dir, "/org/beast-test/resolve/main")
    cache = str(tmp_path / "cache")
    with serve(routes, hf=True) as (base, requests):
        out = _run("""
            import zoo
            tok = zoo.load("hf-hub:org/beast-test")
            print(tok.family, tok.config.num_dof)
        """, {"HF_ENDPOINT": base, "ZOO_CACHE": cache, "HF_HUB_OFFLINE": "0"})
        assert out.returncode == 0, out.stderr
        assert out.stdout.split() == ["beast", "3"]
        assert any("resolve/main/model.safetensors" in r for r in requests)
    # the hub is gone: the cached copy still loads offline, and an uncached repo fails clearly
    out = _run("""
        import zoo
        print(zoo.load("hf-hub:org/beast-test").family)
        try:
            zoo.load("hf-hub:org/never-downloaded")
        except ValueError as e:
            print("ERROR", e)
        zoo.register("remote-only", "beast", hf_repo="org/never-downloaded")
        try:
            zoo.load("remote-only")
        except ValueError as e:
            print("ERROR", e)
    """, {"HF_HUB_OFFLINE": "1", "ZOO_CACHE": cache})
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    assert lines[0] == "beast"
    assert len(lines) == 3 and all("not in the cache and the hub cannot be reached" in l for l in lines[1:])


def test_hf_hub_missing_file(beast_dir, tmp_path):
    routes = {"/org/half/resolve/main/config.json": (beast_dir / "config.json").read_bytes()}
    with serve(routes, hf=True) as (base, _):
        out = _run("""
            import zoo
            try:
                zoo.load("hf-hub:org/half")
            except ValueError as e:
                print("ERROR", e)
        """, {"HF_ENDPOINT": base, "ZOO_CACHE": str(tmp_path), "HF_HUB_OFFLINE": "0"})
    assert "ERROR hf-hub:org/half has no file model.safetensors" in out.stdout, out.stdout + out.stderr


def test_shipped_files_match_the_registry():
    """Every shipped checkpoint folder is registered, and its files hash to what the registry records."""
    shipped = {p.name for p in hub.REPO_CHECKPOINTS.iterdir() if (p / "config.json").is_file() and
               "family" in json.loads((p / "config.json").read_text())}
    assert {"beast-lasa", "vit-host-shapes32", "selector-vit-host-shapes32"} <= shipped
    assert shipped <= set(hub._names())
    tokenizers = {r["name"] for r in zoo.list_tokenizers()}
    assert "beast-lasa" in tokenizers and "vit-host-shapes32" not in tokenizers  # models, not tokenizers
    for name in shipped:
        entry = hub._names()[name]
        assert entry.shipped
        for fname, sha in entry.sha256.items():
            assert hub.sha256_file(hub.REPO_CHECKPOINTS / name / fname) == sha, f"{name}/{fname} changed; run hub.write_index()"


def test_import_zoo_stays_light():
    out = _run("import sys, zoo; zoo.list_tokenizers(); print('torch' in sys.modules)", {})
    assert out.stdout.strip() == "False", out.stderr
