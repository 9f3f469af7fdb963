"""zoo: every tokenizer a multimodal LLM needs, behind one interface.

    import zoo
    zoo.list_tokenizers("flex*")
    tok = zoo.load("beast-lasa")
    tokens = tok.encode(actions)      # Tokens: ids [B, L] (or [B, L, Q]), lengths [B], latents, meta
    actions_hat = tok.decode(tokens)

`import zoo` does not import torch; the names below load on first use.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from zoo.hub import list_tokenizers, load, push_to_hub, register, register_family, register_release

__version__ = "0.1.0"
__all__ = ["load", "list_tokenizers", "register", "register_family", "register_release", "push_to_hub",
           "Tokenizer", "Tokens", "TokenSpec", "InputContract"]

if TYPE_CHECKING:
    from zoo.tokenizer import InputContract, Tokenizer, Tokens, TokenSpec


def __getattr__(name: str) -> Any:
    if name in ("Tokenizer", "Tokens", "TokenSpec", "InputContract"):
        from zoo import tokenizer

        return getattr(tokenizer, name)
    raise AttributeError(f"module 'zoo' has no attribute {name!r}")
