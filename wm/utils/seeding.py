"""Seeds that are pure functions of (seed, step, rank): the one seeding scheme of the project.

Every random draw of a run (the data stream's batch k, GRPO's sampling and shuffling at step k,
validation and evaluation sampling of batch k) comes from a generator seeded by
``step_seed(seed, step, rank, stream)``. A run resumed from a checkpoint therefore draws exactly
what an uninterrupted one would have drawn, and DDP ranks draw different samples, without
saving any generator state.

Streams keep independent draws apart when they share (seed, step, rank): ``"policy"`` (rollout
sampling, mini-batch shuffling, dropout; validation and evaluation use it with their own base
seed), ``"data"`` (the training data stream, ``wm.data.sampling``) and ``"resample"`` (the
extra prompts of GRPO's dynamic sampling, ``wm.stages.dynamic_sampling``). Their multipliers are
the ones the project has always used, so runs reproduce bit for bit across versions.
"""
from __future__ import annotations

import torch

# (seed, step, rank) multipliers per stream
STREAMS: dict[str, tuple[int, int, int]] = {
    "policy": (1_000_003, 7_919, 104_729),
    "data": (1_000_003, 9_973, 7_919_729),
    "resample": (1_000_033, 104_723, 15_485_863),
}
_MOD = 2**63 - 1


def step_seed(seed: int, step: int, rank: int = 0, stream: str = "policy") -> int:
    """The integer seed of draw ``step`` of ``stream`` on ``rank`` (non-negative, < 2**63 - 1)."""
    if stream not in STREAMS:
        raise ValueError(f"unknown seed stream {stream!r}; valid: {sorted(STREAMS)}")
    a, b, c = STREAMS[stream]
    return (int(seed) * a + int(step) * b + int(rank) * c) % _MOD


def seeded_generator(seed: int, step: int, rank: int = 0, device="cpu",
                     stream: str = "policy") -> torch.Generator:
    """A ``torch.Generator`` on ``device`` seeded with ``step_seed(seed, step, rank, stream)``."""
    g = torch.Generator(device=device)
    g.manual_seed(step_seed(seed, step, rank, stream))
    return g
