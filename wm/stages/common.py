"""Pieces shared by the MLE and GRPO LightningModules (no modality knowledge here)."""
from __future__ import annotations

import torch

from wm.rollout.sampler import Sampler


def seeded_generator(seed: int, step: int, rank: int, device) -> torch.Generator:
    """A generator whose state is a pure function of (seed, step, rank): runs resumed from a
    checkpoint draw exactly the samples an uninterrupted run would have drawn."""
    g = torch.Generator(device=device)
    g.manual_seed((int(seed) * 1_000_003 + int(step) * 7_919 + int(rank) * 104_729) % (2**63 - 1))
    return g


def warmup_constant_schedule(optimizer, warmup_steps: int) -> torch.optim.lr_scheduler.LambdaLR:
    """Linear warmup from ~0 to the optimizer's lr over ``warmup_steps``, then constant."""
    warmup = max(int(warmup_steps), 0)
    return torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda step: min(1.0, (step + 1) / warmup) if warmup else 1.0)


@torch.no_grad()
def sample_and_score(module, batch, group_size: int, generator: torch.Generator,
                     temperature: float = 1.0, top_k: int | None = None,
                     top_p: float | None = None, prompts=None):
    """Sample ``group_size`` responses per prompt with the module's policy, decode and score.

    ``prompts``: the batch's ``Task.prompts`` when the caller already built them (not rebuilt).
    Returns (predictions, rewards, metrics, rollout): ``rewards`` maps reward components
    (``"reward"`` is the optimized scalar) and ``metrics`` maps evaluation metrics to (B*G,).
    """
    task, policy = module.task, module.policy
    prompts = task.prompts(batch) if prompts is None else prompts
    was_training = policy.training
    policy.eval()
    rollout = Sampler().sample(policy, prompts.ids, prompts.mask, prompts.plan,
                               group_size=group_size, temperature=temperature, top_k=top_k,
                               top_p=top_p, generator=generator)
    policy.train(was_training)
    preds = task.decode(rollout.tokens, batch, group_size)
    rewards = task.rewards(preds, batch, group_size)
    return preds, rewards, task.metrics(preds, batch, group_size), rollout


def log_scores(module, prefix: str, values: dict[str, torch.Tensor], with_std: bool = False) -> None:
    """Log the mean (and std) of each (N,) tensor as ``<prefix>/<name>[/mean|/std]``.

    The statistics are pooled over all ranks (sum, count and sum of squares are all-reduced,
    so the std is the std over every rank's rows, not a mean of per-rank stds). NaN marks rows
    outside a metric's subset (e.g. accuracy on changed transitions only) and is ignored; a
    metric with no valid row on any rank is not logged -- the same decision on every rank, so
    ranks never disagree on which collectives to run.
    """
    trainer = getattr(module, "_trainer", None)
    distributed = trainer is not None and trainer.world_size > 1
    for name, value in values.items():
        v = value.detach().float().to(module.device).flatten()
        ok = ~v.isnan()
        vals = v[ok]
        stats = torch.stack([vals.sum(), ok.sum().float(), (vals * vals).sum()])   # (3,)
        if distributed:
            stats = trainer.strategy.reduce(stats, reduce_op="sum")
        total, n, sq = stats.tolist()
        if n == 0:
            continue
        mean = total / n
        key = f"{prefix}/{name}/mean" if with_std else f"{prefix}/{name}"
        module.log(key, mean, prog_bar=name == "reward", batch_size=int(n))
        if with_std:
            var = max(sq / n - mean * mean, 0.0) * n / (n - 1) if n > 1 else 0.0
            module.log(f"{prefix}/{name}/std", var ** 0.5, batch_size=int(n))


def _block_classes(model: torch.nn.Module) -> set[str]:
    """Class names of the repeated blocks (decoder layers) that Hugging Face marks unsplittable."""
    names: set[str] = set()
    for sub in model.modules():
        names.update(getattr(sub, "_no_split_modules", None) or ())
    return names


def shard_policy(module) -> None:
    """FSDP2 for ``trainer=fsdp2_cpu`` / ModelParallelStrategy: ``fully_shard`` every decoder
    layer of ``module.policy`` (and of the frozen ``module.reference``, if any), then the model
    itself, over the mesh's data-parallel dimension. A no-op under any other strategy (no mesh).

    Called from ``configure_model``, i.e. before the optimizer is built, so the optimizer holds
    the sharded (DTensor) parameters.
    """
    mesh = module.device_mesh
    if mesh is None:
        return
    from torch.distributed.fsdp import fully_shard

    dp = mesh["data_parallel"] if mesh.mesh_dim_names and "data_parallel" in mesh.mesh_dim_names \
        else mesh
    for model in (module.policy, getattr(module, "reference", None)):
        if model is None:
            continue
        blocks = _block_classes(model)
        if not blocks:
            raise TypeError(f"shard_policy: {type(model).__name__} names no decoder-layer class "
                            "(`_no_split_modules`); FSDP2 needs to know which blocks to shard")
        for sub in list(model.modules()):
            if type(sub).__name__ in blocks:
                fully_shard(sub, mesh=dp)
        fully_shard(model, mesh=dp)


class PolicyCheckpointMixin:
    """Stores what the task needs to rebuild the policy (architecture, tokenizer paths) in every
    Lightning checkpoint, so the next stage loads it by path alone.

    Frozen weights that the module rebuilds at construction (the task's tokenizer and perceptual
    network from their own files, GRPO's reference from ``init_policy``) are left out of the
    file and put back from the live module on load: checkpoints hold the policy, the optimizer
    state and the counters only.
    """

    FROZEN_PREFIXES = ("task.", "reference.")

    def on_save_checkpoint(self, checkpoint: dict) -> None:
        checkpoint["wm_policy"] = self.task.policy_checkpoint(self.policy)
        state = checkpoint.get("state_dict", {})
        for key in [k for k in state if k.startswith(self.FROZEN_PREFIXES)]:
            del state[key]

    def on_load_checkpoint(self, checkpoint: dict) -> None:
        state = checkpoint.get("state_dict", {})
        for key, value in self.state_dict().items():
            if key.startswith(self.FROZEN_PREFIXES):
                state.setdefault(key, value)

    def export(self, out_dir, checkpoint=None) -> dict:
        """Write the trained policy in the task's release format (``task.export``; the text
        task writes Hugging Face folders). Called by ``wm.cli.fit.fit_stage`` on rank 0 after
        training as ``<run_dir>/export``; a task without ``export`` writes nothing (returns {}).
        A sharded (FSDP2) policy is exported from the gathered ``checkpoint`` instead of the
        live shards, whose gathering would need every rank."""
        if not hasattr(self.task, "export"):
            return {}
        policy = self.policy
        if checkpoint is not None and any(hasattr(p, "placements") for p in policy.parameters()):
            policy = self.task.build_policy(None, init=str(checkpoint))
        return self.task.export(policy, out_dir)
