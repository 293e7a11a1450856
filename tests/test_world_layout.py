"""Sequence layouts checked token by token on tiny hand-written examples."""
import pytest
import torch

from wm.world.layout import MultiStepLayout, SingleStepLayout
from wm.world.vocab import VocabLayout

SHARED = VocabLayout(10, 10, shared_codebook=True, action_bins=4)  # visual 0-9, act 10-13, BOS 14, EOS 15
SPLIT = VocabLayout(10, 6, shared_codebook=False, action_bins=4)  # ctx 0-9, fut 10-15, act 16-19, BOS 20, EOS 21


def test_single_step_token_by_token():
    lay = SingleStepLayout(k_context=2, tokens_per_frame=3, action_dim=2, vocab=SHARED)
    ctx = torch.tensor([[[1, 2, 3], [4, 5, 6]]])
    act = SHARED.action_ids(torch.tensor([[[0, 1], [2, 3]]]))
    out = lay.build(ctx, act, torch.tensor([[[7, 8, 9]]]))
    assert out["prompt"].tolist() == [[1, 2, 3, 10, 11, 4, 5, 6, 12, 13, 14]]
    assert out["response"].tolist() == [[7, 8, 9, 15]]
    assert out["loss_mask"].tolist() == [[True, True, True, True]]
    plan = out["plan"]
    assert plan.forced.tolist() == [-1, -1, -1, 15]
    assert plan.ranges.tolist() == [[0, 10]] * 4
    assert (lay.prompt_length, lay.response_length) == (11, 4)
    assert lay.split_response(out["response"]).tolist() == [[[7, 8, 9]]]


def test_single_step_reference_sizes():
    lay = SingleStepLayout(4, 320, 13, VocabLayout(4375, 4375, True))
    assert (lay.prompt_length, lay.response_length) == (1333, 321)


def test_multi_step_default_token_by_token():
    lay = MultiStepLayout(1, 4, 3, 2, 2, vocab=SPLIT)
    assert lay.num_actions == 3
    ctx = torch.tensor([[[0, 1, 2, 3]]])
    act = torch.tensor([[[16, 17], [18, 19], [17, 16]]])
    tgt = torch.tensor([[[10, 11], [12, 13], [14, 15]]])
    out = lay.build(ctx, act, tgt)
    assert out["prompt"].tolist() == [[0, 1, 2, 3, 16, 17]]
    assert out["response"].tolist() == [[10, 11, 18, 19, 12, 13, 17, 16, 14, 15]]
    assert out["loss_mask"].int().tolist() == [[1, 1, 0, 0, 1, 1, 0, 0, 1, 1]]
    assert out["plan"].forced.tolist() == [[-1, -1, 18, 19, -1, -1, 17, 16, -1, -1]]
    assert out["plan"].ranges[0].tolist() == [10, 16]
    assert (lay.prompt_length, lay.response_length) == (6, 10)
    assert lay.split_response(out["response"]).tolist() == tgt.tolist()
    # the loss mask covers exactly the predicted frame tokens
    frame_pos = sorted(i for s in lay.frame_slices() for i in range(s.start, s.stop))
    assert torch.nonzero(out["loss_mask"][0]).flatten().tolist() == frame_pos


def test_multi_step_reference_variant_token_by_token():
    lay = MultiStepLayout(1, 4, 3, 2, 2, vocab=SPLIT, n_prompt_future=1, final_action=True, eos=True)
    ctx = torch.tensor([[[0, 1, 2, 3]]])
    act = torch.tensor([[[16, 17], [18, 19], [17, 16], [19, 19]]])
    tgt = torch.tensor([[[10, 11], [12, 13], [14, 15]]])
    out = lay.build(ctx, act, tgt, prompt_future_ids=torch.tensor([[[15, 14]]]))
    assert out["prompt"].tolist() == [[0, 1, 2, 3, 15, 14, 16, 17]]
    assert out["response"].tolist() == [[10, 11, 18, 19, 12, 13, 17, 16, 14, 15, 19, 19, 21]]
    assert out["loss_mask"].int().tolist() == [[1, 1, 0, 0, 1, 1, 0, 0, 1, 1, 0, 0, 1]]
    assert out["plan"].forced.tolist() == [[-1, -1, 18, 19, -1, -1, 17, 16, -1, -1, 19, 19, 21]]
    ref = MultiStepLayout(1, 1280, 7, 80, 13, VocabLayout(4375, 4375, False), n_prompt_future=1, final_action=True)
    assert (ref.prompt_length, ref.response_length) == (1373, 7 * 93)


def test_rollout_plan_has_per_row_actions():
    lay = MultiStepLayout(1, 4, 2, 2, 2, vocab=SPLIT)
    act = torch.tensor([[[16, 16], [17, 18]], [[19, 19], [18, 17]]])
    out = lay.build(torch.zeros(2, 1, 4, dtype=torch.long), act)
    assert out["response"] is None and out["loss_mask"] is None
    assert out["plan"].forced.tolist() == [[-1, -1, 17, 18, -1, -1], [-1, -1, 18, 17, -1, -1]]


def test_layouts_reject_unmapped_or_misshaped_ids():
    lay = MultiStepLayout(1, 4, 3, 2, 2, vocab=SPLIT)
    ctx = torch.zeros(1, 1, 4, dtype=torch.long)
    with pytest.raises(ValueError, match="action_ids must be vocabulary ids"):
        lay.build(ctx, torch.zeros(1, 3, 2, dtype=torch.long))  # raw bins, not ids
    with pytest.raises(ValueError, match=r"action_ids must have shape \(1, 3, 2\)"):
        lay.build(ctx, torch.full((1, 2, 2), 16))
    with pytest.raises(ValueError, match="target_ids"):
        lay.build(ctx, torch.full((1, 3, 2), 16), torch.zeros(1, 3, 2, dtype=torch.long))  # context ids
    with pytest.raises(ValueError, match="prompt_future_ids"):
        MultiStepLayout(1, 4, 3, 2, 2, SPLIT, n_prompt_future=1).build(ctx, torch.full((1, 3, 2), 16))
    with pytest.raises(ValueError, match="split_response expects"):
        lay.split_response(torch.zeros(1, 5, dtype=torch.long))
    with pytest.raises(ValueError, match="k_context"):
        SingleStepLayout(0, 3, 2, SHARED)
