"""Plug tokenizers into an LLM: one joint id space for text and every tokenizer's codes.

A `Vocabulary` lays the codes of several tokenizers next to a text vocabulary. Its id ranges are
disjoint and contiguous, in this order:

    [0, text_size)              the text vocabulary (a GPT-2 BPE, a word list, ...)
    pad                         one padding id (unless `pad_id` names a text id)
    then, for each entry (one tokenizer, named "image", "action", ...):
        begin, end[, sep]       its special tokens: <|image:begin|>, <|image:end|>, <|image:sep|>
        one block per slot      its codes: codebook q, code c -> start of block q, + c

A frame (one token position, Q codebooks) is written as S = Q slots, frame-major and codebooks inner
(`b l q -> b (l q)`), so position k of a segment always holds slot k % S: the flattening is fixed,
not learned, and `from_llm` checks it. A tokenizer with a large codebook (FlexTok's FSQ: 64000 ids) may
also be written in mixed-radix digits, `digits=(512, 125)`: code c becomes the digits
c % 512, c // 512 (least significant first, as FSQ numbers its levels), each digit a slot with its
own block, so S = Q·len(digits) and the LLM embeds 637 rows instead of 64000. With `sep_every=k`, a
separator follows every k frames but the last (rows of a 2-D token grid, frames of audio).

    vocab = Vocabulary(text_size=len(text_tok), entries=[Entry.from_tokenizer("image", tok, "flextok-tiny-nat32")])
    ids = vocab.to_llm(tok.encode(images), "image")      # LongTensor (B, N), right-padded with vocab.pad_id
    for seg in vocab.from_llm(generated):                # text and image segments, in order
        if seg.name == "image":
            images = tok.decode(seg.tokens())
    vocab.save("vocabulary.json"); Vocabulary.load("vocabulary.json")

`from_llm` is strict: an id outside every range, a code of the wrong codebook, an end token with no
begin, or a separator in the wrong place raises a ValueError that names the id and its position. A
final segment cut off before its end token (a generation that ran out of budget) is returned with
`complete=False`, dropping only a partial last frame. `allowed_next` gives the same grammar as a mask
over the next id, so sampling never leaves it (`ConstrainedLogits` plugs it into `model.generate`).

"""

from __future__ import annotations

import json
import math
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING, Any, Sequence

import torch
from einops import rearrange
from torch import Tensor

from zoo.tokenizer import MODALITIES, Tokens, check_ids

if TYPE_CHECKING:
    from zoo.tokenizer import Tokenizer


FORMAT = "zoo.Vocabulary"
# what an id is, in the per-id lookup table of a Vocabulary
K_TEXT, K_PAD, K_BEGIN, K_END, K_SEP, K_CODE = range(6)
KIND_NAMES = ("text", "pad", "begin", "end", "sep", "code")
FORMAT_VERSION = 1
TEXT = "text"
# bounds checked before anything is allocated (the per-id tables of a Vocabulary hold `size` entries each);
# raise them here for a giant model
MAX_IDS = 2**22  # ids in the whole vocabulary (text + every entry)
MAX_CODEBOOKS = 1024
MAX_TOKENS = 2**20  # frames per segment


def _codebooks(tokenizer: "Tokenizer", num_codebooks: int | None, bitrate: float | None) -> int:
    """The q codebooks (of the tokenizer's Q) that `num_codebooks=` or `bitrate=` (kbit/s) asks for."""
    spec = tokenizer.spec
    if num_codebooks is not None and bitrate is not None:
        raise ValueError(f"pass num_codebooks= or bitrate=, not both (got {num_codebooks} and {bitrate})")
    if "num_codebooks" not in tokenizer.encode_knobs:
        raise ValueError(f"{type(tokenizer).__name__} encodes all {spec.num_codebooks} codebooks at once "
                         "(its encode takes no num_codebooks=); leave num_codebooks and bitrate unset")
    if bitrate is not None:
        frame_rate = getattr(tokenizer, "frame_rate", None) or getattr(tokenizer.config, "frame_rate", None)
        if not frame_rate:
            raise ValueError(f"{type(tokenizer).__name__} has no frame_rate to turn a bitrate into codebooks; "
                             "pass num_codebooks=")
        per_codebook = frame_rate * math.log2(spec.vocab_size) / 1000  # kbit/s
        q = bitrate / per_codebook
        if isinstance(bitrate, bool) or abs(q - round(q)) > 1e-6 or not 1 <= round(q) <= spec.num_codebooks:
            raise ValueError(f"bitrate={bitrate!r} kbit/s is not a whole number of codebooks of {per_codebook:g} "
                             f"kbit/s in 1..{spec.num_codebooks}")
        return round(q)
    if isinstance(num_codebooks, bool) or not isinstance(num_codebooks, int) \
            or not 1 <= num_codebooks <= spec.num_codebooks:
        raise ValueError(f"num_codebooks must be an int in [1, {spec.num_codebooks}], got {num_codebooks!r}")
    return num_codebooks


def _check_fields(owner: str, values: dict[str, Any], types: dict[str, type | tuple[type, ...]]) -> None:
    """One-line ValueErrors for JSON of the wrong type (bool is not an int here)."""
    for key, want in types.items():
        v = values[key]
        if not isinstance(v, want) or (isinstance(v, bool) and bool not in (want if isinstance(want, tuple) else (want,))):
            names = " or ".join(t.__name__ for t in (want if isinstance(want, tuple) else (want,)))
            raise ValueError(f"{owner}: {key} must be {names}, got {type(v).__name__} {str(v)[:40]!r}")


# ----------------------------------------------------------------------------------------- entries


@dataclass(frozen=True)
class Entry:
    """One tokenizer in the joint vocabulary.

    Args:
        name: how sequences and `to_llm` refer to it ("image", "action", "audio", "image-karl", ...).
        modality: one of `zoo.tokenizer.MODALITIES`.
        vocab_size: V, codes per codebook.
        num_codebooks: Q; a segment holds Q codes per frame, codebook q in its own block of ids.
        digits: write each code as mixed-radix digits, least significant first (their product must be
            V), each digit a slot with its own block of ids; () writes each code as one id.
        max_tokens: the most frames (L) a segment may hold.
        min_tokens: the fewest frames a complete segment may hold (= max_tokens for fixed-length tokens).
        sep_every: a separator token follows every `sep_every` frames (None: no separator).
        tokenizer: where the tokenizer lives: a registered name, or a path relative to the vocabulary
            JSON (so the two can be moved together); "" when unknown.
        encode_kwargs: the budget the segments were encoded with (e.g. {"num_tokens": 16} for FlexTok
            or KARL, {"ratio": 8} for CAT, {"num_codebooks": 8} for an audio codec at 8 of its codebooks), so
            the same tokens can be made again; {} when not recorded.
        family: the tokenizer's family ("beast", "cat", ...), checked when the tokenizer is loaded.
        fingerprint: the tokenizer's `fingerprint` (a hash of its family, config and fitted state, as token
            files record it), checked when the tokenizer is loaded; "" when not recorded.
    """

    name: str
    modality: str
    vocab_size: int
    num_codebooks: int = 1
    digits: tuple[int, ...] = ()
    max_tokens: int = 256
    min_tokens: int = 1
    sep_every: int | None = None
    tokenizer: str = ""
    encode_kwargs: dict[str, Any] = field(default_factory=dict)
    family: str = ""
    fingerprint: str = ""

    def __post_init__(self) -> None:
        _check_fields(f"entry {str(self.name)[:40]!r}", vars(self), {
            "name": str, "modality": str, "vocab_size": int, "num_codebooks": int, "digits": (list, tuple),
            "max_tokens": int, "min_tokens": int, "sep_every": (int, type(None)), "tokenizer": str,
            "encode_kwargs": dict, "family": str, "fingerprint": str})
        if any(not isinstance(k, str) or not isinstance(v, (str, int, float, bool, type(None)))
               for k, v in self.encode_kwargs.items()):
            raise ValueError(f"entry {self.name!r}: encode_kwargs must map names to numbers or strings, "
                             f"got {str(self.encode_kwargs)[:80]}")
        if self.vocab_size > MAX_IDS or self.num_codebooks > MAX_CODEBOOKS or self.max_tokens > MAX_TOKENS \
                or len(self.digits) > 16:
            raise ValueError(f"entry {self.name!r}: need vocab_size <= {MAX_IDS}, num_codebooks <= {MAX_CODEBOOKS}, "
                             f"max_tokens <= {MAX_TOKENS} and at most 16 digits, got vocab_size="
                             f"{self.vocab_size}, num_codebooks={self.num_codebooks}, max_tokens={self.max_tokens}, "
                             f"{len(self.digits)} digits (zoo.llm.vocabulary.MAX_* raise the bounds)")
        if not all(isinstance(d, int) and not isinstance(d, bool) for d in self.digits):
            raise ValueError(f"entry {self.name!r}: digits must be integers, got {str(self.digits)[:60]}")
        if not self.name or self.name == TEXT or any(c in self.name for c in ":|<> "):
            raise ValueError(f"entry name {self.name!r} must be non-empty, not {TEXT!r}, and free of ':|<> '")
        if self.modality not in MODALITIES:
            raise ValueError(f"entry {self.name!r}: modality must be one of {MODALITIES}, got {self.modality!r}")
        if self.vocab_size < 1 or self.num_codebooks < 1:
            raise ValueError(f"entry {self.name!r}: vocab_size and num_codebooks must be >= 1, got "
                             f"{self.vocab_size} and {self.num_codebooks} (a continuous-only tokenizer has no ids)")
        if not 0 <= self.min_tokens <= self.max_tokens or self.max_tokens < 1:
            raise ValueError(f"entry {self.name!r}: need 0 <= min_tokens <= max_tokens and max_tokens >= 1, "
                             f"got min_tokens={self.min_tokens}, max_tokens={self.max_tokens}")
        object.__setattr__(self, "digits", tuple(int(d) for d in self.digits))  # JSON gives lists
        if self.digits and (min(self.digits) < 2 or math.prod(self.digits) != self.vocab_size):
            raise ValueError(f"entry {self.name!r}: digits {self.digits} must be >= 2 each with product "
                             f"vocab_size={self.vocab_size} (e.g. FSQ levels grouped: (8*8*8, 5*5*5) for 64000)")
        if self.sep_every is not None and self.sep_every < 1:
            raise ValueError(f"entry {self.name!r}: sep_every must be >= 1 or None, got {self.sep_every}")

    @classmethod
    def from_tokenizer(cls, name: str, tokenizer: "Tokenizer", source: str = "", *, max_tokens: int | None = None,
                       num_codebooks: int | None = None, bitrate: float | None = None, fixed_length: bool = False,
                       sep_every: int | None = None, digits: Sequence[int] = (),
                       encode_kwargs: dict[str, Any] | None = None) -> "Entry":
        """An entry sized from a tokenizer's spec.

        Args:
            name: the entry's name in sequences.
            tokenizer: a zoo Tokenizer with discrete ids.
            source: its registered name, or a folder relative to the vocabulary JSON, recorded for reloading.
            max_tokens: the most frames a segment holds (default: the spec's max_tokens).
            num_codebooks: hold the first q codebooks of a residual-VQ tokenizer (an audio codec) instead
                of all Q; segments are encoded with `encode(..., num_codebooks=q)` (recorded in encode_kwargs).
            bitrate: the same as a bitrate in kbit/s: q = bitrate / (frame_rate · log2(vocab_size) / 1000).
            fixed_length: every segment holds exactly `max_tokens` frames (BEAST at a fixed budget,
                FlexTok at full length); generation may then only end a segment there.
            sep_every: a separator every this many frames.
            digits: write each code as these mixed-radix digits (see the class docstring).
            encode_kwargs: the budget keywords of `tokenizer.encode` the segments come from.
        """
        spec = tokenizer.spec
        if spec.vocab_size < 1:
            raise ValueError(f"{type(tokenizer).__name__} is continuous-only (vocab_size 0); it has no ids to place")
        given = max_tokens
        max_tokens = spec.max_tokens if given is None else int(given)
        if not 1 <= max_tokens <= spec.max_tokens:
            raise ValueError(f"max_tokens must lie in [1, {spec.max_tokens}] for this tokenizer, got {given}")
        budget = dict(encode_kwargs or {})
        q = spec.num_codebooks
        if num_codebooks is not None or bitrate is not None:
            q = _codebooks(tokenizer, num_codebooks, bitrate)
            budget.update({"bitrate": bitrate} if bitrate is not None else {"num_codebooks": q})
        return cls(name=name, modality=spec.modality, vocab_size=spec.vocab_size, num_codebooks=q,
                   digits=tuple(digits), max_tokens=max_tokens, min_tokens=max_tokens if fixed_length else 1,
                   sep_every=sep_every, tokenizer=source, encode_kwargs=budget, family=tokenizer.family,
                   fingerprint=tokenizer.fingerprint)

    @property
    def num_specials(self) -> int:
        return 2 + (self.sep_every is not None)

    @property
    def radix(self) -> tuple[int, ...]:
        return self.digits or (self.vocab_size,)

    @property
    def slots(self) -> tuple[int, ...]:
        """Ids per slot of a frame, in order: the digits of codebook 0, then of codebook 1, ..."""
        return self.radix * self.num_codebooks

    @property
    def size(self) -> int:
        """Ids the entry takes: its specials and every slot's block."""
        return self.num_specials + sum(self.slots)

    def slot_name(self, s: int) -> str:
        q, j = divmod(s, len(self.radix))
        return ":".join([f"q{q}"] * (self.num_codebooks > 1) + [f"d{j}"] * (len(self.radix) > 1))


@dataclass(frozen=True)
class Range:
    """Where one entry sits in the joint id space; `slots[s]` is the first id of slot s's block."""

    begin: int
    end: int
    sep: int | None
    slots: tuple[int, ...]
    stop: int  # one past the entry's last id

    @property
    def codes(self) -> int:
        """The first code id (of slot 0)."""
        return self.slots[0]


@dataclass
class Segment:
    """A run of one kind in an LLM sequence.

    Args:
        name: "text" or an entry name.
        ids: text segment: the text ids (n,); entry segment: the tokenizer's own ids, offsets removed,
            (L,) for one codebook or (L, Q).
        complete: False for an entry segment cut off before its end token.
    """

    name: str
    ids: Tensor
    complete: bool = True

    def tokens(self) -> Tokens:
        """The segment as a batch of one `Tokens` (ids [1, L] or [1, L, Q]), ready for `decode`."""
        if self.name == TEXT:
            raise ValueError("a text segment has no Tokens; decode its ids with the text tokenizer")
        ids = self.ids[None]
        return Tokens(ids=ids, lengths=torch.tensor([ids.shape[1]], device=ids.device))


# ----------------------------------------------------------------------------------------- the vocabulary


@dataclass
class Vocabulary:
    """Text ids followed by each entry's specials and codes; see the module docstring for the layout.

    Args:
        text_size: ids [0, text_size) belong to the text vocabulary.
        entries: the tokenizers, in id order.
        pad_id: a text id to pad with; None allocates a <|pad|> id right after the text range.
        text_tokenizer: where the text tokenizer lives (a path relative to the JSON, or a hub name).
    """

    text_size: int
    entries: Sequence[Entry] = ()
    pad_id: int | None = None
    text_tokenizer: str = ""
    _ranges: dict[str, Range] = field(init=False, repr=False, compare=False)
    root: Path | None = field(default=None, init=False, repr=False, compare=False)  # the JSON's folder, once loaded

    def __post_init__(self) -> None:
        _check_fields("vocabulary", vars(self), {"text_size": int, "entries": (list, tuple),
                                                 "pad_id": (int, type(None)), "text_tokenizer": str})
        self.entries = tuple(self.entries)
        if not all(isinstance(e, Entry) for e in self.entries):
            raise ValueError(f"entries must be Entry objects, got {[type(e).__name__ for e in self.entries]}")
        if not 0 <= self.text_size <= MAX_IDS:
            raise ValueError(f"text_size must lie in [0, {MAX_IDS}], got {self.text_size}")
        total = self.text_size + 1 + sum(e.size for e in self.entries)
        if total > MAX_IDS:
            raise ValueError(f"the vocabulary would hold {total} ids, more than MAX_IDS={MAX_IDS} "
                             "(zoo.llm.vocabulary.MAX_IDS raises the bound)")
        names = [e.name for e in self.entries]
        if len(set(names)) != len(names):
            raise ValueError(f"entry names must be distinct, got {names}")
        if self.pad_id is not None and not 0 <= self.pad_id < self.text_size:
            raise ValueError(f"pad_id must be a text id in [0, {self.text_size}) or None, got {self.pad_id}")
        self._ranges = {}
        start = self.text_size + (self.pad_id is None)
        for e in self.entries:
            sep = start + 2 if e.sep_every is not None else None
            firsts = [start + e.num_specials + sum(e.slots[:s]) for s in range(len(e.slots))]
            self._ranges[e.name] = Range(begin=start, end=start + 1, sep=sep, slots=tuple(firsts), stop=start + e.size)
            start += e.size
        self.size = start
        # per-id lookup tables for from_llm / allowed_next (Python lists: they are read id by id): the
        # kind (K_*), the entry index, and a code id's slot and value
        kind, owner, slot, value = [K_TEXT] * self.size, [-1] * self.size, [-1] * self.size, [-1] * self.size
        kind[self.pad] = K_PAD
        for i, e in enumerate(self.entries):
            r = self._ranges[e.name]
            owner[r.begin:r.stop] = [i] * (r.stop - r.begin)
            kind[r.begin], kind[r.end] = K_BEGIN, K_END
            if r.sep is not None:
                kind[r.sep] = K_SEP
            for s, (first, n) in enumerate(zip(r.slots, e.slots)):
                kind[first:first + n], slot[first:first + n], value[first:first + n] = [K_CODE] * n, [s] * n, list(range(n))
        self._kind, self._owner, self._slot, self._value = kind, owner, slot, value

    # -- the layout --------------------------------------------------------------------------------------

    @property
    def pad(self) -> int:
        """The padding id."""
        return self.pad_id if self.pad_id is not None else self.text_size

    def entry(self, name: str) -> Entry:
        for e in self.entries:
            if e.name == name:
                return e
        raise ValueError(f"{name!r} is not an entry of this vocabulary; entries: {[e.name for e in self.entries]}")

    def range(self, name: str) -> Range:
        self.entry(name)
        return self._ranges[name]

    def ranges(self) -> dict[str, tuple[int, int]]:
        """Every id range as [start, stop): text, pad (when allocated), then each entry's specials and codebooks."""
        out = {TEXT: (0, self.text_size)}
        if self.pad_id is None:
            out["pad"] = (self.text_size, self.text_size + 1)
        for e in self.entries:
            r = self._ranges[e.name]
            out[f"{e.name}:specials"] = (r.begin, r.codes)
            for s, (first, n) in enumerate(zip(r.slots, e.slots)):
                out[":".join([e.name, "codes", e.slot_name(s)]).rstrip(":")] = (first, first + n)
        return out

    def token_strings(self) -> list[str]:
        """The strings of ids text_size..size-1 in id order: <|pad|>, <|image:begin|>, <|image:17|>,
        <|audio:q1:5|> (codebook 1), <|image:d1:3|> (digit 1)."""
        out = ["<|pad|>"] if self.pad_id is None else []
        for e in self.entries:
            out += [f"<|{e.name}:begin|>", f"<|{e.name}:end|>"] + ([f"<|{e.name}:sep|>"] if e.sep_every else [])
            for s, n in enumerate(e.slots):
                prefix = ":".join(p for p in (e.name, e.slot_name(s)) if p)
                out += [f"<|{prefix}:{c}|>" for c in range(n)]
        return out

    def describe(self, position: int, token: int) -> str:
        """What an id is, for error messages."""
        if not 0 <= token < self.size:
            return f"id {token} at position {position} (outside every range: the vocabulary has ids [0, {self.size}))"
        kind, owner = self._kind[token], self._owner[token]
        what = KIND_NAMES[kind]
        if owner >= 0:
            e = self.entries[owner]
            where = e.slot_name(self._slot[token])
            what = f"{e.name} code {self._value[token]}{' of slot ' + where if where else ''}" if kind == K_CODE else f"{e.name} {what}"
        return f"id {token} ({what}) at position {position}"

    # -- into the LLM ------------------------------------------------------------------------------------

    def to_llm(self, tokens: Tokens, name: str, *, begin: bool = True, end: bool = True) -> Tensor:
        """Offset a batch of tokens into the joint id space and wrap each sample in begin/end.

        Args:
            tokens: from the entry's tokenizer; ids [B, L] (Q = 1) or [B, L, Q]; only the first
                `lengths[b]` frames of sample b are used.
            name: the entry.
            begin, end: emit the begin / end special token.
        Returns:
            LongTensor (B, N): [begin, codes (frame-major, separators every `sep_every` frames), end],
            right-padded with `self.pad` where samples differ in length.
        """
        e, r = self.entry(name), self._ranges[name]
        if tokens.ids is None:
            raise ValueError(f"{name}: these tokens are continuous (latents only); encode with ids to place them")
        ids = tokens.ids
        if ids.ndim == 2:
            ids = ids[..., None]
        if ids.shape[-1] != e.num_codebooks:
            raise ValueError(f"{name} has {e.num_codebooks} codebook(s), got ids of shape {tuple(tokens.ids.shape)}")
        check_ids(ids, e.vocab_size, tokens.lengths, name=f"{name} ids")
        if tokens.batch_size and int(tokens.lengths.max()) > e.max_tokens:
            raise ValueError(f"{name} holds at most {e.max_tokens} frames per segment, got lengths {tokens.lengths.tolist()}")
        radix = torch.tensor(e.radix, device=ids.device)
        base = torch.tensor([math.prod(e.radix[:j]) for j in range(len(e.radix))], device=ids.device)
        digits = (ids[..., None] // base) % radix  # (B, L, Q, J), least significant digit first
        slots = rearrange(digits, "b l q j -> b l (q j)") + torch.tensor(r.slots, device=ids.device)  # (B, L, S)
        rows = []
        for b in range(ids.shape[0]):
            frames = slots[b, : int(tokens.lengths[b])]  # (L, S)
            parts = [torch.tensor([r.begin], device=ids.device)] if begin else []
            step = e.sep_every or max(len(frames), 1)
            for i in range(0, len(frames), step):
                if i:
                    parts.append(torch.tensor([r.sep], device=ids.device))
                parts.append(rearrange(frames[i:i + step], "l s -> (l s)"))
            if end:
                parts.append(torch.tensor([r.end], device=ids.device))
            rows.append(torch.cat(parts) if parts else ids.new_zeros(0))
        return torch.nn.utils.rnn.pad_sequence(rows, batch_first=True, padding_value=self.pad).long()

    # -- out of the LLM ----------------------------------------------------------------------------------

    def from_llm(self, ids: Tensor | Sequence[int]) -> list[Segment]:
        """Split one LLM sequence into text and entry segments, offsets removed.

        Args:
            ids: (N,) ids of one sequence (loop over the rows of a batch). Pad ids are skipped in text.
        Returns:
            Segments in order. Entry ids are (L,) for one codebook, (L, Q) otherwise. A final entry
            segment without its end token is kept with `complete=False` (a partial last frame dropped).
        Raises:
            ValueError naming the id and position: an id outside every range, a code or separator
            outside its segment or in the wrong place, a begin inside a segment, a complete segment
            whose length breaks the entry's min/max or is not a whole number of frames.
        """
        ids = torch.as_tensor(ids)
        if ids.ndim != 1:
            raise ValueError(f"from_llm takes one sequence (N,), got shape {tuple(ids.shape)}; loop over the rows")
        if ids.dtype.is_floating_point or ids.dtype == torch.bool:
            raise ValueError(f"ids must be integers, got {ids.dtype}")
        ids = ids.long().cpu()
        bad = ((ids < 0) | (ids >= self.size)).nonzero()
        if len(bad):
            p = int(bad[0])
            raise ValueError(f"{self.describe(p, int(ids[p]))}; decode only ids this vocabulary made")
        ids = ids.tolist()
        kinds, owners = [self._kind[i] for i in ids], [self._owner[i] for i in ids]
        segments: list[Segment] = []
        text: list[int] = []
        current, codes, start = -1, [], 0  # the open entry (-1: in text), its code ids, where it began
        for p, (token, kind, owner) in enumerate(zip(ids, kinds, owners)):
            if current < 0:
                if kind == K_TEXT:
                    text.append(token)
                elif kind == K_BEGIN:
                    if text:
                        segments.append(Segment(TEXT, torch.tensor(text, dtype=torch.long)))
                        text = []
                    current, codes, start = owner, [], p
                elif kind != K_PAD:
                    raise ValueError(f"{self.describe(p, token)} is outside a begin/end segment")
                continue
            e, r = self.entries[current], self._ranges[self.entries[current].name]
            width = len(e.slots)
            s = len(codes) % width
            if kind == K_CODE and owner == current and self._slot[token] == s:
                if len(codes) >= e.max_tokens * width:
                    raise ValueError(f"{self.describe(p, token)}: the {e.name} segment begun at {start} "
                                     f"already holds its maximum of {e.max_tokens} frames")
                if e.sep_every and codes and len(codes) % (e.sep_every * width) == 0 and ids[p - 1] != r.sep:
                    raise ValueError(f"{self.describe(p, token)}: a {e.name} separator must come after every "
                                     f"{e.sep_every} frames")
                codes.append(self._value[token])
            elif kind == K_SEP and owner == current:
                frames, rem = divmod(len(codes), width)
                if rem or frames == 0 or frames % e.sep_every or ids[p - 1] == r.sep:
                    raise ValueError(f"{self.describe(p, token)}: separators come after every {e.sep_every} "
                                     f"frames, not after {len(codes)} codes")
            elif kind == K_END and owner == current and ids[p - 1] != r.sep:
                segments.append(self._close(e, codes, complete=True, where=(start, p)))
                current = -1
            else:
                expected = f"code of slot {e.slot_name(s)}" if width > 1 else "code"
                raise ValueError(f"{self.describe(p, token)} inside the {e.name} segment begun at {start} "
                                 f"(expected a {e.name} {expected} or {e.name} end)")
        if current >= 0:
            segments.append(self._close(self.entries[current], codes, complete=False, where=(start, len(ids))))
        elif text:
            segments.append(Segment(TEXT, torch.tensor(text, dtype=torch.long)))
        return segments

    def _close(self, e: Entry, values: list[int], complete: bool, where: tuple[int, int]) -> Segment:
        """Slot values of a segment → the tokenizer's ids (L,) or (L, Q)."""
        width = len(e.slots)
        frames, rem = divmod(len(values), width)
        if complete and (rem or not e.min_tokens <= frames <= e.max_tokens):
            raise ValueError(f"the {e.name} segment at positions {where[0]}..{where[1]} holds {len(values)} codes; "
                             f"a complete one holds {e.min_tokens}..{e.max_tokens} frames of {width} codes")
        v = torch.tensor(values[: frames * width], dtype=torch.long)
        v = rearrange(v, "(l q j) -> l q j", q=e.num_codebooks, j=len(e.radix))
        base = torch.tensor([math.prod(e.radix[:j]) for j in range(len(e.radix))])
        ids = (v * base).sum(-1)  # (L, Q)
        return Segment(e.name, ids[:, 0] if e.num_codebooks == 1 else ids, complete=complete)

    # -- constrained sampling ----------------------------------------------------------------------------

    def allowed_next(self, prefix: Tensor | Sequence[int], *, entry: str | None = None) -> Tensor:
        """The ids that may follow `prefix` so that `from_llm` accepts the sequence: BoolTensor (size,).

        In text: every text id and every entry's begin (only `entry`'s begin when given, to force
        a modality). Inside a segment: the next slot's codes, the separator where one is due, and
        the end token once the segment holds `min_tokens` whole frames; at `max_tokens` only the end.

        Args:
            prefix: (N,) ids so far (already valid; `from_llm` explains an invalid one).
        """
        prefix = torch.as_tensor(prefix).long().cpu()
        mask = torch.zeros(self.size, dtype=torch.bool)
        current, n_codes, last = -1, 0, -1
        for token in prefix.tolist():
            kind = self._kind[token] if 0 <= token < self.size else -1
            if kind == K_BEGIN:
                current, n_codes = self._owner[token], 0
            elif kind == K_END:
                current = -1
            elif kind == K_CODE and current >= 0:
                n_codes += 1
            last = token
        if current < 0:
            mask[: self.text_size] = True
            for e in self.entries:
                if entry is None or e.name == entry:
                    mask[self._ranges[e.name].begin] = True
            return mask
        e = self.entries[current]
        r = self._ranges[e.name]
        frames, s = divmod(n_codes, len(e.slots))
        if s:  # mid-frame: only the next slot
            mask[r.slots[s]: r.slots[s] + e.slots[s]] = True
            return mask
        sep_due = bool(e.sep_every) and frames > 0 and frames % e.sep_every == 0 and last != r.sep
        if frames < e.max_tokens:
            if sep_due:
                mask[r.sep] = True
            else:
                mask[r.codes: r.codes + e.slots[0]] = True
        if frames >= e.min_tokens and last != r.sep:
            mask[r.end] = True
        return mask

    # -- files -------------------------------------------------------------------------------------------

    def to_dict(self) -> dict[str, Any]:
        return {
            "format": FORMAT,
            "format_version": FORMAT_VERSION,
            "text_size": self.text_size,
            "pad_id": self.pad_id,
            "text_tokenizer": self.text_tokenizer,
            "entries": [asdict(e) for e in self.entries],
            "size": self.size,
            "ranges": {k: list(v) for k, v in self.ranges().items()},  # for readers; checked on load
        }

    @classmethod
    def from_dict(cls, d: Any, source: str = "dict") -> "Vocabulary":
        if not isinstance(d, dict) or d.get("format") != FORMAT:
            what = f"format {d.get('format')!r}" if isinstance(d, dict) else f"a JSON {type(d).__name__}"
            raise ValueError(f"{source} is not a zoo vocabulary ({what}, expected an object with format {FORMAT!r})")
        version = d.get("format_version", FORMAT_VERSION)
        if not isinstance(version, int) or isinstance(version, bool) or version > FORMAT_VERSION:
            raise ValueError(f"{source} has format_version {version!r}; this zoo reads up to {FORMAT_VERSION}")
        entries = d.get("entries")
        if not isinstance(entries, list) or not all(isinstance(e, dict) for e in entries):
            raise ValueError(f"{source}: entries must be a list of objects, got {str(entries)[:60]}")
        try:
            vocab = cls(text_size=d.get("text_size"), entries=[Entry(**e) for e in entries], pad_id=d.get("pad_id"),
                        text_tokenizer=d.get("text_tokenizer", ""))
        except TypeError as e:
            raise ValueError(f"{source} is not a valid vocabulary: {e}") from e
        ranges = d.get("ranges", {})
        if not isinstance(ranges, dict) or not all(isinstance(v, list) for v in ranges.values()):
            raise ValueError(f"{source}: ranges must map names to [start, stop] lists")
        stored = {k: tuple(v) for k, v in ranges.items()}
        if stored and stored != vocab.ranges() or d.get("size", vocab.size) != vocab.size:
            raise ValueError(f"{source}: the stored id ranges do not match its entries (the file was edited by hand?)")
        return vocab

    def save(self, path: str | os.PathLike) -> Path:
        """Write the vocabulary as JSON (next to the tokenizers it names, so relative paths resolve)."""
        from zoo.files import atomic_write_bytes

        path = Path(path)
        atomic_write_bytes(path, (json.dumps(self.to_dict(), indent=2) + "\n").encode())
        return path

    @classmethod
    def load(cls, path: str | os.PathLike) -> "Vocabulary":
        path = Path(path)
        if not path.is_file():
            raise ValueError(f"no vocabulary file at {str(path)!r}")
        try:
            d = json.loads(path.read_text())
        except (json.JSONDecodeError, UnicodeDecodeError, RecursionError) as e:
            raise ValueError(f"{path} is not valid JSON: {str(e)[:100]}") from e
        vocab = cls.from_dict(d, source=str(path))
        vocab.root = path.parent
        return vocab

    def load_tokenizer(self, name: str, device: Any = None) -> "Tokenizer":
        """Load the tokenizer an entry names and check it is the one the vocabulary was built for.

        `entry.tokenizer` resolves only to a folder inside the vocabulary JSON's own folder or to a
        registered name (never an absolute path, `..`, `hf-hub:`, a URL, or a folder of that name in the
        current directory); the tokenizer's family and fingerprint must match the entry's (when
        recorded), and its spec must fit.
        """
        from zoo import hub

        e = self.entry(name)
        src = e.tokenizer
        if not src:
            raise ValueError(f"entry {name!r} records no tokenizer; load it yourself")
        parts = PurePosixPath(src).parts
        if src.startswith("/") or "\\" in src or ":" in src or ".." in parts or "~" in src:
            raise ValueError(f"entry {name!r}: tokenizer {src!r} must be a registered name or a folder inside the "
                             "vocabulary's own folder (no absolute path, '..', '~', hf-hub: or URL)")
        local = self.root / src if self.root is not None else None
        if local is not None and local.is_dir():
            if not local.resolve().is_relative_to(self.root.resolve()):
                raise ValueError(f"entry {name!r}: {str(local)!r} leads outside the vocabulary's folder")
            tok = hub.load_dir(local, device=device)
        elif hub.is_registered(src):
            tok = hub.load_registered(src, device=device)  # never a local folder of the same name
        else:
            raise ValueError(f"entry {name!r}: tokenizer {src!r} is neither a folder beside the vocabulary "
                             f"({self.root}) nor a registered name")
        if e.family and tok.family != e.family or e.fingerprint and tok.fingerprint != e.fingerprint:
            raise ValueError(f"entry {name!r} was built for a {e.family!r} tokenizer of fingerprint {e.fingerprint}; "
                             f"{src!r} is a {tok.family!r} one of fingerprint {tok.fingerprint}")
        spec = tok.spec
        fits = spec.num_codebooks == e.num_codebooks or (
            spec.num_codebooks > e.num_codebooks and e.encode_kwargs.keys() & {"num_codebooks", "bitrate"})
        if spec.vocab_size != e.vocab_size or not fits or spec.max_tokens < e.max_tokens:
            raise ValueError(f"{src!r} emits {spec.num_codebooks} x {spec.vocab_size} codes, up to "
                             f"{spec.max_tokens} tokens; entry {name!r} expects {e.num_codebooks} x {e.vocab_size}, "
                             f"up to {e.max_tokens}: the vocabulary was built for another tokenizer")
        return tok
