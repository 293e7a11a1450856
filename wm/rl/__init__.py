"""GRPO maths as pure functions with registries (see docs/metrics.md, "GRPO maths")."""
from wm.rl.advantages import ADVANTAGES, frac_zero_std, group_advantages
from wm.rl.aggregation import AGGREGATIONS, aggregate, count_valid, masked_mean, masked_sum
from wm.rl.kl import KL_ESTIMATORS, token_kl
from wm.rl.loss import GRPOLossConfig, grpo_loss, token_entropy, token_logprobs
from wm.rl.surrogate import clipped_surrogate

__all__ = ["ADVANTAGES", "AGGREGATIONS", "KL_ESTIMATORS", "GRPOLossConfig", "aggregate",
           "clipped_surrogate", "count_valid", "frac_zero_std", "group_advantages", "grpo_loss",
           "masked_mean", "masked_sum", "token_entropy", "token_kl", "token_logprobs"]
