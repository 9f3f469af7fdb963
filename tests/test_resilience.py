"""Nothing lost: atomic writes, concurrent loads into one cache, and resumable, multi-process training."""

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch

import zoo
from zoo import hub
from zoo.files import atomic_write_bytes
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


def test_saves_killed_at_random_moments_leave_a_whole_checkpoint_and_no_debris(tmp_path):
    """benchmarks/save_trials.py runs 30 of these and records them in BENCHMARKS.md."""
    from benchmarks.save_trials import kill_trials

    rows = kill_trials(3, tmp_path, seed=1, max_delay=0.6, dim=64)
    assert [r["loads_as"] in ("A", "B") for r in rows] == [True] * 3, rows
    assert all(r["debris_after_next_save"] == 0 for r in rows)


def test_two_writers_into_one_folder_never_mix(tmp_path):
    from benchmarks.save_trials import concurrent_writers

    out = concurrent_writers(4, tmp_path, read_seconds=3, dim=64)
    assert out["final_loads_as"] in ("A", "B") and out["debris"] == 0
    assert out["reader_loads_failed"] == 0, out["reader_failures"]


def test_save_keeps_the_files_it_does_not_write_and_leaves_nothing_beside_the_folder(tmp_path):
    tok = zoo.load("beast-lasa")
    folder = tok.save_pretrained(tmp_path / "ckpt", card="# one")
    (folder / "train_log.json").write_text("{}")
    tok.save_pretrained(folder)  # no card: the old one stays, as does the log
    assert sorted(os.listdir(folder)) == ["README.md", "config.json", "model.safetensors", "train_log.json"]
    assert (folder / "README.md").read_text() == "# one"
    assert os.listdir(tmp_path) == ["ckpt"]
    with pytest.raises(ValueError, match="family"):  # a failing save changes nothing
        hub.save_module(tok, folder, family="not a family name")
    assert sorted(os.listdir(tmp_path)) == ["ckpt"] and (folder / "README.md").read_text() == "# one"


def _trickle(chunks: int, pause: float, size: int | None = None):
    """A server that sends `chunks` bytes, one every `pause` seconds (declaring `size` bytes if given)."""
    import http.server
    import threading
    import time

    class Slow(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            self.send_response(200)
            if size is not None:
                self.send_header("Content-Length", str(size))
            self.end_headers()
            try:
                for _ in range(chunks):
                    self.wfile.write(b"x" * 1000)
                    self.wfile.flush()
                    time.sleep(pause)
            except OSError:
                pass

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Slow)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


def test_downloads_are_capped_in_size_and_total_time(tmp_path):
    import time

    from zoo.files import download

    for server, kwargs, match in [
        (_trickle(50, 0.2), dict(deadline_s=1.0), "took longer than 1 s"),  # a byte now and then: no hang
        (_trickle(5, 0.0), dict(max_bytes=3000), "more than the 3000 bytes"),
        (_trickle(1, 0.0, size=10**12), dict(max_bytes=3000), "is 1000000000000 bytes"),
    ]:
        try:
            start = time.monotonic()
            with pytest.raises(ValueError, match=match):
                download(f"http://127.0.0.1:{server.server_port}/f", tmp_path / "f", **kwargs)
            assert time.monotonic() - start < 5
        finally:
            server.shutdown()
            server.server_close()
    assert os.listdir(tmp_path) == []


TINY_FLEXTOK = """
seed_everything: 0
trainer:
  accelerator: cpu
  devices: {devices}
  strategy: {strategy}
  max_steps: {steps}
  logger: false
  enable_progress_bar: false
  enable_model_summary: false
  num_sanity_val_steps: 0
  limit_val_batches: 0
  default_root_dir: {root}
  callbacks:
    - class_path: tests.callbacks.DumpWeights
      init_args: {{directory: {root}/weights}}
{extra_callbacks}
model:
  class_path: recipes.flextok.FlexTokModule
  init_args:
    preset: tiny
    config: {{image_size: 16, patch_size: 8, num_registers: 4, encoder_dim: 32, encoder_depth: 1, encoder_heads: 1,
              decoder_dim: 32, decoder_depth: 1, decoder_heads: 1, fsq_levels: [5, 5]}}
    warmup_steps: 2
    budget_seconds: null
    ema_decay: 0.9
    eval_tokens: [1, 4]
data:
  class_path: recipes.shards.ShardedDataModule
  init_args: {{train_dir: {shards}, batch_size: 4, shuffle: true, seed: 3}}
"""


@pytest.fixture(scope="module")
def image_shards(tmp_path_factory):
    from recipes.shards import write_shards

    return write_shards("images", "train", 96, str(tmp_path_factory.mktemp("shards") / "images"),
                        chunk_bytes="16KB", resolution=16)


def _train(root: Path, shards: str, *, steps: int, devices: int = 1, strategy: str = "auto",
           extra_callbacks: str = "", args: tuple = ()) -> subprocess.CompletedProcess:
    root.mkdir(parents=True, exist_ok=True)
    config = root / "config.yaml"
    config.write_text(TINY_FLEXTOK.format(devices=devices, strategy=strategy, steps=steps, root=root, shards=shards,
                                          extra_callbacks=extra_callbacks))
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": os.environ.get("PYTHONPATH", str(ROOT))}
    return subprocess.run([sys.executable, "-m", "recipes.train", str(config), *args], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=600)


def _weights(path: Path) -> dict:
    from safetensors.torch import load_file

    return load_file(str(path))


def test_ddp_on_two_cpu_processes_ends_with_identical_weights(tmp_path, image_shards):
    out = _train(tmp_path / "ddp", image_shards, steps=4, devices=2, strategy="ddp")
    assert out.returncode == 0, out.stderr[-3000:]
    a, b = (_weights(tmp_path / "ddp" / "weights" / f"rank{r}.safetensors") for r in (0, 1))
    assert a.keys() == b.keys()
    assert all(torch.equal(a[k], b[k]) for k in a)
    single = _train(tmp_path / "one", image_shards, steps=0)  # the same seed, before any step
    assert single.returncode == 0, single.stderr[-3000:]
    init = _weights(tmp_path / "one" / "weights" / "rank0.safetensors")
    assert any(not torch.equal(a[k], init[k]) for k in a if k.startswith("model."))  # it did train


CHECKPOINT_EVERY_2 = """    - class_path: lightning.pytorch.callbacks.ModelCheckpoint
      init_args: {{dirpath: {root}/ckpt, every_n_train_steps: 2, save_last: true, save_top_k: -1}}
"""


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory, image_shards):
    root = tmp_path_factory.mktemp("full")
    full = _train(root, image_shards, steps=8, extra_callbacks=CHECKPOINT_EVERY_2.format(root=root))
    assert full.returncode == 0, full.stderr[-3000:]
    return _weights(root / "weights" / "rank0.safetensors")


@pytest.mark.parametrize("signal_name", ["SIGKILL", "SIGTERM"])
def test_a_killed_run_resumes_to_the_same_weights(tmp_path, image_shards, uninterrupted, signal_name):
    root = tmp_path / "killed"
    kill = f"    - class_path: tests.callbacks.KillAt\n      init_args: {{step: 5, sig: {signal_name}}}\n"
    killed = _train(root, image_shards, steps=8, extra_callbacks=CHECKPOINT_EVERY_2.format(root=root) + kill)
    # SIGKILL: dead on the spot. SIGTERM: Lightning stops gracefully (exit 0) without finishing the run.
    assert killed.returncode == (-9 if signal_name == "SIGKILL" else 0), killed.stderr[-2000:]
    assert not (root / "weights").exists()  # it never reached the end of fit
    assert (root / "ckpt" / "last.ckpt").exists()
    resumed = _train(root, image_shards, steps=8, extra_callbacks=CHECKPOINT_EVERY_2.format(root=root),
                     args=("--ckpt_path", str(root / "ckpt" / "last.ckpt")))
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    a, b = uninterrupted, _weights(root / "weights" / "rank0.safetensors")
    assert all(torch.equal(a[k], b[k]) for k in a), [k for k in a if not torch.equal(a[k], b[k])][:5]


def test_cluster_overlay_composes_with_a_family_config():
    out = subprocess.run([sys.executable, "-m", "recipes.train", "configs/flextok/tiny-nat32.yaml", "--config",
                          "configs/cluster/multi-node.yaml", "--print_config"], cwd=ROOT, capture_output=True,
                         text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    for line in ("num_nodes: 4", "strategy: ddp", "class_path: recipes.shards.ShardedDataModule",
                 "class_path: recipes.export.ExportTokenizer", "class_path: lightning.pytorch.callbacks.ModelCheckpoint"):
        assert line in out.stdout


def test_atomic_writes_are_readable_by_others(tmp_path):
    atomic_write_bytes(tmp_path / "f.bin", b"x")
    assert (tmp_path / "f.bin").stat().st_mode & 0o044 == 0o044


def test_export_counts_the_training_time_of_resumed_runs():
    from recipes.export import ExportTokenizer

    first = ExportTokenizer("unused", "x")
    first.start -= 100  # as if it had trained 100 s before its checkpoint
    resumed = ExportTokenizer("unused", "x")
    resumed.load_state_dict(first.state_dict())
    assert resumed.state_dict()["train_seconds"] >= 100
