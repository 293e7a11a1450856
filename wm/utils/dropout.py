"""Switch off every dropout of a model (``nn.Dropout*`` modules, LoRA dropout, attention dropout).

GRPO computes the behaviour log-probs, the reference log-probs and the update's log-probs of the
same tokens; with dropout active in only some of these passes the PPO ratio of fresh on-policy
samples is not 1 and clipping and KL see noise. TRL and verl disable dropout for RL for this
reason; so does ``wm.stages.grpo`` (docs/stages.md).
"""
from __future__ import annotations

from torch import nn


def disable_dropout(model: nn.Module) -> int:
    """Set every dropout probability in ``model`` to 0, in place; returns how many were nonzero.

    Covers ``nn.Dropout``/``Dropout1d/2d/3d``/``AlphaDropout`` modules (peft's ``lora_dropout``
    among them), Hugging Face attention modules' ``attention_dropout`` attribute and the
    ``*dropout*`` fields of their configs (which the attention code reads at call time).
    """
    changed = 0
    for module in model.modules():
        if isinstance(module, nn.modules.dropout._DropoutNd) and module.p:
            module.p = 0.0
            changed += 1
        p = getattr(module, "attention_dropout", None)
        if isinstance(p, float) and p:
            module.attention_dropout = 0.0
            changed += 1
        config = getattr(module, "config", None)
        for key in ("attention_dropout", "hidden_dropout", "dropout", "resid_pdrop", "attn_pdrop",
                    "embd_pdrop"):
            value = getattr(config, key, None) if config is not None else None
            if isinstance(value, float) and value:
                setattr(config, key, 0.0)
                changed += 1
    return changed
