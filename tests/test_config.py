"""The Hydra config tree: every stage x data combination composes and its DataModule builds."""
import subprocess
import sys
from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir
from hydra.errors import ConfigCompositionException, MissingConfigException
from hydra.utils import instantiate

CONF = Path(__file__).resolve().parents[1] / "conf"
STAGES = ["tokenizer", "mle", "grpo", "pipeline"]
VIDEO_DATA = ["pusht", "pusht_demos", "rt1", "rope", "granular"]


def _compose(overrides, name="train"):
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        return compose(config_name=name, overrides=overrides)


@pytest.mark.parametrize("data", VIDEO_DATA)
@pytest.mark.parametrize("stage", STAGES)
def test_every_stage_and_video_dataset_composes(stage, data):
    cfg = _compose([f"stage={stage}", f"data={data}"])
    assert cfg.stage.name == stage and cfg.data.name == data
    assert cfg.run_dir.endswith(f"{data}/{stage}")
    dm = instantiate(cfg.data.datamodule, _convert_="all")
    from wm.data.video import VideoDataModule

    assert isinstance(dm, VideoDataModule)
    assert tuple(dm.resolution) == tuple(cfg.data.resolution)
    assert dm.context_frames == cfg.data.context_frames


def test_paper_presets_follow_the_dataset():
    cfg = _compose(["stage=grpo", "data=rt1"])
    assert cfg.vision.name == "frame_paper" and cfg.model.name == "world_paper"
    assert list(cfg.data.resolution) == [256, 320]
    assert dict(cfg.data.task.reward.weights) == {"mae": 1.0, "lpips": 1.0}
    assert cfg.stage.module.group_size == 16 and cfg.stage.module.loss.kl_coef == 0.001
    # a command-line choice still wins over the dataset's preset
    assert _compose(["stage=grpo", "data=rt1", "model=world_tiny"]).model.name == "world_tiny"


def test_default_is_the_cpu_pusht_pipeline():
    cfg = _compose([])
    assert cfg.stage.name == "pipeline" and cfg.data.name == "pusht"
    # the paper's reward form with the perceptual network that runs offline (ST-LPIPS, AlexNet)
    assert dict(cfg.data.task.reward.weights) == {"mae": 1.0, "lpips": 1.0}
    assert cfg.data.task.perceptual.backend == "stlpips" and cfg.data.task.perceptual.net == "alex"
    assert cfg.vision.perceptual.backend == "stlpips" and cfg.vision.perceptual_weight == 1.0
    assert cfg.vision.tokenizer.norm == "channel" and cfg.vision.name == "frame_64_quickstart"
    assert list(cfg.vision.tokenizer.levels) == [4, 4, 4] and cfg.data.task.decoding == "delta"
    # ... for the PushT quickstart only: other 64x64 data keep the paper's tokenizer recipe
    rope = _compose(["data=rope"]).vision
    assert rope.name == "frame_64" and rope.tokenizer.get("norm", "group") == "group"
    assert list(rope.tokenizer.levels) == [7, 5, 5, 5, 5]
    assert rope.perceptual.backend == "none" and rope.perceptual_weight == 0.0


def test_mistyped_key_fails_loudly():
    with pytest.raises(ConfigCompositionException, match="lrr"):
        _compose(["stage=mle", "stage.module.optimizer.lrr=1"])


def test_unknown_dataset_name_names_the_group():
    with pytest.raises(MissingConfigException, match="data/nope"):
        _compose(["data=nope"])


def test_eval_config_composes():
    cfg = _compose(["ckpt=x.ckpt", "data=pusht"], name="eval")
    assert cfg.ckpt == "x.ckpt" and cfg.num_samples == 1


def test_help_is_fast_and_lists_groups():
    out = subprocess.run([sys.executable, "train.py", "--help"], cwd=CONF.parent,
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    for group in ("stage:", "data:", "model:", "trainer:"):
        assert group in out.stdout
    probe = subprocess.run([sys.executable, "-X", "importtime", "train.py", "--help"],
                           cwd=CONF.parent, capture_output=True, text=True, timeout=60)
    assert "lightning" not in probe.stderr and "torch" not in probe.stderr.split("hydra")[0]


TEXT_DATA = ["bytesized32", "webarena", "toy_text"]
EXPERIMENTS = sorted(p.stem for p in (CONF / "experiment").glob("*.yaml"))


@pytest.mark.parametrize("data", TEXT_DATA)
@pytest.mark.parametrize("stage", ["mle", "grpo"])
def test_text_datasets_compose_with_language_models(stage, data):
    cfg = _compose([f"stage={stage}", f"data={data}"])
    assert cfg.model.name.startswith("lm_")
    if stage == "grpo":
        assert cfg.stage.module.group_size == cfg.data.grpo_group_size
    from wm.data.text import TextStateDataModule

    assert isinstance(instantiate(cfg.data.datamodule, _convert_="all"), TextStateDataModule)


@pytest.mark.parametrize("experiment", EXPERIMENTS)
def test_every_experiment_composes(experiment):
    cfg = _compose([f"experiment={experiment}"])
    assert cfg.stage.name in ("tokenizer", "mle", "grpo", "pipeline")
    assert cfg.trainer.max_steps == cfg.stage.max_steps


def test_experiment_values_win_over_the_entry_config():
    cfg = _compose(["experiment=pusht_multistep", "stage=grpo"])
    assert cfg.run_name == "pusht_multistep" and cfg.run_dir.endswith("pusht_multistep/grpo")
    assert "/pusht_multistep/tokenizer/" in cfg.data.task.tokenizer_ckpt
    assert "/pusht_multistep/mle/" in cfg.stage.module.init_policy
    assert cfg.data.task.layout == "multi_step" and cfg.vision.name == "compressive_64"
    # the PushT default's delta decoding needs a per-frame tokenizer: the compressive one decodes
    assert cfg.data.task.decoding == "tokens" and _compose([]).data.task.decoding == "delta"
    assert _compose(["experiment=pusht_multistep", "run_name=other"]).run_name == "other"


@pytest.mark.parametrize("experiment", EXPERIMENTS)
def test_eval_takes_the_experiment_a_checkpoint_was_trained_with(experiment):
    train = _compose([f"experiment={experiment}"])
    cfg = _compose(["ckpt=x.ckpt", f"experiment={experiment}"], name="eval")
    assert cfg.data.name == train.data.name and cfg.vision.name == train.vision.name
    assert cfg.data.get("context_frames") == train.data.get("context_frames")
    assert cfg.num_samples == 1 and cfg.horizon == 1          # eval's own settings are kept


def test_eval_of_the_multistep_experiment_uses_its_layout():
    cfg = _compose(["ckpt=x.ckpt", "experiment=pusht_multistep"], name="eval")
    assert cfg.data.task.layout == "multi_step" and cfg.data.future_frames == 4
    assert "/pusht_multistep/tokenizer/" in cfg.data.task.tokenizer_ckpt
