"""Open-loop rollouts (wm.evaluation.open_loop) with a tiny tokenizer and a tiny random LLaMA."""
from __future__ import annotations

import pytest
import torch

from stage_fixtures import (RES, save_tiny_tokenizer, tiny_llama_factory,
                            write_video_dataset)
from wm.data.episodes import EpisodeStore
from wm.data.video import VideoDataModule
from wm.evaluation.open_loop import open_loop_rollout
from wm.rewards.video import VideoReward
from wm.rollout.sampler import Sampler
from wm.tasks.video import VideoTask


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    """(make_task(layout, context, future, cache_tokens) -> (task, random tiny policy),
    episode 1's frames (10, 3, 16, 16) in [0, 1], its actions (10, 2))."""
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

    store = EpisodeStore(root)
    frames = torch.from_numpy(store.frames(1).copy()).permute(0, 3, 1, 2).float() / 255
    actions = torch.from_numpy(store.actions(1).copy())
    return make_task, frames, actions


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


def test_sampled_tokens_become_context_and_future_truth_is_unused(world, monkeypatch):
    make_task, frames, actions = world
    task, policy = make_task()
    calls = []
    sample = Sampler.sample

    def spy(self, model, ids, mask, plan, **kw):
        rollout = sample(self, model, ids, mask, plan, **kw)
        calls.append((ids[0].clone(), rollout.tokens[0].clone()))
        return rollout

    monkeypatch.setattr(Sampler, "sample", spy)
    out = open_loop_rollout(task, policy, frames, actions, 3, _gen(1))
    monkeypatch.undo()
    assert len(calls) == 3
    N, A = task.layout.N, task.layout.A                                   # 16 tokens, 2 actions
    frame_slot = lambda prompt, k: prompt[k * (N + A) : k * (N + A) + N]  # noqa: E731
    act_slot = lambda prompt, k: prompt[k * (N + A) + N : (k + 1) * (N + A)]  # noqa: E731
    bins = task.vocab.action_ids(task.actions.encode(actions))            # (T, A) ids
    for t in (1, 2):
        prompt, prev_prompt, prev_response = calls[t][0], calls[t - 1][0], calls[t - 1][1]
        assert torch.equal(frame_slot(prompt, 0), frame_slot(prev_prompt, 1))  # context slides
        assert torch.equal(frame_slot(prompt, 1), prev_response[:N])      # prediction fed back
        assert torch.equal(act_slot(prompt, 0), bins[t])                  # ground-truth actions
        assert torch.equal(act_slot(prompt, 1), bins[t + 1])
    # the returned frames are the decoded sampled tokens
    h, w = task.tokenizer.grid_hw
    codes = torch.stack([task.vocab.future_codes_of(r[:N]) for _, r in calls])  # (3, N)
    torch.testing.assert_close(out, task.tokenizer.decode(codes.view(3, h, w)).clamp(0, 1))
    # frames after the context are never read: replacing them changes nothing
    noisy = frames.clone()
    noisy[2:] = torch.rand_like(noisy[2:])
    again = open_loop_rollout(task, policy, noisy, actions, 3, _gen(1))
    torch.testing.assert_close(out, again, rtol=0, atol=0)


def test_token_cache_untouched_and_policy_mode_restored(world):
    make_task, frames, actions = world
    task, policy = make_task(cache_tokens=True)
    policy.train()
    open_loop_rollout(task, policy, frames, actions, 2, _gen(0))
    assert len(task._frame_tokens) == 0, "predicted frames must not enter the episode token cache"
    assert policy.training, "the policy's train/eval mode must be restored"


def test_multi_step_layout_is_refused(world):
    make_task, frames, actions = world
    task, policy = make_task(layout="multi_step", context=1, future=2)
    with pytest.raises(ValueError, match="single_step"):
        open_loop_rollout(task, policy, frames, actions, 3, _gen(0))


def test_bad_inputs_name_the_problem(world):
    make_task, frames, actions = world
    task, policy = make_task()
    with pytest.raises(ValueError, match="horizon"):
        open_loop_rollout(task, policy, frames, actions, 0, _gen(0))
    with pytest.raises(ValueError, match="need actions"):
        open_loop_rollout(task, policy, frames, actions[:4], 5, _gen(0))  # needs 2 + 5 - 1 = 6
    with pytest.raises(ValueError, match="context"):
        open_loop_rollout(task, policy, frames[:1], actions, 2, _gen(0))


def test_repeat_metrics_separate_copies_that_are_errors(world):
    """repeat: any predicted frame equals its predecessor; repeat_truth: the same on the truth;
    repeat_spurious: a predicted repeat where the truth moved."""
    make_task, _, _ = world
    task, _ = make_task()
    prev = torch.tensor([[1, 1], [2, 2], [3, 3]])                        # (N=3, tokens=2)
    tokens = torch.tensor([[[1, 1], [5, 5]],    # repeats at t=0, where the truth repeats too
                           [[4, 4], [4, 4]],    # repeats at t=1, where the truth moved
                           [[6, 6], [7, 7]]])   # never repeats (the truth does, at t=0)
    true = torch.tensor([[[1, 1], [8, 8]],
                         [[4, 4], [9, 9]],
                         [[3, 3], [7, 7]]])
    frames = torch.rand(3, 2, 3, RES, RES)
    preds = {"frames": frames, "target": frames.clone(), "tokens": tokens, "prev_tokens": prev,
             "true_tokens": true}
    out = task.metrics(preds, batch=None, group_size=1)
    assert out["repeat"].tolist() == [1.0, 1.0, 0.0]
    assert out["repeat_truth"].tolist() == [1.0, 0.0, 1.0]
    assert out["repeat_spurious"].tolist() == [0.0, 1.0, 0.0]
    assert out["mae"].tolist() == [0.0, 0.0, 0.0]
    assert task.higher_is_better["repeat_spurious"] is False
