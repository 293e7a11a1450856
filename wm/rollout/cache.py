"""A pre-allocated KV cache that prefills each prompt once and serves its G group rows.

Why not ``transformers``' caches (shared/ENVIRONMENT.md, "Measured speed facts"): decode at a GRPO
group of 16 is memory-bound; ``DynamicCache`` re-allocates every layer's keys/values with
``torch.cat`` at each step (about half of ``generate``'s CPU time), and ``StaticCache`` attends
over its whole ``max_cache_len`` buffer every step (zeros included, masked). This cache writes
new keys/values in place into a ``(B*G, H, P+L, D)`` buffer allocated once, and hands attention a
*view* of the filled prefix ``[:, :, :n]`` only.

Group sharing: during the prefill the model runs on the ``B`` distinct prompts; :meth:`update`
stores each prompt's keys/values into its ``G`` rows of the buffer (a broadcast copy, no
``repeat_interleave`` temporary) and returns the ``B``-row tensors for the prefill's own
attention. Every later call runs on all ``B*G`` rows. Row ``r`` holds prompt ``r // G``.

It implements the ``transformers.cache_utils`` layer interface (``update``, ``get_seq_length``,
``get_mask_sizes``), so it is passed as ``past_key_values`` to any HF decoder (LLaMA, Qwen2, their
peft wrappers).
"""
from __future__ import annotations

from functools import partial

import torch
from transformers.cache_utils import Cache, CacheLayerMixin


class PreallocatedLayer(CacheLayerMixin):
    """One attention layer's keys/values in a fixed ``(rows, H, max_len, D)`` buffer."""

    is_compileable = False
    is_sliding = False
    is_croppable = False

    def __init__(self, rows: int, max_len: int) -> None:
        super().__init__()
        self.rows, self.max_len, self.length = int(rows), int(max_len), 0

    def lazy_initialization(self, key_states: torch.Tensor, value_states: torch.Tensor) -> None:
        _, heads, _, k_dim = key_states.shape
        v_dim = value_states.shape[-1]
        kw = {"dtype": key_states.dtype, "device": key_states.device}
        self.keys = torch.empty(self.rows, heads, self.max_len, k_dim, **kw)  # (R, H, M, Dk)
        self.values = torch.empty(self.rows, heads, self.max_len, v_dim, **kw)  # (R, H, M, Dv)
        self.batch_size, self.num_heads = self.rows, heads
        self.is_initialized = True

    def update(self, key_states: torch.Tensor, value_states: torch.Tensor, *args, **kwargs):
        if not self.is_initialized:
            self.lazy_initialization(key_states, value_states)
        n_in, q = key_states.shape[0], key_states.shape[-2]
        start, end = self.length, self.length + q
        if end > self.max_len:
            raise RuntimeError(f"PreallocatedLayer: {end} tokens exceed the cache size {self.max_len}")
        self.length = end
        if n_in == self.rows:
            self.keys[:, :, start:end] = key_states
            self.values[:, :, start:end] = value_states
            return self.keys[:, :, :end], self.values[:, :, :end]
        if start == 0 and self.rows % n_in == 0:  # prefill of B prompts into B*G rows
            g = self.rows // n_in
            # (R, H, M, D) viewed as (B, G, H, M, D); key_states (B, H, q, D) broadcast over G
            self.keys.view(n_in, g, *self.keys.shape[1:])[:, :, :, :end] = key_states.unsqueeze(1)
            self.values.view(n_in, g, *self.values.shape[1:])[:, :, :, :end] = value_states.unsqueeze(1)
            return key_states, value_states
        raise RuntimeError(f"PreallocatedLayer: got {n_in} rows for a cache of {self.rows} rows "
                           f"at position {start} (only the first call may hold the B distinct prompts)")

    def get_mask_sizes(self, query_length: int) -> tuple[int, int]:
        return self.length + query_length, 0

    def get_seq_length(self) -> int:
        return self.length

    def get_max_length(self) -> int:
        return self.max_len

    def reset(self) -> None:
        self.length = 0


class PreallocatedCache(Cache):
    """``transformers`` ``Cache`` of :class:`PreallocatedLayer`; layers are created on first use."""

    def __init__(self, rows: int, max_len: int) -> None:
        super().__init__(layer_class_to_replicate=partial(PreallocatedLayer, rows, max_len))
        self.rows, self.max_len = int(rows), int(max_len)
