"""Hugging Face glue for a joint `Vocabulary` (optional extra `transformers`).

`extend_hf_tokenizer` appends the special and code tokens to a text tokenizer so that their ids are
exactly the vocabulary's, `resize_hf_embeddings` grows a model's input and output embeddings to match
(new rows start at the mean of the old ones), and `ConstrainedLogits` keeps `model.generate` inside the
vocabulary's grammar.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from zoo.llm.vocabulary import Vocabulary


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
