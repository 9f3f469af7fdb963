"""EnCodec speed and memory: ours vs the official `encodec` package, same weights, identical codes.

    OMP_NUM_THREADS=1 python benchmarks/encodec_releases.py [--repeat 3] [--seconds 10] [--long-minutes 1,10] [--long-kinds 24khz,48khz]

Both models are the released architectures (24 kHz mono causal, 48 kHz stereo) at random initialisation
with random codebooks (the released weights cannot be downloaded on this machine; speed does not depend
on the weight values). Our model is converted from the official state dict, so the two share every
weight; the script checks that their codes are identical before timing. Encode + decode of `--seconds`
of audio at 6 kbps on one thread, ours and the reference interleaved in one process, best of `--repeat`.
Peak memory: a fresh process per length encodes and decodes a `--long-minutes` file with our model (pieces
of `chunk_seconds`) and reports its peak resident memory (VmHWM, reset once loaded) above what it held then. Quality rows (STOI,
PESQ, mel distance vs Opus) need the real weights, which were not reachable here. Writes the "encodec"
section of BENCHMARKS.md.
"""

from __future__ import annotations

import argparse
import copy
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.report import interleaved_best, machine, table, write_section  # noqa: E402
from zoo.audio.encodec import EnCodec  # noqa: E402


def reference(kind: str) -> torch.nn.Module:
    """The official model (the released architecture), random weights and codebooks."""
    from encodec import EncodecModel

    torch.manual_seed(0)
    model = (EncodecModel.encodec_model_24khz if kind == "24khz" else EncodecModel.encodec_model_48khz)(pretrained=False)
    with torch.no_grad():
        for layer in model.quantizer.vq.layers:
            layer._codebook.embed.normal_(0, 0.3)
    return model.eval()


def convert(ref: torch.nn.Module, kind: str) -> EnCodec:
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / f"encodec_{kind}-bench.th"
        torch.save(ref.state_dict(), path)
        return EnCodec.from_release(path)


def signal(channels: int, samples: int, rate: int) -> torch.Tensor:
    """(1, C, S) harmonic tones with an envelope, in [-0.8, 0.8]."""
    t = torch.arange(samples) / rate
    x = sum(torch.sin(2 * torch.pi * f * t) / k for k, f in enumerate((110.0, 220.0, 330.0, 523.0), 1))
    x = x * (0.5 + 0.5 * torch.sin(2 * torch.pi * 1.5 * t))
    x = 0.8 * x / x.abs().max()
    return torch.stack([x, x.roll(7)][:channels])[None]


def speed(kind: str, seconds: float, repeat: int, kbps: float = 6.0) -> list[object]:
    ref = reference(kind)
    ours = convert(ref, kind)
    x = signal(ours.channels, int(seconds * ours.sample_rate), ours.sample_rate)
    ref.set_target_bandwidth(kbps)

    def run_ref() -> torch.Tensor:
        with torch.no_grad():
            frames = ref.encode(x)
            ref.decode(frames)
        return torch.cat([codes.transpose(1, 2) for codes, _ in frames], dim=1)

    def run_ours() -> torch.Tensor:
        t = ours.encode(x, bitrate=kbps)
        ours.decode(t)
        return t.ids

    ids_ref, ids_ours = run_ref(), run_ours()  # warm-up, and the codes must agree
    same = torch.equal(ids_ref, ids_ours)

    runs = {"ours": run_ours, "ref": run_ref}
    load_before = os.getloadavg()[0]
    best = interleaved_best(runs, repeat)  # the allocator as building the models left it
    # then as benchmarks/audio_releases.py times its second state: after the reference has run once in float64, whose
    # large frees raise glibc's mmap threshold (later large buffers come from the heap, without page faults)
    with torch.no_grad():
        exact = copy.deepcopy(ref).double()
        exact.decode(exact.encode(x.double()))
        del exact
    warm = interleaved_best(runs, repeat)
    load_after = os.getloadavg()[0]
    wall, cpu = ({k: t[c] for k, t in best.items()} for c in ("wall", "cpu"))
    return [f"encodec-{kind}", kbps, seconds, f"{wall['ours']:.2f}", f"{wall['ref']:.2f}",
            f"{wall['ref'] / wall['ours']:.2f}x", f"{cpu['ours']:.2f}", f"{cpu['ref']:.2f}",
            f"{cpu['ref'] / cpu['ours']:.2f}x", f"{warm['ref']['cpu'] / warm['ours']['cpu']:.2f}x",
            "yes" if same else "NO", f"{load_before:.1f} / {load_after:.1f}"]


LONG = """
import sys, torch
from benchmarks.encodec_releases import convert, reference, signal

def status(field):  # kB, from /proc/self/status
    return next(int(l.split()[1]) for l in open('/proc/self/status') if l.startswith(field))

torch.set_num_threads(1)
kind, minutes = sys.argv[1], float(sys.argv[2])
ours = convert(reference(kind), kind)
x = signal(ours.channels, int(minutes * 60 * ours.sample_rate), ours.sample_rate)
open('/proc/self/clear_refs', 'w').write('5')  # reset the high-water mark (VmHWM) to the current size
before = status('VmRSS:')  # model and input loaded
y = ours.decode(ours.encode(x, bitrate=6.0))
assert y.shape == x.shape
print((status('VmHWM:') - before) / 1024, x.numel() * 4 / 2**20)
"""


def long_file_memory(kind: str, minutes: float) -> list[object]:
    """Peak resident memory above the loaded model and input of one encode + decode, in a fresh process."""
    root = Path(__file__).resolve().parent.parent
    out = subprocess.run([sys.executable, "-c", LONG, kind, str(minutes)], capture_output=True, text=True, cwd=root,
                         env={**os.environ, "PYTHONPATH": str(root), "OMP_NUM_THREADS": "1"}, check=True)
    extra, audio_mb = (float(v) for v in out.stdout.split())
    return [f"encodec-{kind}", minutes, f"{audio_mb:.0f}", f"{extra:.0f}"]


SPEED = ["model", "kbps", "audio s", "ours wall s", "official wall s", "ratio wall", "ours CPU s", "official CPU s",
         "ratio CPU", "ratio CPU after a float64 run", "identical codes", "load before / after"]
MEMORY = ["model", "minutes", "input MB", "peak MB above model + input"]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--repeat", type=int, default=3)
    p.add_argument("--seconds", type=float, default=10.0)
    p.add_argument("--long-minutes", default="1,10", help="file lengths (minutes) whose peak memory is measured")
    p.add_argument("--kinds", default="24khz,48khz")
    p.add_argument("--long-kinds", default="24khz,48khz", help="models whose long-file memory is measured")
    args = p.parse_args()
    torch.set_num_threads(1)
    rows = [speed(k, args.seconds, args.repeat) for k in args.kinds.split(",")]
    print(table(SPEED, rows), flush=True)
    mem = [long_file_memory(k, float(m)) for k in args.long_kinds.split(",") for m in args.long_minutes.split(",")]
    print(table(MEMORY, mem))
    write_section("encodec", f"""## EnCodec (released architectures): speed and memory

`OMP_NUM_THREADS=1 python benchmarks/encodec_releases.py --repeat {args.repeat} --seconds {args.seconds:g} --kinds {args.kinds} --long-minutes {args.long_minutes} --long-kinds {args.long_kinds}`

Machine: {machine()}. Ours (`zoo.audio.encodec`) against the official `encodec` package (0.1.1) on the same
weights: the released architectures at random initialisation with random codebooks, converted from the official
state dict (the released weights are not reachable from this machine; speed does not depend on their values).
Encode + decode of {args.seconds:g} s of audio (tones) at 6 kbps, one thread, interleaved in one process, best
of {args.repeat}, wall and CPU time of this thread (on a shared machine the CPU ratio is the steadier one); the
codes of both are checked identical first. Then both are timed again after the official model has run once in
float64 ('ratio CPU after a float64 run'): that run's large frees raise glibc's mmap threshold, so later large
buffers come from the heap without page faults (the second allocator state of the audio-releases section). Load
average (2 cores, shared) before and after the timed runs.

{table(SPEED, rows)}

Peak resident memory of encoding and decoding a long file with our model, each in a fresh process: the high-water
mark (VmHWM, reset through /proc/self/clear_refs once the model and input are loaded) above the resident size at
that moment, so it counts what the coding itself holds (activations, ids, output), not the model or input. The
causal 24 kHz model runs pieces of `chunk_seconds` = 10 s with its LSTM state and a few frames of history carried;
the 48 kHz model codes its 1 s segments one by one. What grows with length is the ids and the output waveform
(the input's size again), not the activations. The official code runs the 24 kHz model on the whole file at once
(GBs of activations for 10 minutes), so it was not run here.

{table(MEMORY, mem)}

Quality (STOI, PESQ, mel distance against Opus): not filled. Those rows need the released weights
(`facebook/encodec_24khz`, `facebook/encodec_48khz`), which cannot be downloaded on this machine (no network
beyond the package registry); random weights say nothing about quality.
""")


if __name__ == "__main__":
    main()
