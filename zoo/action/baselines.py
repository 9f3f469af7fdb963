"""Baseline action tokenizers with the same interface as BEAST.

- `Binning`: per-step uniform binning of each dof into 256 bins (RT-2 / OpenVLA style); at a token
  budget below T·D the trajectory is resampled to budget/D steps and decoded by linear interpolation.
- `DCTBPE`: FAST ("FAST: Efficient Action Tokenization for Vision-Language-Action Models", Pertsch et
  al., 2025, https://arxiv.org/abs/2501.09747): per-dof normalisation, DCT along time, scale and round,
  then byte-pair encoding of the integer stream (the `tokenizers` library). Its length depends on the
  content, so it cannot honour `num_tokens=`; `scale` sets its rate instead.

Unlike FAST's reference decoder, which returns zeros for a sequence it cannot parse, both raise a
ValueError for ids outside the vocabulary or a stream that does not decode to T·D coefficients.

Released weights: `DCTBPE.from_release(folder)` loads FAST's universal tokenizer (physical-intelligence/fast
on the Hugging Face hub, Apache-2.0: `tokenizer.json` + `processor_config.json`) exactly, through three
options of `DCTBPEConfig` that reproduce its processor: `min_token` (each rounded coefficient v becomes the
character chr(max(v - min_token, 0)), then its byte-level BPE), `resample=False` (the DCT runs over each
input's own steps) and `normalise=False` (identity bounds: FAST expects actions already normalised, e.g. to
[-1, 1] by the 1st/99th percentiles). With `num_dof=None` any number of dofs is accepted (FAST universal).
Checked against FAST's own processor code (`UniversalActionProcessor` fitted, saved and run by
scripts/make_fast_fixture.py): identical ids, decodes within 1e-5 (tests/test_baselines.py).
"""

from __future__ import annotations

import itertools
import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from einops import rearrange
from torch import Tensor

from zoo.action.beast import MAX_STEPS, output_steps
from zoo.files import read_release
from zoo.hub import register_family, register_release
from zoo.tokenizer import (InputContract, Tokenizer, Tokens, TokenSpec, check_budget, check_fields, check_input,
                           check_tokens, check_weights, length_mask)


_UNBOUNDED = 1 << 20  # spec.max_tokens of a DCT+BPE tokenizer whose length or dofs are left open


def _recorded(tokens: Tokens, key: str) -> int | None:
    """A per-sample size the tokens recorded at encode (equal across the batch), or None."""
    v = tokens.meta.get(key)
    if v is None or v.numel() == 0:
        return None
    if v.numel() > 1 and bool((v != v[0]).any()):
        raise ValueError(f"tokens record different {key} {v.unique().tolist()}; pass {key}=")
    return int(v[0])


def resample(x: Tensor, steps: int) -> Tensor:
    """Linear interpolation along time: (B, T, D) → (B, steps, D), endpoints kept."""
    if x.shape[1] == steps:
        return x
    if x.shape[1] == 1:
        return x.expand(-1, steps, -1)
    y = torch.nn.functional.interpolate(rearrange(x, "b t d -> b d t"), size=steps, mode="linear", align_corners=True)
    return rearrange(y, "b d t -> b t d")


def _per_dof_bounds(x: Tensor, low_q: float, high_q: float) -> np.ndarray:
    flat = rearrange(x, "b t d -> (b t) d").double()
    low, high = torch.quantile(flat, low_q, dim=0), torch.quantile(flat, high_q, dim=0)
    return torch.stack([low, torch.maximum(high, low + 1e-6)]).numpy()


class _FittedBounds:
    """Shared by the baselines: per-dof (low, high) fitted from data, kept in the checkpoint config."""

    bounds: np.ndarray | None

    def extra_state(self) -> dict[str, Any]:
        return {"bounds": None if self.bounds is None else self.bounds.tolist()}

    def _load_bounds(self, state: dict[str, Any]) -> None:
        b = state.get("bounds")
        self.bounds = None if b is None else np.asarray(b, dtype=np.float64)
        if self.bounds is not None and self.bounds.shape != (2, self.config.num_dof):
            raise ValueError(f"bounds must have shape (2, {self.config.num_dof}), got {self.bounds.shape}")

    def _normalise(self, x: Tensor, inverse: bool = False) -> Tensor:
        if self.bounds is None:
            raise ValueError(f"{type(self).__name__} is not fitted; call fit(data) first")
        low, high = torch.as_tensor(self.bounds, dtype=x.dtype, device=x.device)
        return (x + 1) / 2 * (high - low) + low if inverse else (x - low) / (high - low) * 2 - 1


# ----------------------------------------------------------------------------------------- binning


@dataclass
class BinningConfig:
    """Args: num_dof; vocab_size bins per value; num_steps, the default steps per trajectory."""

    num_dof: int = 2
    vocab_size: int = 256
    num_steps: int = 100

    def __post_init__(self) -> None:
        check_fields(self, num_dof=(1, 1024), vocab_size=(2, 1 << 24), num_steps=(1, MAX_STEPS // 10))


class Binning(_FittedBounds, Tokenizer):
    """Per-step uniform binning. x: (B, T, D) → ids (B, steps·D), time-major, dofs interleaved."""

    family = "binning"
    config_class = BinningConfig
    encode_knobs = ("num_tokens",)
    decode_options = ("num_steps",)
    parallel_chunk = 1 << 20  # microseconds per sample: handing pieces to threads would cost more than the work

    def __init__(self, config: BinningConfig) -> None:
        super().__init__(config)
        self.bounds = None

    def fit(self, trajectories: Tensor | np.ndarray) -> "Binning":
        x = check_input(trajectories, self.spec.input, "trajectories")
        self.bounds = _per_dof_bounds(x, 0.0, 1.0)
        return self

    def load_extra_state(self, state: dict[str, Any]) -> None:
        self._load_bounds(state)

    @property
    def spec(self) -> TokenSpec:
        c = self.config
        return TokenSpec(modality="action", vocab_size=c.vocab_size, num_codebooks=1,
                         max_tokens=c.num_steps * c.num_dof,
                         input=InputContract(layout="B T D", sizes={"D": c.num_dof}))

    @torch.no_grad()
    def encode(self, x: Tensor, *, num_tokens: int | None = None) -> Tokens:
        c = self.config
        x = check_input(x, self.spec.input, "actions")
        budget = c.num_steps * c.num_dof if num_tokens is None else check_budget(num_tokens, 2 * c.num_dof, c.num_steps * c.num_dof)
        if budget % c.num_dof:
            raise ValueError(f"num_tokens must be a multiple of num_dof={c.num_dof}, got {budget}")
        z = self._normalise(resample(x, budget // c.num_dof)).clamp(-1, 1)
        ids = rearrange(torch.round((z + 1) / 2 * (c.vocab_size - 1)).long(), "b t d -> b (t d)")
        b = x.shape[0]
        return Tokens(ids=ids, lengths=torch.full((b,), budget), meta={"num_steps": torch.full((b,), x.shape[1])})

    @torch.no_grad()
    def decode(self, tokens: Tokens, *, num_steps: int | None = None) -> Tensor:
        c = self.config
        check_tokens(tokens, self.spec)
        if bool((tokens.lengths != tokens.lengths[0]).any()) or int(tokens.lengths[0]) % c.num_dof or int(tokens.lengths[0]) == 0:
            raise ValueError(f"Binning needs equal, non-zero lengths that are multiples of num_dof={c.num_dof}, got {tokens.lengths.tolist()}")
        ids = tokens.ids[:, : int(tokens.lengths[0])]
        z = rearrange(ids.float(), "b (t d) -> b t d", d=c.num_dof) / (c.vocab_size - 1) * 2 - 1
        return resample(self._normalise(z, inverse=True), output_steps(tokens, num_steps, c.num_steps))


# ----------------------------------------------------------------------------------------- DCT + BPE

_SYMBOL_BASE = 0x4E00  # CJK block: printable, and far from the surrogates (U+D800..U+DFFF)


@dataclass
class DCTBPEConfig:
    """Args:
        num_dof: D, or None for any number of dofs (FAST universal; needs `resample=False`).
        num_steps: the fixed time grid the DCT runs on (inputs are resampled to it); with `resample=False`
            only the default length to decode tokens that do not record theirs (None: such tokens need
            `decode(..., num_steps=)`).
        scale: DCT coefficients are multiplied by this before rounding (FAST's gamma; higher = finer);
        vocab_size: BPE vocabulary, including one symbol per possible rounded coefficient.
        min_token: FAST's symbols: coefficient v is the character chr(max(v - min_token, 0)); None: ours, a
            printable block centred on 0 (fitted by `fit`).
        resample: resample inputs to `num_steps` before the DCT (ours); False: the DCT runs over the
            input's own steps (FAST).
        normalise: map each dof to [-1, 1] by bounds fitted on data (ours); False: identity bounds, the
            input is used as it is (FAST expects actions normalised beforehand).
    """

    num_dof: int | None = 2
    num_steps: int | None = 100
    scale: float = 10.0
    vocab_size: int = 1024
    min_token: int | None = None
    resample: bool = True
    normalise: bool = True

    def __post_init__(self) -> None:
        check_fields(self, num_dof=(1, 1024), num_steps=(1, MAX_STEPS // 10), scale=(0, 1e6), vocab_size=(2, 1 << 24),
                     min_token=(-(1 << 24), 1 << 24))
        if self.scale <= 0:
            raise ValueError(f"scale must be > 0, got {self.scale}")
        if self.num_dof is not None and self.num_dof < 1:
            raise ValueError(f"num_dof must be >= 1 (or None for any), got {self.num_dof}")
        if self.resample and (self.num_steps is None or self.num_dof is None):
            raise ValueError("resample=True needs num_steps and num_dof (the grid the DCT runs on); "
                             "use resample=False for any length and any number of dofs")
        if self.min_token is None and (self.num_steps is None or self.num_dof is None or not self.normalise):
            raise ValueError("our symbol layout (min_token=None) needs num_steps, num_dof and normalise=True; "
                             "FAST's layout sets min_token")
        if self.min_token is None and self.vocab_size <= 2 * self.max_coefficient + 1:
            raise ValueError(f"vocab_size must exceed the {2 * self.max_coefficient + 1} coefficient symbols of "
                             f"scale={self.scale}, num_steps={self.num_steps}; got {self.vocab_size}")

    @property
    def max_coefficient(self) -> int:
        """Bound on |rounded coefficient|: an orthonormal DCT of values in [-1, 1] stays within sqrt(T)."""
        return math.ceil(self.scale * math.sqrt(self.num_steps or 1))


class DCTBPE(_FittedBounds, Tokenizer):
    """FAST-style tokenizer: DCT, scale, round, BPE. Variable length per sample (see `lengths`)."""

    family = "dct-bpe"
    config_class = DCTBPEConfig
    encode_knobs = ()
    budget_note = "DCT+BPE cannot honour a budget: its length follows the content; set `scale` in its config instead"
    decode_options = ("num_steps", "num_dof")
    # microseconds per sample, and the tokenizers library spreads a batch's BPE over its own threads: pieces of
    # 4 samples over our pool made a batch of 256 FAST chunks 1.3x slower on one thread
    parallel_chunk = 1 << 20

    def __init__(self, config: DCTBPEConfig) -> None:
        super().__init__(config)
        self.bounds = None
        self.bpe = None  # a tokenizers.Tokenizer, trained by fit
        self._fingerprint: tuple[Any, tuple, str] | None = None  # (the BPE object, config and bounds, their hash)
        self._spec: tuple[tuple, TokenSpec] | None = None  # (what the spec depends on, the spec)

    def _coefficients(self, x: Tensor) -> np.ndarray:
        """(B, T, D) → rounded, scaled DCT coefficients (B, T'·D), frequency-major (T' = num_steps when resampling)."""
        from scipy.fft import dct

        c = self.config
        # FAST's processor runs scipy's DCT at its input's precision: float32 (what reaches us) rounds a coefficient
        # otherwise than float64 about once in 40,000 chunks, so FAST's layout keeps float32 to give its very ids
        z = x.float() if c.min_token is not None else x.double()
        if c.resample:
            z = resample(z, c.num_steps)
        if c.normalise:
            z = self._normalise(z).clamp(-1, 1)
        coeffs = np.round(dct(z.cpu().numpy(), axis=1, norm="ortho") * c.scale).astype(np.int64)
        return coeffs.reshape(len(coeffs), -1)  # b t d -> b (t d); einops' parsing cost ~10 us a call at batch 1

    def _offset(self) -> int:
        """Symbol of coefficient v: the code point v + offset (FAST: v - min_token; ours: a block centred on 0)."""
        c = self.config
        return -c.min_token if c.min_token is not None else _SYMBOL_BASE + c.max_coefficient

    def _to_text(self, coeffs: np.ndarray) -> list[str]:
        """(B, N) coefficients → B strings of N symbols, all at once through UTF-32 (one code point per 4 bytes)."""
        points = coeffs + self._offset()
        if self.config.min_token is not None:  # FAST: values below min_token clip to the first symbol
            points = np.maximum(points, 0)
        try:
            text = points.astype("<u4").tobytes().decode("utf-32-le")
        except UnicodeDecodeError as e:  # a surrogate or beyond U+10FFFF: no string can hold it
            raise ValueError(f"a rounded DCT coefficient ({int(coeffs.max())}) is beyond the symbol range of this "
                             "tokenizer; normalise the actions first (FAST expects values near [-1, 1])") from e
        n = coeffs.shape[1]
        return [text[i * n:(i + 1) * n] for i in range(coeffs.shape[0])]

    def _from_text(self, text: str) -> np.ndarray:
        return np.frombuffer(text.encode("utf-32-le"), dtype="<u4").astype(np.int64) - self._offset()

    def fit(self, trajectories: Tensor | np.ndarray) -> "DCTBPE":
        from tokenizers import Tokenizer as HFTokenizer
        from tokenizers import models, trainers

        c = self.config
        if c.min_token is not None:
            raise ValueError("fit trains our symbol layout (min_token=None); FAST tokenizers load with from_release")
        x = check_input(trajectories, self.spec.input, "trajectories")
        self.bounds = _per_dof_bounds(x, 0.01, 0.99)
        alphabet = [chr(_SYMBOL_BASE + i) for i in range(2 * c.max_coefficient + 1)]
        bpe = HFTokenizer(models.BPE())
        trainer = trainers.BpeTrainer(vocab_size=c.vocab_size, initial_alphabet=alphabet,
                                      show_progress=False, special_tokens=[], max_token_length=64)
        bpe.train_from_iterator(self._to_text(self._coefficients(x)), trainer=trainer)
        self.bpe = bpe
        return self

    def extra_state(self) -> dict[str, Any]:
        return {**super().extra_state(), "bpe": None if self.bpe is None else json.loads(self.bpe.to_str())}

    @property
    def fingerprint(self) -> str:
        """The base class's hash, kept while the config, bounds and BPE object stay the same: serialising the BPE
        (FAST universal: 2048 tokens and their merges) took milliseconds at every encode and decode."""
        key = (repr(self.config), None if self.bounds is None else self.bounds.tobytes())
        cached = self._fingerprint
        if cached is None or cached[0] is not self.bpe or cached[1] != key:
            cached = self._fingerprint = (self.bpe, key, super().fingerprint)
        return cached[2]

    def load_extra_state(self, state: dict[str, Any]) -> None:
        from tokenizers import Tokenizer as HFTokenizer

        self._load_bounds(state)
        self.bpe = None if state.get("bpe") is None else HFTokenizer.from_str(json.dumps(state["bpe"]))

    @property
    def vocab_size(self) -> int:
        return self.bpe.get_vocab_size() if self.bpe is not None else self.config.vocab_size

    @property
    def spec(self) -> TokenSpec:
        """Built again only when what it depends on changes: encode and decode each read it (8 us to build)."""
        c = self.config
        key = (c.num_dof, c.num_steps, c.min_token, self.vocab_size)
        if self._spec is None or self._spec[0] != key:
            if c.num_steps is None or c.num_dof is None:
                max_tokens = _UNBOUNDED  # the length grows with T·D, which the config leaves open
            else:  # one token per coefficient at most; FAST's byte-level BPE: up to 3 bytes per symbol
                max_tokens = c.num_steps * c.num_dof * (1 if c.min_token is None else 3)
            self._spec = key, TokenSpec(
                modality="action", vocab_size=key[3], num_codebooks=1, max_tokens=max_tokens,
                input=InputContract(layout="B T D", sizes={} if c.num_dof is None else {"D": c.num_dof}))
        return self._spec[1]

    @torch.no_grad()
    def encode(self, x: Tensor) -> Tokens:
        if self.bpe is None:
            raise ValueError("DCTBPE is not fitted; call fit(data) first")
        x = check_input(x, self.spec.input, "actions")
        rows = [e.ids for e in self.bpe.encode_batch(self._to_text(self._coefficients(x)))]
        b, lengths = len(rows), np.array([len(r) for r in rows])
        ids = np.zeros((b, int(lengths.max())), dtype=np.int64)
        ids[length_mask(lengths, ids.shape[1])] = np.fromiter(itertools.chain.from_iterable(rows), np.int64)
        ids, lengths = torch.from_numpy(ids), torch.from_numpy(lengths)
        meta = {"num_steps": torch.full((b,), x.shape[1])}
        if self.config.num_dof is None:
            meta["num_dof"] = torch.full((b,), x.shape[2])
        return Tokens(ids=ids, lengths=lengths, meta=meta)

    @torch.no_grad()
    def decode(self, tokens: Tokens, *, num_steps: int | None = None, num_dof: int | None = None) -> Tensor:
        """Tokens → (B, T, D). num_steps: the length to decode to (default: as encoded); num_dof: D, for a
        tokenizer of any dofs (`num_dof=None`) and tokens that do not record theirs (e.g. from an LLM)."""
        from scipy.fft import idct

        c = self.config
        if self.bpe is None:
            raise ValueError("DCTBPE is not fitted; call fit(data) first")
        check_tokens(tokens, self.spec)
        steps = output_steps(tokens, num_steps, c.num_steps)  # None when neither the tokens nor the config say
        dofs = c.num_dof or (check_budget(num_dof, 1, 1_000_000, "num_dof") if num_dof is not None
                             else _recorded(tokens, "num_dof"))
        if steps is None or dofs is None:
            raise ValueError("these tokens do not record their length and dofs: pass decode(..., num_steps=T, num_dof=D)")
        grid = c.num_steps if c.resample else steps  # the DCT's length
        coeffs = np.empty((tokens.batch_size, grid * dofs), dtype=np.float64)
        rows = [row[:n] for row, n in zip(tokens.ids.tolist(), tokens.lengths.tolist())]
        if self.bpe.decoder is not None:  # FAST: byte-level BPE, its decoder turns bytes back into symbols
            texts = self.bpe.decode_batch(rows, skip_special_tokens=False)
        else:
            texts = ["".join(map(self.bpe.id_to_token, row)) for row in rows]
        for i, text in enumerate(texts):
            if len(text) != coeffs.shape[1]:
                raise ValueError(f"sample {i}: tokens decode to {len(text)} DCT coefficients, expected "
                                 f"{coeffs.shape[1]} ({grid} steps x {dofs} dofs); the sequence is truncated or malformed")
            coeffs[i] = self._from_text(text)
        z = idct(coeffs.reshape(len(coeffs), grid, dofs) / c.scale, axis=1, norm="ortho")  # b (t d) -> b t d
        x = torch.from_numpy(z)
        x = self._normalise(x.float(), inverse=True) if c.normalise else x.float()
        return resample(x, steps) if c.resample else x

    # -- released weights ------------------------------------------------------------------------------

    @staticmethod
    def is_release(path: str | Path) -> bool:
        """A folder as FAST's tokenizers are published: processor_config.json naming `min_token` and
        `scale` (FAST's UniversalActionProcessor) beside tokenizer.json."""
        return read_release(path, "processor_config.json", "tokenizer.json", ("min_token", "scale")) is not None

    @classmethod
    def from_release(cls, path: str | Path) -> "DCTBPE":
        """Load a FAST tokenizer folder (tokenizer.json + processor_config.json) as a `DCTBPE`, exactly."""
        from tokenizers import Tokenizer as HFTokenizer

        found = read_release(path, "processor_config.json", "tokenizer.json", ("min_token", "scale"))
        if found is None:
            raise ValueError(f"{path} is not a FAST tokenizer release: expected a folder with tokenizer.json and "
                             "processor_config.json (with 'scale' and 'min_token')")
        folder, args = found
        for key in ("scale", "min_token", "vocab_size"):
            v = args.get(key)
            if key != "scale" and v is not None and (isinstance(v, bool) or not isinstance(v, int)):
                raise ValueError(f"processor_config.json: {key} must be an integer, got {v!r}")
        for key in ("action_dim", "time_horizon"):
            v = args.get(key)
            if v is not None and (isinstance(v, bool) or not isinstance(v, int) or v < 1):
                raise ValueError(f"processor_config.json: {key} must be a positive integer or null, got {v!r}")
        try:
            bpe = HFTokenizer.from_file(str(folder / "tokenizer.json"))
        except Exception as e:  # the tokenizers library raises its own exception type
            raise ValueError(f"{folder / 'tokenizer.json'} is not a tokenizers file: {e}") from e
        config = DCTBPEConfig(num_dof=args.get("action_dim"), num_steps=args.get("time_horizon"),
                              scale=float(args["scale"]), vocab_size=int(args.get("vocab_size") or bpe.get_vocab_size()),
                              min_token=int(args["min_token"]), resample=False, normalise=False)
        tok = cls(config)
        tok.bpe = bpe
        return tok.eval()


# ----------------------------------------------------------------------------------------- registration

FAST_VOCAB = 2048  # the vocab_size of physical-intelligence/fast's processor_config.json (its tokenizer.json's size)

register_family(Binning)
register_family(DCTBPE)
register_release(
    # revision: the commit of HF cache paths models--physical-intelligence--fast/snapshots/ec4d7aa7.../tokenizer.json
    # in public code (four files, repositories not named by the code index); not confirmed against the hub
    "fast-universal", "dct-bpe", hf_repo="physical-intelligence/fast",
    revision="ec4d7aa71691cac0b8bed6942be45684db2110f4",
    files=("tokenizer.json", "processor_config.json"), license="Apache-2.0",
    license_url="https://www.apache.org/licenses/LICENSE-2.0",
    # BPE: the token count (so the bits) follows each chunk's content
    summary={"modality": "action", "tokens": "variable (BPE)", "vocab": FAST_VOCAB, "bits": "variable", "description": (
        "FAST+ universal action tokenizer (Pertsch et al., 2025), from physical-intelligence/fast: DCT over the "
        f"chunk's own steps, x10, rounded, byte-level BPE with a {FAST_VOCAB} vocabulary; any number of steps and dofs. "
        "Normalise actions first (FAST uses each dof's 1st/99th percentiles mapped to [-1, 1]).")})
