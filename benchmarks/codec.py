"""Codec benchmark: quality vs bitrate on held-out speech and music, against Opus and mu-law; speed.

    OMP_NUM_THREADS=1 python benchmarks/codec.py [--checkpoint codec-small-speech16k] [--clips 32]

Measures our codec at every bitrate it offers (0.5 kbps per codebook), Opus (libopus through PyAV)
at 6, 12 and 24 kbps, and 8-bit mu-law (128 kbps at 16 kHz), all on the same held-out clips (unseen
espeak-ng voices, unseen fluidsynth pieces): STOI, PESQ (wide band), SI-SDR and multi-scale mel
distance. Speed: encode + decode of a 10 s clip on one thread, best of 10 after a warm-up. Writes the
"codec" section of BENCHMARKS.md and figures under benchmarks/figures/codec_*.png.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import os
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.report import FIGURES, best_time, machine, table, write_section  # noqa: E402
from zoo import load, metrics  # noqa: E402
from zoo.data.audio import build_audio_dataset  # noqa: E402

SR = 16000
REPORTED_KBPS = (1.0, 1.5, 3.0, 6.0)  # the bitrates; 6.0 needs 12 codebooks, see the notes
OPUS_KBPS = (6, 12, 24)


# ----------------------------------------------------------------------------------------- baselines


def opus(x: np.ndarray, kbps: float) -> tuple[np.ndarray, float]:
    """Round trip one clip (S,) through libopus (Ogg container) at `kbps`; returns (audio, measured kbps)."""
    import av

    buf = io.BytesIO()
    with av.open(buf, "w", format="ogg") as out:
        stream = out.add_stream("libopus", rate=SR, layout="mono")
        stream.bit_rate = int(kbps * 1000)
        frame = av.AudioFrame.from_ndarray(x[None].astype(np.float32), format="flt", layout="mono")
        frame.sample_rate = SR
        for packet in (*stream.encode(frame), *stream.encode(None)):
            out.mux(packet)
    nbytes = len(buf.getvalue())
    buf.seek(0)
    resampler = av.AudioResampler(format="flt", layout="mono", rate=SR)  # libopus decodes at 48 kHz
    chunks = []
    with av.open(buf) as inp:
        for f in inp.decode(audio=0):
            chunks += [g.to_ndarray()[0] for g in resampler.resample(f)]
    chunks += [g.to_ndarray()[0] for g in resampler.resample(None)]
    y = np.concatenate(chunks)[: len(x)]
    y = np.pad(y, (0, len(x) - len(y)))
    return y, nbytes * 8 / (len(x) / SR) / 1000


def opus_batch(x: torch.Tensor, kbps: float) -> tuple[torch.Tensor, float]:
    outs = [opus(c[0].numpy(), kbps) for c in x]
    return torch.from_numpy(np.stack([o[0] for o in outs]))[:, None], float(np.mean([o[1] for o in outs]))


def mulaw(x: torch.Tensor, bits: int = 8) -> torch.Tensor:
    import torchaudio.functional as AF

    q = 2**bits
    return AF.mu_law_decoding(AF.mu_law_encoding(x, q), q)


# ----------------------------------------------------------------------------------------- measuring


def quality(y: torch.Tensor, x: torch.Tensor, speech: bool) -> dict[str, float]:
    out = {"mel": float(metrics.mel_distance(y, x).mean()), "sisdr": float(metrics.si_sdr(y, x).mean())}
    if speech:
        out["stoi"] = float(metrics.stoi(y, x).mean())
        out["pesq"] = float(metrics.pesq(y, x).nanmean())
    return out


def speed(codec, seconds: float = 10.0) -> dict[str, dict[str, float]]:
    """Encode + decode time of one `seconds`-long clip per bitrate, best of 10 after a warm-up: wall time
    and this thread's CPU time (what one core does, less sensitive to other jobs on a shared machine).
    Also the same at 1.5 kbps through SEANet's training layers (weight norm per call, whole tensors), the
    reference the inference path is measured against, and Opus's for scale."""
    data = build_audio_dataset("speech", "val", 8, 4.0)["audio"]
    x = torch.from_numpy(np.concatenate(list(data)))[None, None, : int(seconds * SR)]

    def timed(fn) -> dict[str, float]:
        wall = best_time(fn, repeat=10)
        cpu = best_time(fn, repeat=10, clock=time.thread_time)
        return {"encode + decode": wall, "rtf": seconds / wall, "cpu": cpu, "rtf_cpu": seconds / cpu}

    out = {}
    for kbps in (1.5, codec.config.bitrates[-1]):
        out[f"zoo codec {kbps:g} kbps"] = timed(lambda: codec.decode(codec.encode(x, bitrate=kbps)))
    tokens = codec.encode(x, bitrate=1.5)
    y = codec.decode(tokens)
    with training_layers():
        row = out["zoo codec 1.5 kbps, training layers"] = timed(lambda: codec.decode(codec.encode(x, bitrate=1.5)))
        reference = codec.encode(x, bitrate=1.5)
        row["ids_differ"] = float((reference.ids != tokens.ids).sum())
        row["ids"] = float(tokens.ids.numel())
        row["audio_diff"] = float((codec.decode(reference) - y).abs().max())
    clip = x[0, 0].numpy()  # the same clip through libopus, to compare on the same (shared) machine
    out["Opus 6 kbps (libopus via PyAV)"] = timed(lambda: opus(clip, 6))
    return out


@contextlib.contextmanager
def training_layers():
    """Run SEANet through its training layers (`net`) instead of its inference plan, for the A/B row."""
    from zoo.nn.seanet import _SEANet

    forward = _SEANet.forward
    _SEANet.forward = lambda self, x: self.net(x)
    try:
        yield
    finally:
        _SEANet.forward = forward


# ----------------------------------------------------------------------------------------- figures


def plot_curves(rows: dict[str, dict[str, dict[str, float]]], baselines: dict[str, dict[str, dict[str, float]]],
                path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    panels = [("speech", "stoi", "STOI (speech) ↑"), ("speech", "pesq", "PESQ-WB (speech) ↑"),
              ("speech", "mel", "mel distance (speech) ↓"), ("music", "mel", "mel distance (music) ↓")]
    fig, axes = plt.subplots(1, 4, figsize=(16, 3.6))
    for ax, (kind, key, title) in zip(axes, panels):
        kb = sorted(rows[kind])
        ax.plot(kb, [rows[kind][k][key] for k in kb], "o-", label="zoo codec")
        ob = [b for b in baselines[kind] if b.startswith("opus")]
        ax.plot([baselines[kind][b]["kbps"] for b in ob], [baselines[kind][b][key] for b in ob], "s--", label="Opus")
        mu = baselines[kind]["mu-law 8 bit"]
        ax.plot([mu["kbps"]], [mu[key]], "^", label="mu-law 8 bit")
        ax.set_xscale("log")
        ax.set_xlabel("kbit/s")
        ax.set_title(title, fontsize=9)
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def plot_spectrograms(clips: dict[str, torch.Tensor], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(len(clips), 1, figsize=(9, 1.6 * len(clips)), sharex=True)
    for ax, (name, y) in zip(axes, clips.items()):
        ax.specgram(y.flatten().numpy(), Fs=SR, NFFT=512, noverlap=384, cmap="magma", vmin=-140)
        ax.set_ylabel("Hz", fontsize=7)
        ax.set_title(name, fontsize=8, loc="left")
    axes[-1].set_xlabel("seconds")
    fig.tight_layout()
    fig.savefig(path, dpi=65)
    plt.close(fig)


# ----------------------------------------------------------------------------------------- the job


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--checkpoint", default="codec-small-speech16k")
    p.add_argument("--clips", type=int, default=32, help="held-out clips of each kind (4 s each)")
    args = p.parse_args(argv)
    torch.set_num_threads(1)
    codec = load(args.checkpoint).eval()
    c = codec.config

    batches = {k: torch.from_numpy(build_audio_dataset(k, "val", args.clips, 4.0)["audio"])[:, None]
               for k in ("speech", "music")}
    rows: dict[str, dict[float, dict[str, float]]] = {}
    baselines: dict[str, dict[str, dict[str, float]]] = {}
    recon: dict[str, torch.Tensor] = {"original": batches["speech"][0]}
    for kind, x in batches.items():
        speech = kind == "speech"
        rows[kind] = {}
        for kbps in c.bitrates:
            y = codec.decode(codec.encode(x, bitrate=kbps))
            rows[kind][kbps] = quality(y, x, speech)
            if speech and kbps in (1.0, 1.5, c.bitrates[-1]):
                recon[f"zoo codec {kbps:g} kbps"] = y[0]
        baselines[kind] = {}
        for kbps in OPUS_KBPS:
            y, measured = opus_batch(x, kbps)
            baselines[kind][f"opus {kbps} kbps"] = {"kbps": measured, **quality(y, x, speech)}
            if speech and kbps == 6:
                recon["Opus 6 kbps"] = y[0]
        y = mulaw(x)
        baselines[kind]["mu-law 8 bit"] = {"kbps": 8 * SR / 1000, **quality(y, x, speech)}
        if speech:
            recon["mu-law 8 bit (128 kbps)"] = y[0]
        print(kind, "done", flush=True)
    load_before = os.getloadavg()[0]
    timing = speed(codec)
    load_after = os.getloadavg()[0]

    FIGURES.mkdir(parents=True, exist_ok=True)
    plot_curves(rows, baselines, FIGURES / "codec_quality_vs_bitrate.png")
    plot_spectrograms(recon, FIGURES / "codec_spectrograms.png")

    def our_rows(kind: str, keys: list[str]) -> list[list[object]]:
        out = []
        for kbps in REPORTED_KBPS:
            if kbps in rows[kind]:
                out.append([f"zoo codec {kbps:g} kbps ({codec.codebooks_for(bitrate=kbps)} codebooks)", kbps,
                            *[rows[kind][kbps][k] for k in keys]])
            else:
                out.append([f"zoo codec {kbps:g} kbps", kbps, *["n/a"] * len(keys)])
        top = c.bitrates[-1]
        if top not in REPORTED_KBPS:
            out.append([f"zoo codec {top:g} kbps ({c.num_codebooks} codebooks, the most)", top,
                        *[rows[kind][top][k] for k in keys]])
        out += [[name, b["kbps"], *[b[k] for k in keys]] for name, b in baselines[kind].items()]
        return out

    speech_keys, music_keys = ["stoi", "pesq", "sisdr", "mel"], ["sisdr", "mel"]
    s15, opus6 = rows["speech"][1.5]["stoi"], baselines["speech"]["opus 6 kbps"]["stoi"]
    rtf, rtf_cpu = timing["zoo codec 1.5 kbps"]["rtf"], timing["zoo codec 1.5 kbps"]["rtf_cpu"]
    tl = timing["zoo codec 1.5 kbps, training layers"]
    body = f"""## Audio codec (`codec-small-speech16k`)

Held-out data: {args.clips} speech clips from espeak-ng voices never seen in training and {args.clips}
music pieces never seen in training, 4 s each at 16 kHz (`zoo.data.audio`, split "val", seed 0). Opus is
libopus through PyAV at the nominal rate (measured rate, Ogg container included, in the kbit/s column);
mu-law is 8-bit companding at 16 kHz. All systems see the same clips.

Command: `OMP_NUM_THREADS=1 python benchmarks/codec.py --checkpoint {args.checkpoint} --clips {args.clips}`
Machine: {machine()}.

### Speech
{table(["system", "kbit/s", "STOI ↑", "PESQ-WB ↑", "SI-SDR dB ↑", "mel distance ↓"], our_rows("speech", speech_keys))}

### Music
{table(["system", "kbit/s", "SI-SDR dB ↑", "mel distance ↓"], our_rows("music", music_keys))}

6 kbps is out of reach of this model: it has {c.num_codebooks} codebooks of {c.codebook_size} at {c.frame_rate} Hz,
so its rates are {", ".join(f"{b:g}" for b in c.bitrates)} kbps.

### Speed (one thread, 10 s clip, best of 10 after a warm-up)
{table(["system", "encode + decode s (wall)", "× real time (wall)", "CPU s (this thread)", "× real time (CPU)"],
       [[k, v["encode + decode"], v["rtf"], v["cpu"], v["rtf_cpu"]] for k, v in timing.items()])}

The machine is shared by several jobs (load average {load_before:.1f} before and {load_after:.1f} after the timings,
on {os.cpu_count()} cores), so wall times drift; CPU time counts only this thread's work, and the rows
timed in the same run (SEANet's training layers, Opus) give the scale. "Training layers" runs the same
weights through the modules as trained (weight norm computed per call, torch's convolutions, whole
tensors; only the ELU in its fast inference form): the inference path (folded weights, per-tap products,
time windows; `zoo.nn.seanet.inference_plan`) is {tl["cpu"] / timing["zoo codec 1.5 kbps"]["cpu"]:.2f}x faster in CPU time.
{f"The ids are identical" if not tl["ids_differ"] else f"{tl['ids_differ']:.0f} of {tl['ids']:.0f} ids differ (nearest-code ties, e.g. duplicate codebook entries)"};
the decoded audio differs by at most {tl["audio_diff"]:.1e}.

### Goals
- STOI at 1.5 kbps ({s15:.3f}) vs Opus at 6 kbps ({opus6:.3f}): {"met" if s15 >= opus6 else "not met"}.
- Encode + decode faster than 100× real time on one core: {rtf:.0f}× (wall), {rtf_cpu:.0f}× (CPU) at 1.5 kbps,
  {"met" if rtf > 100 else "not met"}.

![quality vs bitrate](benchmarks/figures/codec_quality_vs_bitrate.png)

![spectrograms of one held-out speech clip and its reconstructions](benchmarks/figures/codec_spectrograms.png)
"""
    write_section("codec", body)
    print(body)


if __name__ == "__main__":
    main()
