"""Repetition, best-of-N and tables (wm.evaluation.video_metrics)."""
import pytest
import torch

from wm.evaluation.video_metrics import (best_of_n, markdown_table, paper_units, repetition_mask,
                                         repetition_rate, summarize)


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


def test_best_of_n_flat_and_2d():
    flat = torch.tensor([0.3, 0.1, 0.2, 0.9, 0.5, 0.7])  # 2 clips x 3 samples
    torch.testing.assert_close(best_of_n(flat, 3, higher_is_better=False), torch.tensor([0.1, 0.5]))
    torch.testing.assert_close(best_of_n(flat.reshape(2, 3), 3, True), torch.tensor([0.3, 0.9]))
    with pytest.raises(ValueError, match="multiple"):
        best_of_n(flat, 4, True)


def test_summarize_and_paper_units():
    s = summarize({"mse": torch.tensor([[1.0, 2.0], [3.0, 6.0]]), "val/ssim": torch.tensor([0.5]),
                   "lpips": torch.tensor([[0.25]])})
    assert s == pytest.approx({"mse": 3.0, "val/ssim": 0.5, "lpips": 0.25})
    assert paper_units(s) == pytest.approx({"mse": 3.0, "val/ssim": 50.0, "lpips": 25.0})


def test_markdown_table():
    table = markdown_table({"base": {"mse": 1.0, "ssim": 80.123}, "rlvr": {"mse": 0.5}})
    assert table.splitlines() == [
        "| model | mse | ssim |",
        "|---|---:|---:|",
        "| base | 1.00 | 80.12 |",
        "| rlvr | 0.50 | – |",
    ]
