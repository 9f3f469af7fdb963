"""Make tests/fixtures/fast_release: a small FAST tokenizer in the layout of physical-intelligence/fast.

FAST's universal tokenizer is published on the Hugging Face hub (physical-intelligence/fast, Apache-2.0)
as `tokenizer.json` (a byte-level BPE saved by transformers' PreTrainedTokenizerFast) and
`processor_config.json` (scale, min_token, vocab_size, action_dim, time_horizon), with its processor
code (`processing_action_tokenizer.py`, class UniversalActionProcessor) beside them. That code cannot be
downloaded here, so this script does not run it: it repeats, with the same libraries, only the steps
the check needs, as the processor does them:

- training (`UniversalActionProcessor.fit`): DCT-II (orthonormal) of each chunk along time, flattened
  time-major; coefficients x scale rounded; min_token = the smallest; each chunk becomes the string of
  chr(v - min_token); a `tokenizers` ByteLevelBPETokenizer is trained on those strings with an initial
  alphabet of every symbol from min to max, min_frequency 2, no special tokens, max_token_length 10000,
  and wrapped in a PreTrainedTokenizerFast (clean_up_tokenization_spaces=False) that is saved;
- encoding (`__call__`): the same DCT and rounding, chr(max(v - min_token, 0)), `tokenizer(text)["input_ids"]`;
- decoding (`decode`): `tokenizer.decode(ids)`, ord(c) + min_token, reshape to (T, D), inverse DCT / scale.

The chunks are random smooth trajectories in [-1, 1] of several lengths and dofs (FAST's universal
tokenizer takes any); the test inputs include values beyond the fitted range, so the clipping at
min_token is exercised. tests/test_baselines.py loads the folder with `DCTBPE.from_release` and requires
the same ids and decoded actions.

    python scripts/make_fast_fixture.py
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from scipy.fft import dct, idct

OUT = Path(__file__).resolve().parent.parent / "tests" / "fixtures" / "fast_release"
SCALE = 10


def chunks(rng: np.random.Generator, n: int) -> list[np.ndarray]:
    out = []
    for _ in range(n):
        t, d = int(rng.integers(8, 17)), int(rng.integers(2, 6))
        knots = rng.uniform(-1, 1, size=(4, d))
        grid = np.linspace(0, 3, t)
        out.append(np.stack([np.interp(grid, np.arange(4), knots[:, j]) for j in range(d)], axis=1))
    return out


def main() -> None:
    from tokenizers import ByteLevelBPETokenizer
    from tokenizers.trainers import BpeTrainer
    from transformers import PreTrainedTokenizerFast

    rng = np.random.default_rng(0)
    train = chunks(rng, 400)
    coeffs = [np.around(dct(a, axis=0, norm="ortho").flatten() * SCALE) for a in train]
    low, high = int(np.concatenate(coeffs).min()), int(np.concatenate(coeffs).max())
    vocab_size = (high - low + 1) + 256
    bpe = ByteLevelBPETokenizer()
    trainer = BpeTrainer(vocab_size=vocab_size, min_frequency=2, show_progress=False, special_tokens=[],
                         initial_alphabet=[chr(i) for i in range(high - low + 1)], max_token_length=10000)
    bpe._tokenizer.train_from_iterator(("".join(map(chr, (c - low).astype(int))) for c in coeffs), trainer=trainer)
    OUT.mkdir(parents=True, exist_ok=True)
    PreTrainedTokenizerFast(tokenizer_object=bpe, clean_up_tokenization_spaces=False).save_pretrained(OUT)
    (OUT / "processor_config.json").write_text(json.dumps(
        {"action_dim": None, "auto_map": {"AutoProcessor": "processing_action_tokenizer.UniversalActionProcessor"},
         "min_token": low, "processor_class": "UniversalActionProcessor", "scale": SCALE, "time_horizon": None,
         "vocab_size": vocab_size}, indent=2, sort_keys=True) + "\n")

    tok = PreTrainedTokenizerFast.from_pretrained(OUT)  # read back, as AutoProcessor would
    cases = {"in_range": np.stack([c for c in chunks(np.random.default_rng(1), 400) if c.shape == (12, 3)][:3]),
             "wide": np.random.default_rng(2).uniform(-3, 3, size=(2, 12, 4))}  # beyond the fitted range: clipped symbols
    arrays = {}
    for name, actions in cases.items():
        ids, decoded = [], []
        for chunk in actions:
            c = np.around(dct(chunk, axis=0, norm="ortho") * SCALE)
            text = "".join(map(chr, np.maximum(c.flatten() - low, 0).astype(int)))
            row = tok(text)["input_ids"]
            ids.append(row)
            back = np.array([ord(ch) for ch in tok.decode(row)]) + low
            decoded.append(idct(back.reshape(chunk.shape) / SCALE, axis=0, norm="ortho"))
        width = max(len(r) for r in ids)
        arrays[f"{name}.actions"] = actions
        arrays[f"{name}.ids"] = np.array([r + [0] * (width - len(r)) for r in ids], dtype=np.int64)
        arrays[f"{name}.lengths"] = np.array([len(r) for r in ids], dtype=np.int64)
        arrays[f"{name}.decoded"] = np.stack(decoded)
    np.savez(OUT / "io.npz", **arrays)
    for extra in ("tokenizer_config.json", "special_tokens_map.json"):  # the hub repo has them; our loader needs neither
        (OUT / extra).unlink(missing_ok=True)
    print(f"wrote {OUT}: min_token {low}, vocab {vocab_size}, "
          f"{ {p.name: p.stat().st_size for p in OUT.iterdir()} }; lengths { {k: v.tolist() for k, v in arrays.items() if 'lengths' in k} }")


if __name__ == "__main__":
    main()
