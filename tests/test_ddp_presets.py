"""Every experiment preset of conf/experiment/ runs as shipped under 2-process CPU DDP
(``trainer=ddp_cpu``, gloo) for two steps, with its shapes shrunk (tiny tokenizer, tiny LLaMA)
and generated data in place of the real datasets, launched as a user would:
``python train.py experiment=<name> trainer=ddp_cpu ...``.

What is kept from each preset: its stage, its stage/module settings that are not sizes, and
what it sets on the trainer (e.g. ``rt1_tokenizer``'s strategy, which must let DDP run while
the discriminator gets no gradient before ``gan_start_step``). What is replaced: dataset roots
(tests/stage_fixtures.py writes a tiny wm-episodes dataset; text presets use the generated
``toy_text`` world and ``lm_tiny``), model/vision sizes, group and batch sizes.
Presets that need released checkpoints (``*_released*``: thuml/... weights, the reference's
action ranges) are skipped with that reason.
"""
import json
import math
import os
import subprocess
import sys

import pytest
import torch

from stage_fixtures import (
    CONF, ROOT, TINY_SCORING, cpu_overrides, save_tiny_tokenizer, tiny_video_overrides,
    write_video_dataset)

pytestmark = pytest.mark.slow

TINY_VISION = ["vision.tokenizer.channels=[8,8,8]", "vision.tokenizer.levels=[5,3,3]",
               "vision.tokenizer.latent_dim=4", "vision.perceptual=null",
               "vision.discriminator.base_channels=8", "vision.discriminator.n_layers=1"]
SHORT = ["stage.max_steps=2", "stage.checkpoint_every_n_steps=2", "stage.val_check_interval=2",
         "stage.limit_val_batches=2", "stage.batch_size=2"]
TINY_GRPO = ["stage.module.init_policy=null", "stage.module.group_size=2",
             "stage.module.micro_batch_size=4", "stage.module.log_images_every_n_steps=0"]
TEXT = ["data=toy_text", "model=lm_tiny", "data.task.reward_key=key_acc",
        "data.task.max_response_tokens=24"]

SKIPPED = {
    "bytesized32_released": "needs the released SFT checkpoint thuml/bytesized32-world-model-sft",
    "webarena_released": "needs the released SFT checkpoint thuml/webarena-world-model-sft",
    "rt1_released_single_step": "needs the released RT-1 tokenizer and world model (thuml/...) "
                                "and the reference's action ranges",
    "rt1_released_multi_step": "needs the released RT-1 tokenizer and world model (thuml/...) "
                               "and the reference's action ranges",
    # the same stages as bytesized32_sft/_grpo, on the real model and data (its world settings
    # do not apply to the toy world); tests/test_language_smollm2.py runs the model end to end
    "bytesized32_smol_sft": "needs SmolLM2 (python -m wm.language.smollm2) and ByteSized32 data",
    "bytesized32_smol_grpo": "needs SmolLM2 (python -m wm.language.smollm2) and ByteSized32 data",
}


def _video(root, tok):
    # data=rt1's shapes on the tiny dataset (the preset picks data=rt1; the root is replaced)
    return [o for o in tiny_video_overrides(root, tok) if o != "data=pusht"] + [
        "data.datamodule.num_workers=0", "data.datamodule.pin_memory=false"]


CASES = {
    "rt1_tokenizer": lambda root, tok: [
        f"data.root={root}", "data.source=null", "data.resolution=[16,16]",
        "data.datamodule.num_workers=0", "data.datamodule.pin_memory=false",
        "data.datamodule.val_every=4", "data.datamodule.val_clips_per_episode=1",
        "stage.module.log_images_every_n_steps=0", *TINY_VISION],
    "rt1_mle": lambda root, tok: _video(root, tok) + ["stage.module.log_images_every_n_steps=0"],
    # 2 optimizer steps per rollout batch (as the preset's 4 mini-batches): 2 rollout batches
    "rt1_grpo": lambda root, tok: _video(root, tok) + TINY_GRPO + [
        "stage.module.mini_batch_size=1", "stage.max_steps=4", "stage.checkpoint_every_n_steps=4"],
    "bytesized32_sft": lambda root, tok: TEXT,
    "webarena_sft": lambda root, tok: TEXT,
    "bytesized32_grpo": lambda root, tok: TEXT + TINY_GRPO,
    "webarena_grpo": lambda root, tok: TEXT + TINY_GRPO,
    # a pipeline preset, single-device as shipped: its first stage (the compressive tokenizer),
    # which under DDP needs the unused-parameter search (the discriminator waits for its step)
    "pusht_multistep": lambda root, tok: [
        "stage=tokenizer", "trainer.strategy=ddp_find_unused_parameters_true", f"data.root={root}", "data.source=null", "data.resolution=[16,16]",
        "data.datamodule.val_every=4", "data.datamodule.val_clips_per_episode=1",
        "stage.module.log_images_every_n_steps=0", "vision.perceptual=null",
        "vision.discriminator.base_channels=8", "vision.discriminator.n_layers=1"],
}


def test_every_preset_is_covered():
    presets = {p.stem for p in (CONF / "experiment").glob("*.yaml")}
    assert presets == set(CASES) | set(SKIPPED), presets ^ (set(CASES) | set(SKIPPED))


@pytest.fixture(scope="module")
def tiny_video(tmp_path_factory):
    base = tmp_path_factory.mktemp("tiny_video_presets")
    return write_video_dataset(base / "squares"), save_tiny_tokenizer(base / "tok" / "last.ckpt")


def _launch(tmp, args):
    runs = tmp / "runs"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT / "tests"), str(ROOT)]),
           "OMP_NUM_THREADS": "1", "HYDRA_FULL_ERROR": "1"}
    given = {a.split("=")[0] for a in args}
    short = [o for o in SHORT if o.split("=")[0] not in given]      # a case may set its own
    proc = subprocess.run([sys.executable, "train.py", *args, "trainer=ddp_cpu",
                           *cpu_overrides(runs, tmp / "data"), *short],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-6000:]
    done = [json.loads(p.read_text()) for p in runs.glob("*/*/DONE")]
    assert len(done) == 1, list(runs.glob("*/*"))
    return done[0]


@pytest.mark.parametrize("name", sorted(CASES) + sorted(SKIPPED))
def test_preset_runs_under_ddp(name, tiny_video, tmp_path):
    if name in SKIPPED:
        pytest.skip(SKIPPED[name])
    done = _launch(tmp_path, [f"experiment={name}", *CASES[name](*tiny_video)])
    finite = [k for k, v in done.items() if isinstance(v, float) and math.isfinite(v)]
    assert any(k.startswith("val/") for k in finite), done


def test_rt1_tokenizer_with_the_gan_switching_on_under_ddp(tiny_video, tmp_path):
    """The discriminator trains from the second step: both phases under one DDP run."""
    done = _launch(tmp_path, ["experiment=rt1_tokenizer", *CASES["rt1_tokenizer"](*tiny_video),
                              "stage.max_steps=4", "stage.module.gan_start_step=1"])
    assert done.get("train/gan_active") == 1.0, done


def test_tokenizer_with_discriminator_refuses_plain_ddp():
    """``stage=tokenizer trainer=ddp`` (not a preset) fails at setup with the option to set,
    instead of at the second batch inside DDP's reducer."""
    from types import SimpleNamespace

    from lightning.pytorch.strategies import DDPStrategy

    from wm.stages.tokenizer import TokenizerModule
    from wm.vision.discriminator import PatchDiscriminator
    from wm.vision.fsq_vqgan import FrameTokenizer

    tok = FrameTokenizer(channels=(8, 8, 8), levels=(5, 3, 3), latent_dim=4, resolution=(16, 16))
    module = TokenizerModule(tokenizer=tok, discriminator=PatchDiscriminator(base_channels=8,
                                                                             n_layers=1),
                             optimizer=torch.optim.Adam, disc_optimizer=torch.optim.Adam)
    module._trainer = SimpleNamespace(strategy=DDPStrategy())
    with pytest.raises(ValueError, match="ddp_find_unused_parameters_true"):
        module.setup("fit")
    module._trainer = SimpleNamespace(strategy=DDPStrategy(find_unused_parameters=True))
    module.setup("fit")
