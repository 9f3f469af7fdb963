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

Hugging Face (optional extra `transformers`): `extend_hf_tokenizer` appends the special and code
tokens to a text tokenizer so that their ids are exactly the vocabulary's, and `resize_hf_embeddings`
grows a model's input and output embeddings to match (new rows start at the mean of the old ones).
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
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
            or KARL, {"ratio": 8} for CAT), so the same tokens can be made again; {} when not recorded.
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

    def __post_init__(self) -> None:
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
                       fixed_length: bool = False, sep_every: int | None = None,
                       digits: Sequence[int] = (), encode_kwargs: dict[str, Any] | None = None) -> "Entry":
        """An entry sized from a tokenizer's spec.

        Args:
            name: the entry's name in sequences.
            tokenizer: a zoo Tokenizer with discrete ids.
            source: its registered name or checkpoint path, recorded for reloading.
            max_tokens: the most frames a segment holds (default: the spec's max_tokens).
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
        return cls(name=name, modality=spec.modality, vocab_size=spec.vocab_size, num_codebooks=spec.num_codebooks,
                   digits=tuple(digits), max_tokens=max_tokens, min_tokens=max_tokens if fixed_length else 1,
                   sep_every=sep_every, tokenizer=source, encode_kwargs=dict(encode_kwargs or {}))

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
        self.entries = tuple(self.entries)
        if self.text_size < 0:
            raise ValueError(f"text_size must be >= 0, got {self.text_size}")
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
    def from_dict(cls, d: dict[str, Any], source: str = "dict") -> "Vocabulary":
        if d.get("format") != FORMAT:
            raise ValueError(f"{source} is not a zoo vocabulary (format {d.get('format')!r}, expected {FORMAT!r})")
        if d.get("format_version", FORMAT_VERSION) > FORMAT_VERSION:
            raise ValueError(f"{source} has format_version {d['format_version']}; upgrade zoo to read it")
        try:
            entries = [Entry(**e) for e in d["entries"]]
            vocab = cls(text_size=d["text_size"], entries=entries, pad_id=d.get("pad_id"),
                        text_tokenizer=d.get("text_tokenizer", ""))
        except (KeyError, TypeError) as e:
            raise ValueError(f"{source} is not a valid vocabulary: {e}") from e
        stored = {k: tuple(v) for k, v in d.get("ranges", {}).items()}
        if stored and stored != vocab.ranges() or d.get("size", vocab.size) != vocab.size:
            raise ValueError(f"{source}: the stored id ranges do not match its entries (the file was edited by hand?)")
        return vocab

    def save(self, path: str | os.PathLike) -> Path:
        """Write the vocabulary as JSON (next to the tokenizers it names, so relative paths resolve)."""
        from zoo.data.cache import atomic_write_bytes

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
        except (json.JSONDecodeError, UnicodeDecodeError) as e:
            raise ValueError(f"{path} is not valid JSON: {e}") from e
        vocab = cls.from_dict(d, source=str(path))
        vocab.root = path.parent
        return vocab

    def load_tokenizer(self, name: str, device: Any = None) -> "Tokenizer":
        """Load the tokenizer an entry names (a path relative to the JSON, or a registered name) and check it fits."""
        e = self.entry(name)
        if not e.tokenizer:
            raise ValueError(f"entry {name!r} records no tokenizer; load it yourself")
        local = (self.root or Path(".")) / e.tokenizer
        tok = load_tokenizer(local if local.is_dir() else e.tokenizer, device=device)
        spec = tok.spec
        if (spec.vocab_size, spec.num_codebooks) != (e.vocab_size, e.num_codebooks) or spec.max_tokens < e.max_tokens:
            raise ValueError(f"{e.tokenizer!r} emits {spec.num_codebooks} x {spec.vocab_size} codes, up to "
                             f"{spec.max_tokens} tokens; entry {name!r} expects {e.num_codebooks} x {e.vocab_size}, "
                             f"up to {e.max_tokens}: the vocabulary was built for another tokenizer")
        return tok


def tokenizer_dir(source: str | os.PathLike) -> Path:
    """The checkpoint folder of a tokenizer: `zoo.hub.locate`, or this repo's checkpoints/<name> for a
    shipped folder that is not (yet) in zoo/registry.json."""
    from zoo import hub

    try:
        return hub.locate(source)
    except ValueError:
        shipped = hub.REPO_CHECKPOINTS / os.fspath(source)
        if (shipped / hub.CONFIG).is_file():
            return shipped
        raise


def load_tokenizer(source: str | os.PathLike, device: Any = None) -> "Tokenizer":
    """`zoo.load(source)`, also finding a shipped checkpoints/<name> folder missing from the registry."""
    from zoo import hub

    try:
        return hub.load(source, device=device)
    except ValueError:
        return hub.load_dir(tokenizer_dir(source), device=device)


# ----------------------------------------------------------------------------------------- Hugging Face


def extend_hf_tokenizer(tokenizer: Any, vocab: Vocabulary) -> None:
    """Append the vocabulary's special and code tokens to a transformers tokenizer, in id order.

    The tokenizer must hold exactly `vocab.text_size` ids before (build the vocabulary with
    `text_size=len(tokenizer)`). The new tokens are added as special tokens (never split, kept in
    `decode`), so `tokenizer.convert_tokens_to_ids("<|image:17|>")` is the joint id of image code 17.
    """
    from tokenizers import AddedToken

    strings = vocab.token_strings()
    extended = len(tokenizer) == vocab.size and tokenizer.convert_ids_to_tokens(vocab.size - 1) == strings[-1]
    if not extended:
        if len(tokenizer) != vocab.text_size:
            raise ValueError(f"the tokenizer holds {len(tokenizer)} ids but the vocabulary's text range is "
                             f"{vocab.text_size}; build the vocabulary with text_size=len(tokenizer)")
        tokenizer.add_tokens([AddedToken(s, special=True, normalized=False) for s in strings], special_tokens=True)
        if len(tokenizer) != vocab.size:
            raise ValueError(f"after adding {len(strings)} tokens the tokenizer holds {len(tokenizer)} ids, expected "
                             f"{vocab.size}: some of {strings[:3]}... were already in it")
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.convert_ids_to_tokens(vocab.pad)


def resize_hf_embeddings(model: Any, vocab: Vocabulary, pad_to_multiple_of: int | None = None) -> Any:
    """Grow (or check) a transformers model's token embeddings to hold every id of `vocab`.

    New rows start at the mean of the old embeddings (transformers' `mean_resizing`), which keeps the
    model's first predictions on the new tokens sensible; tied output embeddings follow.

    Args:
        model: a transformers PreTrainedModel.
        pad_to_multiple_of: round the row count up (e.g. 64 for tensor cores); extra rows are never sampled
            when generation is constrained by `ConstrainedLogits`.
    """
    rows = model.get_input_embeddings().weight.shape[0]
    if rows < vocab.size or pad_to_multiple_of:
        model.resize_token_embeddings(vocab.size, pad_to_multiple_of=pad_to_multiple_of, mean_resizing=True)
    if model.config.vocab_size < vocab.size:
        raise ValueError(f"the model still has {model.config.vocab_size} rows after resizing, need {vocab.size}")
    return model


class ConstrainedLogits:
    """A logits processor (`model.generate(logits_processor=[...])`) that keeps sampling inside `vocab`'s grammar.

    Rows of `scores` past `vocab.size` (padded embeddings) are always masked.

    Args:
        vocab: the joint vocabulary.
        entry: force the first segment opened to be this entry (e.g. "image" after a caption).
    """

    def __init__(self, vocab: Vocabulary, entry: str | None = None) -> None:
        self.vocab, self.entry = vocab, entry

    def __call__(self, input_ids: Tensor, scores: Tensor) -> Tensor:
        """input_ids: (B, N); scores: (B, V) logits of the next id → the same with disallowed ids at -inf."""
        mask = torch.zeros_like(scores, dtype=torch.bool)
        for b in range(input_ids.shape[0]):
            mask[b, : self.vocab.size] = self.vocab.allowed_next(input_ids[b], entry=self.entry).to(scores.device)
        return scores.masked_fill(~mask, float("-inf"))


# ----------------------------------------------------------------------------------------- a multimodal LM

LM_FORMAT = "zoo.MultimodalLM"
LM_CONFIG, LM_WEIGHTS, LM_VOCAB, LM_TEXT = "config.json", "model.safetensors", "vocabulary.json", "tokenizer.json"


def _require_transformers() -> None:
    import importlib.util

    if importlib.util.find_spec("transformers") is None:
        raise ImportError("MultimodalLM needs the optional extra transformers: pip install 'transformers>=4.46'")


def sequence_ids(text_tokenizer: Any, vocab: Vocabulary, text: str, segment: Tensor | None = None,
                 entry: str | None = None) -> list[int]:
    """`<bos> text segment <eos>` as ids, the layout `MultimodalLM` trains on and generates.

    Args:
        text_tokenizer: a transformers tokenizer over the text range, with bos and eos tokens.
        text: a caption, a shape name.
        segment: one row of `vocab.to_llm` (its pads are dropped).
        entry: with no segment, the generation prompt `<bos> text <|entry:begin|>`.
    """
    ids = [text_tokenizer.bos_token_id, *text_tokenizer(text, add_special_tokens=False)["input_ids"]]
    if segment is not None:
        return ids + [i for i in segment.tolist() if i != vocab.pad] + [text_tokenizer.eos_token_id]
    return ids + [vocab.range(entry).begin] if entry is not None else ids


def guided_logits(cond: Tensor, uncond: Tensor, scale: float) -> Tensor:
    """Classifier-free guidance: `uncond + scale * (cond - uncond)`; cond, uncond: (B, V) next-id logits.

    On raw logits this equals guidance on log-probabilities (the two differ by a per-row constant, which
    softmax ignores). Apply the grammar mask after, so -inf never meets -inf. Scale 1 returns `cond` itself."""
    return cond if scale == 1.0 else uncond + scale * (cond - uncond)


class MultimodalLM:
    """A causal LM over a joint vocabulary: a transformers GPT-2, the `Vocabulary` and the text tokenizer.

    Sequences read `<bos> text <|image:begin|> codes <|image:end|> <eos>`; `generate` completes a
    text prompt with one segment of an entry, sampling inside the vocabulary's grammar, and returns the
    parsed segments. Saved as a folder: config.json (architecture, summary, sha256 of the weights),
    model.safetensors, vocabulary.json and tokenizer.json. Needs the `transformers` extra.

    Args:
        model: a transformers causal LM whose embeddings hold at least `vocab.size` rows.
        vocab: the joint vocabulary.
        text_tokenizer: a transformers fast tokenizer over the text range, with bos and eos tokens.
    """

    def __init__(self, model: Any, vocab: Vocabulary, text_tokenizer: Any) -> None:
        extend_hf_tokenizer(text_tokenizer, vocab)
        if text_tokenizer.bos_token_id is None or text_tokenizer.eos_token_id is None:
            raise ValueError("the text tokenizer needs bos and eos tokens (they open and close every sequence)")
        if model.get_input_embeddings().weight.shape[0] < vocab.size:
            raise ValueError(f"the model embeds {model.get_input_embeddings().weight.shape[0]} ids, the vocabulary "
                             f"has {vocab.size}: call resize_hf_embeddings(model, vocab)")
        self.model, self.vocab, self.text_tokenizer = model.eval(), vocab, text_tokenizer
        self.summary: dict[str, Any] = {}  # the measured numbers of a shipped LM (config.json)

    @classmethod
    def build(cls, vocab: Vocabulary, text_tokenizer: Any, *, n_layer: int = 4, n_embd: int = 256, n_head: int = 4,
              n_positions: int = 160, dropout: float = 0.1) -> "MultimodalLM":
        """A fresh, randomly initialised GPT-2-style model sized for `vocab` (no download)."""
        _require_transformers()
        from transformers import GPT2Config, GPT2LMHeadModel

        config = GPT2Config(vocab_size=vocab.size, n_positions=n_positions, n_embd=n_embd, n_layer=n_layer,
                            n_head=n_head, resid_pdrop=dropout, embd_pdrop=dropout, attn_pdrop=dropout,
                            bos_token_id=text_tokenizer.bos_token_id, eos_token_id=text_tokenizer.eos_token_id,
                            pad_token_id=vocab.pad)
        return cls(GPT2LMHeadModel(config), vocab, text_tokenizer)

    # -- sequences ---------------------------------------------------------------------------------------

    def sequence(self, text: str, segment: Tensor | None = None, entry: str | None = None) -> list[int]:
        """See `sequence_ids`."""
        return sequence_ids(self.text_tokenizer, self.vocab, text, segment, entry)

    def text(self, segment: Segment) -> str:
        return self.text_tokenizer.decode(segment.ids.tolist(), skip_special_tokens=True)

    @torch.no_grad()
    def generate(self, prompts: Sequence[str], entry: str, *, temperature: float = 1.0, top_k: int | None = None,
                 seed: int = 0, batch_size: int = 64, guidance: float = 1.0) -> list[Segment]:
        """Sample one `entry` segment after each text prompt.

        Args:
            prompts: texts (a caption, a shape name).
            entry: the entry to generate.
            temperature, top_k: sampling; the grammar mask applies first.
            seed: sampling is reproducible for a given seed, batch composition and device.
            guidance: classifier-free guidance scale s (Ho & Salimans 2022, as in Parti and LlamaGen):
                next-id logits `uncond + s * (cond - uncond)`, where uncond conditions on the empty prompt
                `<bos> <|entry:begin|>` that condition dropout trains (`recipes.lm_data.InterleavedData`).
                1.0 is plain conditional sampling (transformers' `generate`, one pass); other values run
                the prompted and the empty-prompt rows as one batch with a KV cache.
        Returns:
            One Segment per prompt (`complete=False` if the model's budget ran out first).
        """
        if temperature <= 0:
            raise ValueError(f"temperature must be > 0, got {temperature}")
        if not math.isfinite(guidance) or guidance < 0:
            raise ValueError(f"guidance must be a finite scale >= 0 (1.0: no guidance), got {guidance}")
        e, r = self.vocab.entry(entry), self.vocab.range(entry)
        frame = len(e.slots)
        budget = e.max_tokens * frame + (e.max_tokens - 1) // (e.sep_every or 10**9) + 1
        device = self.model.device
        rows = [self.sequence(p, entry=entry) for p in prompts]
        out: list[Segment | None] = [None] * len(rows)
        by_length: dict[int, list[int]] = {}
        for i, row in enumerate(rows):
            by_length.setdefault(len(row), []).append(i)
        with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
            torch.manual_seed(seed)
            for length, idx in sorted(by_length.items()):
                if length + budget > self.model.config.n_positions:
                    raise ValueError(f"a prompt of {length} ids plus a {entry} segment of {budget} exceeds the "
                                     f"model's {self.model.config.n_positions} positions; shorten the prompt")
                for chunk in range(0, len(idx), batch_size):
                    part = idx[chunk:chunk + batch_size]
                    x = torch.tensor([rows[i] for i in part], device=device)
                    if guidance == 1.0:
                        y = self.model.generate(
                            x, attention_mask=torch.ones_like(x), do_sample=True, temperature=temperature,
                            top_k=top_k or 0, max_new_tokens=budget, logits_processor=[ConstrainedLogits(self.vocab, entry)],
                            eos_token_id=r.end, pad_token_id=self.vocab.pad)
                    else:
                        y = self._sample_guided(x, entry, guidance, temperature=temperature, top_k=top_k,
                                                max_new_tokens=budget)
                    for i, seq in zip(part, y):
                        segs = [s for s in self.vocab.from_llm(seq[length - 1:]) if s.name == entry]
                        out[i] = segs[0]
        return out  # type: ignore[return-value]

    def _sample_guided(self, x: Tensor, entry: str, guidance: float, *, temperature: float, top_k: int | None,
                       max_new_tokens: int) -> Tensor:
        """x: (B, L) prompts `<bos> text <|entry:begin|>` → (B, L + n) with the sampled ids, as `generate`.

        The B prompted rows and B empty-prompt rows `<bos> <|entry:begin|>` (left-padded to L, with
        matching position ids) go through the model as one (2B, .) batch; each step feeds the sampled id
        to both halves through the KV cache. The grammar mask, temperature and top-k apply to the guided
        logits, in that order, as transformers' sampling does.
        """
        b, n = x.shape
        pad, end = self.vocab.pad, self.vocab.range(entry).end
        empty = torch.tensor(self.sequence("", entry=entry), device=x.device)  # the unconditional prompt
        uncond = torch.full_like(x, pad)
        uncond[:, n - len(empty):] = empty
        ids = torch.cat([x, uncond])  # (2B, L)
        mask = torch.cat([torch.ones_like(x), (uncond != pad).long()])
        positions = (mask.cumsum(1) - 1).clamp(min=0)
        grammar = ConstrainedLogits(self.vocab, entry)
        out, done, past = x, torch.zeros(b, dtype=torch.bool, device=x.device), None
        for _ in range(max_new_tokens):
            step = self.model(input_ids=ids, attention_mask=mask, position_ids=positions, past_key_values=past,
                              use_cache=True)
            past = step.past_key_values
            logits = step.logits[:, -1].float()  # (2B, V)
            scores = grammar(out, guided_logits(logits[:b], logits[b:], guidance)) / temperature
            if top_k:
                kth = scores.topk(min(top_k, scores.shape[-1])).values[:, -1:]
                scores = scores.masked_fill(scores < kth, float("-inf"))
            nxt = torch.multinomial(scores.softmax(-1), 1).squeeze(1)  # (B,)
            nxt = torch.where(done, torch.full_like(nxt, pad), nxt)
            out = torch.cat([out, nxt[:, None]], 1)
            done |= nxt == end
            if done.all():
                break
            ids = nxt.repeat(2)[:, None]  # (2B, 1): the same id continues both halves
            mask = torch.cat([mask, torch.ones_like(ids)], 1)
            positions = positions[:, -1:] + 1
        return out

    # -- files -------------------------------------------------------------------------------------------

    def save_pretrained(self, directory: str | os.PathLike, card: str | None = None,
                        summary: dict[str, Any] | None = None, dtype: torch.dtype | None = None) -> Path:
        """Write config.json, model.safetensors, vocabulary.json, tokenizer.json (and README.md).

        Args:
            dtype: store the weights in this dtype (e.g. torch.float16 halves the file); loading casts
                them back to the model's float32.
        """
        import copy
        import hashlib

        from safetensors.torch import save_model

        from zoo.data.cache import atomic_write_bytes

        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        model = self.model if dtype is None else copy.deepcopy(self.model).to(dtype)
        save_model(model, str(directory / LM_WEIGHTS))  # handles the tied input/output embeddings
        os.chmod(directory / LM_WEIGHTS, 0o644)  # safetensors writes 0600; shipped files are world-readable
        self.vocab.save(directory / LM_VOCAB)
        self.text_tokenizer.backend_tokenizer.save(str(directory / LM_TEXT))
        files = {n: hashlib.sha256((directory / n).read_bytes()).hexdigest() for n in (LM_WEIGHTS, LM_VOCAB, LM_TEXT)}
        config = {"format": LM_FORMAT, "format_version": FORMAT_VERSION, "architecture": "gpt2",
                  "model": self.model.config.to_diff_dict(), "bos_token": self.text_tokenizer.bos_token,
                  "eos_token": self.text_tokenizer.eos_token, "files": files, "summary": summary or {},
                  "weights_dtype": str(dtype or next(self.model.parameters()).dtype).removeprefix("torch.")}
        atomic_write_bytes(directory / LM_CONFIG, (json.dumps(config, indent=2, sort_keys=True) + "\n").encode())
        if card is not None:
            atomic_write_bytes(directory / "README.md", card.encode())
        return directory

    @classmethod
    def from_pretrained(cls, directory: str | os.PathLike, device: Any = None) -> "MultimodalLM":
        """Load a folder written by `save_pretrained`, checking every file's sha256 and every weight key."""
        import hashlib

        from safetensors.torch import load_model

        _require_transformers()
        from transformers import GPT2Config, GPT2LMHeadModel, PreTrainedTokenizerFast

        directory = Path(directory)
        if not (directory / LM_CONFIG).is_file():
            raise ValueError(f"{str(directory)!r} is not a MultimodalLM folder (no {LM_CONFIG})")
        config = json.loads((directory / LM_CONFIG).read_text())
        if config.get("format") != LM_FORMAT or config.get("architecture") != "gpt2":
            raise ValueError(f"{directory / LM_CONFIG} is not a {LM_FORMAT} config (format {config.get('format')!r})")
        for name, sha in config["files"].items():
            path = directory / name
            if not path.is_file() or hashlib.sha256(path.read_bytes()).hexdigest() != sha:
                raise ValueError(f"{path} is missing or does not match the sha256 in {LM_CONFIG}")
        vocab = Vocabulary.load(directory / LM_VOCAB)
        text = PreTrainedTokenizerFast(tokenizer_file=str(directory / LM_TEXT), bos_token=config["bos_token"],
                                       eos_token=config["eos_token"])
        model = GPT2LMHeadModel(GPT2Config(**config["model"]))
        missing, unexpected = load_model(model, str(directory / LM_WEIGHTS), strict=True, device="cpu")
        lm = cls(model, vocab, text)
        lm.summary = config.get("summary", {})
        if device is not None:
            lm.model.to(device)
        return lm


# ----------------------------------------------------------------------------------------- the demo

DEMO_LM = "lm-tiny-interleaved"
DEMO_PROMPTS = {
    "image": ("a red circle on a black background", "a blue square on a white background",
              "a green triangle on a light grey background", "a yellow star on a dark grey background",
              "a purple cross on a white background", "an orange circle on a dark grey background"),
    "action": ("Angle", "GShape", "Snake", "WShape", "Leaf_1", "Sshape"),
}


def demo(out_dir: str | os.PathLike, checkpoint: str | os.PathLike | None = None, samples: int = 4) -> str:
    """Generate through the shipped demo LM and decode with the zoo tokenizers; write a PNG per entry.

    For each entry of the LM's vocabulary, `samples` generations for each of a few prompts (captions
    for images, LASA shape names for actions), decoded and drawn in one row per prompt.

    Args:
        out_dir: where `llm_<entry>.png` files go.
        checkpoint: an LM folder (default: this repo's checkpoints/lm-tiny-interleaved).
    Returns:
        A short text report: the prompts, the files written, and the card's headline numbers.
    """
    import numpy as np
    from PIL import Image, ImageDraw

    from zoo.hub import REPO_CHECKPOINTS

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    lm = MultimodalLM.from_pretrained(checkpoint or REPO_CHECKPOINTS / DEMO_LM)
    lines = [f"demo LM: {checkpoint or DEMO_LM} ({lm.vocab.size} ids: " + ", ".join(e.name for e in lm.vocab.entries) + ")"]
    cell = 96
    for e in lm.vocab.entries:
        prompts = DEMO_PROMPTS.get(e.modality)
        if not prompts:
            continue
        tok = lm.vocab.load_tokenizer(e.name)
        segments = lm.generate([p for p in prompts for _ in range(samples)], e.name, seed=0,
                               guidance=lm.summary.get("protocol", {}).get("guidance", 1.0))  # as the card measured
        tokens = Tokens(ids=torch.stack([s.ids for s in segments]), lengths=torch.tensor([len(s.ids) for s in segments]))
        x = tok.decode(tokens)
        sheet = Image.new("RGB", (cell * samples, cell * len(prompts)), "white")
        for i in range(len(x)):
            row, col = divmod(i, samples)
            if e.modality == "image":
                img = (x[i].clamp(0, 1).permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)
                tile = Image.fromarray(img).resize((cell, cell), Image.NEAREST)
            else:  # a 2-D trajectory, scaled into the tile, start marked
                xy = x[i, :, :2].numpy()
                lo, span = xy.min(0), max(float((xy.max(0) - xy.min(0)).max()), 1e-6)
                pts = [(8 + (p[0] - lo[0]) / span * (cell - 16), cell - 8 - (p[1] - lo[1]) / span * (cell - 16)) for p in xy]
                tile = Image.new("RGB", (cell, cell), "white")
                draw = ImageDraw.Draw(tile)
                draw.line(pts, fill=(40, 80, 220), width=2)
                draw.ellipse((pts[0][0] - 3, pts[0][1] - 3, pts[0][0] + 3, pts[0][1] + 3), fill=(220, 40, 40))
            sheet.paste(tile, (col * cell, row * cell))
        path = out / f"llm_{e.name}.png"
        sheet.save(path)
        lines.append(f"{e.name}: {samples} samples per row for {', '.join(map(repr, prompts))} -> {path}")
    metrics = lm.summary.get("metrics", {})
    headline = {k: metrics[k] for k in ("image_match", "action_shape_match_dtw") if k in metrics}
    if headline:
        lines.append("measured (card): " + ", ".join(f"{k} {v:.0%}" for k, v in headline.items()))
    return "\n".join(lines)
