"""Released audio codecs (DAC and Mimi; EnCodec against its official package is benchmarks/encodec_releases.py):
our implementation against the reference one, on one CPU thread.

    OMP_NUM_THREADS=1 python benchmarks/audio_releases.py [--codecs dac-16khz mimi] [--seconds 10] [--repeat 5]
        [--runs 3] [--long-minutes 10] [--clips 16]

Speed: encode + decode of the same `--seconds` of audio by ours and by the reference (transformers), the
two interleaved run by run in one process, best of `--repeat` each, with the codes asserted identical; this is
done `--runs` times, each on a freshly built pair (on a shared VM one run's ratio can sit 25% off the next's), and
the table gives the run of median ratio with the range over runs; the
architecture is the release's (its preset) at random initialisation, so no weights are needed. Peak
memory: encode + decode of `--long-minutes` of audio by ours (chunked) in a fresh process, as the peak
resident set above what the process held before (model and input loaded). Quality (STOI, PESQ, mel
distance against Opus at a similar bitrate) needs the released weights: it runs when `zoo.load(name)`
can fetch them, and says so when it cannot. Writes the "audio-releases" section of BENCHMARKS.md; a run of
some codecs keeps the other codecs' rows from their last run (each run's command line names its codecs).

A codec is one entry of `CODECS`: how to build ours and the reference at random init (the same weights),
and how the reference encodes and decodes.
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.report import interleaved_best, machine, table, write_section  # noqa: E402


@dataclass
class Codec:
    """One released codec in the benchmark.

    build: () -> (ours, reference), the same weights at random init, both in eval mode.
    reference_codes: (reference, wav (B, 1, S), q) -> ids (B, T, q), as the reference encodes.
    reference_audio: (reference, ids (B, T, q), S) -> waveform (B, 1, <= S).
    ours_random: () -> ours alone at random init (for the long-file memory run, no reference needed).
    """

    build: Callable[[], tuple[Any, Any]]
    reference_codes: Callable[[Any, torch.Tensor, int], torch.Tensor]
    reference_audio: Callable[[Any, torch.Tensor, int], torch.Tensor]
    ours_random: Callable[[], Any]
    reference_name: str


# ----------------------------------------------------------------------------------------- DAC


def _dac_preset(name: str) -> str:
    return name.split("-", 1)[1]  # "dac-16khz" -> "16khz"


def _dac_build(name: str) -> tuple[Any, Any]:
    """transformers' DacModel of the release's architecture, random, saved as a release folder; ours from it."""
    from transformers import DacConfig, DacModel

    from zoo.audio.dac import DAC, DACConfig as Ours

    c = Ours.from_name(_dac_preset(name))
    torch.manual_seed(0)
    reference = DacModel(DacConfig(encoder_hidden_size=c.encoder_dim, downsampling_ratios=list(c.encoder_rates),
                                   decoder_hidden_size=c.decoder_dim, n_codebooks=c.num_codebooks,
                                   codebook_size=c.codebook_size, codebook_dim=c.codebook_dim,
                                   sampling_rate=c.sample_rate)).eval()
    with torch.no_grad():  # what init leaves constant varies, so that codes vary
        for key, p in reference.named_parameters():
            if key.endswith("alpha"):
                p.uniform_(0.5, 1.5)
            elif key.endswith("bias"):
                p.normal_(0, 0.01)
    with tempfile.TemporaryDirectory() as tmp:
        reference.save_pretrained(tmp)
        ours = DAC.from_release(tmp)
    return ours, reference


def _dac_codes(reference: Any, wav: torch.Tensor, q: int) -> torch.Tensor:
    with torch.no_grad():
        padded = F.pad(wav, (0, -wav.shape[-1] % reference.config.hop_length))
        return reference.encode(padded, n_quantizers=q).audio_codes.transpose(1, 2)


def _dac_audio(reference: Any, ids: torch.Tensor, samples: int) -> torch.Tensor:
    with torch.no_grad():
        return reference.decode(audio_codes=ids.transpose(1, 2)).audio_values[:, None, :samples]


def _dac_random(name: str) -> Any:
    from zoo.audio.dac import DAC, DACConfig

    torch.manual_seed(0)
    return DAC(DACConfig.from_name(_dac_preset(name))).eval()


# ----------------------------------------------------------------------------------------- Mimi


def _mimi_build() -> tuple[Any, Any]:
    """transformers' MimiModel of the release's architecture (its default config), random, with random norms,
    layer scales and codebooks (so that codes vary), saved as a release folder; ours from it."""
    from transformers import MimiConfig, MimiModel

    from zoo.audio.mimi import Mimi

    from tests.test_mimi import randomise_hf_mimi

    torch.manual_seed(0)
    reference = randomise_hf_mimi(MimiModel(MimiConfig()), seed=0)
    with tempfile.TemporaryDirectory() as tmp:
        reference.save_pretrained(tmp)
        ours = Mimi.from_release(tmp)
    return ours, reference


def _mimi_codes(reference: Any, wav: torch.Tensor, q: int) -> torch.Tensor:
    with torch.no_grad():
        return reference.encode(wav, num_quantizers=q).audio_codes.transpose(1, 2)


def _mimi_audio(reference: Any, ids: torch.Tensor, samples: int) -> torch.Tensor:
    with torch.no_grad():
        return reference.decode(ids.transpose(1, 2)).audio_values[..., :samples]


def _mimi_random() -> Any:
    from zoo.audio.mimi import Mimi, MimiConfig

    torch.manual_seed(0)
    return Mimi(MimiConfig()).eval()


CODECS: dict[str, Codec] = {
    "dac-16khz": Codec(lambda: _dac_build("dac-16khz"), _dac_codes, _dac_audio, lambda: _dac_random("dac-16khz"),
                       "transformers DacModel"),
    "mimi": Codec(_mimi_build, _mimi_codes, _mimi_audio, _mimi_random, "transformers MimiModel"),
}


# ----------------------------------------------------------------------------------------- measuring


def test_signal(seconds: float, sample_rate: int, seed: int = 0) -> torch.Tensor:
    """(1, 1, S) a few harmonics with a wandering pitch and noise, in [-0.9, 0.9]."""
    g = torch.Generator().manual_seed(seed)
    n = int(seconds * sample_rate)
    t = torch.arange(n) / sample_rate
    f0 = 120 * (1 + 0.2 * torch.sin(2 * torch.pi * 0.5 * t))
    phase = 2 * torch.pi * torch.cumsum(f0, 0) / sample_rate
    x = sum(torch.sin(k * phase) / k for k in range(1, 8)) + 0.05 * torch.randn(n, generator=g)
    return (0.9 * x / x.abs().max())[None, None]


def speed(name: str, seconds: float, repeat: int) -> dict[str, Any]:
    """Ours vs the reference, interleaved run by run: best wall and CPU time of encode + decode."""
    codec = CODECS[name]
    ours, reference = codec.build()
    x = test_signal(seconds, ours.sample_rate)
    q = ours.config.num_codebooks
    tokens = ours.encode(x)
    ids = codec.reference_codes(reference, x, q)
    # a different summation order moves latents by ~1e-6 relative: a code whose two nearest entries are
    # closer than that can flip (and the frame's later codebooks with it); anything more is a bug
    differ = int((tokens.ids != ids).sum())
    assert differ <= 0.01 * ids.numel(), f"{name}: {differ} of {ids.numel()} ids differ"
    tokens.ids = ids  # decode the reference's codes with both
    y, y_ref = ours.decode(tokens), codec.reference_audio(reference, ids, x.shape[-1])
    diff = float((y[..., :y_ref.shape[-1]] - y_ref).abs().max())
    runs = {"ours": lambda: ours.decode(ours.encode(x)),
            "reference": lambda: codec.reference_audio(reference, codec.reference_codes(reference, x, q), x.shape[-1])}

    load_before = os.getloadavg()[0]
    best = interleaved_best(runs, repeat)  # the allocator as a process that has run only these models leaves it
    # how far float32 rounding alone takes the audio: the reference itself run in float64 on the same codes
    y64 = codec.reference_audio(_in_float64(reference), ids, x.shape[-1]).float()
    n = y64.shape[-1]
    exact = {"ours": float((y[..., :n] - y64).abs().max()), "reference": float((y_ref[..., :n] - y64).abs().max()),
             "peak": float(y64.abs().max())}
    # the float64 run's large frees raise glibc's mmap threshold: later large buffers come from the heap, with no
    # page faults; transformers' codecs fault on every call before that (hundreds of thousands of minor faults)
    warm = interleaved_best(runs, repeat)
    load_after = os.getloadavg()[0]
    return {"best": best, "warm": warm, "audio_diff": diff, "float64": exact, "ids": ids.numel(), "differ": differ,
            "load": (load_before, load_after),
            "params": sum(p.numel() for p in ours.parameters()),
            "reference_params": sum(p.numel() for p in reference.parameters())}


def _spread(ratios: list[float]) -> str:
    """'min / median / max' of ratios over runs."""
    r = sorted(ratios)
    return f"{r[0]:.2f} / {r[len(r) // 2]:.2f} / {r[-1]:.2f}"


def _in_float64(reference: Any) -> Any:
    """A float64 copy of a reference model (transformers' quantizers cache their codebooks at first use: dropped)."""
    model = copy.deepcopy(reference).double()
    for m in model.modules():
        if getattr(m, "_embed", None) is not None:
            m._embed = None
    return model


def peak_memory(name: str, minutes: float) -> dict[str, float]:
    """Encode + decode `minutes` of audio with ours in a fresh process: peak RSS above the loaded state."""
    code = (f"import sys, json; sys.path.insert(0, {str(Path(__file__).resolve().parent.parent)!r}); "
            f"from benchmarks.audio_releases import _long_run; print(json.dumps(_long_run({name!r}, {minutes!r})))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         env={**os.environ, "OMP_NUM_THREADS": "1"})
    if out.returncode:
        raise RuntimeError(out.stderr)
    return json.loads(out.stdout.splitlines()[-1])


def _long_run(name: str, minutes: float) -> dict[str, float]:
    torch.set_num_threads(1)
    ours = CODECS[name].ours_random()
    x = test_signal(60 * minutes, ours.sample_rate)
    # ru_maxrss would already hold the peak of building the model; reset the high-water mark (Linux) instead
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")
    before = _status_mib("VmRSS")
    start = time.perf_counter()
    y = ours.decode(ours.encode(x))
    seconds = time.perf_counter() - start
    peak = _status_mib("VmHWM")
    assert y.shape == x.shape
    return {"before_mib": before, "peak_mib": peak, "extra_mib": peak - before, "seconds": seconds,
            "input_mib": x.numel() * 4 / 2**20}


def _status_mib(field: str) -> float:
    """A memory figure of this process from /proc/self/status, in MiB."""
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) for line in f if line.startswith(field + ":")) / 1024


def quality(name: str, clips: int) -> dict[str, Any] | str:
    """STOI / PESQ / mel of the released model against Opus, when its weights can be fetched."""
    import zoo
    from benchmarks.codec import opus_batch
    from benchmarks.codec import quality as measure
    from zoo.data.audio import build_audio_dataset

    try:
        tok = zoo.load(name)
    except ValueError as e:
        return f"the released weights were not reachable here ({str(e).splitlines()[0]})"
    import torchaudio.functional as AF

    x16 = torch.from_numpy(build_audio_dataset("speech", "val", clips, 4.0)["audio"])[:, None]
    x = AF.resample(x16, 16000, tok.sample_rate) if tok.sample_rate != 16000 else x16
    rows = {}
    for q in sorted({1, tok.config.num_codebooks // 2, tok.config.num_codebooks}):
        y = tok.decode(tok.encode(x.clamp(-1, 1), num_codebooks=q))
        y16 = AF.resample(y, tok.sample_rate, 16000) if tok.sample_rate != 16000 else y
        rows[f"{name}, {q} codebooks ({tok.config.kbps(q):.3g} kbps)"] = measure(y16, x16, speech=True)
    for kbps in (6, 12):
        y, measured = opus_batch(x16, kbps)
        rows[f"Opus {kbps} kbps ({measured:.3g} measured)"] = measure(y, x16, speech=True)
    return rows


# ----------------------------------------------------------------------------------------- the job


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--codecs", nargs="+", default=list(CODECS), choices=list(CODECS))
    p.add_argument("--seconds", type=float, default=10.0)
    p.add_argument("--repeat", type=int, default=5)
    p.add_argument("--runs", type=int, default=3, help="fresh builds, each timed best of --repeat")
    p.add_argument("--long-minutes", type=float, default=10.0)
    p.add_argument("--clips", type=int, default=16, help="held-out speech clips (4 s) for the quality rows")
    args = p.parse_args(argv)
    torch.set_num_threads(1)

    speed_rows, memory_rows, notes, quality_rows = [], [], [], []
    for name in args.codecs:
        runs = [speed(name, args.seconds, args.repeat) for _ in range(args.runs)]
        ratio = [r["best"]["reference"]["cpu"] / r["best"]["ours"]["cpu"] for r in runs]
        s = runs[sorted(range(len(runs)), key=ratio.__getitem__)[len(runs) // 2]]
        b = s["best"]
        warm = [r["warm"]["reference"]["cpu"] / r["warm"]["ours"]["cpu"] for r in runs]
        speed_rows.append([name, CODECS[name].reference_name, b["ours"]["wall"], b["reference"]["wall"],
                           b["reference"]["wall"] / b["ours"]["wall"], b["ours"]["cpu"], b["reference"]["cpu"],
                           b["reference"]["cpu"] / b["ours"]["cpu"], _spread(ratio), _spread(warm),
                           f"{args.seconds / b['ours']['wall']:.2f}x",
                           f"{s['ids'] - s['differ']} of {s['ids']}", f"{s['audio_diff']:.1e}", f"{s['load'][0]:.1f} / {s['load'][1]:.1f}"])
        notes.append(f"{name}: {s['params'] / 1e6:.2f} M parameters in ours, {s['reference_params'] / 1e6:.2f} M in "
                     f"the reference at the same config")
        e = s["float64"]
        notes.append(f"{name}: against the reference run in float64 on the same codes (peak |audio| {e['peak']:.3g}), "
                     f"ours is {e['ours']:.1e} off and the reference's own float32 {e['reference']:.1e}: the audio "
                     "max diff above is float32 rounding, of the size the reference makes itself")
        m = peak_memory(name, args.long_minutes)
        memory_rows.append([name, args.long_minutes, m["extra_mib"], m["peak_mib"], m["input_mib"], m["seconds"]])
        print(name, speed_rows[-1], memory_rows[-1], flush=True)
        q = quality(name, args.clips)
        if isinstance(q, str):
            notes.append(f"{name} quality: {q}; the STOI / PESQ / mel rows need them (this script fills them when "
                         "`zoo.load(name)` can download)")
        else:
            quality_rows += [[k, v.get("stoi"), v.get("pesq"), v["mel"]] for k, v in q.items()]

    run = (f"`OMP_NUM_THREADS=1 python benchmarks/audio_releases.py --codecs {' '.join(args.codecs)} --seconds "
           f"{args.seconds:g} --repeat {args.repeat} --runs {args.runs} --long-minutes {args.long_minutes:g}` on {machine()}.")
    kept = _kept_rows(set(args.codecs))  # codecs not measured in this run keep the rows of their last run
    speed_rows, memory_rows, notes = kept["speed"] + speed_rows, kept["memory"] + memory_rows, kept["notes"] + notes
    body = [
        "## Released audio codecs (ours vs the reference implementation)",
        "",
        *[f"- {line}" for line in kept["runs"] + [run]],
        "",
        f"Speed: encode + decode of {args.seconds:g} s of audio at all codebooks, the release's architecture at random "
        "initialisation (the same weights in both), ours and the reference interleaved run by run in one process, "
        f"best of {args.repeat}; {args.runs} runs on fresh builds, the row is the run of median CPU ratio and "
        "'CPU ratio over runs' gives min / median / max. Each run times twice: first as the process left the allocator "
        "after building the models ('over runs'), then after the float64 check below has run the reference once more "
        "in float64 ('after a float64 run'): that run's large frees raise glibc's mmap threshold, so later large "
        "buffers come from the heap without page faults, which speeds the reference (it faults on every call before) "
        "far more than ours. Both are states a user's process can be in. ids: how many of ours equal the reference's (a code can flip where its two nearest entries are closer than float rounding moves the latents; the script fails above 1%); audio max diff: both decoding the reference's codes. Wall and CPU time (this thread's) in seconds; "
        "ratio = reference / ours.",
        "",
        table(["codec", "reference", "ours wall", "ref wall", "ratio wall", "ours CPU", "ref CPU", "ratio CPU",
               "CPU ratio over runs", "CPU ratio after a float64 run", "ours real time", "ids", "audio max diff", "load before / after"], speed_rows),
        "",
        f"Peak memory: encode + decode of {args.long_minutes:g} minutes by ours (chunks of `chunk_seconds`), in a "
        "fresh process; the extra peak resident memory above the loaded model and input, in MiB (VmHWM after resetting "
        "it through /proc/self/clear_refs once the model and input are loaded; before that fix the column read "
        "ru_maxrss, which had already peaked while the model was built, and showed 0).",
        "",
        table(["codec", "minutes", "extra peak MiB", "process peak MiB", "input MiB", "seconds"], memory_rows),
        "",
        *[f"- {n}" for n in notes],
    ]
    if quality_rows:
        body += ["", table(["system", "STOI", "PESQ", "mel"], quality_rows)]
    write_section(SECTION, "\n".join(body))


SECTION = "audio-releases"
_SUPERSEDED = " (its "  # how a kept run line starts to say which of its codecs a later run measured again


def _kept_rows(measured: set[str]) -> dict[str, list[Any]]:
    """The rows, notes and run lines that the section holds for codecs this run does not measure (a run of one
    codec keeps the others' last results instead of erasing them; each run line names its codecs)."""
    from benchmarks.report import BENCHMARKS

    text = BENCHMARKS.read_text() if BENCHMARKS.exists() else ""
    begin, end = text.find(f"<!-- begin {SECTION} -->"), text.find(f"<!-- end {SECTION} -->")
    kept: dict[str, list[Any]] = {"speed": [], "memory": [], "notes": [], "runs": []}
    if begin < 0 or end < 0:
        return kept
    others = set(CODECS) - measured
    for line in text[begin:end].splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")] if line.startswith("| ") else []
        if cells and cells[0] in others:
            kept["speed" if len(cells) > 8 else "memory"].append(cells)
        elif line.startswith("- ") and any(line.startswith(f"- {n}:") or line.startswith(f"- {n} ") for n in others):
            kept["notes"].append(line[2:])
        elif line.startswith(("`OMP_NUM_THREADS=1 python benchmarks/audio_releases.py", "- `OMP_NUM_THREADS=1")):
            command, _, note = line.removeprefix("- ").partition(_SUPERSEDED)
            named = command.split("--codecs ", 1)[1].split(" --", 1)[0].split() if "--codecs " in command else \
                ["dac-16khz"]  # the first run, before --codecs was written into the line, measured DAC alone
            gone = [n for n in named if n not in others or n in note.split(" rows ")[0].split(", ")]
            if len(gone) < len(named):  # it still made some of the rows: kept, saying which of its rows are gone
                kept["runs"].append(command + (f"{_SUPERSEDED}{', '.join(gone)} rows replaced by a later run)" if gone else ""))
    return kept


if __name__ == "__main__":
    main()
