"""PPO clipped surrogate with asymmetric and dual clipping (RLVR-World §3.2, GRPO objective).

Per token, with ``rho = exp(logp - old_logp)`` and advantage ``A``:

    L_clip = max(-rho * A, -clip(rho, 1 - eps_low, 1 + eps_high) * A)      (= -min(rho A, clip A))
    L      = L_clip                       if A >= 0
    L      = min(L_clip, -c * A)          if A < 0 and dual clipping (c > 1) is on

Sources: PPO (Schulman et al. 2017); asymmetric ``eps_low / eps_high`` ("clip-higher") from
DAPO (Yu et al. 2025); dual clip from Ye et al. 2020 ("Mastering Complex Control in MOBA
Games"), as in verl's ``compute_policy_loss`` (``clip_ratio_c = 3``). For A < 0 the unclipped
loss ``-rho * A`` grows without bound in rho; dual clip caps it at ``-c * A`` (zero gradient
beyond ``rho > c``).

GSPO (Zheng et al. 2025, "Group Sequence Policy Optimization"; TRL's
``importance_sampling_level="sequence"``): ``importance="sequence"`` replaces each token's
log-ratio by its response's length-normalised log-ratio ``(1/|y|) sum_t (logp_t - old_logp_t)``
(masked mean), so one ratio ``s_i`` per response is clipped, and the gradient reaches every token
of the response through that mean.

Departure: the log-ratio is clamped to [-20, 20] before ``exp`` so one stale token cannot
produce an inf/NaN loss. With one PPO epoch per rollout (the reference) ``rho == 1`` at the
first step of each mini-batch; clipping only acts on later mini-batches of the same rollout.
"""
from __future__ import annotations

import torch

__all__ = ["clipped_surrogate", "sequence_log_ratio", "IMPORTANCE_LEVELS", "LOG_RATIO_CLAMP"]

IMPORTANCE_LEVELS = ("token", "sequence")

LOG_RATIO_CLAMP = 20.0


def _broadcast_advantages(advantages: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """(N,) or (N, L) advantages -> (N, L) matching ``like``."""
    if advantages.dim() == like.dim() - 1:
        advantages = advantages.unsqueeze(-1)  # (N,) -> (N, 1)
    if advantages.dim() != like.dim():
        raise ValueError(f"advantages shape {tuple(advantages.shape)} does not fit log-probs "
                         f"{tuple(like.shape)}; pass (N,) or (N, L)")
    return advantages.expand_as(like)


def sequence_log_ratio(logp: torch.Tensor, old_logp: torch.Tensor, mask: torch.Tensor
                       ) -> torch.Tensor:
    """GSPO's per-response log-ratio, broadcast to tokens: (N, L) -> (N, L) where every token of
    row i holds ``sum_t m_it (logp_it - old_logp_it) / max(sum_t m_it, 1)``."""
    m = mask.to(logp.dtype)
    seq = ((logp - old_logp) * m).sum(-1) / m.sum(-1).clamp(min=1)           # (N,)
    return seq.unsqueeze(-1).expand_as(logp)


def clipped_surrogate(logp: torch.Tensor, old_logp: torch.Tensor, advantages: torch.Tensor,
                      eps_low: float = 0.2, eps_high: float = 0.2,
                      dual_clip: float | None = 3.0, importance: str = "token",
                      mask: torch.Tensor | None = None
                      ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """Per-token clipped policy-gradient loss (to be *minimised*).

    logp, old_logp: (N, L) log-probs of the sampled tokens under the current / behaviour policy.
    advantages: (N,) (broadcast over tokens) or (N, L).
    Returns ``loss`` (N, L) and per-token bool stats (N, L):

    * ``clipped_low``  A < 0 and rho < 1 - eps_low  (clip active, no gradient)
    * ``clipped_high`` A > 0 and rho > 1 + eps_high (clip active, no gradient)
    * ``dual_clipped`` A < 0 and the dual-clip bound -c*A is the loss (rho > c)

    plus ``ratio`` (N, L) float, the detached rho, for logging.

    Masking is left to the aggregation. Bias: clipping biases the gradient towards the old
    policy (by design); asymmetric eps_high > eps_low favours raising low-probability tokens.
    """
    if eps_low < 0 or eps_high < 0:
        raise ValueError(f"clip eps must be >= 0, got eps_low={eps_low}, eps_high={eps_high}")
    if eps_low >= 1:
        raise ValueError(f"eps_low must be < 1 (the lower clip bound is 1 - eps_low), "
                         f"got {eps_low}")
    if dual_clip is not None and dual_clip <= 1.0:
        raise ValueError(f"dual_clip must be > 1.0 (or None to disable), got {dual_clip}")
    if logp.shape != old_logp.shape:
        raise ValueError(f"logp {tuple(logp.shape)} and old_logp {tuple(old_logp.shape)} "
                         "must have the same shape")
    if importance not in IMPORTANCE_LEVELS:
        raise ValueError(f"unknown importance level {importance!r}; valid: {IMPORTANCE_LEVELS}")
    adv = _broadcast_advantages(advantages, logp).to(logp.dtype)  # (N, L)

    if importance == "sequence":
        if mask is None:
            raise ValueError("importance='sequence' (GSPO) needs the (N, L) token mask")
        log_ratio = sequence_log_ratio(logp, old_logp, mask)
    else:
        log_ratio = logp - old_logp
    log_ratio = log_ratio.clamp(-LOG_RATIO_CLAMP, LOG_RATIO_CLAMP)
    ratio = torch.exp(log_ratio)  # (N, L)
    loss_unclipped = -adv * ratio
    loss_clipped = -adv * ratio.clamp(1.0 - eps_low, 1.0 + eps_high)
    loss = torch.maximum(loss_unclipped, loss_clipped)  # = -min(rho A, clip(rho) A)

    negative = adv < 0
    if dual_clip is not None:
        loss_dual = -adv * dual_clip
        dual_clipped = negative & (loss > loss_dual)
        loss = torch.where(negative, torch.minimum(loss, loss_dual), loss)
    else:
        dual_clipped = torch.zeros_like(negative)

    with torch.no_grad():
        stats = {
            "clipped_low": negative & (ratio < 1.0 - eps_low),
            "clipped_high": (adv > 0) & (ratio > 1.0 + eps_high),
            "dual_clipped": dual_clipped,
            "ratio": ratio.detach(),
        }
    return loss, stats
