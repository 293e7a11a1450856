"""Open-loop rollouts (wm.evaluation.open_loop) with a tiny tokenizer and a tiny random LLaMA."""
from __future__ import annotations

import pytest
import torch

from stage_fixtures import (RES, save_tiny_tokenizer, tiny_llama_factory,
                            write_video_dataset)
from wm.data.video import VideoDataModule
from wm.evaluation.open_loop import open_loop_rollout
from wm.rewards.video import VideoReward
from wm.rollout.sampler import Sampler
from wm.tasks.video import VideoTask


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    """(make_task, datamodule, episode frames (T,3,H,W), episode actions (T,A))."""
    tmp = tmp_path_factory.mktemp("open_loop")
    root = write_video_dataset(tmp / "data", episodes=4, length=10)
    ckpt = save_tiny_tokenizer(tmp / "tok.ckpt")

    def make_task(layout="single_step", context=2, future=1, cache_tokens=False):
        dm = VideoDataModule(str(root), context, future, resolution=(RES, RES), val_every=0)
        task = VideoTask(str(ckpt), layout=layout, context_frames=context, future_frames=future,
                         reward=VideoReward(weights={"mae": 1.0}), cache_tokens=cache_tokens)
        task.connect(dm)
        policy = task.build_policy(tiny_llama_factory(seed=0))
        return task, policy

    dm = VideoDataModule(str(root), 2, 1, resolution=(RES, RES), val_every=0)
    frames = torch.from_numpy(dm.store.frames(1).copy()).permute(0, 3, 1, 2).float() / 255
    actions = torch.from_numpy(dm.store.actions(1).copy())
    return make_task, frames, actions                         # (10, 3, 16, 16), (10, 2)


def _gen(seed):
    return torch.Generator().manual_seed(seed)


def test_shape_range_and_horizon(world):
    make_task, frames, actions = world
    task, policy = make_task()
    for horizon in (1, 5):
        out = open_loop_rollout(task, policy, frames, actions, horizon, _gen(0))
        assert out.shape == (horizon, 3, RES, RES)
        assert out.dtype == torch.float32 and 0 <= out.min() and out.max() <= 1


def test_deterministic_under_a_seed(world):
    make_task, frames, actions = world
    task, policy = make_task()
    a = open_loop_rollout(task, policy, frames, actions, 4, _gen(3))
    b = open_loop_rollout(task, policy, frames, actions, 4, _gen(3))
    c = open_loop_rollout(task, policy, frames, actions, 4, _gen(4))
    torch.testing.assert_close(a, b, rtol=0, atol=0)
    assert not torch.equal(a, c), "a different seed should sample different frames"


def test_first_step_is_the_tasks_own_one_step_prediction(world):
    """Step 0 equals sampling the task's prompt of the ground-truth clip with the same seed."""
    make_task, frames, actions = world
    task, policy = make_task()
    batch = {"frames": frames[None, :3], "actions": actions[None, :3],
             "episode": torch.tensor([1]), "start": torch.tensor([0])}
    p = task.prompts(batch)
    rollout = Sampler().sample(policy, p.ids, p.mask, p.plan, group_size=1, generator=_gen(7))
    expected = task.decode(rollout.tokens, batch, 1)["frames"][0, 0]      # (3, H, W)
    out = open_loop_rollout(task, policy, frames, actions, 1, _gen(7))
    torch.testing.assert_close(out[0], expected, rtol=0, atol=0)


def test_predictions_become_context_and_future_truth_is_unused(world):
    make_task, frames, actions = world
    task, policy = make_task()
    seen = []
    prompts = task.prompts

    def spy(batch):
        seen.append((batch["frames"][0].clone(), batch["actions"][0].clone()))
        return prompts(batch)

    task.prompts = spy
    out = open_loop_rollout(task, policy, frames, actions, 3, _gen(1))
    del task.prompts
    assert len(seen) == 3
    ctx0, act0 = seen[0]
    torch.testing.assert_close(ctx0[:2], frames[:2])                      # ground-truth context
    torch.testing.assert_close(act0[:2], actions[:2])
    ctx1, act1 = seen[1]
    torch.testing.assert_close(ctx1[0], frames[1])                        # context slides by one
    torch.testing.assert_close(ctx1[1], out[0])                           # the prediction fed back
    torch.testing.assert_close(act1[:2], actions[1:3])                    # ground-truth actions
    ctx2, _ = seen[2]
    torch.testing.assert_close(ctx2, torch.stack([out[0], out[1], out[1]]))
    # frames after the context are never read: replacing them changes nothing
    noisy = frames.clone()
    noisy[2:] = torch.rand_like(noisy[2:])
    again = open_loop_rollout(task, policy, noisy, actions, 3, _gen(1))
    torch.testing.assert_close(out, again, rtol=0, atol=0)


def test_token_cache_is_bypassed_and_restored(world):
    make_task, frames, actions = world
    task, policy = make_task(cache_tokens=True)
    policy.train()
    open_loop_rollout(task, policy, frames, actions, 2, _gen(0))
    assert task.cache_tokens is True and len(task._frame_tokens) == 0
    assert policy.training, "the policy's train/eval mode must be restored"


def test_multi_step_layout_advances_by_future_frames(world):
    make_task, frames, actions = world
    task, policy = make_task(layout="multi_step", context=1, future=2)
    out = open_loop_rollout(task, policy, frames, actions, 3, _gen(0))   # 2 calls, 4 -> 3 frames
    assert out.shape == (3, 3, RES, RES)
    with pytest.raises(ValueError, match="need actions"):
        open_loop_rollout(task, policy, frames, actions[:3], 3, _gen(0))  # needs 1 + 2*2 - 1 = 4


def test_bad_inputs_name_the_problem(world):
    make_task, frames, actions = world
    task, policy = make_task()
    with pytest.raises(ValueError, match="horizon"):
        open_loop_rollout(task, policy, frames, actions, 0, _gen(0))
    with pytest.raises(ValueError, match="need actions"):
        open_loop_rollout(task, policy, frames, actions[:4], 5, _gen(0))  # needs 2 + 5 - 1 = 6
    with pytest.raises(ValueError, match="context"):
        open_loop_rollout(task, policy, frames[:1], actions, 2, _gen(0))
