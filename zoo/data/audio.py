"""Speech and music clips for training and evaluating neural audio codecs, built offline.

Speech is synthesized with Debian's `espeak-ng` (formant synthesis; many languages, accents and voice
variants), music is rendered with `fluidsynth` and the General MIDI soundfont `FluidR3_GM.sf2` from
MIDI files generated here (seeded melodies, chords, bass lines and drums). Every clip is mono float32
at `sample_rate` (16 kHz by default), `clip_seconds` long, peak-normalised to `PEAK`.

Splits are by source, never by crop, so validation measures generalisation to unseen sources:

- speech: train and val use disjoint voices (`SPEECH_VOICES["train"]` vs `SPEECH_VOICES["val"]`).
  A voice is `language+variant`; the val *variants* (the speaker timbres) never occur in train at
  all, while the val *languages* all occur in train, so val is an unseen speaker of a seen language.
- music: every clip is its own piece (key, scale, tempo, instruments, notes), drawn from the seeded
  stream `(seed, split, index)`. Train and val streams never share a seed, so no val piece, melody or
  arrangement occurs in train; the instrument palette (`MELODY_PROGRAMS`, ...) is shared.

Builds are deterministic (both tools are; fluidsynth renders float samples with reverb and chorus
off, so there is no dither noise) and cached by `zoo.data.cache.cached_arrays`. Clip `i` depends only
on `(seed, split, i, clip_seconds, sample_rate)`, so a larger build extends a smaller one.

The tools come from apt: `apt-get install espeak-ng fluidsynth fluid-soundfont-gm`.

    data = build_audio_dataset("speech", "train", n_clips=500)   # {'audio': (500, 32000), ...}
    ds = AudioClipDataset(data["audio"], segment_samples=16000, random_crop=True)
"""

from __future__ import annotations

import shutil
import struct
import subprocess
import tempfile
from math import gcd
from pathlib import Path

import numpy as np
import soundfile as sf
import torch
from scipy.signal import resample_poly

from zoo.data.cache import cached_arrays

VERSION = 1  # bump when the builders' output changes, so stale caches are not reused
PEAK = 0.9  # every clip is scaled so that max |x| == PEAK (all-silent clips cannot occur)
KINDS = ("speech", "music")
SPLITS = ("train", "val")
APT_PACKAGES = "espeak-ng fluidsynth fluid-soundfont-gm"
SOUNDFONTS = (Path("/usr/share/sounds/sf2/FluidR3_GM.sf2"), Path("/usr/share/sounds/sf2/default-GM.sf2"))

# --------------------------------------------------------------------------------------------------
# Speech
# --------------------------------------------------------------------------------------------------

# `language+variant`; variants are espeak-ng file names (`espeak-ng --voices=variant`, last column).
# An unknown variant silently falls back to the plain voice, hence the test that each one changes
# the output.
SPEECH_VOICES: dict[str, tuple[str, ...]] = {
    "train": (
        "en-us+m1", "en-us+f2", "en-us+klatt", "en-us+Andy", "en-us+linda", "en-us-nyc+Annie",
        "en+m2", "en+f1", "en-gb-scotland+m4", "en-gb-x-rp+f4", "en-gb-x-gbcwmd+edward",
        "en-029+m5", "en-gb-x-gbclan+klatt2",
        "de+m3", "de+f3", "fr+m6", "fr+Alex", "es+m1", "es-419+f2", "it+klatt2",
        "pt-br+m2", "nl+steph", "sv+robert", "pl+Denis",
    ),
    "val": (
        "en-us+m7", "en+f5", "en-029+klatt4", "en-us+Alicia", "en-gb-scotland+Gene",
        "de+m8", "fr+michel", "es+Mario",
    ),
}

# Per language: sentence templates whose {slots} are filled from word lists. English gets the most.
_EN_WORDS = {
    "adj": "quiet bright old small heavy green silver careful hungry distant yellow gentle strange "
           "wooden busy tired clever ancient narrow cold".split(),
    "noun": "river teacher garden engine violin captain window market dragon farmer letter bridge "
            "mountain kitchen rabbit doctor station painter harbour lantern".split(),
    "verb": "carried painted opened followed watched repaired found lifted pushed described "
            "visited counted borrowed cleaned noticed".split(),
    "place": "the village, the library, a small boat, the old factory, the city square, the forest, "
             "the train, the museum, the hospital, the beach".split(", "),
    "adv": "slowly quickly quietly suddenly carefully happily again early late together".split(),
    "name": "Anna Peter Maria Tom Sarah David Laura James Emma Lucas Olivia Noah".split(),
}
_EN_TEMPLATES = (
    "The {adj} {noun} {verb} the {noun2} near {place}.",
    "{name} {verb} a {adj} {noun} {adv}.",
    "Did the {noun} really see {num} {adj} birds in {place}?",
    "Please bring the {adj} {noun} to {place} before {hour} o'clock.",
    "We {verb} the {noun} {adv}, and then we went home.",
    "There were {num} {noun}s waiting outside {place}.",
    "Why is the {noun} so {adj} today, {name}?",
    "{name} and {name2} {verb} {num} {adj} {noun}s last {day}.",
    "On {day} morning the {noun} was {adj} and {adj2}.",
    "It costs {num} dollars and {num2} cents.",
)
_DAYS_EN = "Monday Tuesday Wednesday Thursday Friday Saturday Sunday".split()

# Other languages: subject + verb phrase + complement, from short fixed lists.
_SIMPLE_SENTENCES: dict[str, tuple[tuple[str, ...], tuple[str, ...], tuple[str, ...]]] = {
    "de": (("Der Lehrer", "Meine Schwester", "Das kleine Kind", "Der alte Mann", "Unsere Nachbarin"),
           ("liest", "kauft", "sucht", "malt", "findet", "braucht"),
           ("ein Buch.", "den roten Ball.", "frisches Brot.", "eine Karte von Berlin.", "zwei Blumen.")),
    "fr": (("Le professeur", "Ma soeur", "Le petit chat", "Mon voisin", "La boulangère"),
           ("regarde", "achète", "cherche", "dessine", "trouve", "prépare"),
           ("un livre rouge.", "la grande maison.", "du pain frais.", "une carte de Paris.", "trois fleurs.")),
    "es": (("El maestro", "Mi hermana", "El niño pequeño", "Nuestro vecino", "La doctora"),
           ("lee", "compra", "busca", "pinta", "encuentra", "necesita"),
           ("un libro nuevo.", "la casa blanca.", "pan fresco.", "un mapa de Madrid.", "cuatro flores.")),
    "it": (("Il maestro", "Mia sorella", "Il bambino", "Il nostro vicino", "La dottoressa"),
           ("legge", "compra", "cerca", "dipinge", "trova", "prepara"),
           ("un libro antico.", "la casa gialla.", "il pane fresco.", "una mappa di Roma.", "cinque fiori.")),
    "pt": (("O professor", "Minha irmã", "O menino", "O nosso vizinho", "A médica"),
           ("lê", "compra", "procura", "pinta", "encontra", "prepara"),
           ("um livro novo.", "a casa azul.", "pão fresco.", "um mapa do Rio.", "seis flores.")),
    "nl": (("De leraar", "Mijn zus", "Het kleine kind", "Onze buurman", "De dokter"),
           ("leest", "koopt", "zoekt", "schildert", "vindt", "maakt"),
           ("een boek.", "het rode huis.", "vers brood.", "een kaart van Amsterdam.", "zeven bloemen.")),
    "sv": (("Läraren", "Min syster", "Det lilla barnet", "Vår granne", "Doktorn"),
           ("läser", "köper", "letar efter", "målar", "hittar", "lagar"),
           ("en bok.", "det röda huset.", "färskt bröd.", "en karta över Stockholm.", "åtta blommor.")),
    "pl": (("Nauczyciel", "Moja siostra", "Małe dziecko", "Nasz sąsiad", "Lekarka"),
           ("czyta", "kupuje", "szuka", "maluje", "znajduje", "robi"),
           ("książkę.", "czerwony dom.", "świeży chleb.", "mapę Krakowa.", "dziewięć kwiatów.")),
}

ESPEAK_RATE = 22050  # espeak-ng always writes 22050 Hz, 16-bit mono
SPEECH_WPM = (120, 220)  # words per minute, drawn uniformly per clip (inclusive)
SPEECH_PITCH = (25, 75)  # espeak-ng pitch 0..99, drawn uniformly per clip (inclusive)


def _language(voice: str) -> str:
    """`'en-gb-x-rp+f4'` -> `'en'`; `'pt-br+m2'` -> `'pt'`."""
    return voice.split("+")[0].split("-")[0]


def _sentence(lang: str, rng: np.random.Generator) -> str:
    """One random sentence in `lang`."""
    if lang == "en":
        w = {k: str(rng.choice(v)) for k, v in _EN_WORDS.items()}
        w.update(noun2=str(rng.choice(_EN_WORDS["noun"])), adj2=str(rng.choice(_EN_WORDS["adj"])),
                 name2=str(rng.choice(_EN_WORDS["name"])), day=str(rng.choice(_DAYS_EN)),
                 num=str(rng.integers(2, 1000)), num2=str(rng.integers(1, 100)), hour=str(rng.integers(1, 13)))
        return str(rng.choice(_EN_TEMPLATES)).format(**w)
    subjects, verbs, objects = _SIMPLE_SENTENCES[lang]
    return f"{rng.choice(subjects)} {rng.choice(verbs)} {rng.choice(objects)}"


def _espeak(voice: str, wpm: int, pitch: int, text: str, sample_rate: int, tmp: Path) -> np.ndarray:
    """Run espeak-ng. Returns (S,) float32 at `sample_rate`."""
    wav = tmp / "speech.wav"
    subprocess.run(["espeak-ng", "-v", voice, "-s", str(wpm), "-p", str(pitch), "-w", str(wav), text],
                   check=True, capture_output=True)
    x, rate = sf.read(wav, dtype="float32")
    assert rate == ESPEAK_RATE and x.ndim == 1, (rate, x.shape)
    g = gcd(sample_rate, ESPEAK_RATE)
    return resample_poly(x, sample_rate // g, ESPEAK_RATE // g).astype(np.float32)


def _speech_clip(voice: str, rng: np.random.Generator, n_samples: int, sample_rate: int, tmp: Path) -> tuple[np.ndarray, str]:
    """Synthesize one clip.

    Returns:
        audio: (n_samples,) float32, speech from its first onset, zero-padded if the text ran short.
        text: what was synthesized (the clip may cut off its end).
    """
    wpm = int(rng.integers(SPEECH_WPM[0], SPEECH_WPM[1] + 1))
    pitch = int(rng.integers(SPEECH_PITCH[0], SPEECH_PITCH[1] + 1))
    # Enough words to fill the clip with margin (espeak speaks about wpm/60 words per second); if the
    # speech still runs short, add sentences and synthesize again (a few tries, then zero-pad).
    words_needed = 1.3 * wpm / 60 * n_samples / sample_rate + 2
    sentences: list[str] = []
    for _ in range(3):
        while sum(len(s.split()) for s in sentences) < words_needed:
            sentences.append(_sentence(_language(voice), rng))
        text = " ".join(sentences)
        x = _espeak(voice, wpm, pitch, text, sample_rate, tmp)
        # Start 10 ms before the first sample above 2% of the peak (espeak leads with silence).
        onset = int(np.argmax(np.abs(x) > 0.02 * np.abs(x).max()))
        x = x[max(0, onset - sample_rate // 100):][:n_samples]
        if len(x) == n_samples:
            break
        words_needed *= 1.5
    return np.pad(x, (0, n_samples - len(x))), text


def _build_speech(split: str, n_clips: int, n_samples: int, sample_rate: int, seed: int) -> dict[str, np.ndarray]:
    voices = SPEECH_VOICES[split]
    # Round-robin over a seeded order, so even a small build covers many voices evenly.
    order = np.random.default_rng([seed, SPLITS.index(split), 0]).permutation(len(voices))
    audio = np.zeros((n_clips, n_samples), np.float32)
    source, text = [], []
    with tempfile.TemporaryDirectory(prefix="zoo-speech-") as tmp:
        for i in range(n_clips):
            voice = voices[order[i % len(voices)]]
            rng = np.random.default_rng([seed, SPLITS.index(split), KINDS.index("speech"), i])
            audio[i], t = _speech_clip(voice, rng, n_samples, sample_rate, Path(tmp))
            source.append(voice)
            text.append(t)
    return {"audio": _normalise(audio), "source": np.array(source), "text": np.array(text)}


# --------------------------------------------------------------------------------------------------
# Music
# --------------------------------------------------------------------------------------------------

# General MIDI programs (0-based) per role; drums are channel 10 (index 9) in GM.
MELODY_PROGRAMS = (0, 4, 11, 13, 19, 22, 24, 26, 40, 41, 56, 60, 65, 68, 71, 73, 75, 80, 81, 105)
HARMONY_PROGRAMS = (0, 1, 4, 5, 16, 19, 24, 25, 46, 48, 49, 52, 61, 88, 89, 91)
BASS_PROGRAMS = (32, 33, 34, 35, 36, 38, 39, 42, 43)
SCALES = {
    "major": (0, 2, 4, 5, 7, 9, 11), "minor": (0, 2, 3, 5, 7, 8, 10), "dorian": (0, 2, 3, 5, 7, 9, 10),
    "mixolydian": (0, 2, 4, 5, 7, 9, 10), "harmonic_minor": (0, 2, 3, 5, 7, 8, 11),
}
PROGRESSIONS = ((0, 4, 5, 3), (0, 5, 3, 4), (0, 3, 4, 0), (1, 4, 0, 0), (0, 5, 1, 4), (5, 3, 0, 4))
TEMPO_BPM = (70, 160)
PIECE_GAP = 0.25  # seconds of silence between pieces rendered in one fluidsynth call
RENDER_LATENCY = 64  # samples: fluidsynth applies MIDI events at its next 64-sample block
PIECES_PER_RENDER = 64  # pieces per fluidsynth call (loading the 148 MB soundfont costs ~1 s)
_TICKS_PER_QUARTER, _US_PER_QUARTER = 480, 500_000  # fixed MIDI clock: one tick = 1/960 s


def _piece(rng: np.random.Generator, t0: float, seconds: float) -> list[tuple[float, int, bytes]]:
    """MIDI events of one random piece in [t0, t0 + seconds): (time s, order, message bytes).

    Melody on channel 0 (always), chords on 1, bass on 2, drums on 9 (each optional). Everything is
    silenced at `t0 + seconds` (all-sound-off), so pieces rendered back to back never overlap.
    """
    beat = 60.0 / rng.integers(TEMPO_BPM[0], TEMPO_BPM[1] + 1)
    root = 48 + int(rng.integers(0, 12))  # tonic in the octave below middle C
    scale = SCALES[str(rng.choice(list(SCALES)))]
    prog = PROGRESSIONS[rng.integers(len(PROGRESSIONS))]
    beats_per_chord = int(rng.choice([2, 4]))
    end = t0 + seconds
    ev: list[tuple[float, int, bytes]] = []

    def pitch(degree: int, octave: int) -> int:
        return root + 12 * (octave + degree // 7) + scale[degree % 7]

    def note(ch: int, t: float, dur: float, key: int, vel: int) -> None:
        if t < end:
            ev.append((t, 2, bytes([0x90 | ch, key, vel])))
            ev.append((min(t + dur, end), 1, bytes([0x80 | ch, key, 0])))

    parts = {0: MELODY_PROGRAMS, 1: HARMONY_PROGRAMS, 2: BASS_PROGRAMS}
    present = {0: True, 1: rng.random() < 0.8, 2: rng.random() < 0.7, 9: rng.random() < 0.5}
    for ch, programs in parts.items():
        if present[ch]:
            ev.append((t0, 0, bytes([0xC0 | ch, int(rng.choice(programs))])))
            ev.append((t0, 0, bytes([0xB0 | ch, 7, int(rng.integers(80, 121))])))  # channel volume
    # Chords: block or arpeggiated triads on the progression; bass: chord roots.
    arpeggio = rng.random() < 0.4
    n_chords = int(np.ceil(seconds / (beat * beats_per_chord)))
    for c in range(n_chords):
        t, d = t0 + c * beats_per_chord * beat, prog[c % len(prog)]
        if present[1]:
            vel = int(rng.integers(50, 90))
            if arpeggio:
                for k in range(2 * beats_per_chord):
                    note(1, t + k * beat / 2, beat / 2, pitch(d + 2 * (k % 3), 0), vel)
            else:
                for k in (0, 2, 4):
                    note(1, t, beats_per_chord * beat, pitch(d + k, 0), vel)
        if present[2]:
            for k in range(0, beats_per_chord, int(rng.choice([1, 2]))):
                note(2, t + k * beat, beat * 0.9, pitch(d, -1), int(rng.integers(70, 110)))
    # Melody: a random walk on the scale with mixed note lengths and a few rests.
    t, degree = t0, int(rng.integers(0, 7))
    while t < end:
        dur = beat * float(rng.choice([0.25, 0.5, 0.5, 1.0, 1.0, 1.5, 2.0]))
        if t == t0 or rng.random() > 0.1:
            note(0, t, dur * 0.95, pitch(degree, 1), int(rng.integers(70, 120)))
        degree = int(np.clip(degree + rng.choice([-2, -1, -1, 0, 1, 1, 2, 3, -3]), -3, 10))
        t += dur
    if present[9]:
        pattern = int(rng.integers(0, 3))
        for k in range(int(np.ceil(seconds / (beat / 2)))):
            t = t0 + k * beat / 2
            if k % 4 == 0 or (pattern == 1 and k % 8 == 7):
                note(9, t, 0.1, 36, int(rng.integers(90, 121)))  # kick
            if k % 4 == 2:
                note(9, t, 0.1, 38 if pattern != 2 else 39, int(rng.integers(80, 111)))  # snare/clap
            note(9, t, 0.05, 42 if k % 8 != 6 else 46, int(rng.integers(50, 90)))  # hi-hat
    for ch in present:
        if present[ch]:
            # All-sound-off alone leaves some voices ringing for ~0.3 s; volume 0 silences them at once.
            ev += [(end, 0, bytes([0xB0 | ch, 7, 0])), (end, 0, bytes([0xB0 | ch, 120, 0]))]
    return ev


def _midi_file(events: list[tuple[float, int, bytes]]) -> bytes:
    """A format-0 standard MIDI file playing `events` (time in seconds, order among equal times, message)."""

    def vlq(n: int) -> bytes:
        out = [n & 0x7F]
        while n > 0x7F:
            n >>= 7
            out.append(0x80 | (n & 0x7F))
        return bytes(reversed(out))

    ticks_per_second = _TICKS_PER_QUARTER * 1e6 / _US_PER_QUARTER
    track, last = bytearray(b"\x00\xff\x51\x03" + _US_PER_QUARTER.to_bytes(3, "big")), 0
    for t, _, msg in sorted(events, key=lambda e: (e[0], e[1])):
        tick = round(t * ticks_per_second)
        track += vlq(tick - last) + msg
        last = tick
    track += b"\x00\xff\x2f\x00"  # end of track
    header = b"MThd" + struct.pack(">IHHH", 6, 0, 1, _TICKS_PER_QUARTER)
    return header + b"MTrk" + struct.pack(">I", len(track)) + bytes(track)


def _render(events: list[tuple[float, int, bytes]], sample_rate: int, tmp: Path) -> np.ndarray:
    """Render MIDI events with fluidsynth. Returns (S,) float32 mono (the stereo channels averaged)."""
    mid, wav = tmp / "music.mid", tmp / "music.wav"
    mid.write_bytes(_midi_file(events))
    # -R 0 -C 0: no reverb or chorus; -O float: no int16 dither. Together: bit-exact repeat renders.
    subprocess.run(["fluidsynth", "-ni", "-q", "-R", "0", "-C", "0", "-g", "0.5", "-r", str(sample_rate),
                    "-T", "wav", "-O", "float", "-F", str(wav), str(_soundfont()), str(mid)],
                   check=True, capture_output=True)
    x, rate = sf.read(wav, dtype="float32", always_2d=True)
    assert rate == sample_rate, (rate, sample_rate)
    return x.mean(axis=1)


def _build_music(split: str, n_clips: int, n_samples: int, sample_rate: int, seed: int) -> dict[str, np.ndarray]:
    seconds = n_samples / sample_rate
    stride = seconds + PIECE_GAP
    audio = np.zeros((n_clips, n_samples), np.float32)
    with tempfile.TemporaryDirectory(prefix="zoo-music-") as tmp:
        for first in range(0, n_clips, PIECES_PER_RENDER):
            batch = range(first, min(first + PIECES_PER_RENDER, n_clips))
            events = []
            for j, i in enumerate(batch):
                rng = np.random.default_rng([seed, SPLITS.index(split), KINDS.index("music"), i])
                events += _piece(rng, j * stride, seconds)
            x = _render(events, sample_rate, Path(tmp))
            # fluidsynth stops shortly after the last event; pad so that every crop is in range.
            x = np.pad(x, (0, max(0, round(len(batch) * stride * sample_rate) + RENDER_LATENCY - len(x))))
            for j, i in enumerate(batch):
                start = round(j * stride * sample_rate) + RENDER_LATENCY
                audio[i] = x[start:start + n_samples]
    source = np.array([f"{split}-s{seed}-piece{i:06d}" for i in range(n_clips)])
    return {"audio": _normalise(audio), "source": source}


# --------------------------------------------------------------------------------------------------
# Public API
# --------------------------------------------------------------------------------------------------


def _soundfont() -> Path:
    for path in SOUNDFONTS:
        if path.exists():
            return path
    raise RuntimeError(f"no General MIDI soundfont at {', '.join(map(str, SOUNDFONTS))}; "
                       f"install it with `apt-get install fluid-soundfont-gm`")


def _missing_tools(kind: str | None) -> list[str]:
    """apt packages that `kind` ('speech', 'music' or None for both) needs and that are missing."""
    missing = []
    if kind in (None, "speech") and shutil.which("espeak-ng") is None:
        missing.append("espeak-ng")
    if kind in (None, "music"):
        if shutil.which("fluidsynth") is None:
            missing.append("fluidsynth")
        if not any(p.exists() for p in SOUNDFONTS):
            missing.append("fluid-soundfont-gm")
    return missing


def have_audio_tools(kind: str | None = None) -> bool:
    """Whether the external tools to build `kind` ('speech', 'music'; None: both) are installed."""
    return not _missing_tools(kind)


def _normalise(audio: np.ndarray) -> np.ndarray:
    """Scale each row of (N, S) `audio` to peak `PEAK`."""
    peak = np.abs(audio).max(axis=1, keepdims=True)
    assert (peak > 0).all(), "a silent clip was built"
    return (audio * (PEAK / peak)).astype(np.float32)


def build_audio_dataset(kind: str, split: str, n_clips: int, clip_seconds: float = 2.0,
                        sample_rate: int = 16000, seed: int = 0) -> dict[str, np.ndarray]:
    """Build (or load from the cache) `n_clips` mono clips of synthetic speech or rendered music.

    Args:
        kind: 'speech' (espeak-ng) or 'music' (fluidsynth + General MIDI soundfont).
        split: 'train' or 'val'; the two have disjoint voices / pieces (see the module docstring).
        n_clips: number of clips N, >= 1.
        clip_seconds: length of each clip, in (0, 60].
        sample_rate: in [8000, 48000] Hz.
        seed: selects the random texts, voices order, rates, pitches and pieces.

    Returns:
        audio: (N, S) float32 in [-PEAK, PEAK], each clip peak-normalised, S = round(clip_seconds * sample_rate).
        source: (N,) str, the voice (`'en-us+m1'`) or piece id (`'train-s0-piece000012'`) of each clip.
        text: (N,) str, speech only: the text synthesized for each clip (the clip may cut off its end).

    Raises:
        ValueError: on a bad argument.
        RuntimeError: if espeak-ng / fluidsynth / the soundfont are not installed.
    """
    if kind not in KINDS:
        raise ValueError(f"kind={kind!r} is not supported; use one of {KINDS}")
    if split not in SPLITS:
        raise ValueError(f"split={split!r} is not supported; use one of {SPLITS}")
    if isinstance(n_clips, bool) or not isinstance(n_clips, (int, np.integer)) or n_clips < 1:
        raise ValueError(f"n_clips={n_clips!r} must be an integer >= 1")
    if not 0 < clip_seconds <= 60:
        raise ValueError(f"clip_seconds={clip_seconds!r} must be in (0, 60]")
    if isinstance(sample_rate, bool) or not isinstance(sample_rate, (int, np.integer)) or not 8000 <= sample_rate <= 48000:
        raise ValueError(f"sample_rate={sample_rate!r} must be an integer in [8000, 48000] Hz")
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ValueError(f"seed={seed!r} must be an integer >= 0")
    n_samples = round(clip_seconds * sample_rate)
    params = {"version": VERSION, "kind": kind, "split": split, "n_clips": int(n_clips),
              "n_samples": n_samples, "sample_rate": int(sample_rate), "seed": int(seed)}

    def build() -> dict[str, np.ndarray]:
        missing = _missing_tools(kind)
        if missing:
            raise RuntimeError(f"building {kind} clips needs {', '.join(missing)}; install with "
                               f"`apt-get install --no-install-recommends {' '.join(missing)}`")
        fn = _build_speech if kind == "speech" else _build_music
        return fn(split, int(n_clips), n_samples, int(sample_rate), int(seed))

    return cached_arrays(f"audio-{kind}", params, build)


class AudioClipDataset(torch.utils.data.Dataset):
    """Clips as (1, L) float32 tensors: random crops of length L for training, fixed crops for val.

    Args:
        audio: (N, S) clips, e.g. `build_audio_dataset(...)["audio"]`.
        segment_samples: crop length L <= S; None: whole clips (L = S).
        random_crop: crop at a uniformly random offset (drawn from torch's global RNG, which
            Lightning seeds per worker), else at the clip's start, the same every epoch.
    """

    def __init__(self, audio: np.ndarray | torch.Tensor, segment_samples: int | None = None,
                 random_crop: bool = False) -> None:
        audio = torch.as_tensor(audio, dtype=torch.float32)
        if audio.ndim != 2 or audio.shape[0] == 0:
            raise ValueError(f"audio must have shape (N, S) with N >= 1, got {tuple(audio.shape)}")
        length = audio.shape[1] if segment_samples is None else segment_samples
        if not 1 <= length <= audio.shape[1]:
            raise ValueError(f"segment_samples={segment_samples!r} must be in [1, {audio.shape[1]}] "
                             f"(the clip length)")
        self.audio, self.segment_samples, self.random_crop = audio, int(length), random_crop

    @classmethod
    def build(cls, kind: str, split: str, n_clips: int, segment_samples: int | None = None,
              clip_seconds: float = 2.0, sample_rate: int = 16000, seed: int = 0) -> AudioClipDataset:
        """`build_audio_dataset(...)` wrapped as a dataset; crops are random for 'train' only."""
        data = build_audio_dataset(kind, split, n_clips, clip_seconds, sample_rate, seed)
        return cls(data["audio"], segment_samples, random_crop=split == "train")

    def __len__(self) -> int:
        return self.audio.shape[0]

    def __getitem__(self, i: int) -> torch.Tensor:
        """Returns: (1, L) float32."""
        slack = self.audio.shape[1] - self.segment_samples
        start = int(torch.randint(0, slack + 1, ())) if self.random_crop and slack > 0 else 0
        return self.audio[i, start:start + self.segment_samples].unsqueeze(0).clone()
