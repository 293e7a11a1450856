"""The GRPO loss, composed from the pure pieces of ``wm.rl`` (RLVR-World §3.2, Eq. GRPO).

    loss = agg(clipped_surrogate) + kl_coef * agg(KL_est(logp, ref_logp)) - entropy_coef * agg(H)

with one aggregation ``agg`` (``wm.rl.aggregation``) for all three terms, as in verl. The
reference settings are the ``GRPOLossConfig`` defaults: eps 0.2/0.2, dual clip 3, KL as a loss
term with coefficient 0.001 and the k3 estimator, no entropy bonus, token-mean aggregation.

Departures from the paper's formula: KL is a loss term (not folded into the reward), as in the
reference implementation; token-mean over the whole mini-batch instead of the paper's
per-sequence 1/|o_i| (which is "seq-mean-token-mean", still available).

Also here: ``token_logprobs`` and ``token_entropy`` from logits, computed a few rows at a time
so that the full (N, L, V) log-softmax never has to exist in memory at once.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

from wm.rl.advantages import ADVANTAGES
from wm.rl.aggregation import AGGREGATIONS, aggregate, count_valid, masked_sum
from wm.rl.kl import KL_ESTIMATORS, token_kl
from wm.rl.surrogate import IMPORTANCE_LEVELS, clipped_surrogate

__all__ = ["GRPOLossConfig", "grpo_loss", "token_logprobs", "token_entropy"]


@dataclass
class GRPOLossConfig:
    """Options of the GRPO loss. Defaults are the RLVR-World reference settings."""

    eps_low: float = 0.2
    """Lower clip: the ratio is clipped at 1 - eps_low (PPO)."""
    eps_high: float = 0.2
    """Upper clip: the ratio is clipped at 1 + eps_high (DAPO "clip-higher" uses 0.28)."""
    dual_clip: float | None = 3.0
    """Dual-clip constant c > 1 bounding the loss at -c*A for A < 0 (Ye et al. 2020); None = off."""
    kl_coef: float = 0.001
    """Weight of the KL-to-reference loss term; 0 disables it (no reference model needed)."""
    kl_estimator: str = "k3"
    """Per-token KL estimator, a key of ``wm.rl.kl.KL_ESTIMATORS`` (k1, k2, k3/low_var_kl)."""
    entropy_coef: float = 0.0
    """Weight of the entropy bonus (subtracted from the loss); 0 in the reference."""
    aggregation: str = "token-mean"
    """Loss reduction, a key of ``wm.rl.aggregation.AGGREGATIONS``."""
    advantage: str = "std"
    """Advantage normalisation, a key of ``wm.rl.advantages.ADVANTAGES`` (used by the caller)."""
    advantage_eps: float = 1e-6
    """Added to the std in the advantage denominator."""
    max_len: int | None = None
    """Constant length for the "dr_grpo" aggregation; None = the plan's response length."""
    importance: str = "token"
    """Importance ratio level: "token" (PPO/GRPO) or "sequence" (GSPO, Zheng et al. 2025: one
    length-normalised ratio per response, clipped; GSPO uses small clips, e.g. eps 3e-4/4e-4).
    "sequence" needs ``aggregation="seq-mean-token-mean"`` (GSPO's mean over responses; the
    other aggregations weigh responses by length), else ``validate`` refuses it."""

    def validate(self) -> "GRPOLossConfig":
        """Raise ``ValueError`` naming the option (``stage.module.loss.<field>=<value>``) and how
        to fix it; returns self."""
        def bad(name: str, why: str):
            raise ValueError(f"stage.module.loss.{name}={getattr(self, name)!r}: {why}")

        if self.eps_low < 0 or self.eps_low >= 1:
            bad("eps_low", "must be in [0, 1) (the ratio is clipped at 1 - eps_low; reference 0.2)")
        if self.eps_high < 0:
            bad("eps_high", "must be >= 0 (reference 0.2; DAPO clip-higher 0.28)")
        if self.dual_clip is not None and self.dual_clip <= 1.0:
            bad("dual_clip", "must be > 1.0, or null to disable it (reference 3.0)")
        if self.kl_coef < 0:
            bad("kl_coef", "must be >= 0 (0 disables the KL term; reference 0.001)")
        if self.entropy_coef < 0:
            bad("entropy_coef", "must be >= 0 (it is a bonus; reference 0)")
        for name, registry in (("kl_estimator", KL_ESTIMATORS), ("aggregation", AGGREGATIONS),
                               ("advantage", ADVANTAGES)):
            if getattr(self, name) not in registry:
                bad(name, f"unknown {name}; valid values: {sorted(registry)}")
        if self.advantage_eps < 0:
            bad("advantage_eps", "must be >= 0")
        if self.importance not in IMPORTANCE_LEVELS:
            bad("importance", f"unknown importance; valid values: {list(IMPORTANCE_LEVELS)} "
                              "(sequence = GSPO)")
        if self.importance == "sequence" and self.aggregation != "seq-mean-token-mean":
            bad("aggregation", "with importance=sequence (GSPO) it weighs responses by length; "
                               "GSPO averages over responses: set "
                               "stage.module.loss.aggregation=seq-mean-token-mean")
        if self.max_len is not None and self.max_len <= 0:
            bad("max_len", "must be a positive int or null (the plan's response length)")
        return self


def grpo_loss(logp: torch.Tensor, old_logp: torch.Tensor, ref_logp: torch.Tensor | None,
              advantages: torch.Tensor, mask: torch.Tensor, cfg: GRPOLossConfig,
              entropy: torch.Tensor | None = None, global_tokens=None, global_seqs=None,
              max_len: int | None = None) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """GRPO loss of one micro-batch (to be minimised; micro-batch losses *add up*).

    logp, old_logp, ref_logp: (N, L) log-probs of the sampled tokens under the current, the
    behaviour (sampling) and the frozen reference policy; ref_logp may be None iff
    ``cfg.kl_coef == 0``. advantages: (N,) or (N, L). mask: (N, L) bool, True = trained token.
    entropy: (N, L) per-token entropy, required iff ``cfg.entropy_coef > 0``.
    global_tokens / global_seqs: totals over the whole mini-batch (see ``wm.rl.aggregation``).
    max_len: constant length for "dr_grpo"; overrides ``cfg.max_len`` (default: L).

    Returns the scalar loss and scalar stats, each normalised like the loss so that they too
    sum over micro-batches to the mini-batch value:
    ``policy_loss``, ``kl``, ``entropy`` (aggregated with ``cfg.aggregation``, so
    ``loss = policy_loss + kl_coef*kl - entropy_coef*entropy``; kl/entropy are 0 when not given),
    and token-means (normaliser ``global_tokens``) ``clip_frac_low``, ``clip_frac_high``,
    ``dual_clip_frac``, ``ratio_mean``.
    """
    if cfg.kl_coef > 0 and ref_logp is None:
        raise ValueError("kl_coef > 0 needs ref_logp (reference-model log-probs); pass them or "
                         "set kl_coef: 0")
    if cfg.entropy_coef > 0 and entropy is None:
        raise ValueError("entropy_coef > 0 needs the per-token entropy (see token_entropy); "
                         "pass it or set entropy_coef: 0")
    mask = mask.bool()
    agg = dict(global_tokens=global_tokens, global_seqs=global_seqs,
               max_len=cfg.max_len if max_len is None else max_len)

    pg_tok, clip = clipped_surrogate(logp, old_logp, advantages, cfg.eps_low, cfg.eps_high,
                                     cfg.dual_clip, importance=cfg.importance, mask=mask)
    policy_loss = aggregate(pg_tok, mask, cfg.aggregation, **agg)
    loss = policy_loss

    zero = policy_loss.new_zeros(())
    kl = zero
    if ref_logp is not None:
        kl = aggregate(token_kl(logp, ref_logp, cfg.kl_estimator), mask, cfg.aggregation, **agg)
        if cfg.kl_coef > 0:
            loss = loss + cfg.kl_coef * kl
    ent = zero
    if entropy is not None:
        ent = aggregate(entropy, mask, cfg.aggregation, **agg)
        if cfg.entropy_coef > 0:
            loss = loss - cfg.entropy_coef * ent

    with torch.no_grad():
        tokens, _ = count_valid(mask)
        denom = torch.as_tensor(tokens if global_tokens is None else global_tokens,
                                device=logp.device).to(torch.float32).clamp(min=1)

        def frac(x: torch.Tensor) -> torch.Tensor:
            return masked_sum(x.float(), mask) / denom

        stats = {
            "policy_loss": policy_loss.detach(),
            "kl": kl.detach(),
            "entropy": ent.detach(),
            "clip_frac_low": frac(clip["clipped_low"]),
            "clip_frac_high": frac(clip["clipped_high"]),
            "dual_clip_frac": frac(clip["dual_clipped"]),
            "ratio_mean": frac(clip["ratio"]),
        }
    return loss, stats


def _check_logits(logits: torch.Tensor, chunk_rows: int) -> None:
    if logits.dim() != 3:
        raise ValueError(f"logits must be (N, L, V), got shape {tuple(logits.shape)}")
    if chunk_rows < 1:
        raise ValueError(f"chunk_rows must be >= 1, got {chunk_rows}")


def token_logprobs(logits: torch.Tensor, tokens: torch.Tensor,
                   chunk_rows: int = 4) -> torch.Tensor:
    """log softmax(logits)[token] per position. logits (N, L, V), tokens (N, L) -> (N, L) float32.

    Computed ``chunk_rows`` rows at a time in float32 (also for bf16 logits, where a bf16
    log-softmax loses precision), so the extra memory is chunk_rows*L*V floats, not N*L*V.
    Logits must already be divided by the sampling temperature. Differentiable.
    """
    _check_logits(logits, chunk_rows)
    if tokens.shape != logits.shape[:2]:
        raise ValueError(f"tokens {tuple(tokens.shape)} must match logits' (N, L) "
                         f"{tuple(logits.shape[:2])}")
    out = []
    for rows, ids in zip(logits.split(chunk_rows), tokens.split(chunk_rows)):
        logp = torch.log_softmax(rows.float(), dim=-1)  # (n, L, V)
        out.append(logp.gather(-1, ids.long().unsqueeze(-1)).squeeze(-1))  # (n, L)
    return torch.cat(out, dim=0)


def token_entropy(logits: torch.Tensor, chunk_rows: int = 4) -> torch.Tensor:
    """Entropy of softmax(logits) per position. (N, L, V) -> (N, L) float32, in nats.

    H = logsumexp(z) - sum softmax(z) * z, ``chunk_rows`` rows at a time in float32.
    """
    _check_logits(logits, chunk_rows)
    out = []
    for rows in logits.split(chunk_rows):
        z = rows.float()  # (n, L, V)
        out.append(torch.logsumexp(z, dim=-1) - (torch.softmax(z, dim=-1) * z).sum(dim=-1))
    return torch.cat(out, dim=0)
