"""Repeated frames (wm.rewards.repetition)."""
import pytest
import torch

from wm.rewards.repetition import repetition_mask, repetition_rate


def test_repetition_mask_and_rate():
    tokens = torch.tensor([
        [[1, 2], [1, 2], [3, 4]],   # frame 1 repeats frame 0
        [[5, 6], [5, 7], [5, 6]],   # no repeat (frame 2 equals frame 0, not its predecessor)
        [[9, 9], [8, 8], [8, 8]],   # frame 2 repeats; frame 0 equals prev
    ])
    mask = repetition_mask(tokens)
    assert mask.tolist() == [[False, True, False], [False, False, False], [False, False, True]]
    prev = torch.tensor([[0, 0], [0, 0], [9, 9]])
    assert repetition_mask(tokens, prev)[:, 0].tolist() == [False, False, True]
    assert repetition_rate(mask) == pytest.approx(2 / 3)  # rows with any repeat, not frames
    with pytest.raises(ValueError, match=r"\(B, N\)"):
        repetition_mask(tokens, prev[:, :1])
