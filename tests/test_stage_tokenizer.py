"""Tokenizer stage: GAN warm-up switch, metrics, image logging, checkpoint -> load_tokenizer."""
from functools import partial

import lightning as L
import pytest
import torch
from torch.utils.data import DataLoader, Dataset

from wm.stages.tokenizer import TokenizerModule, recon_grid
from wm.vision.registry import load_tokenizer
from wm.vision.compressive import CompressiveTokenizer
from wm.vision.discriminator import PatchDiscriminator
from wm.vision.fsq_vqgan import FrameTokenizer
from wm.vision.perceptual import Perceptual


class Clips(Dataset):
    def __init__(self, n=8, T=2, size=32):
        g = torch.Generator().manual_seed(0)
        self.frames = torch.rand(n, T, 3, size, size, generator=g)

    def __len__(self):
        return len(self.frames)

    def __getitem__(self, i):
        return {"frames": self.frames[i], "episode": torch.tensor(i)}


class Recorder(L.Callback):
    def __init__(self):
        self.rows = []

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        m = trainer.callback_metrics
        d_w = pl_module.discriminator.net[0].weight.detach().clone()
        self.rows.append({k: float(m[k]) for k in m if k.startswith("train/")} | {"d_weight": d_w})


def _module(tokenizer=None, gan_start_step=2, perceptual=True, **kw):
    torch.manual_seed(0)
    tok = tokenizer or FrameTokenizer(channels=(8, 16, 16), latent_dim=8, resolution=(32, 32))
    return TokenizerModule(
        tokenizer=tok,
        perceptual=Perceptual(backend="native", allow_random_backbone=True) if perceptual else None,
        discriminator=PatchDiscriminator(base_channels=8, n_layers=2),
        optimizer=partial(torch.optim.Adam, lr=1e-3),
        disc_optimizer=partial(torch.optim.Adam, lr=1e-3),
        gan_start_step=gan_start_step, gp_weight=1.0, log_images_every_n_steps=0, **kw)


def _trainer(tmp_path, **kw):
    opts = dict(accelerator="cpu", devices=1, max_epochs=1, limit_train_batches=4,
                limit_val_batches=1, logger=False, enable_checkpointing=False,
                enable_progress_bar=False,
                enable_model_summary=False, default_root_dir=tmp_path, num_sanity_val_steps=0)
    return L.Trainer(**{**opts, **kw})


def test_gan_inactive_before_start_step_and_active_after(tmp_path):
    module, rec = _module(gan_start_step=2), Recorder()
    d0 = module.discriminator.net[0].weight.detach().clone()
    _trainer(tmp_path, callbacks=[rec]).fit(module, DataLoader(Clips(), batch_size=2),
                                            DataLoader(Clips(4), batch_size=2))
    assert [r["train/gan_active"] for r in rec.rows] == [0.0, 0.0, 1.0, 1.0]
    assert rec.rows[0]["train/d_loss"] == 0.0 and rec.rows[1]["train/g_loss"] == 0.0
    assert rec.rows[2]["train/d_loss"] > 0.0 and rec.rows[3]["train/d_loss"] > 0.0
    assert torch.equal(rec.rows[1]["d_weight"], d0)          # D untouched during warm-up
    assert not torch.equal(rec.rows[3]["d_weight"], d0)      # and trained after
    assert int(module.gen_steps) == 4
    for key in ("train/loss", "train/l1", "train/perceptual", "train/codebook_usage",
                "train/perplexity"):
        assert key in rec.rows[-1]
    assert 0.0 < rec.rows[-1]["train/codebook_usage"] <= 1.0
    assert rec.rows[-1]["train/perceptual"] > 0


def test_checkpoint_round_trip_and_resume(tmp_path):
    module = _module(gan_start_step=0)
    trainer = _trainer(tmp_path)
    trainer.fit(module, DataLoader(Clips(), batch_size=2), DataLoader(Clips(4), batch_size=2))
    ckpt = tmp_path / "tok.ckpt"
    trainer.save_checkpoint(ckpt)
    raw = torch.load(ckpt, map_location="cpu", weights_only=True)  # no pickled callables
    assert raw["tokenizer_config"]["_target_"] == "wm.vision.fsq_vqgan.FrameTokenizer"
    assert not any(k.startswith("perceptual.") for k in raw["state_dict"])
    val_keys = {"val/psnr", "val/ssim", "val/l1", "val/mse", "val/lpips"}
    assert val_keys <= set(trainer.callback_metrics)

    tok = load_tokenizer(ckpt)
    assert not tok.training and not any(p.requires_grad for p in tok.parameters())
    clip = torch.rand(2, 3, 3, 32, 32)
    module.tokenizer.eval()
    for a, b in zip(module.tokenizer.encode_clip(clip, 1), tok.encode_clip(clip, 1)):
        assert torch.equal(a, b)

    # resume: a fresh module continues the step counter (perceptual weights are not in the file)
    resumed = _module(gan_start_step=0)
    _trainer(tmp_path, max_epochs=2).fit(resumed, DataLoader(Clips(), batch_size=2),
                                         DataLoader(Clips(4), batch_size=2), ckpt_path=ckpt)
    assert int(resumed.gen_steps) == 8


def test_load_tokenizer_missing_path_names_the_command(tmp_path):
    with pytest.raises(FileNotFoundError, match="stage=tokenizer"):
        load_tokenizer(tmp_path / "nope.ckpt")


def test_compressive_training_step_and_image_logging(tmp_path):
    from lightning.pytorch.loggers import TensorBoardLogger

    tok = CompressiveTokenizer(context_channels=(8, 16), future_channels=(8, 16, 16, 16),
                               latent_dim=8, resolution=(32, 32), attn_heads=2)
    module = _module(tokenizer=tok, perceptual=False, gan_start_step=0, n_context=1)
    module.hparams.log_images_every_n_steps = 1
    logger = TensorBoardLogger(tmp_path, name="tb")
    images = []
    logger.experiment.add_image = lambda tag, img, step: images.append((tag, tuple(img.shape)))
    rec = Recorder()
    _trainer(tmp_path, logger=logger, limit_train_batches=2, callbacks=[rec]).fit(
        module, DataLoader(Clips(T=3), batch_size=2), DataLoader(Clips(2, T=3), batch_size=2))
    assert "train/codebook_usage_future" in rec.rows[-1] and rec.rows[-1]["train/d_loss"] > 0
    assert ("train/recon", (3, 64, 6 * 32)) in images   # 2 clips x 3 frames, inputs over outputs
    assert any(tag == "val/recon" for tag, _ in images)


def test_recon_grid_layout():
    a, b = torch.zeros(2, 3, 4, 5), torch.ones(2, 3, 4, 5)
    g = recon_grid(a, b)
    assert g.shape == (3, 8, 10) and g[:, :4].sum() == 0 and (g[:, 4:] == 1).all()


def test_bad_config_errors():
    tok = FrameTokenizer(channels=(8, 16), latent_dim=8, resolution=(32, 32))
    with pytest.raises(ValueError, match="optimizer"):
        TokenizerModule(tokenizer=tok)
    with pytest.raises(ValueError, match="disc_optimizer"):
        TokenizerModule(tokenizer=tok, discriminator=PatchDiscriminator(),
                        optimizer=partial(torch.optim.Adam))
