"""GRPO post-training with verifiable rewards: one loop for every modality.

Paper Sec. 3.2 (RLVR) with GRPO as in the reference (verl): for each prompt sample a group of
G responses (temperature 1), decode them, score them with the task's verifiable reward, turn the
rewards into group-relative advantages, then run ``ppo_epochs`` passes of clipped policy-gradient
updates over mini-batches, with a KL *loss term* to a frozen reference (k3, coef 0.001).

Everything modality-specific lives in the ``task``; all maths lives in the pure functions of
``wm.rl``; this module only wires them.

Departures from the reference, on purpose:
- token-mean aggregation is normalized by the token count of the whole mini-batch across
  micro-batches *and* ranks (verl divided per-micro-batch means by the accumulation steps);
- every random draw in a step (sampling, mini-batch shuffling, dropout) is seeded from
  ``(seed, step, rank)``, so a resumed run reproduces an uninterrupted one exactly;
- the KL reference of a LoRA policy is the same weights with adapters disabled (no copy);
- under DDP and FSDP2, gradients are reduced once per optimizer step (the last micro-batch's
  backward; the others accumulate locally), not once per micro-batch.

Memory is bounded by ``micro_batch_size`` rows whatever G and the response length (issue #27):
a micro-batch smaller than a group holds a row chunk of one group; decoding and scoring run on
chunks of at most ``micro_batch_size`` rows (``wm.rollout.scoring.score_rows``). The no-grad
log-prob passes compute a prompt once per group and serve its row chunks from its keys/values;
the update recomputes the prompt per chunk (exact; costs ceil(G / micro_batch_size) - 1 extra
prompt forwards and backwards per group) so each chunk's graph is freed by its backward. The
sampler still holds every row's cache at once. Each phase logs its wall time
(``grpo/time/<phase>``) and peak memory (``grpo/peak_mem_mb/<phase>``, ``wm.utils.phases``).
Completion lengths, clipping at the budget and parse failures are logged as TRL names them
(``grpo/completions/*``, ``grpo/parse_fail_*``; ``wm.stages.completion_stats``).

On-policy by construction (the bugs TRL and verl fixed): every training-side log-prob (old,
reference, current) and the entropy are of the distribution the sampler drew from, the allowed
id range and the temperature included (``wm.rollout.distribution``; top-k/top-p rollouts are
refused); dropout is switched off in the policy (LoRA and attention) so every pass runs in one
mode; ``grpo/logp_diff/{mean,max}`` logs |sampler log-prob - recomputed old log-prob| every
step, the alarm for any remaining mismatch. NaN rewards are counted (``grpo/reward_nan``); a NaN
row gets advantage 0 and its group is normalised over its finite rows (``wm.rl.advantages``).

Shapes: B prompts per rank, G responses each, N = B*G rows, L response tokens.
"""
from __future__ import annotations

import copy
import dataclasses
from contextlib import contextmanager

import torch
import lightning as L

from wm.language.model import apply_factory_settings, reference_logits_context
from wm.rl.advantages import frac_zero_std, group_advantages
from wm.rl.loss import GRPOLossConfig, grpo_loss
from wm.rollout.distribution import sampling_entropy, sampling_logprobs
from wm.rollout.forward import (grouped_response_logits, logits_from_prefix, prompt_prefix,
                                response_logits)
from wm.rollout.scoring import row_chunks, sample_and_score
from wm.stages.checkpointing import PolicyCheckpointMixin
from wm.stages.completion_stats import log_completion_stats
from wm.stages.dynamic_sampling import refill
from wm.stages.grpo_settings import GRPOSettings
from wm.stages.schedules import warmup_constant_schedule
from wm.stages.score_logging import log_scores
from wm.stages.sharding import gradient_sync, shard_policy, sum_across_ranks
from wm.utils.dropout import disable_dropout
from wm.utils.phases import phase
from wm.utils.precision import fp32_logits
from wm.utils.seeding import seeded_generator


class GRPOModule(PolicyCheckpointMixin, L.LightningModule):
    """Group Relative Policy Optimization of a pretrained world model.

    Args:
        task: a ``wm.tasks.base.Task``.
        model: model factory (partial) completed by ``task.build_policy``.
        optimizer: ``functools.partial`` of a torch optimizer.
        loss: a ``wm.rl.loss.GRPOLossConfig`` (clip, KL, entropy, aggregation, advantages).
        init_policy: the MLE checkpoint (video: Lightning ``.ckpt``; text: HF adapter folder).
        **settings: the loop's options, a :class:`wm.stages.grpo_settings.GRPOSettings`
            (group size, batch sizes, sampling, clipping, ...; one docstring per field there).
    """

    def __init__(self, task, model, optimizer, loss: GRPOLossConfig, init_policy: str | None,
                 **settings):
        super().__init__()
        self.cfg = GRPOSettings.from_options(settings)
        self.save_hyperparameters(dataclasses.asdict(self.cfg))
        self.automatic_optimization = False
        loss.validate()
        if loss.kl_coef > 0 and not self.cfg.use_reference:
            raise ValueError(f"stage.module.loss.kl_coef={loss.kl_coef} needs a KL reference but "
                             "stage.module.use_reference=false; set use_reference=true or "
                             "stage.module.loss.kl_coef=0")
        self.loss_cfg = loss
        self.task = task
        self.policy = task.build_policy(model, init=init_policy)
        # every GRPO pass (sampling, old/reference/current log-probs) in one dropout mode: none
        disable_dropout(self.policy)
        # the sampler and every recomputation take float32 logits, also under bf16 autocast;
        # checkpointing recomputes the response pass's layers (the prompt pass keeps its own)
        fp32_logits(self.policy)
        apply_factory_settings(self.policy, model)
        self.optimizer_factory = optimizer
        self.reference = None
        if loss.kl_coef > 0 and not hasattr(self.policy, "disable_adapter"):
            self.reference = copy.deepcopy(self.policy).eval().requires_grad_(False)

    def setup(self, stage: str) -> None:
        if self.trainer is not None and self.trainer.datamodule is not None:
            self.task.connect(self.trainer.datamodule)

    def configure_model(self) -> None:
        """FSDP2 sharding of the policy under ``trainer=fsdp2_cpu`` (no-op otherwise)."""
        shard_policy(self)

    # ----------------------------------------------------------------------------- helpers
    @contextmanager
    def _reference_policy(self):
        """The frozen KL reference: a copy, or the same LoRA model with adapters disabled."""
        if self.reference is not None:
            yield self.reference
        else:
            with reference_logits_context(self.policy) as base:
                yield base

    def _group_logits(self, model, prompts, tokens, groups, rows):
        """Logits (n*g, L, V) of the response ``rows`` (n*g,): g rows of each of the prompt
        indices ``groups`` (n,).

        Shared-prefix forward by default (each prompt runs once for its g responses, exact);
        ``shared_prefix=false`` runs the plain per-row computation."""
        g = rows.numel() // groups.numel()
        ids, pmask = prompts.ids[groups], prompts.mask[groups]                         # (n, P)
        if self.cfg.shared_prefix:
            return grouped_response_logits(model, ids, pmask, tokens[rows], g)
        return response_logits(model, ids.repeat_interleave(g, 0), pmask.repeat_interleave(g, 0),
                               tokens[rows])

    def _micro_batches(self, groups: torch.Tensor) -> list:
        """Micro-batches of at most ``micro_batch_size`` rows as (prompt indices (n,), rows
        (n*g,), new_prompts): ``micro_batch_size // G`` whole groups when a group fits, else
        row chunks of one group; ``new_prompts`` is False for a group's later chunks."""
        G, out = self.cfg.group_size, []
        for sl, first, g in row_chunks(groups.numel(), G, self.cfg.micro_batch_size):
            idx = groups[sl]                                                          # (n,)
            rows = (idx[:, None] * G
                    + torch.arange(first, first + g, device=groups.device)).flatten()  # (n*g,)
            out.append((idx, rows, first == 0))
        return out

    @torch.no_grad()
    def _logprobs(self, model, prompts, tokens, mask, ranges) -> torch.Tensor:
        """Log-probs (N, L) of ``tokens`` under ``model``'s sampling distribution (allowed id
        range, temperature: ``wm.rollout.distribution``), per micro-batch; with the shared
        prefix a group's prompt runs once for all its row chunks."""
        out = torch.zeros(tokens.shape, dtype=torch.float32, device=tokens.device)
        prefix = None
        for groups, rows, new in self._micro_batches(
                torch.arange(prompts.ids.shape[0], device=tokens.device)):
            if not self.cfg.shared_prefix:
                logits = self._group_logits(model, prompts, tokens, groups, rows)
            else:
                pmask = prompts.mask[groups]                                          # (n, P)
                if new:
                    prefix = prompt_prefix(model, prompts.ids[groups], pmask)
                logits = logits_from_prefix(model, *prefix, pmask, tokens[rows],
                                            rows.numel() // groups.numel())
            out[rows] = sampling_logprobs(logits, tokens[rows], ranges, self.cfg.temperature,
                                          valid=mask[rows])
        return out

    # ------------------------------------------------------------------------- training
    def training_step(self, batch, batch_idx):
        hp, task = self.cfg, self.task
        step = self.trainer.fit_loop.epoch_loop.batch_progress.total.completed  # resume-safe
        gen = seeded_generator(hp.seed, step, self.global_rank, self.device)
        torch.manual_seed(int(torch.randint(2**62, (1,), generator=gen, device=self.device)))
        G = hp.group_size

        # 1. rollout: G responses per prompt, decoded and scored by the verifiable reward
        times: dict[str, float] = {}
        peaks: dict[str, float] = {}
        prompts = task.prompts(batch)
        preds, rewards, metrics, rollout = sample_and_score(
            task, self.policy, batch, G, gen, temperature=hp.temperature, top_k=hp.top_k,
            top_p=hp.top_p, prompts=prompts, cascade=hp.cascade, timings=times, peaks=peaks,
            chunk_rows=hp.micro_batch_size)
        if hp.dynamic_sampling:    # DAPO: swap zero-variance groups for informative ones
            prompts, rollout, rewards, metrics, dyn = refill(self, step, gen, prompts, rollout,
                                                             rewards, metrics)
            for k, v in dyn.items():
                self.log(f"grpo/dynamic_sampling/{k}", v)
        reward = rewards["reward"].to(self.device).float()                    # (N,)
        nan = reward.isnan()       # unscorable rows: advantage 0, left out of their group's stats
        adv = group_advantages(reward, G, mode=self.loss_cfg.advantage,
                               eps=self.loss_cfg.advantage_eps)               # (N,)

        # positions after the last sampled token of any row carry no loss and, attention being
        # causal, do not affect earlier ones: every pass runs on the trimmed width (exact)
        mask = rollout.mask
        width = int(mask.any(0).nonzero().max()) + 1 if mask.any() else 1
        tokens, mask = rollout.tokens[:, :width], mask[:, :width]              # (N, W)
        sampled_logp = rollout.logprobs[:, :width]
        ranges = prompts.plan.ranges[:width]                                   # (W, 2)

        # 2. log-probs of the behaviour policy (before any update) and of the reference, under
        # the distribution the sampler drew from (same id range, same temperature). With one
        # optimizer step per rollout the behaviour policy IS the current one: its log-probs are
        # the update's own, detached (exact; the pass is skipped).
        B = prompts.ids.shape[0]
        one_step = hp.skip_old_logp and hp.ppo_epochs == 1 and \
            (hp.mini_batch_size is None or hp.mini_batch_size >= B)
        self.policy.eval()
        with phase("old_logp", times, peaks, self.device):
            old_logp = None if one_step else self._logprobs(self.policy, prompts, tokens, mask,
                                                            ranges)
        ref_logp = None
        with phase("ref_logp", times, peaks, self.device):
            if self.loss_cfg.kl_coef > 0:
                with self._reference_policy() as ref:
                    ref_logp = self._logprobs(ref, prompts, tokens, mask, ranges)
        self.policy.train()

        # 3. PPO epochs over mini-batches of whole groups (advantages are precomputed)
        max_len = self.loss_cfg.max_len or prompts.plan.length   # Dr.GRPO: a constant divisor
        with phase("update", times, peaks, self.device):
            stats, old_logp = self._update(prompts, tokens, mask, old_logp, ref_logp, adv, gen,
                                           ranges, max_len)
        # |sampler log-prob - recomputed old log-prob|: ~0 when training is on-policy
        diff = (sampled_logp.to(old_logp) - old_logp).abs()[mask]
        logp_diff = (diff.mean(), diff.max()) if diff.numel() else (diff.new_zeros(()),) * 2

        # 4. logging (namespaced; see docs/metrics.md)
        n_tok = sum_across_ranks(self.trainer, mask.sum())
        log_scores(self, "grpo/reward", rewards, with_std=True)
        log_scores(self, "grpo/metric", metrics, with_std=True)
        self.log("grpo/frac_reward_zero_std", frac_zero_std(reward, G), sync_dist=True)
        self.log("grpo/reward_nan", nan.float().mean(), sync_dist=True)
        log_completion_stats(self, rollout, prompts.plan.eos_id, rewards)   # TRL's completions/*
        self.log("grpo/logp_diff/mean", logp_diff[0], sync_dist=True)
        self.log("grpo/logp_diff/max", logp_diff[1], sync_dist=True, reduce_fx="max")
        self.log("grpo/rollout_tokens_per_s",
                 float(rollout.mask.numel()) / max(times["sample"], 1e-9))
        for name, seconds in times.items():      # rank-local wall time of each phase
            self.log(f"grpo/time/{name}", seconds)
        for name, mb in peaks.items():           # rank-local peak memory of each phase
            self.log(f"grpo/peak_mem_mb/{name}", mb)
        self.log("grpo/response_tokens", n_tok / max(self.trainer.world_size, 1))
        for k, v in stats.items():
            self.log(f"grpo/{k}", v, sync_dist=True, prog_bar=k in ("kl", "grad_norm"))
        every = hp.log_images_every_n_steps
        if every and step % every == 0 and hasattr(task, "log_samples"):
            task.log_samples(self.logger, "grpo/samples", preds, batch, self.global_step)

    def _update(self, prompts, tokens, mask, old_logp, ref_logp, adv, gen, ranges, max_len
                ) -> tuple[dict, torch.Tensor]:
        """PPO epochs; returns the stats and the behaviour log-probs (the first pass's own,
        detached, when ``old_logp`` is None: one optimizer step on this rollout)."""
        hp, opt = self.cfg, self.optimizers()
        sched = self.lr_schedulers()
        B = prompts.ids.shape[0]
        groups_per_step = hp.mini_batch_size or B
        world = max(self.trainer.world_size, 1)
        behaviour = old_logp if old_logp is not None else torch.zeros_like(tokens, dtype=torch.float32)
        totals: dict[str, float] = {}
        n_updates = 0
        for _ in range(hp.ppo_epochs):
            order = torch.randperm(B, generator=gen, device=gen.device).to(self.device)
            for s in range(0, B, groups_per_step):
                step_groups = order[s : s + groups_per_step]
                step_rows = (step_groups[:, None] * hp.group_size
                             + torch.arange(hp.group_size, device=self.device)).flatten()
                # global normalizers: tokens / sequences of this mini-batch on ALL ranks
                g_tok = sum_across_ranks(self.trainer, mask[step_rows].sum()).clamp(min=1)
                g_seq = sum_across_ranks(self.trainer,
                                         (mask[step_rows].sum(1) > 0).sum()).clamp(min=1)
                opt.zero_grad()
                step_stats: dict[str, torch.Tensor] = {}
                micro = self._micro_batches(step_groups)
                for i, (groups, mb, _) in enumerate(micro):
                    logits = self._group_logits(self.policy, prompts, tokens, groups, mb)
                    T = hp.temperature
                    logp = sampling_logprobs(logits, tokens[mb], ranges, T, valid=mask[mb])
                    if old_logp is None:
                        behaviour[mb] = logp.detach()
                    with torch.set_grad_enabled(self.loss_cfg.entropy_coef > 0):
                        ent = sampling_entropy(logits, ranges, T, valid=mask[mb])  # (n, W)
                    loss, st = grpo_loss(
                        logp, behaviour[mb], None if ref_logp is None else ref_logp[mb],
                        adv[mb], mask[mb], self.loss_cfg, entropy=ent,
                        global_tokens=g_tok, global_seqs=g_seq, max_len=max_len)
                    # DDP averages gradients over ranks; the loss is already normalized by the
                    # global count, so scale by world size to get the global mean gradient.
                    with gradient_sync(self, i == len(micro) - 1):
                        self.manual_backward(loss * world)
                    for k, v in st.items():       # stats are globally normalized: summable
                        step_stats[k] = step_stats.get(k, 0.0) + v.detach() * world
                params = [p for p in self.policy.parameters() if p.requires_grad]
                gnorm = torch.nn.utils.clip_grad_norm_(params, hp.grad_clip or float("inf"))
                opt.step()
                sched.step()
                step_stats["grad_norm"] = gnorm.detach()
                for k, v in step_stats.items():
                    totals[k] = totals.get(k, 0.0) + float(v)
                n_updates += 1
        out = {k: v / max(n_updates, 1) for k, v in totals.items()}
        out["optimizer_steps"] = float(n_updates)
        return out, behaviour

    # ----------------------------------------------------------------------- validation
    def validation_step(self, batch, batch_idx):
        hp = self.cfg
        gen = seeded_generator(hp.seed + 1, batch_idx, self.global_rank, self.device)
        preds, rewards, metrics, _ = sample_and_score(self.task, self.policy, batch,
                                                      hp.val_group_size, gen, top_k=hp.val_top_k,
                                                      chunk_rows=hp.micro_batch_size)
        log_scores(self, "val", {**metrics, **rewards})
        if batch_idx == 0 and hp.log_images_every_n_steps and hasattr(self.task, "log_samples"):
            self.task.log_samples(self.logger, "val/samples", preds, batch, self.global_step)

    def configure_optimizers(self):
        params = [p for p in self.policy.parameters() if p.requires_grad]
        opt = self.optimizer_factory(params)
        return [opt], [warmup_constant_schedule(opt, self.cfg.warmup_steps)]
