"""The GRPO stage under 2-process CPU data parallelism, launched exactly as a user would:
``python train.py stage=grpo ... trainer=ddp_cpu`` (Lightning re-runs the Hydra script for rank 1)
and ``trainer=fsdp2_cpu`` (ModelParallelStrategy + ``fully_shard`` in ``configure_model``).

What is checked: the run finishes and writes DONE with finite reduced metrics; the ranks draw
different prompts (the step-seeded stream is sharded by rank; each rank samples whole groups for
its own prompts, so groups never straddle ranks); every ``sync_dist`` metric is identical on both
ranks (reduced); and FSDP2 reproduces the DDP run step by step (same data, same seeds, same
maths: sharding changes where parameters live, not the update).
"""
import json
import math
import os
import subprocess
import sys

import pytest
import torch

from stage_fixtures import (
    ROOT, cpu_overrides, read_rows, recorder_override, save_tiny_tokenizer, tiny_video_overrides,
    write_video_dataset)

pytestmark = pytest.mark.slow

# logged with sync_dist=True in GRPOModule (the rest are rank-local by design)
REDUCED = ("grpo/reward/reward/mean", "grpo/reward/mae/mean", "grpo/metric/mse/mean",
           "grpo/kl", "grpo/policy_loss", "grpo/entropy", "grpo/grad_norm",
           "grpo/frac_reward_zero_std")


@pytest.fixture(scope="module")
def tiny_video(tmp_path_factory):
    base = tmp_path_factory.mktemp("tiny_video_dist")
    return write_video_dataset(base / "squares"), save_tiny_tokenizer(base / "tok" / "last.ckpt")


def _launch(tmp, tiny_video, trainer: str):
    root, tok = tiny_video
    runs = tmp / "runs"
    args = (["stage=grpo", f"trainer={trainer}"] + tiny_video_overrides(root, tok)
            + cpu_overrides(runs, tmp / "data") + recorder_override(tmp / "rows.jsonl")
            + ["stage.module.init_policy=null", "stage.module.group_size=4",
               "stage.module.micro_batch_size=8", "stage.module.log_images_every_n_steps=0",
               "stage.max_steps=3", "stage.checkpoint_every_n_steps=3",
               "stage.val_check_interval=3", "stage.limit_val_batches=1"])
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT / "tests"), str(ROOT)]),
           "OMP_NUM_THREADS": "1", "HYDRA_FULL_ERROR": "1"}
    proc = subprocess.run([sys.executable, "train.py", *args], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=400)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-6000:]
    run_dir = runs / "pusht" / "grpo"
    done = json.loads((run_dir / "DONE").read_text())
    rows = [read_rows(tmp / f"rows.jsonl.rank{r}") for r in (0, 1)]
    state = torch.load(run_dir / "checkpoints" / "last.ckpt", map_location="cpu",
                       weights_only=False)["state_dict"]
    return done, rows, state


@pytest.fixture(scope="module")
def ddp_run(tiny_video, tmp_path_factory):
    return _launch(tmp_path_factory.mktemp("ddp"), tiny_video, "ddp_cpu")


def _check_distributed_run(done, rows):
    for key in ("grpo/reward/reward/mean", "grpo/kl", "grpo/grad_norm", "val/reward"):
        assert key in done and math.isfinite(done[key]), key
    assert done["grpo/optimizer_steps"] == 1.0
    r0, r1 = rows
    assert [r["step"] for r in r0] == [r["step"] for r in r1] == [1, 2, 3]
    assert all(a["batch"] != b["batch"] for a, b in zip(r0, r1)), "both ranks got the same clips"
    for a, b in zip(r0, r1):
        for key in REDUCED:
            assert a["metrics"][key] == b["metrics"][key], (a["step"], key)
    assert done["grpo/reward/reward/mean"] == r0[-1]["metrics"]["grpo/reward/reward/mean"]
    assert r0[-1]["metrics"]["grpo/kl"] > 0                      # the policy was updated


def test_grpo_ddp_cpu_with_hydra(ddp_run):
    done, rows, _ = ddp_run
    _check_distributed_run(done, rows)


def test_grpo_fsdp2_cpu_matches_ddp(ddp_run, tiny_video, tmp_path):
    done, rows, state = _launch(tmp_path, tiny_video, "fsdp2_cpu")
    _check_distributed_run(done, rows)
    ddp_done, ddp_rows, ddp_state = ddp_run
    for fs, dd in zip(rows[0], ddp_rows[0]):
        assert fs["batch"] == dd["batch"]
        for key in REDUCED:
            assert math.isclose(fs["metrics"][key], dd["metrics"][key], rel_tol=1e-4,
                                abs_tol=1e-7), (fs["step"], key)
    policy = [k for k in ddp_state if k.startswith("policy.")]
    assert policy and set(policy) <= set(state)               # a full (gathered) state dict
    for k in policy:
        assert not hasattr(state[k], "placements"), f"{k} saved as a DTensor shard"
        torch.testing.assert_close(state[k], ddp_state[k], rtol=1e-4, atol=1e-6, msg=k)


def test_text_grpo_under_fsdp2_does_not_hang(tmp_path):
    """Text rollouts stop at EOS after a rank-dependent number of steps while every FSDP forward
    is collective: the sampler keeps stepping until all ranks are done (no deadlock)."""
    runs = tmp_path / "runs"
    args = (["stage=grpo", "data=toy_text", "trainer=fsdp2_cpu"] + cpu_overrides(runs, tmp_path)
            + ["stage.module.init_policy=null", "stage.module.group_size=4",
               "stage.batch_size=2", "stage.module.micro_batch_size=8",
               "data.task.max_response_tokens=24", "stage.max_steps=2",
               "stage.checkpoint_every_n_steps=2", "stage.val_check_interval=2",
               "stage.limit_val_batches=1", "stage.module.log_images_every_n_steps=0"])
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    proc = subprocess.run([sys.executable, "train.py", *args], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-6000:]
    done = json.loads((runs / "toy_text" / "grpo" / "DONE").read_text())
    assert math.isfinite(done["grpo/reward/reward/mean"]) and done["grpo/optimizer_steps"] == 1.0
