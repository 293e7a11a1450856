"""DAPO's soft overlong punishment for text responses (Yu et al. 2025, "DAPO", Sec. 3.4).

With ``L_max`` the response budget and ``L_cache`` the punishment interval, a response of
``|y|`` tokens (EOS included; a response that never stopped counts as ``L_max``) gets

    0                                   if |y| <= L_max - L_cache
    ((L_max - L_cache) - |y|) / L_cache if L_max - L_cache < |y| <= L_max      (0 .. -1)
    -1                                  if |y| > L_max

added to its verifiable reward. It discourages answers that run into the budget (which are cut
and usually unparseable) with a graded signal instead of a cliff. Off unless configured
(``data.task.overlong_cache``); not in RLVR-World.
"""
from __future__ import annotations

import torch


def soft_overlong_penalty(lengths: torch.Tensor, max_len: int, cache: int) -> torch.Tensor:
    """(N,) response lengths -> (N,) float32 penalties in [-1, 0]."""
    if not 0 < cache <= max_len:
        raise ValueError(f"overlong cache must be in (0, max_len={max_len}], got {cache} "
                         "(data.task.overlong_cache)")
    y = lengths.float()
    start = float(max_len - cache)
    pen = ((start - y) / cache).clamp(min=-1.0, max=0.0)
    return torch.where(y > max_len, torch.full_like(pen, -1.0), pen)
