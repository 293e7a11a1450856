"""Stage 1: train a visual tokenizer (FSQ-VQGAN, per-frame or compressive).

Reference (shared/REFERENCE.md "Video world model"): loss = L1 + 1.0 x LPIPS(VGG) + 0.1 x hinge
GAN from step 10k, discriminator with a gradient penalty, lr 5e-4. The trained tokenizer is frozen
in the MLE and GRPO stages, which rebuild it with :func:`wm.vision.registry.load_tokenizer` from the checkpoint path.

Training (manual optimization, two optimizers):
1. generator: ``tokenizer.forward_clip(frames, n_context)`` (per-frame tokenizer: every frame of
   the clip independently; compressive: context + conditioned future frames), loss
   ``l1_weight * L1 + perceptual_weight * LPIPS + gan_weight * hinge_g`` (the GAN term only once
   ``gan_start_step`` generator steps have been taken);
2. discriminator (same condition): ``hinge_d + gp_weight * R1`` on real vs detached fakes.
Steps are counted by a buffer ``gen_steps`` (saved in checkpoints) because Lightning's
``global_step`` counts every optimizer's steps under manual optimization: once the GAN is
active each batch adds 2 to ``global_step``, so ``Trainer(max_steps=N)`` then means N/2 more
batches (measured: 4 batches with the GAN from batch 2 -> global_step 6, gen_steps 4).
Under DDP use ``strategy=ddp_find_unused_parameters_true`` (``experiment=rt1_tokenizer`` does):
the discriminator gets no gradient before ``gan_start_step``, so plain ``ddp`` stops at the
second batch; a module with a discriminator refuses plain DDP at setup, naming the option.

Departures: a fixed ``gan_weight`` (no VQGAN adaptive weight from last-layer gradient norms);
R1 instead of a WGAN-GP-style interpolated penalty.

Logged keys (all documented here):
- ``train/loss`` total generator loss; ``train/l1``; ``train/perceptual`` (0 without a
  perceptual module); ``train/g_loss`` and ``train/d_loss`` (0 while the GAN is inactive);
  ``train/gan_active`` (0/1); ``train/codebook_usage`` (fraction of the context/shared codebook
  used in the batch); ``train/perplexity`` (exp entropy of its code histogram); for a
  compressive tokenizer also ``train/codebook_usage_future`` and ``train/perplexity_future``.
- ``val/l1``, ``val/mse``, ``val/psnr``, ``val/ssim`` (per frame, clamped to [0,1], all frames
  of the clip), ``val/lpips`` (``val/stlpips`` for ST-LPIPS) if a perceptual module is given.
- Images ``train/recon`` and ``val/recon`` (top row input, bottom row reconstruction) every
  ``log_images_every_n_steps`` steps when the logger is a TensorBoardLogger.
"""
from __future__ import annotations

from pathlib import Path

import lightning as L
import torch
from einops import rearrange
from torch import nn

from wm.rewards.frame_metrics import frame_metrics
from wm.vision.discriminator import hinge_d_loss, hinge_g_loss, r1_penalty
from wm.vision.fsq_vqgan import codebook_stats
from wm.vision.registry import tokenizer_config

_MAX_IMAGES = 8


class TokenizerModule(L.LightningModule):
    """LightningModule for stage 1.

    Args:
        tokenizer: a ``wm.vision`` tokenizer (``FrameTokenizer`` or ``CompressiveTokenizer``).
        perceptual: ``Perceptual`` or None (no perceptual loss).
        discriminator: e.g. ``PatchDiscriminator`` or None (no GAN).
        optimizer: ``functools.partial`` of a torch optimizer (``_partial_: true`` in Hydra).
        disc_optimizer: partial for the discriminator (required when ``discriminator`` is set).
        l1_weight, perceptual_weight, gan_weight: loss weights (reference 1.0, 1.0, 0.1).
        gan_start_step: generator steps before the GAN terms switch on (reference 10,000).
        gp_weight: R1 penalty weight (0 disables it).
        perceptual_frames: frames per step the perceptual loss sees (an evenly strided subset of
            the B*T reconstructed frames; None = all, as the reference). ST-LPIPS on CPU costs
            ~30 ms per 64x64 frame forward+backward, more than the tokenizer itself.
        n_context: context frames per clip (compressive tokenizer; per-frame ignores the split).
        log_images_every_n_steps: image-grid period (0 disables).
    """

    def __init__(self, tokenizer: nn.Module, perceptual: nn.Module | None = None,
                 discriminator: nn.Module | None = None, optimizer=None, disc_optimizer=None,
                 l1_weight: float = 1.0, perceptual_weight: float = 1.0, gan_weight: float = 0.1,
                 gan_start_step: int = 10_000, gp_weight: float = 10.0, n_context: int = 1,
                 log_images_every_n_steps: int = 500, perceptual_frames: int | None = None):
        super().__init__()
        if perceptual_frames is not None and int(perceptual_frames) < 1:
            raise ValueError(f"stage.module.perceptual_frames={perceptual_frames}: give a number "
                             ">= 1 of frames per step, or null for all of them")
        if optimizer is None:
            raise ValueError("TokenizerModule needs `optimizer` (a partial, e.g. torch.optim.Adam "
                             "with _partial_: true)")
        if discriminator is not None and disc_optimizer is None:
            raise ValueError("a discriminator is set but `disc_optimizer` is None; give one, "
                             "or set discriminator: null")
        # the optimizer partials are kept out of the hyperparameters (they live in the run's Hydra
        # config): pickled callables would make the checkpoint unloadable with weights_only=True,
        # which is torch's default and what `Trainer.fit(ckpt_path=...)` uses to resume.
        self.save_hyperparameters(ignore=["tokenizer", "perceptual", "discriminator",
                                          "optimizer", "disc_optimizer"])
        self.optimizer_factory, self.disc_optimizer_factory = optimizer, disc_optimizer
        self.automatic_optimization = False
        self.tokenizer = tokenizer
        self.perceptual = perceptual
        self.discriminator = discriminator
        self.register_buffer("gen_steps", torch.zeros((), dtype=torch.long))

    def setup(self, stage: str) -> None:
        strategy = getattr(self._trainer, "strategy", None)
        if stage == "fit" and self.discriminator is not None and _ddp_without_unused(strategy):
            raise ValueError(
                "trainer.strategy=ddp with a discriminator: it gets no gradient before "
                "gan_start_step and DDP stops at the second batch; set "
                "trainer.strategy=ddp_find_unused_parameters_true (or vision.discriminator=null)")

    # ---- optimizers ------------------------------------------------------------------------
    def configure_optimizers(self):
        opt_g = self.optimizer_factory(self.tokenizer.parameters())
        if self.discriminator is None:
            return opt_g
        return [opt_g, self.disc_optimizer_factory(self.discriminator.parameters())]

    def _optimizers(self):
        opts = self.optimizers()
        return (opts, None) if not isinstance(opts, (list, tuple)) else (opts[0], opts[1])

    @property
    def gan_active(self) -> bool:
        return self.discriminator is not None and int(self.gen_steps) >= self.hparams.gan_start_step

    # ---- steps -----------------------------------------------------------------------------
    def _reconstruct(self, frames: torch.Tensor):
        """(B,T,3,H,W) -> (recon (B*T,3,H,W), target (B*T,3,H,W), ClipReconstruction)."""
        out = self.tokenizer.forward_clip(frames, self.hparams.n_context)
        recon = torch.cat([out.context, out.future], dim=1)   # (B, T, 3, H, W)
        recon = recon.flatten(0, 1)                                # (B*T, 3, H, W)
        return recon, frames.flatten(0, 1), out

    def _perceptual_loss(self, recon: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """Mean perceptual distance over ``perceptual_frames`` evenly strided frames (all when
        None). recon, target (M, 3, H, W)."""
        k = self.hparams.get("perceptual_frames")
        if k is not None and k < recon.shape[0]:
            idx = torch.linspace(0, recon.shape[0] - 1, int(k), device=recon.device).round().long()
            recon, target = recon[idx], target[idx]                  # (k, 3, H, W)
        return self.perceptual(recon, target).mean()

    def training_step(self, batch, batch_idx):
        frames = _frames(batch)
        opt_g, opt_d = self._optimizers()
        recon, target, out = self._reconstruct(frames)
        gan_active = self.gan_active
        l1 = (recon - target).abs().mean()
        zero = l1.new_zeros(())
        perc = self._perceptual_loss(recon, target) if self.perceptual is not None else zero
        g_loss = hinge_g_loss(self.discriminator(recon)) if gan_active else zero
        hp = self.hparams
        loss = hp.l1_weight * l1 + hp.perceptual_weight * perc + hp.gan_weight * g_loss
        opt_g.zero_grad()
        self.manual_backward(loss)
        opt_g.step()

        d_loss = zero
        if gan_active:
            real = target.detach().requires_grad_(hp.gp_weight > 0)
            logits_real = self.discriminator(real)
            d_loss = hinge_d_loss(logits_real, self.discriminator(recon.detach()))
            if hp.gp_weight > 0:
                d_loss = d_loss + hp.gp_weight * r1_penalty(logits_real, real)
            opt_d.zero_grad()  # also clears what the generator's backward left in D
            self.manual_backward(d_loss)
            opt_d.step()
        self.gen_steps += 1

        logs = {"train/loss": loss, "train/l1": l1, "train/perceptual": perc,
                "train/g_loss": g_loss, "train/d_loss": d_loss,
                "train/gan_active": float(gan_active)}
        logs.update(self._codebook_logs(out))
        self.log_dict({k: (v.detach() if torch.is_tensor(v) else v) for k, v in logs.items()},
                      batch_size=target.shape[0])
        n = hp.log_images_every_n_steps
        if n and (int(self.gen_steps) - 1) % n == 0:
            self._log_images("train/recon", target, recon)
        return loss.detach()

    def _codebook_logs(self, out) -> dict[str, torch.Tensor]:
        kc, kf = self.tokenizer.codebook_sizes
        if self.tokenizer.shared_codebook:
            ids = torch.cat([out.context_tokens.flatten(), out.future_tokens.flatten()])
            usage, ppl = codebook_stats(ids, kc)
            return {"train/codebook_usage": usage, "train/perplexity": ppl}
        usage, ppl = codebook_stats(out.context_tokens, kc)
        logs = {"train/codebook_usage": usage, "train/perplexity": ppl}
        if out.future_tokens.numel():
            usage_f, ppl_f = codebook_stats(out.future_tokens, kf)
            logs.update({"train/codebook_usage_future": usage_f, "train/perplexity_future": ppl_f})
        return logs

    def export(self, out_dir, checkpoint=None) -> dict:
        """A tokenizer of the released architectures (``wm.vision.released``) is written in the
        released layout (``config.json`` + ``diffusion_pytorch_model.safetensors``), which the
        reference code and ``load_tokenizer`` read; our own architectures have no released
        layout (their checkpoint is the ``.ckpt``). Called by ``wm.cli.fit`` on rank 0."""
        from wm.vision.released.io import save_released

        released = ("ReleasedFrameTokenizer", "ReleasedCompressiveTokenizer")
        if type(self.tokenizer).__name__ not in released:
            return {}
        return {"released": save_released(self.tokenizer, Path(out_dir) / "released")}

    def validation_step(self, batch, batch_idx):
        recon, target, _ = self._reconstruct(_frames(batch))
        recon = recon.clamp(0.0, 1.0)
        metrics = frame_metrics(recon, target)
        logs = {"val/l1": metrics["mae"].mean(), "val/mse": metrics["mse"].mean(),
                "val/psnr": metrics["psnr"].mean(), "val/ssim": metrics["ssim"].mean()}
        if self.perceptual is not None:
            name = getattr(self.perceptual, "metric_name", "lpips")     # stlpips for ST-LPIPS
            logs[f"val/{name}"] = self.perceptual(recon, target).mean()
        self.log_dict(logs, on_epoch=True, sync_dist=True, batch_size=target.shape[0])
        if batch_idx == 0:
            self._log_images("val/recon", target, recon)

    # ---- images ----------------------------------------------------------------------------
    def _log_images(self, tag: str, target: torch.Tensor, recon: torch.Tensor) -> None:
        from lightning.pytorch.loggers import TensorBoardLogger

        if not isinstance(self.logger, TensorBoardLogger) or self.global_rank != 0:
            return
        grid = recon_grid(target[:_MAX_IMAGES], recon[:_MAX_IMAGES])
        self.logger.experiment.add_image(tag, grid, int(self.gen_steps))

    # ---- checkpoints -----------------------------------------------------------------------
    def on_save_checkpoint(self, checkpoint: dict) -> None:
        checkpoint["tokenizer_config"] = tokenizer_config(self.tokenizer)
        # the frozen perceptual network is rebuilt from its config, not stored (VGG16 is 59 MB)
        state = checkpoint.get("state_dict", {})
        for key in [k for k in state if k.startswith("perceptual.")]:
            del state[key]

    def on_load_checkpoint(self, checkpoint: dict) -> None:
        if self.perceptual is not None:  # put the current perceptual weights back (strict load)
            state = checkpoint.setdefault("state_dict", {})
            for k, v in self.perceptual.state_dict().items():
                state.setdefault(f"perceptual.{k}", v)


def recon_grid(target: torch.Tensor, recon: torch.Tensor) -> torch.Tensor:
    """(N,3,H,W) inputs and reconstructions -> (3, 2H, N*W) image: inputs on top."""
    rows = torch.stack([target, recon.clamp(0.0, 1.0)])                 # (2, N, 3, H, W)
    return rearrange(rows.detach().float().cpu(), "r n c h w -> c (r h) (n w)")


def _ddp_without_unused(strategy) -> bool:
    """True for Lightning's DDP strategy without ``find_unused_parameters``."""
    from lightning.pytorch.strategies import DDPStrategy

    return isinstance(strategy, DDPStrategy) and \
        not getattr(strategy, "_ddp_kwargs", {}).get("find_unused_parameters", False)


def _frames(batch) -> torch.Tensor:
    frames = batch.get("frames") if isinstance(batch, dict) else None
    if frames is None or frames.ndim != 5:
        raise ValueError("the tokenizer stage expects video batches with batch['frames'] "
                         "float (B, T, 3, H, W) in [0, 1]")
    return frames
