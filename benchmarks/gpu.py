"""GPU benchmark: encode and decode throughput of every tokenizer, float32 vs bfloat16, eager vs compiled.

    python benchmarks/gpu.py                      # on a GPU machine: all shipped names + every architecture preset
    python benchmarks/gpu.py --device cpu --tiny --no-write    # the CPU smoke run the tests use

One go, under a time budget (default 270 s; what does not fit is listed as skipped): for each model, in
float32 and bfloat16 (`tok.to(dtype)`, inputs cast alike), eager and with `torch.compile` on each of its
top-level modules, the best of a few timed calls after a warm-up, in samples per second, and the peak
memory of the call. Shipped names load their weights; architecture presets (`zoo.list_tokenizers(
pretrained=False)`, the released models' shapes among them) build at random initialisation, since the
GPU machine cannot download releases: speed does not depend on the weights. Writes the "gpu" section
of BENCHMARKS.md with the device name.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path
from typing import Any, Callable

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.inputs import synthetic_input  # noqa: E402
from benchmarks.report import table, write_section  # noqa: E402
import zoo  # noqa: E402
from zoo import hub  # noqa: E402

BATCH = {"image": 32, "video": 4, "action": 256, "audio": 4}
TINY_BATCH = {"image": 2, "video": 1, "action": 4, "audio": 1}
SMALL_PRESETS = ("tiny", "micro")  # test-sized presets: the whole CPU smoke run builds only these


def models(tiny: bool, pattern: str) -> list[tuple[str, Callable[[], Any]]]:
    """(name, builder) for every shipped tokenizer and every architecture preset matching `pattern`."""
    out = []
    for row in zoo.list_tokenizers(pattern):
        if row["shipped"] and not tiny:
            out.append((row["name"], lambda name=row["name"]: zoo.load(name)))
    for row in zoo.list_tokenizers(pattern, pretrained=False):
        if (row["preset"] in SMALL_PRESETS) == tiny:
            def build(family=row["family"], preset=row["preset"]) -> Any:
                cls = hub.family_class(family)
                return cls(cls.config_class.from_name(preset)).eval()
            out.append((row["name"] + " (random init)", build))
    return out


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def timed(fn: Callable[[], Any], device: torch.device, repeat: int) -> tuple[Any, float, int | None]:
    """(result, best seconds, peak bytes on the device or None) after one warm-up call."""
    out = fn()
    sync(device)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    best = float("inf")
    for _ in range(repeat):
        t = time.perf_counter()
        out = fn()
        sync(device)
        best = min(best, time.perf_counter() - t)
    peak = torch.cuda.max_memory_allocated(device) if device.type == "cuda" else None
    return out, best, peak


def compiled(tok: Any) -> Any:
    """Compile each top-level module in place (the tokenizer's own Python checks stay eager)."""
    for child in tok.children():
        child.compile()
    return tok


def bench_one(build: Callable[[], Any], device: torch.device, dtype: torch.dtype, compile_: bool,
              batch: dict[str, int], repeat: int) -> dict[str, Any]:
    tok = build().to(device=device, dtype=dtype).eval()
    if compile_:
        tok = compiled(tok)
    b = batch.get(tok.spec.modality, 4)
    x = synthetic_input(tok, b, seconds=10.0 if b > 1 or device.type == "cuda" else 1.0).to(device=device, dtype=dtype)
    with torch.no_grad():
        t0 = time.perf_counter()
        tokens, enc, enc_peak = timed(lambda: tok.encode(x), device, repeat)
        _, dec, dec_peak = timed(lambda: tok.decode(tokens), device, repeat)
        first = time.perf_counter() - t0
    mib = lambda p: None if p is None else round(p / 2**20, 1)  # noqa: E731
    return {"encode/s": b / enc, "decode/s": b / dec, "peak MiB (enc, dec)": f"{mib(enc_peak)}, {mib(dec_peak)}",
            "batch": b, "wall incl. warm-up (s)": first}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--tiny", action="store_true", help="test-sized presets only, small batches (CPU smoke run)")
    parser.add_argument("--names", default="*", help="shell pattern over names")
    parser.add_argument("--no-compile", action="store_true")
    parser.add_argument("--budget", type=float, default=270.0, help="seconds for the whole run")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--no-write", action="store_true")
    args = parser.parse_args()
    device, start = torch.device(args.device), time.perf_counter()
    batch = TINY_BATCH if args.tiny else BATCH
    dtypes = (torch.float32, torch.bfloat16)
    modes = (False,) if args.no_compile else (False, True)
    rows, skipped, failed = [], [], []
    for name, build in models(args.tiny, args.names):
        for dtype in dtypes:
            for compile_ in modes:
                label = [f"`{name}`", str(dtype).removeprefix("torch."), "compiled" if compile_ else "eager"]
                if time.perf_counter() - start > args.budget:
                    skipped.append(" ".join(label))
                    continue
                try:
                    r = bench_one(build, device, dtype, compile_, batch, args.repeat)
                except Exception as e:  # a dtype or compile a model does not support is a finding, not a crash
                    failed.append(f"{' '.join(label)}: {type(e).__name__}: {str(e).splitlines()[0][:160]}")
                    continue
                rows.append(label + [r["batch"], round(r["encode/s"], 1), round(r["decode/s"], 1),
                                     r["peak MiB (enc, dec)"], round(r["wall incl. warm-up (s)"], 1)])
                print(" | ".join(map(str, rows[-1])), flush=True)
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else f"CPU ({os.cpu_count()} cores)"
    lines = [
        "## GPU: throughput of every tokenizer, float32 vs bfloat16, eager vs compiled",
        "",
        f"`python benchmarks/gpu.py{' --tiny' if args.tiny else ''}` on {name}, torch {torch.__version__}, "
        f"{time.perf_counter() - start:.0f} s in all. Samples per second, best of {args.repeat} after a warm-up; "
        "peak memory of the timed calls; random-init rows are architecture presets (speed does not depend on the weights).",
        "",
        table(["model", "dtype", "mode", "batch", "encode / s", "decode / s", "peak MiB (enc, dec)",
               "wall incl. warm-up (s)"], rows),
    ]
    if failed:
        lines += ["", "Did not run:", *[f"- {f}" for f in failed]]
    if skipped:
        lines += ["", f"Skipped for the {args.budget:.0f} s budget: {', '.join(skipped)}."]
    body = "\n".join(lines)
    print(body)
    if not args.no_write:
        write_section("gpu", body)


if __name__ == "__main__":
    main()
