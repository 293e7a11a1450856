"""A differentiable KV cache for shared-prefix forward passes: the prompt's keys/values are
computed once per prompt and broadcast to its G response rows.

Used by :func:`wm.rollout.forward.grouped_response_logits` (GRPO's old / reference / current
log-prob passes). First call: the B distinct prompts; their keys/values (B, H, P, D) are kept and
returned for the prompts' own attention. Second call: the B*G responses; the prompts' keys/
values are repeated to their G rows (``repeat_interleave``: the gradient of the broadcast sums
the G rows' contributions, which is exact because attention is causal and the prompt's states do
not depend on the responses) and concatenated with the responses' own. Unlike
``wm.rollout.cache.PreallocatedCache`` nothing is written in place, so autograd sees every step.
The responses' keys/values are not kept: after the prompts, the cache serves any number of
response passes, each with its own rows per prompt (``serve``; GRPO's row chunks of a group).
"""
from __future__ import annotations

from functools import partial

import torch
from transformers.cache_utils import Cache, CacheLayerMixin


class PrefixBroadcastLayer(CacheLayerMixin):
    """One layer's prompt keys/values (B rows), served to B*G response rows."""

    is_compileable = False
    is_sliding = False
    is_croppable = False

    def __init__(self, group_size: int) -> None:
        super().__init__()
        self.group_size, self.length = int(group_size), 0

    def lazy_initialization(self, key_states, value_states) -> None:
        self.is_initialized = True

    def update(self, key_states: torch.Tensor, value_states: torch.Tensor, *args, **kwargs):
        if not self.is_initialized:                       # the prompts: (B, H, P, D)
            self.lazy_initialization(key_states, value_states)
            self.keys, self.values = key_states, value_states
            self.length = key_states.shape[-2]
            return key_states, value_states
        g = self.group_size                               # the responses: (B*G, H, L, D)
        if key_states.shape[0] != self.keys.shape[0] * g:
            raise RuntimeError(f"PrefixBroadcastLayer: {key_states.shape[0]} response rows for "
                               f"{self.keys.shape[0]} prompts x group {g}")
        keys = torch.cat([self.keys.repeat_interleave(g, 0), key_states], dim=-2)
        values = torch.cat([self.values.repeat_interleave(g, 0), value_states], dim=-2)
        return keys, values                               # (B*G, H, P+L, D); length stays P

    def get_mask_sizes(self, query_length: int) -> tuple[int, int]:
        return self.length + query_length, 0

    def get_seq_length(self) -> int:
        return self.length

    def get_max_length(self) -> int:
        return -1

    def reset(self) -> None:
        self.length = 0
        self.is_initialized = False


class PrefixBroadcastCache(Cache):
    """``transformers`` ``Cache`` of :class:`PrefixBroadcastLayer`."""

    def __init__(self, group_size: int) -> None:
        super().__init__(layer_class_to_replicate=partial(PrefixBroadcastLayer, group_size))

    def serve(self, rows_per_prompt: int) -> None:
        """The next response pass has ``rows_per_prompt`` rows per cached prompt."""
        for layer in self.layers:
            layer.group_size = int(rows_per_prompt)
