"""MLE pretraining stage: next-token prediction on response tokens only.

Paper Sec. 3 / Appendix B: the world model is first trained by maximum likelihood on
(question, response) pairs; for video the response is the next frame's tokens, for text the
next state. Only tokens in the task's loss mask count (given action tokens never do).
Linear warmup then constant learning rate (the reference: lr 5e-5, 5k warmup steps).

Departure: validation also samples one response per prompt and reports the task's verifiable
reward and metrics (``val/reward``, ``val/<metric>``), so MLE and GRPO curves are comparable.

Data parallel (DDP, FSDP2): the training loss is the token mean over the WHOLE global batch --
the sum of cross-entropies on each rank divided by the loss-token count all-reduced over ranks,
times the world size (the strategies average gradients over ranks) -- so a rank holding short
targets (text SFT: 2 tokens beside 39) does not weigh more than its tokens. Gradient
accumulation (``trainer.accumulate_grad_batches`` > 1) would split that count over micro-batches
Lightning averages, so it is refused: raise ``stage.batch_size`` (or add ranks) instead.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
import lightning as L

from wm.language.model import apply_factory_settings
from wm.rollout.forward import response_logits
from wm.rollout.scoring import sample_and_score
from wm.stages.checkpointing import PolicyCheckpointMixin
from wm.stages.schedules import warmup_constant_schedule
from wm.stages.score_logging import log_scores
from wm.stages.sharding import shard_policy, sum_across_ranks
from wm.utils.precision import fp32_logits
from wm.utils.seeding import seeded_generator


class MLEModule(PolicyCheckpointMixin, L.LightningModule):
    """Teacher-forced cross-entropy on the task's response tokens.

    Args:
        task: a ``wm.tasks.base.Task`` (built by Hydra from ``data.task``).
        model: factory (``functools.partial``) completed by ``task.build_policy``.
        optimizer: ``functools.partial`` of a torch optimizer (lr, weight decay from config).
        warmup_steps: linear warmup length in optimizer steps, then constant.
        init_policy: optional checkpoint/directory to start from.
        val_sample: also sample responses in validation and log rewards/metrics.
        val_top_k: top-k for validation sampling (paper's evaluation: 100; null = none).
        log_images_every_n_steps: how often to log predicted-vs-true samples (0 = never).
    """

    def __init__(self, task, model, optimizer, warmup_steps: int = 0,
                 init_policy: str | None = None, val_sample: bool = True,
                 val_top_k: int | None = None, log_images_every_n_steps: int = 0,
                 seed: int = 0):
        super().__init__()
        self.save_hyperparameters(ignore=["task", "model", "optimizer"])
        self.task = task
        self.policy = task.build_policy(model, init=init_policy)
        fp32_logits(self.policy)          # float32 logits (and loss) under bf16 autocast
        apply_factory_settings(self.policy, model)
        self.optimizer_factory = optimizer

    def setup(self, stage: str) -> None:
        trainer = self._trainer
        accumulate = getattr(trainer, "accumulate_grad_batches", 1) if trainer is not None else 1
        if stage == "fit" and accumulate > 1:
            raise ValueError(
                f"trainer.accumulate_grad_batches={accumulate}: the MLE loss is the token mean "
                "over each step's global batch, which accumulation would split; set it to 1 and "
                "raise stage.batch_size instead")
        if trainer is not None and trainer.datamodule is not None:
            self.task.connect(trainer.datamodule)

    def configure_model(self) -> None:
        """FSDP2 sharding of the policy under ``trainer=fsdp2_cpu`` (no-op otherwise)."""
        shard_policy(self)

    def loss_sum(self, batch) -> tuple[torch.Tensor, torch.Tensor]:
        """(sum of cross-entropies, number of loss tokens) over the task's loss-masked response
        tokens of this rank's batch (two scalars)."""
        prompts, target = self.task.prompts(batch), self.task.responses(batch)
        logits = response_logits(self.policy, prompts.ids, prompts.mask, target.ids)  # (B,L,V)
        labels = target.ids.masked_fill(~target.loss_mask, -100)                       # (B,L)
        total = F.cross_entropy(logits.flatten(0, 1).float(), labels.flatten(), ignore_index=-100,
                                reduction="sum")
        return total, target.loss_mask.sum()

    def loss(self, batch) -> torch.Tensor:
        """Mean cross-entropy over the loss-masked response tokens of ``batch`` (scalar)."""
        total, n = self.loss_sum(batch)
        return total / n.clamp(min=1)

    def training_step(self, batch, batch_idx):
        total, n = self.loss_sum(batch)
        world = max(self.trainer.world_size, 1)
        # token mean of the global batch; x world size because the strategy averages gradients
        loss = total * world / sum_across_ranks(self.trainer, n).clamp(min=1)
        self.log("train/loss", loss.detach(), prog_bar=True, sync_dist=world > 1)
        return loss

    def validation_step(self, batch, batch_idx):
        total, n = self.loss_sum(batch)        # weighted by tokens: the global token mean
        self.log("val/loss", total / n.clamp(min=1), prog_bar=True, sync_dist=True,
                 batch_size=max(int(n), 1))
        if self.hparams.val_sample:
            gen = seeded_generator(self.hparams.seed, batch_idx, self.global_rank, self.device)
            preds, rewards, metrics, _ = sample_and_score(
                self.task, self.policy, batch, 1, gen, top_k=self.hparams.val_top_k)
            log_scores(self, "val", {**metrics, **rewards})
            every = self.hparams.log_images_every_n_steps
            if batch_idx == 0 and every and hasattr(self.task, "log_samples"):
                self.task.log_samples(self.logger, "val/samples", preds, batch, self.global_step)

    def configure_optimizers(self):
        params = [p for p in self.policy.parameters() if p.requires_grad]
        opt = self.optimizer_factory(params)
        sched = warmup_constant_schedule(opt, self.hparams.warmup_steps)
        return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "interval": "step"}}
