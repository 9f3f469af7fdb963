"""Make tests/fixtures/fast_release by running FAST's official processor: a small tokenizer in the release's layout.

FAST's universal tokenizer is published on the Hugging Face hub (physical-intelligence/fast, Apache-2.0) as
`tokenizer.json` + `processor_config.json`, with its code beside them: `processing_action_tokenizer.py`,
class `UniversalActionProcessor` (`fit`, `__call__`, `decode`). This script imports that file as it is,
given by path, and lets it do every step:

- `UniversalActionProcessor.fit` on seeded smooth action chunks of several lengths and dofs (FAST's universal
  tokenizer takes any), `scale=10`, `vocab_size=VOCAB`;
- `save_pretrained`, then the release's layout: tokenizer.json and processor_config.json side by side (the hub
  repo was written by transformers 4; transformers >= 5 puts the tokenizer in a `bpe_tokenizer/` folder,
  the mismatch reported in discussion 20 of the hub repo, so it is moved up here);
- the processor is built again from those two files (as `from_pretrained` does) and must give the in-memory
  one's ids; then `__call__` (ids) and `decode(tokens, time_horizon=T, action_dim=D)` of held-out chunks,
  some with values beyond the fitted range (clipped at `min_token` by `__call__`), and float32 ones whose DCT at
  float32 rounds a coefficient otherwise than at float64, written to io.npz.

tests/test_baselines.py loads the folder through `DCTBPE.from_release` and `zoo.load("fast-universal")`
(a loopback hub) and requires the same ids and decodes within 1e-5.

The machine that made the fixture could not reach the hub. The file it ran is the text of
`processing_action_tokenizer.py` as stored in the code index this project can search (6145 characters,
sha256 OFFICIAL_SHA256 below; the index did not name its repository or the hub commit). It matches, line
for line in `fit` and `__call__`, the copy in uynitsuj/FASTer@61cd94b3ddba59f96ffd78b835aa357cf73b908a (a
fork of the hub repo whose `decode` adds an early-stopping change), and the API of the hub repo's README.
The script prints the hash of the file it runs, so a run against the hub's own copy says at once if they differ.

    python scripts/make_fast_fixture.py /path/to/processing_action_tokenizer.py
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib.util
import io
import json
import shutil
import sys
import tempfile
from pathlib import Path

import numpy as np

OUT = Path(__file__).resolve().parent.parent / "tests" / "fixtures" / "fast_release"
OFFICIAL_SHA256 = "6f021ca1f4c1b194ab6fa399d80baf3d642eadb17efb8f73301e4ac401522c20"
SCALE, VOCAB = 10, 400


def chunks(rng: np.random.Generator, n: int) -> list[np.ndarray]:
    """Smooth chunks in [-1, 1]: piecewise-linear through 4 random knots, 8-16 steps, 2-5 dofs."""
    out = []
    for _ in range(n):
        t, d = int(rng.integers(8, 17)), int(rng.integers(2, 6))
        knots = rng.uniform(-1, 1, size=(4, d))
        grid = np.linspace(0, 3, t)
        out.append(np.stack([np.interp(grid, np.arange(4), knots[:, j]) for j in range(d)], axis=1))
    return out


def float32_rounding(rng: np.random.Generator) -> np.ndarray:
    """Two float32 chunks (12 steps, 4 dofs, in [-1, 1]) on which the DCT at float32, what the processor runs at a
    float32 input, rounds a scaled coefficient otherwise than at float64 (5 of 200,000 random chunks do)."""
    from scipy.fft import dct

    x = rng.uniform(-1, 1, size=(200_000, 12, 4)).astype(np.float32)
    at32 = np.around(dct(x, axis=1, norm="ortho") * SCALE)
    at64 = np.around(dct(x.astype(np.float64), axis=1, norm="ortho") * SCALE)
    return x[np.nonzero((at32 != at64).any(axis=(1, 2)))[0][:2]]


def official(path: Path):
    """The UniversalActionProcessor class of `path` (its hash printed beside the one of the file named above)."""
    got = hashlib.sha256(path.read_bytes()).hexdigest()
    print(f"running {path}: sha256 {got} ({'the' if got == OFFICIAL_SHA256 else 'NOT the'} file this fixture was made with)")
    spec = importlib.util.spec_from_file_location("processing_action_tokenizer", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.UniversalActionProcessor


def save_release(fitted, folder: Path) -> dict:
    """Write a fitted processor as the release is laid out (tokenizer.json beside processor_config.json: the hub
    repo was written by transformers 4; transformers >= 5 puts the tokenizer in `bpe_tokenizer/`, moved up here)."""
    with tempfile.TemporaryDirectory() as tmp:
        fitted.save_pretrained(tmp)
        nested = Path(tmp) / "bpe_tokenizer" / "tokenizer.json"
        shutil.copy(nested if nested.is_file() else Path(tmp) / "tokenizer.json", folder / "tokenizer.json")
        shutil.copy(Path(tmp) / "processor_config.json", folder / "processor_config.json")
    return json.loads((folder / "processor_config.json").read_text())


def read_back(Processor, folder: Path):
    """The processor built from a release folder's two files, as `from_pretrained` does."""
    from transformers import PreTrainedTokenizerFast

    config = json.loads((folder / "processor_config.json").read_text())
    return Processor(PreTrainedTokenizerFast(tokenizer_file=str(folder / "tokenizer.json"), clean_up_tokenization_spaces=False),
                     scale=config["scale"], vocab_size=config["vocab_size"], min_token=config["min_token"],
                     action_dim=config.get("action_dim"), time_horizon=config.get("time_horizon"))


def official_decode(proc, ids: list[list[int]], steps: int, dofs: int) -> np.ndarray:
    """The processor's decode, refusing the zeros it returns (and prints about) for a malformed row."""
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        decoded = proc.decode(ids, time_horizon=steps, action_dim=dofs)
    if printed.getvalue():
        raise SystemExit(f"the official decode reported an error: {printed.getvalue()[:500]}")
    return decoded


def main() -> None:
    if len(sys.argv) != 2:
        raise SystemExit(__doc__.rsplit("\n\n", 1)[-1].strip())
    Processor = official(Path(sys.argv[1]))
    fitted = Processor.fit(chunks(np.random.default_rng(0), 400), scale=SCALE, vocab_size=VOCAB)

    OUT.mkdir(parents=True, exist_ok=True)
    for old in OUT.iterdir():
        old.unlink()
    config = save_release(fitted, OUT)
    proc = read_back(Processor, OUT)

    held_out = chunks(np.random.default_rng(1), 400)
    cases = {"in_range": np.stack([c for c in held_out if c.shape == (12, 3)][:3]),
             "wide": np.random.default_rng(2).uniform(-3, 3, size=(2, 12, 4)),  # beyond the fitted range
             "float32": float32_rounding(np.random.default_rng(3))}
    arrays = {}
    for name, actions in cases.items():
        ids = proc(actions)
        if ids != fitted(actions):
            raise SystemExit(f"{name}: the processor read back from {OUT} gives other ids than the fitted one")
        decoded = official_decode(proc, ids, actions.shape[1], actions.shape[2])
        width = max(len(r) for r in ids)
        arrays[f"{name}.actions"] = actions
        arrays[f"{name}.ids"] = np.array([r + [0] * (width - len(r)) for r in ids], dtype=np.int64)
        arrays[f"{name}.lengths"] = np.array([len(r) for r in ids], dtype=np.int64)
        arrays[f"{name}.decoded"] = decoded
    np.savez(OUT / "io.npz", **arrays)
    print(f"wrote {OUT}: {config}; {({p.name: p.stat().st_size for p in OUT.iterdir()})}; "
          f"lengths {({k: v.tolist() for k, v in arrays.items() if 'lengths' in k})}")


if __name__ == "__main__":
    main()
