"""Nothing lost: atomic writes, concurrent loads into one cache, and resumable, multi-process training."""

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

import zoo
from zoo import hub
from zoo.data.cache import atomic_write_bytes
from tests.fakehub import checkpoint_routes, serve

ROOT = Path(__file__).resolve().parent.parent


def test_an_interrupted_write_leaves_neither_a_partial_file_nor_debris(tmp_path, monkeypatch):
    target = tmp_path / "model.safetensors"
    target.write_bytes(b"old complete file")

    def crash(fd):
        raise KeyboardInterrupt("killed mid-write")

    monkeypatch.setattr(os, "fsync", crash)
    with pytest.raises(KeyboardInterrupt):
        atomic_write_bytes(target, b"new" * 1000)
    assert target.read_bytes() == b"old complete file"
    assert os.listdir(tmp_path) == ["model.safetensors"]


def test_two_processes_loading_one_name_into_one_cache_both_succeed(tmp_path):
    source = zoo.load("beast-lasa").save_pretrained(tmp_path / "src")
    sha = {n: hub.sha256_file(source / n) for n in ("config.json", "model.safetensors")}
    cache = tmp_path / "cache"
    code = textwrap.dedent("""
        import sys, zoo
        zoo.register("shared-beast", "beast", sha256={sha!r}, url=sys.argv[1])
        for _ in range(5):
            tok = zoo.load("shared-beast")
        print("ok", tok.family)
    """).replace("{sha!r}", repr(sha))
    with serve(checkpoint_routes(source, "/beast")) as (base, requests):
        procs = [subprocess.Popen([sys.executable, "-c", code, f"{base}/beast"], cwd=ROOT, text=True,
                                  stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                  env={**os.environ, "ZOO_CACHE": str(cache)}) for _ in range(2)]
        outs = [p.communicate(timeout=120) for p in procs]
    for p, (out, err) in zip(procs, outs):
        assert p.returncode == 0, err
        assert out.strip() == "ok beast"
    files = sorted(p.name for p in (cache / "checkpoints" / "shared-beast").iterdir())
    assert files == ["config.json", "model.safetensors"]  # no temp files left behind
    assert hub.sha256_file(cache / "checkpoints" / "shared-beast" / "model.safetensors") == sha["model.safetensors"]
