"""What the released residual-VQ codecs of the EnCodec lineage share (EnCodec, Mimi): the audio contract, the
bitrate knob, long files in pieces through a causal stream, and reading a transformers release folder.

A subclass has `encoder` / `decoder` (`zoo.audio.streaming.Stack`), `_quantize(z (B, D, T), q) -> ids (B, T, q)`,
`_dequantize(ids) -> z`, and a config with sample_rate, channels, hop, frame_rate, kbps(q), num_codebooks,
chunk_seconds, max_seconds and causal.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from zoo.audio.rvq import codebooks_for
from zoo.audio.streaming import DecodeStream, EncodeStream
from zoo.tokenizer import Tokenizer, Tokens, check_input, check_tokens


class RVQCodec(Tokenizer):
    """Base of EnCodec and Mimi (see the module docstring)."""

    min_codebooks = 1  # the fewest codebooks a code may have (Mimi: its semantic ones)

    @property
    def sample_rate(self) -> int:
        return self.config.sample_rate

    @property
    def channels(self) -> int:
        return self.config.channels

    @property
    def frame_rate(self) -> float:
        return self.config.frame_rate

    def codebooks_for(self, bitrate: float | None = None, num_codebooks: int | None = None) -> int:
        """q for a bitrate in kbit/s (a whole number of codebooks) or an explicit q; default all of them."""
        return codebooks_for(self.config, bitrate, num_codebooks, low=self.min_codebooks)

    def _check_audio(self, wav: Tensor, sample_rate: int | None) -> Tensor:
        c = self.config
        if sample_rate is not None and sample_rate != c.sample_rate:
            raise ValueError(f"audio sampled at {sample_rate} Hz; this codec expects {c.sample_rate} Hz "
                             "(resample it first, e.g. torchaudio.functional.resample)")
        wav = check_input(wav, self.spec.input, "audio").to(self.device)
        if wav.shape[-1] > c.max_seconds * c.sample_rate:
            raise ValueError(f"audio is {wav.shape[-1] / c.sample_rate:.0f} s long; encode at most "
                             f"{c.max_seconds:g} s per call (split the file, or raise config.max_seconds)")
        return wav

    def _piece(self, chunk_seconds: float | None) -> int:
        """Samples per piece of a long file (a whole number of frames)."""
        c = self.config
        seconds = c.chunk_seconds if chunk_seconds is None else chunk_seconds
        if not isinstance(seconds, (int, float)) or isinstance(seconds, bool) or not seconds * c.frame_rate >= 1:
            raise ValueError(f"chunk_seconds must be a number covering at least one frame, got {seconds!r}")
        return max(int(seconds * c.frame_rate), 1) * c.hop

    def _encode_causal(self, wav: Tensor, q: int, chunk_seconds: float | None) -> Tensor:
        """(B, C, S) -> ids (B, T, q): whole when short, else piece by piece through a stream (same ids)."""
        n, piece = wav.shape[-1], self._piece(chunk_seconds)
        if n <= piece:
            return self._quantize(self.encoder(wav), q)
        stream = self.encode_stream(num_codebooks=q)
        return torch.cat([stream(wav[..., i:i + piece]) for i in range(0, n, piece)] + [stream.flush()], dim=1)

    def _decode_causal(self, ids: Tensor, length: int, chunk_seconds: float | None) -> Tensor:
        piece = self._piece(chunk_seconds) // self.config.hop
        if ids.shape[1] <= piece:
            return self.decoder(self._dequantize(ids))[..., :length]
        stream = self.decode_stream()
        out = [stream(ids[:, i:i + piece]) for i in range(0, ids.shape[1], piece)] + [stream.flush()]
        return torch.cat(out, dim=-1)[..., :length]

    def _tokens(self, ids: Tensor, num_samples: int, **meta: Tensor) -> Tokens:
        b = ids.shape[0]
        return Tokens(ids=ids, lengths=torch.full((b,), ids.shape[1], device=ids.device),
                      meta={"num_samples": torch.full((b,), num_samples, device=ids.device), **meta})

    def _ids_and_length(self, tokens: Tokens, num_samples: int | None) -> tuple[Tensor, int | None]:
        """Checked ids on the model's device and the output length (given, recorded at encode time, or None)."""
        check_tokens(tokens, self.spec)
        ids = tokens.ids.to(self.device)
        if bool((tokens.lengths != ids.shape[1]).any()):
            raise ValueError(f"{type(self).__name__} tokens are never padded: lengths must all be {ids.shape[1]}, "
                             f"got {tokens.lengths.tolist()}")
        if ids.shape[-1] < self.min_codebooks:
            raise ValueError(f"ids need at least {self.min_codebooks} codebooks, got {ids.shape[-1]}")
        recorded = tokens.meta.get("num_samples")
        if num_samples is not None:
            return ids, num_samples
        return ids, int(recorded.max()) if recorded is not None and recorded.numel() else None

    def encode_stream(self, *, bitrate: float | None = None, num_codebooks: int | None = None) -> EncodeStream:
        """A causal encoder fed pieces of any size: `ids = s(wav_piece)` gives the (B, t, q) frames the piece
        completes (t may be 0), `s.flush()` the last partial frame. The concatenation equals `encode`'s ids."""
        if not self.config.causal:
            raise ValueError(f"this {type(self).__name__} is not causal and does not stream; encode whole segments")
        return EncodeStream(self, self.codebooks_for(bitrate, num_codebooks))

    def decode_stream(self) -> DecodeStream:
        """A causal decoder fed ids (B, t, q) piece by piece: `s(ids)` returns the audio those frames complete,
        `s.flush()` the rest; the concatenation equals decoding all frames at once (T · hop samples)."""
        if not self.config.causal:
            raise ValueError(f"this {type(self).__name__} is not causal and does not stream; decode whole segments")
        return DecodeStream(self)


def hf_config(path: Path, model_type: str) -> dict[str, Any] | None:
    """A transformers folder's config.json when its model_type matches, else None (a cheap sniff)."""
    file = path / "config.json"
    if not (path.is_dir() and file.is_file()):
        return None
    try:
        config = json.loads(file.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError):
        return None
    return config if isinstance(config, dict) and config.get("model_type") == model_type else None


def read_safetensors(folder: Path) -> dict[str, Tensor]:
    """Every tensor of the folder's .safetensors files (only safetensors are read)."""
    from safetensors.torch import load_file

    files = sorted(folder.glob("*.safetensors"))
    if not files:
        raise ValueError(f"{folder} has no .safetensors weights (only safetensors are read)")
    state: dict[str, Tensor] = {}
    for f in files:
        state.update(load_file(str(f), device="cpu"))
    return state
