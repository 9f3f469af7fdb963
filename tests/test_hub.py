"""The hub: names, folders, hf-hub and URLs; every failure the issue lists is triggered for real."""

import dataclasses
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


# ----------------------------------------------------------------------------------------- listing and the index


def test_index_is_current():
    """zoo/registry.json is what the registrations at the bottom of the family files and the shipped folders say
    (families and releases registered from outside the package, as the tests' fake family, are not indexed)."""
    import tests.fakefamily  # noqa: F401  (registered here, left out of the index)

    assert hub.build_index() == json.loads(hub.REGISTRY_FILE.read_text()), \
        "zoo/registry.json is stale: run python -c 'import zoo.hub as h; h.write_index()'"


def test_the_index_rewrites_over_its_own_stale_release_entries(tmp_path):
    """Editing a release's registration (here: every release's summary) and re-writing the index works from the
    stale index, in a fresh process as `write_index` is run; the result is the current index."""
    index = json.loads(hub.REGISTRY_FILE.read_text())
    releases = [n for n, e in index["names"].items() if e.get("release")]
    assert releases
    for name in releases:
        index["names"][name]["summary"] = {**index["names"][name]["summary"], "description": "stale", "vocab": "stale"}
    stale = tmp_path / "registry.json"
    stale.write_text(json.dumps(index))
    out = _run(f"""
        from pathlib import Path
        import zoo.hub as h
        h.REGISTRY_FILE = Path({str(stale)!r})
        h.write_index()
    """, {})
    assert out.returncode == 0, out.stderr[-3000:]
    assert json.loads(stale.read_text()) == json.loads(hub.REGISTRY_FILE.read_text())


def test_a_release_still_refuses_a_name_clash(monkeypatch):
    """A release replaces only its own stale entry (same family, not registered yet in this process): two different
    registrations of one name, a release over a shipped checkpoint or over another family's release are refused."""
    import tests.fakefamily  # noqa: F401

    monkeypatch.setattr(hub, "_NAMES", dict(hub._names()))
    monkeypatch.setattr(hub, "_RELEASES", dict(hub._RELEASES))
    kw = dict(hf_repo="org/fake", files=("fake.json",), license="MIT", license_url="https://example.org/mit")
    recorded = hub.Release(("fake.json",), "MIT", "https://example.org/mit", hf_repo="org/fake")
    hub._NAMES["fake-own"] = hub.Entry("fake-own", "fake", summary={"description": "old"}, release=recorded)
    hub._NAMES["fake-other"] = hub.Entry("fake-other", "beast", summary={"description": "old"}, release=recorded)

    hub.register_release("fake-own", "fake", summary={"description": "new"}, **kw)
    assert hub._names()["fake-own"].summary["description"] == "new"
    hub.register_release("fake-own", "fake", summary={"description": "new"}, **kw)  # the same registration again
    with pytest.raises(ValueError, match="'fake-own' is already registered .*a release of family 'fake'"):
        hub.register_release("fake-own", "fake", summary={"description": "another"}, **kw)
    with pytest.raises(ValueError, match="'fake-other' is already registered .*a release of family 'beast'"):
        hub.register_release("fake-other", "fake", **kw)
    with pytest.raises(ValueError, match="'beast-lasa' is already registered .*a shipped checkpoint of family 'beast'"):
        hub.register_release("beast-lasa", "beast", **kw)
    with pytest.raises(ValueError, match="'fake-own' is already registered"):
        hub.register("fake-own", "fake")


def _facts(family: str, c) -> list[tuple[str, list[float]]]:
    """(pattern, the numbers its groups must read) for each fact a release's description states of its preset `c`;
    a group may list numbers with '/', 'mono'/'stereo' read as 1/2 channels."""
    from zoo.audio import encodec, mimi

    if family == "larp":
        return [(r"(\d+)x(\d+)x(\d+) clips", [c.frames, c.image_size, c.image_size]),
                (r"-> (\d+) tokens of an (\d+)-entry", [c.max_tokens, c.codebook_size]),
                (r"from all (\d+) tokens only", [c.max_tokens]), (r"n < (\d+) raises", [c.max_tokens])]
    facts = [(r"([\d.]+) kHz", [c.sample_rate / 1000]), (r"([\d.]+) frames/s", [c.frame_rate])]
    if family == "dac":
        return facts + [(r"(\d+) codebooks of (\d+)", [c.num_codebooks, c.codebook_size]),
                        (r"([\d.]+)-([\d.]+) kbps", [c.kbps(1), c.kbps(c.num_codebooks)])]
    facts.append((r"kHz (mono|stereo)", [c.channels]))
    if family == "encodec":
        qs = encodec.RELEASED_CODEBOOKS[c.sample_rate]
        return facts + [(r"(\d+)-(\d+) codebooks of (\d+)", [qs[0], qs[-1], c.codebook_size]),
                        (r"([\d./]+) kbps", [c.kbps(q) for q in qs])]
    moshi = mimi.MOSHI_CODEBOOKS
    return facts + [(r"(\d+) semantic \+ (\d+) acoustic codebooks of (\d+)",
                     [c.num_semantic, c.num_codebooks - c.num_semantic, c.codebook_size]),
                    (r"Moshi uses (\d+) = ([\d.]+) kbps", [moshi, c.kbps(moshi)])]


def _check_description(family: str, c, text: str) -> None:
    import re

    for pattern, meant in _facts(family, c):
        found = re.search(pattern, text)
        assert found, (pattern, text)
        said = [{"mono": 1, "stereo": 2}.get(n) or float(n) for g in found.groups() for n in g.split("/")]
        assert said == pytest.approx(meant, rel=5e-3), (pattern, text)


def test_release_descriptions_say_what_their_presets_say():
    """The frame rates, codebooks, kbps and token counts in the DAC, EnCodec, Mimi and LARP release descriptions are
    their presets' (to the digits printed); and the descriptions follow a preset that changes."""
    from zoo.audio import dac, encodec, mimi
    from zoo.video import larp

    presets = {**{n: ("dac", dac.DACConfig.from_name(r["preset"])) for n, r in dac.RELEASES.items()},
               **{n: ("encodec", encodec.EncodecConfig.from_name(n.removeprefix("encodec-"))) for n in encodec.RELEASES},
               **{n: ("mimi", mimi.MimiConfig()) for n in mimi.RELEASES},
               **{n: ("larp", larp.LARPConfig.from_name(r["preset"])) for n, r in larp.RELEASES.items()}}
    assert set(presets) == {n for n, e in hub._RELEASES.items() if e.family in ("dac", "encodec", "mimi", "larp")}
    for name, (family, c) in presets.items():
        _check_description(family, c, hub._names()[name].summary["description"])

    describe = {"dac": lambda c: dac._description(c, "1M"), "encodec": encodec._description, "mimi": mimi._description,
                "larp": lambda c: larp._description(c, "1M")}
    changed = {"dac": dict(sample_rate=32000, num_codebooks=5, codebook_size=4096),
               "encodec": dict(codebook_size=2048, ratios=(8, 5, 4, 4)),
               "mimi": dict(num_codebooks=16, num_semantic=2, codebook_size=4096),
               "larp": dict(frames=8, image_size=64, max_tokens=512, codebook_size=4096)}
    for name, (family, c) in presets.items():
        other = dataclasses.replace(c, **changed[family])
        assert other.kbps(1) != c.kbps(1) if family != "larp" else other.max_tokens != c.max_tokens
        _check_description(family, other, describe[family](other))


def test_list_tokenizers_filters_and_types():
    rows = zoo.list_tokenizers()
    assert rows == sorted(rows, key=lambda r: r["name"])
    for r in rows:
        assert isinstance(r["name"], str) and isinstance(r["family"], str) and r["pretrained"] is True
        assert r["bits"] is None or isinstance(r["bits"], float)
        assert r["max_tokens"] is None or isinstance(r["max_tokens"], int)
        assert isinstance(r["shipped"], bool) and isinstance(r["non_commercial"], bool)
    flex = zoo.list_tokenizers("flex*")
    assert flex and all(r["name"].startswith("flex") for r in flex)
    audio = zoo.list_tokenizers(modality="audio")
    assert audio and all(r["modality"] == "audio" for r in audio)
    assert {r["name"] for r in zoo.list_tokenizers("*", modality="image")} >= {"cat-tiny-nat32", "karl-tiny-nat32"}
    archs = zoo.list_tokenizers(pretrained=False)
    assert "flextok-tiny" in {r["name"] for r in archs} and all(r["pretrained"] is False for r in archs)
    assert {r["modality"] for r in zoo.list_tokenizers("larp-*", pretrained=False)} == {"video"}
    assert zoo.list_tokenizers("no-such-*") == []


def test_shipped_models_that_are_not_tokenizers_load_by_name():
    from zoo.reduce.host import HostClassifier
    from zoo.reduce.select import LearnedSelector

    assert isinstance(zoo.load("vit-host-shapes32"), HostClassifier)
    assert isinstance(zoo.load("selector-vit-host-shapes32"), LearnedSelector)
    with pytest.raises(ValueError, match="expected family 'selector'"):
        zoo.load("vit-host-shapes32", family="selector")


# ----------------------------------------------------------------------------------------- hub habits


def test_an_existing_local_path_wins_over_a_registered_name(beast_dir, tmp_path, monkeypatch):
    import shutil

    monkeypatch.chdir(tmp_path)
    shutil.copytree(beast_dir, tmp_path / "beast-lasa")
    assert zoo.load("beast-lasa").config.num_dof == 3  # the local folder, not the shipped 2-dof tokenizer
    shutil.rmtree(tmp_path / "beast-lasa")
    assert zoo.load("beast-lasa").config.num_dof == 2


def test_register_persist_is_read_by_later_processes(beast_dir, tmp_path):
    sha = {n: hub.sha256_file(beast_dir / n).upper() for n in ("config.json", "model.safetensors")}  # any case
    cache = str(tmp_path / "cache")
    code = f"""
        import zoo
        zoo.register("my-persisted", "beast", sha256={sha!r}, url="http://127.0.0.1:9/none", persist=True)
    """
    assert _run(code, {"ZOO_CACHE": cache}).returncode == 0
    out = _run("import zoo.hub as h; e = h._names()['my-persisted']; print(e.family, e.url)", {"ZOO_CACHE": cache})
    assert out.stdout.split() == ["beast", "http://127.0.0.1:9/none"], out.stderr
    (tmp_path / "cache" / "registry.json").write_text("{not json")
    out = _run("import zoo; print(len(zoo.list_tokenizers()) > 5)", {"ZOO_CACHE": cache})
    assert out.stdout.strip() == "True" and "ignoring the user registry" in out.stderr
    with pytest.raises(ValueError, match="already registered as a shipped"):
        zoo.register("beast-lasa", "binning")


def test_push_to_hub_then_load_from_it(beast_dir, tmp_path):
    routes: dict = {}
    with serve(routes, hf=True) as (base, requests):
        out = _run(f"""
            import zoo
            tok = zoo.load({str(beast_dir)!r})
            print(tok.push_to_hub("me/pushed-beast", card="# pushed"))
            again = zoo.load("hf-hub:me/pushed-beast")
            print(again.config == tok.config, again.family)
        """, {"HF_ENDPOINT": base, "ZOO_CACHE": str(tmp_path / "c"), "HF_HUB_OFFLINE": "0", "HF_TOKEN": "hf_fake"})
        assert out.returncode == 0, out.stderr[-3000:]
        assert out.stdout.split()[-2:] == ["True", "beast"], out.stdout
        assert any("/commit/main" in r for r in requests)
    assert set(k.rsplit("/", 1)[1] for k in routes) == {"config.json", "model.safetensors", "README.md"}


def test_offline_lookups_fail_fast(tmp_path):
    import time

    code = """
        import zoo
        zoo.register("remote-only", "beast", hf_repo="org/never-downloaded")
        try:
            zoo.load("remote-only")
        except ValueError as e:
            print("ERROR", e)
    """
    for env in ({"HF_HUB_OFFLINE": "1"}, {"HF_HUB_OFFLINE": "0", "HF_ENDPOINT": "http://127.0.0.1:9"}):
        start = time.monotonic()
        out = _run(code, {**env, "ZOO_CACHE": str(tmp_path)})
        assert "ERROR" in out.stdout and "cannot be reached" in out.stdout, out.stdout + out.stderr
        assert time.monotonic() - start < 15  # the process itself takes seconds; huggingface_hub retried 20 s more


# ----------------------------------------------------------------------------------------- releases


def _fake_release(tmp_path, weight=(1.0, 2.0, 3.0)):
    from tests.fakefamily import release_bytes

    data = release_bytes(list(weight))
    return data, hub.hashlib.sha256(data).hexdigest()


def test_a_url_release_converts_once_caches_and_prints_its_licence(tmp_path, monkeypatch):
    from tests.fakefamily import Fake

    monkeypatch.setenv("ZOO_CACHE", str(tmp_path / "cache"))
    data, sha = _fake_release(tmp_path)
    with serve({"/rel/fake.json": data}) as (base, requests):
        zoo.register_release("fake-nc", "fake", url=f"{base}/rel", files=("fake.json",), sha256={"fake.json": sha},
                             license="CC-BY-NC-4.0", license_url="https://creativecommons.org/licenses/by-nc/4.0/",
                             non_commercial=True, summary={"modality": "features", "description": "a fake release"})
        before = Fake.conversions
        with pytest.warns(UserWarning, match="CC-BY-NC-4.0.*forbids commercial use"):
            m = zoo.load("fake-nc")
        assert m.weight.tolist() == [1.0, 2.0, 3.0] and Fake.conversions == before + 1
        n = len(requests)
        import warnings

        with warnings.catch_warnings():
            warnings.simplefilter("error")  # printed once per process, and no second conversion
            again = zoo.load("fake-nc")
        assert torch.equal(again.weight, m.weight) and Fake.conversions == before + 1 and len(requests) == n
    folder = tmp_path / "cache" / "checkpoints" / "fake-nc"
    config = json.loads((folder / "config.json").read_text())
    assert config["license"] == {"spdx": "CC-BY-NC-4.0", "url": "https://creativecommons.org/licenses/by-nc/4.0/",
                                 "non_commercial": True}
    assert config["source"]["files"] == {"fake.json": sha} and config["family"] == "fake"
    card = (folder / "README.md").read_text()
    assert "CC-BY-NC-4.0" in card and "Non-commercial" in card
    row = zoo.list_tokenizers("fake-nc")
    assert row == [] or row[0]["non_commercial"]  # the fake family is not a tokenizer, so it is not listed


def test_a_release_with_a_wrong_hash_writes_nothing(tmp_path, monkeypatch):
    import tests.fakefamily  # noqa: F401

    monkeypatch.setenv("ZOO_CACHE", str(tmp_path / "cache"))
    data, _ = _fake_release(tmp_path)
    with serve({"/rel/fake.json": data}) as (base, _):
        zoo.register_release("fake-bad", "fake", url=f"{base}/rel", files=("fake.json",), sha256={"fake.json": "ab" * 32},
                             license="MIT", license_url="https://opensource.org/license/mit")
        with pytest.raises(ValueError, match="sha256 mismatch"):
            zoo.load("fake-bad")
    leftovers = [p for p in (tmp_path / "cache").rglob("*") if p.is_file()]
    assert leftovers == []


def test_a_hub_release_pinned_to_a_revision_converts_in_one_process_and_loads_offline_in_the_next(tmp_path):
    data, sha = _fake_release(tmp_path, (4.0, 5.0))
    rev = "c" * 40
    register = f"""
        import tests.fakefamily, zoo
        zoo.register_release("fake-hf", "fake", hf_repo="org/fake", revision="{rev}", files=("fake.json",),
                             license="MIT", license_url="https://opensource.org/license/mit")
        print(zoo.load("fake-hf").weight.tolist())
    """
    unpinned = """
        import tests.fakefamily, zoo
        zoo.register_release("fake-main", "fake", hf_repo="org/fake", files=("fake.json",),
                             license="MIT", license_url="https://opensource.org/license/mit")
        print(zoo.load("fake-main").weight.tolist())
    """
    env = {"ZOO_CACHE": str(tmp_path / "cache"), "FAKE_CONVERSIONS": str(tmp_path / "conversions.txt")}
    routes = {f"/org/fake/resolve/{rev}/fake.json": data, "/org/fake/resolve/main/fake.json": data}
    with serve(routes, hf=True) as (base, requests):
        out = _run(unpinned, {**env, "HF_ENDPOINT": base, "HF_HUB_OFFLINE": "0"})
        assert out.returncode == 0 and out.stdout.strip() == "[4.0, 5.0]", out.stderr[-3000:]
        out = _run(register, {**env, "HF_ENDPOINT": base, "HF_HUB_OFFLINE": "0"})
        assert out.returncode == 0, out.stderr[-3000:]
        assert out.stdout.strip() == "[4.0, 5.0]"
    out = _run(register, {**env, "HF_HUB_OFFLINE": "1"})  # the hub is gone; the converted checkpoint is cached
    assert out.returncode == 0 and out.stdout.strip() == "[4.0, 5.0]", out.stderr[-3000:]
    assert len((tmp_path / "conversions.txt").read_text().splitlines()) == 2
    config = json.loads((tmp_path / "cache" / "checkpoints" / "fake-hf" / "config.json").read_text())
    assert config["source"] == {"hf_repo": "org/fake", "revision": rev, "files": {"fake.json": sha}, "commit": rev}
    # unpinned, the converted checkpoint still says which commit it came from (the fake hub's main is zeros)
    config = json.loads((tmp_path / "cache" / "checkpoints" / "fake-main" / "config.json").read_text())
    assert config["source"] == {"hf_repo": "org/fake", "revision": None, "files": {"fake.json": sha}, "commit": "0" * 40}
    card = (tmp_path / "cache" / "checkpoints" / "fake-main" / "README.md").read_text()
    assert f"huggingface.co/org/fake at commit {'0' * 40}, unpinned" in card


def test_a_release_downloaded_by_hand_is_recognised_and_converted_once(tmp_path, monkeypatch):
    from tests.fakefamily import Fake

    monkeypatch.setenv("ZOO_CACHE", str(tmp_path / "cache"))
    data, _ = _fake_release(tmp_path, (7.0,))
    folder = tmp_path / "downloaded"
    folder.mkdir()
    (folder / "fake.json").write_bytes(data)
    before = Fake.conversions
    assert zoo.load(folder).weight.tolist() == [7.0]
    assert zoo.load(folder / "fake.json").weight.tolist() == [7.0]  # the file itself works too (converted once more)
    assert zoo.load(folder).weight.tolist() == [7.0]
    assert Fake.conversions == before + 2
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "notes.txt").write_text("hello")
    with pytest.raises(ValueError, match="not a zoo checkpoint.*no registered family recognises"):
        zoo.load(tmp_path / "other")


# ----------------------------------------------------------------------------------------- hostile configs and names


def _mutate(beast_dir, fn):
    config = json.loads((beast_dir / "config.json").read_text())
    out = fn(config)
    text = out if isinstance(out, str) else json.dumps(config if out is None else out)
    (beast_dir / "config.json").write_text(text)


HOSTILE = {
    "family a list": lambda c: c.update(family=["beast"]),
    "family null": lambda c: c.update(family=None),
    "format_version a string": lambda c: c.update(format_version="2"),
    "format_version from the future": lambda c: c.update(format_version=99),
    "config a number": lambda c: c.update(config=5),
    "extra a list": lambda c: c.update(extra=[1]),
    "top-level null": lambda c: "null",
    "top-level list": lambda c: "[1, 2]",
    "deeply nested": lambda c: "[" * 200_000 + "]" * 200_000,
    "moderately nested": lambda c: c.update(summary={"a": json.loads("[" * 100 + "]" * 100)}),
    "NaN": lambda c: json.dumps(c).replace('"degree": 4', '"degree": NaN'),
    "no weight hash": lambda c: c.update(files={}),
    "weight hash not hex": lambda c: c["files"].update({"model.safetensors": "z" * 64}),
    "file outside the folder": lambda c: c["files"].update({"../escape": "0" * 64}),
    "int field a string": lambda c: c["config"].update(num_dof="3"),
    "int field a bool": lambda c: c["config"].update(num_dof=True),
    "int field a float": lambda c: c["config"].update(num_dof=3.5),
    "unknown family": lambda c: c.update(family="no-such-family"),
    "not utf-8": lambda c: "\udcff",
}


@pytest.mark.parametrize("case", sorted(HOSTILE))
def test_every_malformed_config_is_a_one_line_value_error(beast_dir, case):
    if case == "not utf-8":
        (beast_dir / "config.json").write_bytes(b"\xff\xfe{")
    else:
        _mutate(beast_dir, HOSTILE[case])
    with pytest.raises(ValueError) as e:
        zoo.load(beast_dir)
    assert "\n" not in str(e.value) and len(str(e.value)) < 600, str(e.value)


def test_a_huge_config_is_refused_before_it_is_parsed(beast_dir, monkeypatch):
    monkeypatch.setattr(hub, "MAX_CONFIG_BYTES", 10_000)
    _mutate(beast_dir, lambda c: c["summary"].update(pad="x" * 20_000))
    with pytest.raises(ValueError, match="more than the 10000"):
        zoo.load(beast_dir)


@pytest.mark.parametrize("source", ["", "   ", "a" * 5000, "nul\x00byte", 5, None, ["beast-lasa"], "hf-hub:", "hf-hub:a/b/c/d"])
def test_bad_names_are_one_line_value_errors(source):
    with pytest.raises(ValueError) as e:
        zoo.load(source)
    assert "\n" not in str(e.value) and len(str(e.value)) < 400


def test_empty_source_does_not_load_the_current_folder(beast_dir, monkeypatch):
    monkeypatch.chdir(beast_dir)
    with pytest.raises(ValueError, match="empty source"):
        zoo.load("")


def test_hashes_compare_case_insensitively(beast_dir):
    _mutate(beast_dir, lambda c: c["files"].update({"model.safetensors": c["files"]["model.safetensors"].upper()}))
    assert zoo.load(beast_dir).family == "beast"


def test_the_wheel_ships_every_checkpoint_file():
    """pyproject's package data (zoo/checkpoints/*/*) reaches every shipped file; scripts/check_wheel.sh installs it."""
    import tomllib

    globs = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["package-data"]["zoo"]
    assert "registry.json" in globs and (ROOT / "zoo" / "checkpoints").resolve() == hub.REPO_CHECKPOINTS
    files = [p.relative_to(hub.REPO_CHECKPOINTS) for p in hub.REPO_CHECKPOINTS.rglob("*") if p.is_file()]
    assert files and all(Path("checkpoints", f).match(g) for f in files for g in globs if g.startswith("checkpoints"))
