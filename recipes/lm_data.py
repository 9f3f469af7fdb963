"""Interleaved text + token sequences for the demo LM, built from our own data and tokenizers.

Two kinds of sequence, both `<bos> text <|entry:begin|> codes <|entry:end|> <eos>`:
- images: the caption of a generated shape scene (`zoo.data.images.render_scene`, simple levels),
  then the scene's tokens from an image tokenizer (FlexTok: a fixed-length prefix, written in digits);
- actions: the name of a LASA shape, then one demonstration's BEAST tokens.

Condition dropout (`cond_dropout=p`, for classifier-free guidance): each training sequence, each time
it is drawn, loses its text with probability p and reads `<bos> <|entry:begin|> codes <|entry:end|> <eos>`,
the empty prompt that `MultimodalLM.generate(..., guidance=s)` conditions its unconditional half on. The
draws come from a generator seeded by `seed`, so a run is reproducible; val sequences keep their text.

Train and val are disjoint: val scenes come from the val seed range, and val actions are one held-out
demonstration per shape (the LM is asked for the training shapes by name, so the shapes are shared).
Token ids are computed once per (tokenizer checkpoint, data) and cached with `zoo.data.cache`.
"""

from __future__ import annotations

import hashlib
from typing import Any, Sequence

import lightning.pytorch as pl
import numpy as np
import torch
from torch import Tensor
from torch.utils.data import DataLoader

import zoo
from zoo.data import images as img_data
from zoo.data.cache import cached_arrays
from zoo.data.images import shape_scenes
from zoo.llm import Entry, Vocabulary, extend_hf_tokenizer, sequence_ids
from zoo.llm.evaluate import ACTION, IMAGE
from zoo.tokenizer import Tokens

TEXT_SPECIALS = ("<unk>", "<bos>", "<eos>")


# ----------------------------------------------------------------------------------------- text


def caption_words() -> list[str]:
    """Every word a shape caption can use (from the scene generator's own tables), plus quotes."""
    words = {"a", "an", "and", "on", "background", "with", "the", "text", "gradient", '"'}
    words |= set(img_data.KINDS) | set(img_data.PLURALS.values()) | set(img_data.COUNT_WORDS) | set(img_data.WORDS)
    for table in (img_data.COLOURS, img_data.BACKGROUNDS):
        words |= {w for name in table for w in name.split()}
    words |= {w for w in img_data.TEXTURE_WORDS.values() if w}
    return sorted(words)


def word_tokenizer(words: Sequence[str]) -> Any:
    """A word-level transformers tokenizer over `words` (split on whitespace and punctuation).

    Ids: <unk>, <bos>, <eos>, then the sorted words.
    """
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    vocab = {w: i for i, w in enumerate([*TEXT_SPECIALS, *sorted(set(words) - set(TEXT_SPECIALS))])}
    backend = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    backend.pre_tokenizer = pre_tokenizers.Whitespace()
    return PreTrainedTokenizerFast(tokenizer_object=backend, unk_token="<unk>", bos_token="<bos>", eos_token="<eos>")


# ----------------------------------------------------------------------------------------- data


def checkpoint_sha(name: str) -> str:
    """A short fingerprint of a tokenizer checkpoint (its config.json), so cached tokens follow retraining."""
    from zoo import hub

    return hashlib.sha256((hub.locate(name) / hub.CONFIG).read_bytes()).hexdigest()[:16]


def encode_cached(name: str, tok: Any, x: Tensor, tag: str, batch_size: int = 256, **budget: Any) -> np.ndarray:
    """Token ids (n, L) of `x` under tokenizer `name`, computed once per (checkpoint, data, budget)."""

    def build() -> dict[str, np.ndarray]:
        with torch.no_grad():
            ids = [tok.encode(x[i:i + batch_size], **budget).ids for i in range(0, len(x), batch_size)]
        return {"ids": torch.cat(ids).numpy()}

    params = {"tokenizer": name, "sha": checkpoint_sha(name), "data": tag, "n": len(x), **budget}
    return cached_arrays("lm-tokens", params, build)["ids"]


class InterleavedData(pl.LightningDataModule):
    """Caption → image tokens and shape name → action tokens sequences, with the joint vocabulary.

    Args:
        image_tokenizer: a registered image tokenizer (None: no image sequences).
        image_tokens: tokens per image (a FlexTok or KARL prefix length, the cells of a CAT grid).
        image_budget: the budget keywords of the image tokenizer's `encode` that give `image_tokens`
            tokens (default {"num_tokens": image_tokens}; {"ratio": 8} for CAT at 32x32).
        image_digits: mixed-radix digits each image code is written in (see `zoo.llm.Entry`).
        image_levels: shape-scene complexity levels for the captions (low levels: simple captions).
        num_images, val_images: scenes in train / val.
        action_tokenizer: a registered 2-D action tokenizer for LASA (None: no action sequences).
        action_tokens: tokens per trajectory.
        action_repeat: how often each training demonstration appears per epoch (there are only 144).
        val_demo: the index (0..6) of the demonstration of each shape held out for validation.
        batch_size: sequences per batch.
        seed: scene seed, and the seed of the condition-dropout draws.
        cond_dropout: probability that a training sequence is drawn with its text dropped (the empty
            prompt), so the LM also learns the unconditional distribution that guidance needs.
    """

    def __init__(self, image_tokenizer: str | None = "flextok-tiny-nat32", image_tokens: int = 16,
                 image_budget: dict[str, Any] | None = None, image_digits: tuple[int, ...] = (512, 125), image_levels: tuple[int, ...] = (0,),
                 num_images: int = 20000, val_images: int = 256, action_tokenizer: str | None = "beast-lasa",
                 action_tokens: int = 20, action_repeat: int = 40, val_demo: int = 6, batch_size: int = 32,
                 seed: int = 0, cond_dropout: float = 0.0) -> None:
        super().__init__()
        if image_tokenizer is None and action_tokenizer is None:
            raise ValueError("give at least one of image_tokenizer and action_tokenizer")
        if not 0 <= val_demo < 7:
            raise ValueError(f"val_demo must index one of LASA's 7 demonstrations (0..6), got {val_demo}")
        if not 0.0 <= cond_dropout < 1.0:
            raise ValueError(f"cond_dropout is a probability in [0, 1), got {cond_dropout}")
        self.save_hyperparameters()
        self.h = self.hparams
        self.tokenizers: dict[str, Any] = {}
        self.vocab: Vocabulary | None = None

    @property
    def image_budget(self) -> dict[str, Any]:
        return dict(self.h.image_budget or {"num_tokens": self.h.image_tokens})

    def describe(self) -> str:
        h, parts = self.h, []
        if h.image_tokenizer:
            parts.append(f"{h.num_images} shape scenes (levels {list(h.image_levels)}, train seeds) captioned and "
                         f"tokenized by `{h.image_tokenizer}` ({h.image_tokens} tokens)")
        if h.action_tokenizer:
            parts.append(f"the 24 LASA training shapes by name, 6 of 7 demonstrations each (x{h.action_repeat}), "
                         f"tokenized by `{h.action_tokenizer}` ({h.action_tokens} tokens)")
        dropout = (f"; condition dropout: {h.cond_dropout:.0%} of training sequences drop their text "
                   f"(the empty prompt of classifier-free guidance)") if h.cond_dropout else ""
        return ("; ".join(parts) + dropout +
                f"; val: {h.val_images} val-seed scenes and the held-out demonstration {h.val_demo}.")

    def setup(self, stage: str | None = None) -> None:
        if self.vocab is not None:
            return
        from zoo.data.actions import load_lasa, lasa_shapes

        h = self.h
        entries = []
        if h.image_tokenizer:
            self.tokenizers[IMAGE] = tok = zoo.load(h.image_tokenizer)
            entries.append(Entry.from_tokenizer(IMAGE, tok, h.image_tokenizer, max_tokens=h.image_tokens,
                                                fixed_length=True, digits=tuple(h.image_digits or ()),
                                                encode_kwargs=self.image_budget))
        if h.action_tokenizer:
            self.tokenizers[ACTION] = tok = zoo.load(h.action_tokenizer)
            entries.append(Entry.from_tokenizer(ACTION, tok, h.action_tokenizer, max_tokens=h.action_tokens,
                                                fixed_length=True))
        self.text_tokenizer = word_tokenizer(caption_words() + lasa_shapes())
        self.vocab = Vocabulary(len(self.text_tokenizer), entries, text_tokenizer="tokenizer.json")
        extend_hf_tokenizer(self.text_tokenizer, self.vocab)
        self.train_rows: list[list[int]] = []
        self.val_rows: list[list[int]] = []
        if h.image_tokenizer:
            for split, n, rows in (("train", h.num_images, self.train_rows), ("val", h.val_images, self.val_rows)):
                scenes = shape_scenes(split, n, h.image_levels, h.seed)
                ids = encode_cached(h.image_tokenizer, self.tokenizers[IMAGE],
                                    img_data.images_to_tensor(scenes["images"]),
                                    f"lm-scenes/{split}/{n}/{list(h.image_levels)}/{h.seed}", **self.image_budget)
                if ids.shape[1] != h.image_tokens:
                    raise ValueError(f"image_budget {self.image_budget} gives {ids.shape[1]} tokens per image, "
                                     f"not image_tokens={h.image_tokens}")
                rows += self._rows(IMAGE, list(scenes["captions"]), torch.from_numpy(ids))
                if split == "val":
                    self.val_scenes = scenes
        if h.action_tokenizer:
            x, names = load_lasa("train", self.tokenizers[ACTION].config.num_steps)
            demo = np.arange(len(names)) % 7  # load_lasa lists 7 demonstrations per shape, in order
            ids = encode_cached(h.action_tokenizer, self.tokenizers[ACTION], torch.from_numpy(x), "lasa/train",
                                num_tokens=h.action_tokens)
            rows = self._rows(ACTION, names, torch.from_numpy(ids))
            self.train_rows += [r for r, d in zip(rows, demo) if d != h.val_demo] * h.action_repeat
            self.val_rows += [r for r, d in zip(rows, demo) if d == h.val_demo]
            self.lasa, self.lasa_names = x, names
        self.max_length = max(len(r) for r in self.train_rows + self.val_rows)
        self.dropout_rng = torch.Generator().manual_seed(h.seed)

    def _rows(self, entry: str, texts: list[str], ids: Tensor) -> list[list[int]]:
        segments = self.vocab.to_llm(Tokens(ids=ids, lengths=torch.full((len(ids),), ids.shape[1])), entry)
        return [sequence_ids(self.text_tokenizer, self.vocab, str(t), s) for t, s in zip(texts, segments)]

    def collate(self, rows: list[list[int]]) -> Tensor:
        """Right-pad a batch of sequences with the vocabulary's pad id: LongTensor (B, N)."""
        out = torch.full((len(rows), max(len(r) for r in rows)), self.vocab.pad, dtype=torch.long)
        for i, r in enumerate(rows):
            out[i, : len(r)] = torch.tensor(r)
        return out

    def drop_condition(self, rows: list[list[int]]) -> list[list[int]]:
        """Each row loses its text (keeps `<bos>` and what follows the text) with probability `cond_dropout`."""
        if not self.h.cond_dropout:
            return rows
        drop = torch.rand(len(rows), generator=self.dropout_rng) < self.h.cond_dropout
        text = self.vocab.text_size
        return [[r[0], *r[next(k for k in range(1, len(r)) if r[k] >= text):]] if d else r for r, d in zip(rows, drop)]

    def train_dataloader(self) -> DataLoader:
        return DataLoader(self.train_rows, batch_size=self.h.batch_size, shuffle=True, drop_last=True,
                          collate_fn=lambda rows: self.collate(self.drop_condition(rows)))

    def val_dataloader(self) -> DataLoader:
        return DataLoader(self.val_rows, batch_size=self.h.batch_size * 2, shuffle=False, collate_fn=self.collate)
