"""Resumable, step-indexed random sampling for training loaders.

Batch ``k`` of a run is a pure function of ``(seed, k)``: its indices are drawn from a generator
seeded with both (``wm.utils.seeding``, stream ``"data"``). A run resumed from a checkpoint
therefore sees exactly the batches an uninterrupted run would have seen, without saving
iterator state (Lightning restarts the dataloader iterator on resume; the sampler is told where
to start, see ``start_batch``).
The stream is infinite, so training length is set by ``trainer.max_steps``.

Validation/test loaders are finite and sharded by rank (:func:`eval_batches`): the Trainer runs
with ``use_distributed_sampler=false``, so Lightning's automatic DistributedSampler never applies
and every rank would otherwise score every record.
"""
from __future__ import annotations

import logging
import math
from collections.abc import Iterator

import torch
from torch.utils.data import Sampler

from wm.utils.seeding import seeded_generator

log = logging.getLogger(__name__)


class StepSeededSampler(Sampler[int]):
    """Infinite sampler: batch ``k`` = ``batch_size`` indices drawn uniformly with replacement,
    from a generator seeded by ``(seed, k)``. Iteration starts at batch ``start_batch``."""

    def __init__(self, num_items: int, batch_size: int, seed: int = 0, start_batch: int = 0,
                 rank: int = 0):
        if num_items <= 0:
            raise ValueError("StepSeededSampler needs at least one item to sample from")
        self.num_items, self.batch_size = int(num_items), int(batch_size)
        self.seed, self.start_batch, self.rank = int(seed), int(start_batch), int(rank)

    def batch_indices(self, k: int) -> torch.Tensor:
        """Indices (batch_size,) of global batch ``k`` on this rank."""
        g = seeded_generator(self.seed, k, self.rank, "cpu", stream="data")
        return torch.randint(self.num_items, (self.batch_size,), generator=g)

    def __iter__(self) -> Iterator[int]:
        k = self.start_batch
        while True:
            yield from self.batch_indices(k).tolist()
            k += 1


#: fewer held-out clips/records than this cannot compare models: the DataModules warn
MIN_HELD_OUT = 32

def batches_completed(trainer) -> int:
    """Number of training batches a (possibly restored) trainer has completed; 0 without one.

    Counts ``processed`` batches, not ``completed`` ones: a checkpoint saved in
    ``on_train_batch_end`` (ModelCheckpoint's ``every_n_train_steps``) holds
    ``completed = processed - 1``, and Lightning corrects that only in the epoch loop's
    ``reset``, *after* the train dataloader was built; ``completed`` would replay one batch.
    """
    if trainer is None:
        return 0
    try:
        return int(trainer.fit_loop.epoch_loop.batch_progress.total.processed)
    except AttributeError:
        return 0


def train_sampler(num_items: int, batch_size: int, seed: int, trainer) -> StepSeededSampler:
    """The training stream of a DataModule attached to ``trainer`` (or to none): batch k is a
    pure function of (seed, k, rank), starting after the batches the trainer already did, so a
    resumed run continues the exact stream and DDP ranks draw different batches (the Trainer
    runs with ``use_distributed_sampler=false``). The stream is infinite."""
    rank = trainer.global_rank if trainer is not None else 0
    return StepSeededSampler(num_items, batch_size, seed=seed,
                             start_batch=batches_completed(trainer), rank=rank)


def eval_batches(num_items: int, batch_size: int, trainer) -> list[list[int]]:
    """Index batches of a validation/test loader for this rank (a ``batch_sampler``).

    One process: contiguous batches of ``batch_size`` in order (as a plain DataLoader).
    ``W`` ranks: every rank gets the same number ``K = ceil(N / (W * batch_size))`` of batches
    -- each validation step runs collectives (DDP forward, pooled score logging, FSDP), so
    ranks must agree on the step count -- and each record is scored by exactly one rank: the
    ``N`` records are cut into ``W * K`` contiguous batches of near-equal size (at most
    ``batch_size``), batch ``j`` going to rank ``j % W``. Only when ``N < W * K`` (fewer records
    than ranks, or ``batch_size=1`` with ``N`` not a multiple of ``W``) would a batch be empty;
    those batches take a record again (at most ``W - 1`` repeats, announced in the log).
    """
    world = trainer.world_size if trainer is not None else 1
    rank = trainer.global_rank if trainer is not None else 0
    n, b = int(num_items), int(batch_size)
    if world <= 1:
        return [list(range(s, min(s + b, n))) for s in range(0, n, b)]
    if n == 0:
        return []
    k = math.ceil(n / (world * b))
    slots = world * k
    repeats = max(slots - n, 0)
    if repeats and rank == 0:
        log.warning("validation: %d records over %d ranks in batches of %d leave %d batch(es) "
                    "empty; each takes a record again (scored twice). Use a batch size > 1 or "
                    "a record count divisible by the ranks to avoid it", n, world, b, repeats)
    items = list(range(n)) + list(range(repeats))                 # (slots <= len(items))
    size, extra = divmod(len(items), slots)
    bounds = [j * size + min(j, extra) for j in range(slots + 1)]
    return [items[bounds[j]:bounds[j + 1]] for j in range(rank, slots, world)]
