"""Per-token KL estimators between the policy and a frozen reference (RLVR-World §3.2).

GRPO adds ``kl_coef * KL(pi || pi_ref)`` to the loss; KL is estimated per sampled token from
log-probs only (Schulman 2020, "Approximating KL Divergence"). With ``d = ref_logp - logp``
(tokens sampled from pi):

* ``"k1"``  ``logp - ref_logp`` = ``-d``. Unbiased estimate of KL(pi||ref); high variance and can
  be negative per token. Its gradient (as a loss) is not the KL gradient.
* ``"k2"``  ``0.5 * (logp - ref_logp)^2``. Biased, low variance, always >= 0; its gradient
  equals the gradient of the true reverse KL in expectation (used as a loss by several RL libs).
* ``"k3"`` / ``"low_var_kl"``  ``exp(d) - d - 1``. Unbiased, always >= 0, low variance;
  the reference uses it (verl's ``low_var_kl``), with the result clamped to [-10, 10].
  Known bias as a *loss*: its gradient is a biased estimator of the KL gradient
  (Tang & Munos 2025; Zhang et al. 2025).

Departure: k3 also clamps ``d`` to [-20, 20] before ``exp`` (as verl does) so that a token
with a wildly different log-prob cannot overflow to inf; the output clamp then applies.
Samples are assumed to come from the current/old policy (not importance-corrected).
"""
from __future__ import annotations

from typing import Callable

import torch

__all__ = ["KL_ESTIMATORS", "kl_k1", "kl_k2", "kl_k3", "token_kl"]

K3_CLAMP = 10.0
LOG_RATIO_CLAMP = 20.0


def kl_k1(logp: torch.Tensor, ref_logp: torch.Tensor) -> torch.Tensor:
    """k1 = logp - ref_logp. (..., L) -> (..., L). Unbiased, high variance, can be < 0."""
    return logp - ref_logp


def kl_k2(logp: torch.Tensor, ref_logp: torch.Tensor) -> torch.Tensor:
    """k2 = 0.5 * (logp - ref_logp)^2. (..., L) -> (..., L). Biased value, >= 0, low variance."""
    return 0.5 * (logp - ref_logp).square()


def kl_k3(logp: torch.Tensor, ref_logp: torch.Tensor) -> torch.Tensor:
    """k3 ("low_var_kl") = exp(d) - d - 1 with d = ref_logp - logp, clamped to [-10, 10].

    (..., L) -> (..., L). Unbiased value, >= 0; reference GRPO's choice (verl low_var_kl).
    ``d`` is clamped to [-20, 20] before exp against overflow.
    """
    d = (ref_logp - logp).clamp(-LOG_RATIO_CLAMP, LOG_RATIO_CLAMP)
    return (torch.exp(d) - d - 1.0).clamp(-K3_CLAMP, K3_CLAMP)


KL_ESTIMATORS: dict[str, Callable[[torch.Tensor, torch.Tensor], torch.Tensor]] = {
    "k1": kl_k1,
    "k2": kl_k2,
    "k3": kl_k3,
    "low_var_kl": kl_k3,
}


def token_kl(logp: torch.Tensor, ref_logp: torch.Tensor, estimator: str = "k3") -> torch.Tensor:
    """Per-token KL estimate picked from ``KL_ESTIMATORS``. (..., L) -> (..., L)."""
    if estimator not in KL_ESTIMATORS:
        raise ValueError(
            f"unknown KL estimator {estimator!r}; valid estimators: {sorted(KL_ESTIMATORS)}")
    if logp.shape != ref_logp.shape:
        raise ValueError(f"logp {tuple(logp.shape)} and ref_logp {tuple(ref_logp.shape)} "
                         "must have the same shape")
    return KL_ESTIMATORS[estimator](logp, ref_logp)
