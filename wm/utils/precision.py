"""Mixed precision (bf16) for every stage, and what is kept in float32.

The paper trains its world models in bf16 on GPUs (RLVR-World, appendix: the verl/TRL defaults);
here ``trainer.precision=bf16-mixed`` (``conf/trainer/gpu.yaml``) selects it. Lightning's
``MixedPrecision`` plugin runs ``training_step`` and ``validation_step`` inside
``torch.autocast`` (also with manual optimization, as every stage uses), so the tokenizer's,
MLE's and GRPO's steps -- GRPO's sampling and recomputed log-probs included -- run their
matmuls and convolutions in bf16 with float32 weights and optimizer state. What runs outside a
Lightning step (``eval.py``, the pipeline's evaluation, ``bench/gpu_check.py``) enters the same
autocast with :func:`autocast`.

Kept in float32 on purpose, inside autocast:

- the LM head (:func:`fp32_logits`): bf16 logits are rounded by ~2**-8 of their size (0.03 at
  a logit of 10), an error of that size in every log-prob, ratio and KL term. The head runs
  outside autocast in its weights' dtype (float32 for mixed precision, where weights are
  float32) and returns float32 logits, for the sampler and for the recomputation alike, so both
  see the same computation (GRPO's on-policy requirement; ``grpo/logp_diff``);
- the sampler's cascade attention computes its scores and softmax in float32
  (``wm.rollout.cascade``), as SDPA's kernels do;
- log-softmax, log-probs, entropy, losses (``wm.rollout.distribution`` and ``wm.rl`` cast to
  float32 before reducing);
- decoding sampled tokens to frames/text, rewards and metrics (:func:`full_precision` around
  them in ``wm.rollout.scoring``): rewards are compared within a group of G samples whose
  differences can be a few 1e-3 in MAE, the size of bf16 rounding of pixel values (measured:
  the tiny test decoder's MAE reward moved by up to 7e-3 under autocast), and the perceptual
  distance (ST-LPIPS/LPIPS) is a difference of nearly equal features (its own bf16 opt-in,
  ``data.task.perceptual.dtype=bf16``, docs/metrics.md, swaps ~0.5% of same-group pairs).
"""
from __future__ import annotations

import contextlib
import types

import torch

#: Lightning precision strings that mean autocast, and its dtype
_AUTOCAST = {"bf16-mixed": torch.bfloat16, "bf16": torch.bfloat16,
             "16-mixed": torch.float16, "16": torch.float16}
_FULL = ("32-true", "32", "64-true", "64", "bf16-true", "16-true", "transformer-engine")


def autocast_dtype(precision: str | int | None) -> torch.dtype | None:
    """The autocast dtype of a Lightning precision string (None: no autocast).

    ``"bf16-mixed"`` -> bfloat16, ``"16-mixed"`` -> float16, ``"32-true"``/None -> None."""
    if precision is None:
        return None
    key = str(precision)
    if key in _AUTOCAST:
        return _AUTOCAST[key]
    if key in _FULL:
        return None
    raise ValueError(f"precision={precision!r} is not a Lightning precision; use 32-true, "
                     "bf16-mixed (GPUs with bf16, and CPUs with AVX512-BF16) or 16-mixed")


def _device_type(device) -> str:
    return torch.device(device).type


def autocast(precision: str | int | None, device: torch.device | str = "cpu"):
    """``torch.autocast`` on ``device`` for ``precision`` (a no-op context for full precision).

    The same autocast as Lightning's ``MixedPrecision`` plugin (``cache_enabled=False``), so a
    computation outside a Lightning step matches one inside it."""
    dtype = autocast_dtype(precision)
    if dtype is None:
        return contextlib.nullcontext()
    return torch.autocast(_device_type(device), dtype=dtype, cache_enabled=False)


def full_precision(device: torch.device | str = "cpu"):
    """Autocast switched off on ``device`` (float32 compute for float32 inputs) inside the block."""
    return torch.autocast(_device_type(device), enabled=False)


def _head_forward(self, hidden: torch.Tensor) -> torch.Tensor:
    """The LM head outside autocast, in its weight's dtype; float32 logits (..., V)."""
    with torch.autocast(hidden.device.type, enabled=False):
        w = self.weight
        out = torch.nn.functional.linear(hidden.to(w.dtype), w,
                                         None if self.bias is None else self.bias)
    return out.float()


def fp32_logits(model):
    """Make ``model``'s output embedding (the LM head, a ``nn.Linear``) return float32 logits
    computed outside autocast (see the module docstring). Idempotent; the parameters, their
    names and ``state_dict`` are unchanged. Returns ``model``. A head that is not a plain
    ``nn.Linear`` (e.g. LoRA on the head itself) is left as it is: it runs under autocast."""
    get = getattr(model, "get_output_embeddings", None)
    head = get() if get is not None else None
    if type(head) is not torch.nn.Linear:
        return model
    if not getattr(head, "_wm_fp32_logits", False):
        head.forward = types.MethodType(_head_forward, head)
        head._wm_fp32_logits = True
    return model
