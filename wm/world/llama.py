"""LLaMA transformer over visual + action tokens (RLVR-World / iVideoGPT world model).

Reference (shared/REFERENCE.md, "Video world model", Transformer): LLaMA architecture, 12 layers,
hidden 768, 12 heads (about 120-138M parameters depending on the vocabulary); presets in
``conf/model/world_paper.yaml`` (that size) and ``conf/model/world_tiny.yaml`` (tests, CPU).

The model is a plain ``transformers.LlamaForCausalLM`` built from a config with random weights
(SDPA attention), so it saves/loads in Hugging Face format and works with ``generate``, peft and
:class:`wm.rollout.Sampler`. Departures: the reference's MLP width is not stated; the paper preset
uses ``4 * hidden = 3072`` (about 120M parameters at vocabulary 4,633, matching the reference's
"~120-138M"), and ``build_llama`` defaults to the LLaMA ratio ``~8/3 * hidden`` rounded up to a
multiple of 64. Special ids come from :class:`~wm.world.vocab.VocabLayout` when given.
"""
from __future__ import annotations

import torch

_DTYPES = {"float32": torch.float32, "fp32": torch.float32, "bfloat16": torch.bfloat16,
           "bf16": torch.bfloat16, "float16": torch.float16, "fp16": torch.float16}


def _dtype(dtype: str | torch.dtype) -> torch.dtype:
    if isinstance(dtype, torch.dtype):
        return dtype
    if dtype not in _DTYPES:
        raise ValueError(f"unknown dtype {dtype!r}; use one of {sorted(_DTYPES)}")
    return _DTYPES[dtype]


def build_llama(vocab_size: int, hidden_size: int, num_layers: int, num_heads: int,
                intermediate_size: int | None = None, max_position_embeddings: int = 2048,
                num_kv_heads: int | None = None, rope_theta: float = 10000.0,
                dtype: str | torch.dtype = "float32", bos_token_id: int | None = None,
                eos_token_id: int | None = None, pad_token_id: int | None = None, seed: int | None = None,
                gradient_checkpointing: bool = False):
    """A randomly initialised ``LlamaForCausalLM``.

    ``vocab_size`` is ``VocabLayout.vocab_size`` (4,633 single-step, 9,008 multi-step in the
    reference); ``max_position_embeddings`` must cover prompt + response (1,654 single-step,
    2,024 multi-step). ``seed`` makes the initialisation reproducible.
    ``gradient_checkpointing``: recompute each layer's activations in backward
    (``wm.language.model.set_gradient_checkpointing``; ``model.gradient_checkpointing``).
    """
    from transformers import LlamaConfig, LlamaForCausalLM

    for name, v in (("vocab_size", vocab_size), ("hidden_size", hidden_size), ("num_layers", num_layers),
                    ("num_heads", num_heads), ("max_position_embeddings", max_position_embeddings)):
        if not isinstance(v, int) or v < 1:
            raise ValueError(f"build_llama: {name} must be a positive int, got {v!r} "
                             "(vocab_size comes from VocabLayout.vocab_size)")
    if hidden_size % num_heads:
        raise ValueError(f"build_llama: hidden_size={hidden_size} is not divisible by num_heads={num_heads}")
    if intermediate_size is None:
        intermediate_size = -(-int(8 * hidden_size / 3) // 64) * 64
    config = LlamaConfig(
        vocab_size=vocab_size, hidden_size=hidden_size, intermediate_size=intermediate_size,
        num_hidden_layers=num_layers, num_attention_heads=num_heads,
        num_key_value_heads=num_kv_heads or num_heads, max_position_embeddings=max_position_embeddings,
        rope_parameters={"rope_type": "default", "rope_theta": float(rope_theta)},
        bos_token_id=bos_token_id, eos_token_id=eos_token_id, pad_token_id=pad_token_id,
        tie_word_embeddings=False,
    )
    config._attn_implementation = "sdpa"
    if seed is not None:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            model = LlamaForCausalLM(config)
    else:
        model = LlamaForCausalLM(config)
    from wm.language.model import set_gradient_checkpointing

    return set_gradient_checkpointing(model.to(_dtype(dtype)), gradient_checkpointing)


def load_llama(name_or_path: str, dtype: str | torch.dtype = "float32"):
    """Load a saved world model (``save_pretrained`` folder or hub name) with SDPA attention."""
    from transformers import LlamaForCausalLM

    return LlamaForCausalLM.from_pretrained(name_or_path, dtype=_dtype(dtype), attn_implementation="sdpa")
