"""Offline language-model rig: a byte-level BPE tokenizer trained in milliseconds and a tiny
randomly initialised Qwen2 (the architecture family of the paper's DeepSeek-R1-Distill-Qwen
base models, RLVR-World Sec. 4.1-4.2). Used by tests and smoke runs, where pretrained weights
cannot be downloaded. It is not a model of anything; only the plumbing is real.
"""
from __future__ import annotations

from collections.abc import Iterable

PAD, BOS, EOS, UNK = "<|pad|>", "<|bos|>", "<|eos|>", "<|endoftext|>"
THINK_TOKENS = ("<think>", "</think>")
# a chat template in the style of DeepSeek-R1-Distill's (BOS, user turn, assistant tag), so the
# offline rig exercises the chat-template path that real chat models take
CHAT_TEMPLATE = ("{{ bos_token }}{% for m in messages %}<|{{ m['role'] }}|>{{ m['content'] }}"
                 "{% endfor %}{% if add_generation_prompt %}<|assistant|>{% endif %}")


def train_bpe_tokenizer(texts: Iterable[str], vocab_size: int = 512):
    """Byte-level BPE (``tokenizers``) wrapped as a fast tokenizer with pad/bos/eos/unk.

    The pipeline is Qwen2's (NFC, Qwen2's split regex, byte level), because ``AutoTokenizer``
    reloads a folder that also holds a Qwen2 ``config.json`` as ``Qwen2Tokenizer``, which
    rebuilds that pipeline around the saved vocabulary; any other pipeline would tokenize
    differently after a save/load round trip. Every byte is in the alphabet, so any text
    round-trips. ``<think>``/``</think>`` are ordinary (non-special) single tokens so they survive
    ``skip_special_tokens=True``.
    """
    from tokenizers import Regex, Tokenizer, decoders, models, normalizers, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast
    from transformers.models.qwen2.tokenization_qwen2 import PRETOKENIZE_REGEX

    tok = Tokenizer(models.BPE())
    tok.normalizer = normalizers.NFC()
    tok.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Split(Regex(PRETOKENIZE_REGEX), behavior="isolated", invert=False),
        pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
    ])
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=[PAD, BOS, EOS, UNK],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(list(texts), trainer=trainer)
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok, pad_token=PAD, bos_token=BOS, eos_token=EOS, unk_token=UNK,
        padding_side="left",  # generation pads on the left; saved with the tokenizer
    )
    fast.add_tokens(list(THINK_TOKENS))
    fast.chat_template = CHAT_TEMPLATE
    return fast


def build_tiny_qwen2(tokenizer, hidden: int = 64, layers: int = 2, heads: int = 4, seed: int = 0):
    """A randomly initialised ``Qwen2ForCausalLM`` for ``tokenizer``.

    The embedding has ``len(tokenizer)`` rounded up to a multiple of 64 rows (as real models pad
    their vocabularies): sharded training (FSDP2) needs dimensions that divide evenly across
    ranks. The padding ids are never produced by the tokenizer, and the samplers only draw ids
    below ``len(tokenizer)``.
    """
    import torch
    from transformers import Qwen2Config, Qwen2ForCausalLM

    if hidden % heads:
        raise ValueError(f"build_tiny_qwen2: hidden={hidden} must be divisible by heads={heads}")
    config = Qwen2Config(
        vocab_size=-(-len(tokenizer) // 64) * 64,
        hidden_size=hidden,
        intermediate_size=2 * hidden,
        num_hidden_layers=layers,
        num_attention_heads=heads,
        num_key_value_heads=max(1, heads // 2),
        max_position_embeddings=4096,
        tie_word_embeddings=True,
        pad_token_id=tokenizer.pad_token_id,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
    )
    torch.manual_seed(seed)
    model = Qwen2ForCausalLM(config)
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    model.generation_config.eos_token_id = tokenizer.eos_token_id
    return model


def tiny_lm(texts: Iterable[str], vocab_size: int = 512, **model_kwargs):
    """``(model, tokenizer)``: a tokenizer trained on ``texts`` and a tiny Qwen2 on top of it."""
    tokenizer = train_bpe_tokenizer(texts, vocab_size=vocab_size)
    return build_tiny_qwen2(tokenizer, **model_kwargs), tokenizer
