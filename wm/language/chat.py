"""Rendering text prompts through the model's chat template.

The paper's base models (DeepSeek-R1-Distill-Qwen) are chat models, and the reference (verl)
renders every SFT and RL prompt as one user turn with the generation prompt on
(``apply_chat_template(..., add_generation_prompt=True, tokenize=False)``) and tokenizes the
result with ``add_special_tokens=False``: the template itself writes BOS where the model
expects it, so no second BOS is added. A tokenizer without a template gets the plain text.
"""
from __future__ import annotations


def has_chat_template(tokenizer) -> bool:
    return bool(getattr(tokenizer, "chat_template", None))


def render_prompts(tokenizer, texts: list[str], enabled: bool | None = None) -> list[str]:
    """Each text as a user turn of the chat template, ready for the assistant's answer.

    ``enabled``: None = when the tokenizer has a template; True = required (a clear error if
    it has none); False = plain text.
    """
    if enabled is False or (enabled is None and not has_chat_template(tokenizer)):
        return list(texts)
    if not has_chat_template(tokenizer):
        raise ValueError("data.task.chat_template=true but the tokenizer has no chat template; "
                         "set data.task.chat_template=null (auto) or false")
    return [tokenizer.apply_chat_template([{"role": "user", "content": t}], tokenize=False,
                                          add_generation_prompt=True) for t in texts]


def template_overhead(tokenizer, enabled: bool | None = None) -> int:
    """Tokens the template adds around a prompt (what a DataModule must keep free); 0 without
    a tokenizer."""
    if tokenizer is None:
        return 0
    rendered = render_prompts(tokenizer, [""], enabled)[0]
    return len(tokenizer(rendered, add_special_tokens=False)["input_ids"])
