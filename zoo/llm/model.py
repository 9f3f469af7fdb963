"""A small causal LM over a joint vocabulary: a transformers GPT-2, the `Vocabulary` and the text tokenizer.

Needs the `transformers` extra. Knows nothing of training (that is `recipes/lm.py`).
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path
from typing import Any, Sequence

import torch
from torch import Tensor

from zoo.hub import register_family
from zoo.llm.hf import ConstrainedLogits, extend_hf_tokenizer
from zoo.llm.vocabulary import Segment, Vocabulary


LM_VOCAB, LM_TEXT = "vocabulary.json", "tokenizer.json"  # the files beside the weights


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

    family = "lm"  # its family in zoo.hub: `zoo.load("lm-tiny-interleaved")`

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

    # -- files (through zoo.hub, the one checkpoint reader and writer) ---------------------------------------

    def lm_config(self) -> dict[str, Any]:
        """What config.json records of the model beside the weights: the GPT-2 config and the text specials."""
        return {"architecture": "gpt2", "model": self.model.config.to_diff_dict(),
                "bos_token": self.text_tokenizer.bos_token, "eos_token": self.text_tokenizer.eos_token}

    def save_pretrained(self, directory: str | os.PathLike, card: str | None = None,
                        summary: dict[str, Any] | None = None, dtype: torch.dtype | None = None,
                        files: dict[str, bytes] | None = None) -> Path:
        """Write the LM as a zoo checkpoint folder: config.json (family "lm"), model.safetensors,
        vocabulary.json, tokenizer.json (and README.md), whole or not at all (`zoo.hub.save_module`).

        Args:
            summary: the measured numbers (config.json's summary; `MultimodalLM.summary` on load).
            dtype: store the weights in this dtype (e.g. torch.float16 halves the file); loading casts
                them back to the model's float32.
            files: more files to ship and hash-check beside the weights (the judge of its card).
        """
        from zoo import hub

        text = self.text_tokenizer.backend_tokenizer.to_str(pretty=True).encode()
        vocab = (json.dumps(self.vocab.to_dict(), indent=2) + "\n").encode()
        return hub.save_module(self, directory, config=self.lm_config(), extra={}, card=card, summary=summary,
                               dtype=dtype, files={LM_VOCAB: vocab, LM_TEXT: text, **(files or {})})

    @classmethod
    def from_checkpoint(cls, config: dict[str, Any], extra: dict[str, Any], directory: Path) -> "MultimodalLM":
        """Build the LM a checkpoint folder describes (`zoo.hub.load_dir` then loads its weights strictly)."""
        _require_transformers()
        from transformers import GPT2Config, GPT2LMHeadModel, PreTrainedTokenizerFast

        from zoo import hub

        if not isinstance(config, dict) or config.get("architecture") != "gpt2" or not isinstance(config.get("model"), dict):
            raise ValueError(f"{directory}: an LM config needs architecture 'gpt2' and a model config object")
        model_config = config["model"]
        size = model_config.get("vocab_size", 0) * model_config.get("n_embd", 0) + \
            model_config.get("n_positions", 0) * model_config.get("n_embd", 0) * model_config.get("n_layer", 0)
        if not all(isinstance(model_config.get(k, 1), int) for k in ("vocab_size", "n_embd", "n_layer", "n_positions")) \
                or size > 2**31:
            raise ValueError(f"{directory}: the GPT-2 config is not a model this loader builds (sizes {size})")
        vocab = Vocabulary.load(directory / LM_VOCAB)
        text = PreTrainedTokenizerFast(tokenizer_file=str(directory / LM_TEXT), bos_token=config.get("bos_token"),
                                       eos_token=config.get("eos_token"))
        lm = cls(GPT2LMHeadModel(GPT2Config(**model_config)), vocab, text)
        lm.summary = hub.read_config(directory).get("summary", {})
        return lm

    @classmethod
    def from_pretrained(cls, source: str | os.PathLike, device: Any = None) -> "MultimodalLM":
        """`zoo.load(source)` of an LM: a folder, or a registered name ("lm-tiny-interleaved")."""
        from zoo import hub

        return hub.load(source, family=cls.family, device=device)

    # what zoo.hub reads and writes of a model: the weights are the GPT-2's
    def state_dict(self) -> dict[str, Tensor]:
        return self.model.state_dict()

    def load_state_dict(self, state: dict[str, Tensor], strict: bool = True) -> Any:
        return self.model.load_state_dict(state, strict=strict)

    def eval(self) -> "MultimodalLM":
        self.model.eval()
        return self

    def to(self, device: Any) -> "MultimodalLM":
        self.model.to(device)
        return self


register_family(MultimodalLM)
