"""PushT policy evaluation and MPC (wm.planning.pusht_*, wm.planning.policy_eval,
bench/bench_planning.py) on tiny inputs: a policy family whose quality really differs in the
simulator, rank statistics, the MPC's planner state, the benchmark's core functions with a tiny
random world model at 16x16, and the script end to end against checkpoints trained for 2 steps.
"""
from __future__ import annotations

import numpy as np
import pytest
import torch

from stage_fixtures import compose_train, cpu_overrides, save_tiny_tokenizer, tiny_llama_factory
from wm.planning.policy_eval import ranks, spearman
from wm.planning.pusht_mpc import FrameMPC
from wm.planning.pusht_policies import PushTSim, make_policy, start_states
from wm.planning.pusht_world import PushTWorldModel


def test_policy_family_differs_in_the_simulator():
    """The goal-pushing script beats its noisy copy, which beats random actions (which knock
    the block off the goal): a family worth ranking."""
    sim = PushTSim(32, 5)
    starts = start_states(6, seed=0, spread=60)
    final = {p: np.mean([sim.run_episode(s, 12, policy=make_policy(p, np.random.default_rng(i)))
                         .coverage[-1] for i, s in enumerate(starts)])
             for p in ("pusher", "pusher_noise100", "random")}
    sim.close()
    assert final["pusher"] > final["pusher_noise100"] + 0.05 > final["random"] + 0.05, final


def test_episode_recording_layout():
    sim = PushTSim(16, 5)
    ep = sim.run_episode(start_states(1)[0], 3, policy=make_policy("pusher_noise20",
                                                                   np.random.default_rng(0)))
    assert ep.frames.shape == (4, 16, 16, 3) and ep.frames.dtype == np.uint8
    assert ep.actions.shape == (3, 10) and ep.coverage.shape == (4,) and ep.agent.shape == (4, 2)
    with pytest.raises(ValueError, match="exactly one"):
        sim.run_episode(start_states(1)[0], 1)
    with pytest.raises(ValueError, match="pusher_noise<px>"):
        make_policy("pushr", np.random.default_rng(0))
    sim.close()


def test_spearman_and_ranks():
    np.testing.assert_allclose(ranks([3.0, 1.0, 3.0, 2.0]), [3.5, 1.0, 3.5, 2.0])
    assert spearman([1, 2, 3, 4], [10, 20, 30, 40]) == pytest.approx(1.0)
    assert spearman([1, 2, 3, 4], [4, 3, 2, 1]) == pytest.approx(-1.0)
    assert spearman([1, 2, 3], [5, 5, 5]) != spearman([1, 2, 3], [5, 5, 5])      # NaN: constant
    assert spearman([1, 2, 3, 4, 5], [1, 3, 2, 5, 4]) == pytest.approx(0.8)     # 1 - 6*4/120


@pytest.fixture(scope="module")
def tiny_world(tmp_path_factory):
    """A PushTWorldModel at 16x16 (frame_skip 5): random tiny tokenizer and LLaMA, action bins
    from 2 simulated episodes."""
    from wm.data.sources.pusht_sim import PushTSimSource
    from wm.data.video import VideoDataModule
    from wm.rewards.video import VideoReward
    from wm.tasks.video import VideoTask

    tmp = tmp_path_factory.mktemp("pusht_planning")
    root = PushTSimSource(num_episodes=2, episode_length=4, image_size=16, frame_skip=5).write(
        tmp / "data")
    dm = VideoDataModule(str(root), 2, 1, resolution=(16, 16), val_every=0)
    task = VideoTask(str(save_tiny_tokenizer(tmp / "tok.ckpt")), context_frames=2,
                     future_frames=1, reward=VideoReward(weights={"mae": 1.0}))
    task.connect(dm)
    return PushTWorldModel("tiny", task, task.build_policy(tiny_llama_factory(seed=0)), 5, 16)


def test_mpc_state_pads_the_first_decision(tiny_world):
    mpc = FrameMPC(tiny_world, horizon=2, candidates=4, iterations=1)
    frame = np.zeros((16, 16, 3), np.uint8)
    st = mpc.state([frame], [], np.array([100.0, 200.0]))
    assert st["context"].shape == (2, 3, 16, 16) and st["past"].shape == (1, 10)
    np.testing.assert_allclose(st["past"][0].numpy(), [100.0, 200.0] * 5)   # hold position
    st = mpc.state([frame] * 3, [np.arange(10.0)] * 2, np.array([1.0, 2.0]))
    np.testing.assert_allclose(st["past"][0].numpy(), np.arange(10.0))      # last action taken
    np.testing.assert_allclose(mpc.expand(np.array([[1.0, 2.0]])), [[1.0, 2.0] * 5])
    chunk = mpc([frame], [], np.array([100.0, 200.0]))
    assert chunk.shape == (5, 2) and np.all(chunk == chunk[0])
    assert mpc.imagined[0].shape == (2, 3, 16, 16)


def test_bench_core_functions_on_a_tiny_world(tiny_world):
    from bench.bench_planning import mpc_comparison, policy_evaluation

    sim = PushTSim(16, 5)
    starts = start_states(2, seed=0)
    worlds = {"MLE": tiny_world, "RLVR": tiny_world}
    rows, summary, episodes, _ = policy_evaluation(worlds, sim, starts, ["pusher", "random"],
                                                   steps=3, samples=2, seed=0)
    assert [r["policy"] for r in rows] == ["pusher", "random"]
    for r, p in zip(rows, ["pusher", "random"]):
        assert r["true success"] == pytest.approx(np.mean([e.coverage[-1] for e in episodes[p]]))
        assert 0 <= r["MLE predicted"] <= 1 and r["MLE predicted"] == r["RLVR predicted"]
        assert 0 < r["MLE frame MAE"] < 1
    assert [s["success from"] for s in summary] == [
        "colour rule on true frames", "colour rule on tokenizer reconstructions", "MLE", "RLVR"]
    mpc = mpc_comparison({"MLE": tiny_world}, sim, starts[:1], 2, {"pusher": episodes["pusher"]},
                         horizon=1, candidates=4, iterations=2, seed=0)
    sim.close()
    assert [r["controller"] for r in mpc] == ["MPC, MLE world model", "pusher"]
    assert 0 <= mpc[0]["success (final coverage)"] <= 1 and mpc[0]["seconds per episode"] > 0


def test_bench_names_the_command_when_checkpoints_are_missing(tmp_path):
    from bench.bench_planning import main

    with pytest.raises(SystemExit, match="python train.py") as err:
        main(["--runs-dir", str(tmp_path), "--no-report"])
    assert str(tmp_path / "pusht" / "tokenizer") in str(err.value)
    with pytest.raises(SystemExit, match="--models"):
        main(["--runs-dir", str(tmp_path), "--models", "PPO", "--no-report"])


@pytest.mark.slow
def test_bench_script_end_to_end_on_two_step_checkpoints(tmp_path):
    """``python train.py stage=tokenizer`` and ``stage=mle`` for 2 steps on 4 short episodes, then
    the benchmark's main() on them (MLE only: no GRPO run)."""
    from bench.bench_planning import main
    from wm.cli.fit import fit_stage

    tiny = ["stage.max_steps=2", "stage.val_check_interval=2", "stage.limit_val_batches=0",
            "data.source.num_episodes=4", "data.source.episode_length=8"]
    for stage in ("tokenizer", "mle"):
        fit_stage(compose_train([f"stage={stage}", *cpu_overrides(tmp_path / "runs",
                                                                  tmp_path / "data"), *tiny]))
    torch.set_num_threads(1)
    body = main(["--runs-dir", str(tmp_path / "runs"), "--models", "MLE", "--episodes", "2",
                 "--steps", "3", "--policies", "pusher,random", "--mpc-episodes", "1",
                 "--horizon", "1", "--candidates", "4", "--iterations", "1", "--no-report"])
    assert "| pusher | 2 |" in body and "| random | 2 |" in body
    assert "| MPC, MLE world model | 1 |" in body and "OPEN LOOP" in body
