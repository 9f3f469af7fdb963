"""Plug tokenizers into an LLM: one joint id space for text and every tokenizer's codes.

- `zoo.llm.vocabulary`: `Entry`, `Vocabulary`, `Segment` (the id layout, `to_llm` / `from_llm`, the grammar);
- `zoo.llm.hf`: Hugging Face glue (`extend_hf_tokenizer`, `resize_hf_embeddings`, `ConstrainedLogits`);
- `zoo.llm.model`: `MultimodalLM`, a small causal LM over a vocabulary (needs `transformers`).

Importing this package imports neither transformers nor any tokenizer family.
"""

from zoo.llm.hf import ConstrainedLogits, extend_hf_tokenizer, resize_hf_embeddings
from zoo.llm.model import MultimodalLM, guided_logits, sequence_ids
from zoo.llm.vocabulary import Entry, Range, Segment, Vocabulary

__all__ = ["Entry", "Range", "Segment", "Vocabulary", "ConstrainedLogits",
           "extend_hf_tokenizer", "resize_hf_embeddings", "MultimodalLM", "guided_logits", "sequence_ids"]
