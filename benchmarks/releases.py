"""Imported releases against their official code: LARP-L's converter, same weights, same run.

    OMP_NUM_THREADS=1 python benchmarks/releases.py --larp /path/to/hywang66/LARP [--rounds 5]

Builds the official LARPTokenizer (from a checkout, as scripts/make_larp_fixture.py does) at a mid-size
configuration with random weights, converts it with `LARP.from_release`, and times encode + decode of both
on CPU with the configurations interleaved; also the parameter count of our `larp-l` preset against the
release's stated size. Writes the `larp-release` section of BENCHMARKS.md.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.report import machine, table, write_section  # noqa: E402
from scripts.make_larp_fixture import OFFICIAL_COMMIT, stand_ins, tiny_args  # noqa: E402
from zoo.video.larp import LARP, LARPConfig  # noqa: E402

SIZE = dict(bottleneck_token_num=256, input_size=64, frame_num=16, patch_size=8, decoder_patch_size=8,
            encoder_hidden_size=384, decoder_hidden_size=384, encoder_num_heads=6, decoder_num_heads=6,
            encoder_depth=4, decoder_depth=4)


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--larp", type=Path, default=None, help=f"a checkout of hywang66/LARP at {OFFICIAL_COMMIT[:7]}")
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--batch", type=int, default=2)
    args = p.parse_args()
    if args.larp is None:  # the official code is not pip-installable; `make bench` runs every script bare
        print("benchmarks/releases.py: skipped, pass --larp /path/to/a/checkout/of/hywang66/LARP")
        return
    torch.set_num_threads(1)
    started = time.time()

    stand_ins()
    sys.path.insert(0, str(args.larp))
    from models.larp_tokenizer import LARPTokenizer  # the official class

    config = {**tiny_args(), **SIZE, "prior_model": {"name": "none"}}
    config["bottleneck"]["args"]["regularizer"]["args"]["codebook_size"] = 1024
    config["bottleneck"]["args"]["bottleneck_dim"] = 16
    torch.manual_seed(0)
    official = LARPTokenizer(**config).eval()
    official.set_vq_eval_deterministic(True)
    with tempfile.TemporaryDirectory() as tmp:
        official.save_pretrained(tmp)
        ours = LARP.from_release(tmp)
    x = torch.rand(args.batch, 3, 16, 64, 64, generator=torch.Generator().manual_seed(0))

    def run_official() -> tuple[torch.Tensor, torch.Tensor]:
        ids = official.encode(x)["bottleneck_rep"]
        return ids, official.decode_from_bottleneck(ids).clamp(0, 1)

    def run_ours() -> tuple[torch.Tensor, torch.Tensor]:
        t = ours.encode(x)
        return t.ids, ours.decode(t)

    runs = {"official": run_official, "zoo": run_ours}
    times: dict[str, list[float]] = {k: [] for k in runs}
    loads = [os.getloadavg()[0]]
    with torch.inference_mode():
        (a_ids, a_x), (b_ids, b_x) = run_official(), run_ours()
        for i in range(args.rounds):
            for k in (list(runs) if i % 2 == 0 else list(runs)[::-1]):
                t = time.thread_time()
                runs[k]()
                times[k].append(time.thread_time() - t)
            loads.append(os.getloadavg()[0])
    ratios = [o / z for o, z in zip(times["official"], times["zoo"])]
    rows = [[k, f"{statistics.median(v):.2f}", f"{args.batch / statistics.median(v):.2f}"] for k, v in times.items()]
    with torch.device("meta"):
        count = sum(p.numel() for p in LARP(LARPConfig.from_name("larp-l")).parameters())
    body = f"""## LARP-L converter against the official code (`LARP.from_release`)

The official LARPTokenizer (hywang66/LARP at {OFFICIAL_COMMIT[:7]}, run from a checkout) at 16 x 64 x 64 clips,
4 x 8 x 8 patches (256), 256 tokens, width 384, 4 + 4 blocks, codebook 1024 x 16, random weights, converted
by `LARP.from_release`; encode + decode of a batch of {args.batch} on CPU, 1 thread, this thread's CPU time,
{args.rounds} rounds alternating which runs first. Same ids: {bool(torch.equal(a_ids, b_ids))}; decodes differ
by at most {float((a_x - b_x).abs().max()):.1e}.

{table(["code", "s per batch (median)", "clips/s"], rows)}

Ours vs official (official time / ours, above 1 = ours faster): {statistics.median(ratios):.2f}x
[{min(ratios):.2f}-{max(ratios):.2f}] per round. Both run the same timm blocks, which hold nearly all of the
compute; the converted model was not tuned for speed, and a gap of a few percent either way was not investigated. Load average over the run:
{min(loads):.1f}-{max(loads):.1f}.

Parameter count of our `larp-l` preset (the release's shape, prior dropped): {count / 1e6:.2f}M; the LARP README
states 173M for LARP-L-Long-tokenizer.

Command: `OMP_NUM_THREADS=1 python benchmarks/releases.py --larp /path/to/LARP --rounds {args.rounds}`
({(time.time() - started) / 60:.1f} min). Machine: {machine()}.
"""
    write_section("larp-release", body)
    print(body)


if __name__ == "__main__":
    main()
