"""Telling a Hugging Face hub id (``owner/name``) from a local path: one rule for every loader
(tokenizers, world models, language models, run identities, upstream checks)."""
from __future__ import annotations


def looks_like_hub_id(name: str) -> bool:
    """``owner/name`` with no file suffix (``thuml/rt1-frame-tokenizer``), not a local path."""
    parts = name.split("/")
    return len(parts) == 2 and all(parts) and not name.endswith((".ckpt", ".pt", ".pth")) \
        and not name.startswith((".", "~"))
