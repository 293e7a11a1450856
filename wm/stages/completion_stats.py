"""TRL-style completion logs of a GRPO rollout batch: lengths, clipping, termination, parsing.

Names follow TRL's ``GRPOTrainer`` (1.16, ``_generate_and_score_completions``) under our
``grpo/`` namespace: ``completions/{mean,min,max}_length``, ``completions/clipped_ratio`` and
``completions/{mean,min,max}_terminated_length``; ours: ``completions/terminated_ratio`` and
``parse_fail_count`` / ``parse_fail_frac``. As in TRL, a completion's length is the number of
tokens the policy wrote, its EOS included (forced tokens, e.g. a video rollout's action
tokens, are not counted, like TRL's tool tokens); a completion is *clipped* when it has no EOS
within the budget ``max_response_tokens`` (its length is then the budget) and *terminated* when
it wrote EOS, the budget's last slot included. Statistics are over every rank's rows, as TRL
gathers them.

Departures: with no terminated completion anywhere the ``*_terminated_length`` keys are not
logged (TRL logs 0). A fixed-length (video) rollout has no EOS: only the ``*_length`` keys,
the constant number of sampled tokens per row; ``parse_fail_*`` only when the reward returns
``parse_fail`` (the text rewards ``wm.rewards.text_game``, ``web``, ``toy``).

Shapes: N rollout rows on this rank, L response slots.
"""
from __future__ import annotations

import torch


def completion_stats(tokens: torch.Tensor, mask: torch.Tensor, eos_id: int | None
                     ) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Per row of ``tokens`` / ``mask`` (N, L) (True = written by the policy): its length (N,)
    float32, EOS included, and whether it wrote EOS (N,) bool (None without ``eos_id``). Pads
    after the EOS are not written (mask False), so a pad id equal to EOS is not counted."""
    length = mask.sum(1).float()
    if eos_id is None:
        return length, None
    return length, ((tokens == eos_id) & mask).any(1)


def pooled_completion_stats(trainer, length: torch.Tensor, terminated: torch.Tensor | None,
                            parse_fail: torch.Tensor | None) -> dict[str, float]:
    """The logged values (keys without the ``grpo/`` prefix) over every rank's rows: one sum
    and one max all-reduce (minima as maxima of negatives), the same keys on every rank.
    ``length`` (N,), ``terminated`` (N,) bool or None, ``parse_fail`` (N,) 1.0 = unparseable,
    or None."""
    x = length.detach().float()
    done = torch.zeros_like(x, dtype=torch.bool) if terminated is None else terminated.to(x.device)
    fail = torch.zeros_like(x) if parse_fail is None else parse_fail.detach().float().to(x.device)
    inf = x.new_tensor(float("inf"))
    sums = torch.stack([x.sum(), x.new_tensor(float(x.numel())), done.sum().float(),
                        x[done].sum(), fail.sum()])                                 # (5,)
    maxes = torch.stack([x.max() if x.numel() else -inf, -x.min() if x.numel() else -inf,
                         x[done].max() if done.any() else -inf,
                         -x[done].min() if done.any() else -inf])                  # (4,)
    if trainer is not None and trainer.world_size > 1:
        sums = trainer.strategy.reduce(sums, reduce_op="sum")
        maxes = trainer.strategy.reduce(maxes, reduce_op="max")
    total, n, n_done, done_total, n_fail = sums.tolist()
    hi, neg_lo, done_hi, neg_done_lo = maxes.tolist()
    if n == 0:
        return {}
    out = {"completions/mean_length": total / n, "completions/max_length": hi,
           "completions/min_length": -neg_lo}
    if terminated is not None:
        out.update({"completions/clipped_ratio": (n - n_done) / n,
                    "completions/terminated_ratio": n_done / n})
        if n_done:
            out.update({"completions/mean_terminated_length": done_total / n_done,
                        "completions/max_terminated_length": done_hi,
                        "completions/min_terminated_length": -neg_done_lo})
    if parse_fail is not None:
        out.update({"parse_fail_count": n_fail, "parse_fail_frac": n_fail / n})
    return out


def log_completion_stats(module, rollout, eos_id: int | None, rewards: dict,
                         prefix: str = "grpo") -> None:
    """Log ``<prefix>/<key>`` of :func:`pooled_completion_stats` for a ``Rollout`` and its
    reward components (``parse_fail`` read from them when present)."""
    length, terminated = completion_stats(rollout.tokens, rollout.mask, eos_id)
    fail = rewards.get("parse_fail")
    stats = pooled_completion_stats(getattr(module, "_trainer", None), length, terminated,
                                    None if fail is None else fail.to(length.device))
    for key, value in stats.items():
        module.log(f"{prefix}/{key}", value)
