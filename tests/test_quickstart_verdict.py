"""The quickstart benchmark's reading of its tables (bench/_quickstart_verdict.py): whether RLVR
clears the copy-last-frame bar on each metric, in the right direction, and the frontier file."""
from __future__ import annotations

import json

from bench._quickstart_verdict import (COPY, FLOOR, MLE, RLVR, best_under, clears_bar,
                                       frontier_point, frontier_table, update_frontier, verdict)


def _rows(rlvr_mae=0.006, rlvr_ssim=0.95, rlvr_stlpips=0.02, rlvr_reward=-0.026):
    return {COPY: {"mae": 0.007, "psnr": 25.9, "ssim": 0.92, "stlpips": 0.022, "reward": -0.03},
            FLOOR: {"mae": 0.0062, "psnr": 27.6, "ssim": 0.94, "stlpips": 0.024},
            MLE: {"mae": 0.009, "psnr": 25.0, "ssim": 0.90, "stlpips": 0.03, "reward": -0.039},
            RLVR: {"mae": rlvr_mae, "psnr": 26.5, "ssim": rlvr_ssim, "stlpips": rlvr_stlpips,
                   "reward": rlvr_reward}}


def test_verdict_reads_directions_and_the_floor():
    lines = verdict(_rows())
    assert "RLVR beats copy-last-frame on mae: yes (0.006 vs 0.007)" in lines
    assert "RLVR beats copy-last-frame on psnr: yes (26.5 vs 25.9)" in lines
    assert any(ln.startswith("tokenizer floor (true tokens) below copy-last-frame on mae: yes")
               for ln in lines)
    assert "RLVR beats MLE on the reward: yes (-0.026 vs -0.039)" in lines
    assert clears_bar(_rows())


def test_one_metric_short_of_the_bar_is_not_clearing_it():
    assert not clears_bar(_rows(rlvr_stlpips=0.023))        # ST-LPIPS worse than copying
    assert not clears_bar(_rows(rlvr_ssim=0.91))            # SSIM: higher is better
    assert not clears_bar(_rows(rlvr_reward=-0.04))          # RLVR below MLE on the reward
    lines = verdict(_rows(rlvr_mae=0.008))
    assert "RLVR beats copy-last-frame on mae: no (0.008 vs 0.007)" in lines
    rows = _rows()
    del rows[RLVR]["stlpips"]                                # a missing metric cannot pass
    assert not clears_bar(rows)


def test_frontier_keeps_one_point_per_label(tmp_path):
    path = tmp_path / "frontier.json"
    update_frontier(path, frontier_point("a", 20.0, [], _rows()))
    update_frontier(path, frontier_point("b", 31.5, ["x=1"], _rows(rlvr_mae=0.01)))
    point = frontier_point("a", 25.0, [], _rows())
    point["tokenizer"] = {"far_flip": 0.28}
    points = update_frontier(path, point)
    assert points[-1]["tokenizer"]["far_flip"] == 0.28
    assert [p["label"] for p in json.loads(path.read_text())] == ["b", "a"]
    table = frontier_table(points)
    assert "| a | 25.0 | 0.006 | 0.007 |" in table and "| yes | 0.0062 | 28.00 % |" in table
    b_row = [ln for ln in table.splitlines() if ln.startswith("| b |")][0]
    assert b_row.startswith("| b | 31.5 | 0.01 |") and b_row.endswith("| no | 0.0062 | — |")


def test_best_under_the_budget_counts_metrics_ahead_then_the_reward():
    fast = frontier_point("fast", 24.0, [], _rows(rlvr_mae=0.008, rlvr_ssim=0.90))  # 2 ahead
    close = frontier_point("close", 29.0, [], _rows(rlvr_mae=0.0075, rlvr_ssim=0.91))
    slow = frontier_point("slow", 54.0, [], _rows())                       # all 4, too slow
    assert best_under([fast, close, slow])["label"] == "close"   # same count, lower MAE + ST-LPIPS
    ahead = frontier_point("ahead", 28.0, [], _rows(rlvr_mae=0.0069, rlvr_ssim=0.90,
                                                    rlvr_stlpips=0.021))     # 3 ahead, worse sum
    assert best_under([fast, close, ahead, slow])["label"] == "ahead"
    assert best_under([slow]) is None and best_under([slow], 60)["label"] == "slow"
