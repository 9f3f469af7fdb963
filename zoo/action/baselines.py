"""Baseline action tokenizers with the same interface as BEAST.

- `Binning`: per-step uniform binning of each dof into 256 bins (RT-2 / OpenVLA style); at a token
  budget below T·D the trajectory is resampled to budget/D steps and decoded by linear interpolation.
- `DCTBPE`: FAST ("FAST: Efficient Action Tokenization for Vision-Language-Action Models", Pertsch et
  al., 2025, https://arxiv.org/abs/2501.09747): per-dof normalisation, DCT along time, scale and round,
  then byte-pair encoding of the integer stream (the `tokenizers` library). Its length depends on the
  content, so it cannot honour `num_tokens=`; `scale` sets its rate instead.

Unlike FAST's reference decoder, which returns zeros for a sequence it cannot parse, both raise a
ValueError for ids outside the vocabulary or a stream that does not decode to T·D coefficients.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from einops import rearrange
from torch import Tensor

from zoo.action.beast import MAX_STEPS, output_steps
from zoo.hub import register_family
from zoo.tokenizer import (InputContract, Tokenizer, Tokens, TokenSpec, check_budget, check_fields, check_input,
                           check_tokens, check_weights)


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
        num_dof; num_steps, the fixed time grid the DCT runs on (inputs are resampled to it);
        scale: DCT coefficients are multiplied by this before rounding (FAST's gamma; higher = finer);
        vocab_size: BPE vocabulary, including one symbol per possible rounded coefficient.
    """

    num_dof: int = 2
    num_steps: int = 100
    scale: float = 10.0
    vocab_size: int = 1024

    def __post_init__(self) -> None:
        check_fields(self, num_dof=(1, 1024), num_steps=(1, MAX_STEPS // 10), scale=(0, 1e6), vocab_size=(2, 1 << 24))
        if self.scale <= 0:
            raise ValueError(f"scale must be > 0, got {self.scale}")
        if self.vocab_size <= 2 * self.max_coefficient + 1:
            raise ValueError(f"vocab_size must exceed the {2 * self.max_coefficient + 1} coefficient symbols of "
                             f"scale={self.scale}, num_steps={self.num_steps}; got {self.vocab_size}")

    @property
    def max_coefficient(self) -> int:
        """Bound on |rounded coefficient|: an orthonormal DCT of values in [-1, 1] stays within sqrt(T)."""
        return math.ceil(self.scale * math.sqrt(self.num_steps))


class DCTBPE(_FittedBounds, Tokenizer):
    """FAST-style tokenizer: DCT, scale, round, BPE. Variable length per sample (see `lengths`)."""

    family = "dct-bpe"
    config_class = DCTBPEConfig
    encode_knobs = ()
    budget_note = "DCT+BPE cannot honour a budget: its length follows the content; set `scale` in its config instead"
    decode_options = ("num_steps",)

    def __init__(self, config: DCTBPEConfig) -> None:
        super().__init__(config)
        self.bounds = None
        self.bpe = None  # a tokenizers.Tokenizer, trained by fit

    def _coefficients(self, x: Tensor) -> np.ndarray:
        """(B, T, D) → rounded, scaled DCT coefficients (B, num_steps·D), frequency-major."""
        from scipy.fft import dct

        c = self.config
        z = self._normalise(resample(x.double(), c.num_steps)).clamp(-1, 1).cpu().numpy()
        coeffs = np.round(dct(z, axis=1, norm="ortho") * c.scale).astype(np.int64)
        return rearrange(coeffs, "b t d -> b (t d)")

    def _to_text(self, coeffs: np.ndarray) -> list[str]:
        return ["".join(chr(_SYMBOL_BASE + int(v) + self.config.max_coefficient) for v in row) for row in coeffs]

    def fit(self, trajectories: Tensor | np.ndarray) -> "DCTBPE":
        from tokenizers import Tokenizer as HFTokenizer
        from tokenizers import models, trainers

        c = self.config
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

    def load_extra_state(self, state: dict[str, Any]) -> None:
        from tokenizers import Tokenizer as HFTokenizer

        self._load_bounds(state)
        self.bpe = None if state.get("bpe") is None else HFTokenizer.from_str(json.dumps(state["bpe"]))

    @property
    def vocab_size(self) -> int:
        return self.bpe.get_vocab_size() if self.bpe is not None else self.config.vocab_size

    @property
    def spec(self) -> TokenSpec:
        c = self.config
        return TokenSpec(modality="action", vocab_size=self.vocab_size, num_codebooks=1,
                         max_tokens=c.num_steps * c.num_dof,
                         input=InputContract(layout="B T D", sizes={"D": c.num_dof}))

    @torch.no_grad()
    def encode(self, x: Tensor) -> Tokens:
        if self.bpe is None:
            raise ValueError("DCTBPE is not fitted; call fit(data) first")
        x = check_input(x, self.spec.input, "actions")
        rows = [e.ids for e in self.bpe.encode_batch(self._to_text(self._coefficients(x)))]
        lengths = torch.tensor([len(r) for r in rows])
        ids = torch.zeros(len(rows), int(lengths.max()), dtype=torch.long)
        for i, r in enumerate(rows):
            ids[i, : len(r)] = torch.tensor(r)
        return Tokens(ids=ids, lengths=lengths, meta={"num_steps": torch.full((len(rows),), x.shape[1])})

    @torch.no_grad()
    def decode(self, tokens: Tokens, *, num_steps: int | None = None) -> Tensor:
        from scipy.fft import idct

        c = self.config
        if self.bpe is None:
            raise ValueError("DCTBPE is not fitted; call fit(data) first")
        check_tokens(tokens, self.spec)
        coeffs = np.empty((tokens.batch_size, c.num_steps * c.num_dof), dtype=np.float64)
        offset = _SYMBOL_BASE + c.max_coefficient
        for i, (row, n) in enumerate(zip(tokens.ids.tolist(), tokens.lengths.tolist())):
            text = "".join(self.bpe.id_to_token(t) for t in row[:n])
            if len(text) != coeffs.shape[1]:
                raise ValueError(f"sample {i}: tokens decode to {len(text)} DCT coefficients, expected "
                                 f"{coeffs.shape[1]} (num_steps·num_dof); the sequence is truncated or malformed")
            coeffs[i] = [ord(ch) - offset for ch in text]
        z = idct(rearrange(coeffs, "b (t d) -> b t d", d=c.num_dof) / c.scale, axis=1, norm="ortho")
        x = self._normalise(torch.from_numpy(z).float(), inverse=True)
        return resample(x, output_steps(tokens, num_steps, c.num_steps))


# ----------------------------------------------------------------------------------------- registration

register_family(Binning)
register_family(DCTBPE)
