"""The PushT goal coverage read from frames (wm.planning.pusht_coverage) against gym-pusht's own
coverage, on frames gym-pusht renders at the quickstart's resolution (64x64, conf/data/pusht.yaml).

Measured (module docstring): mean absolute error 0.012 (max 0.048 on these 120 states, 0.095 over
300); the bounds below leave a margin and fail for a rule that counts the block outline fully
(+0.044 bias) or the walls as goal (-0.11 bias).
"""
from __future__ import annotations

import numpy as np
import pytest
import torch

from wm.planning.pusht_coverage import (PALETTE, coverage_from_frames, from_uint8, goal_weights,
                                        make_env, render_state)

SIZE = 64


@pytest.fixture(scope="module")
def rendered():
    """(frames (N, 64, 64, 3) uint8, simulator coverage (N,)) for block poses around the goal."""
    env = make_env(SIZE)
    env.reset(seed=0)
    rng = np.random.default_rng(0)
    frames, cov = [], []
    for i in range(120):
        spread, turn = rng.uniform(0, 50), rng.uniform(0, 0.8)   # from on-goal to far off
        pose = (256 + rng.normal(0, spread), 256 + rng.normal(0, spread),
                np.pi / 4 + rng.normal(0, turn))
        f, c = render_state(env, rng.uniform(30, 480, size=2), pose)
        frames.append(f)
        cov.append(c)
    env.close()
    return np.stack(frames), np.array(cov)


def test_rendered_frames_cover_the_range(rendered):
    _, cov = rendered
    assert cov.min() < 0.05 and cov.max() > 0.8 and ((cov > 0.2) & (cov < 0.8)).sum() > 30


def test_coverage_from_frames_matches_the_simulator(rendered):
    frames, cov = rendered
    est = coverage_from_frames(from_uint8(frames)).numpy()
    err = np.abs(est - cov)
    print(f"64x64, {len(cov)} states: MAE {err.mean():.4f}, max {err.max():.4f}, "
          f"bias {(est - cov).mean():+.4f}")
    assert err.mean() < 0.025, err.mean()
    assert err.max() < 0.15, err.max()
    assert abs((est - cov).mean()) < 0.015                      # no systematic bias
    assert np.corrcoef(est, cov)[0, 1] > 0.98


def test_block_on_goal_reads_full_and_far_block_reads_zero():
    env = make_env(SIZE)
    env.reset(seed=0)
    on, c_on = render_state(env, (60.0, 60.0), (256.0, 256.0, np.pi / 4))
    off, c_off = render_state(env, (60.0, 60.0), (120.0, 420.0, 0.3))
    env.close()
    assert c_on == pytest.approx(1.0) and c_off == 0.0
    est = coverage_from_frames(from_uint8(np.stack([on, off])))
    # exactly on the goal the outline runs along the goal's own edge and counts half: 0.95
    assert 0.93 < est[0] <= 1.0 and est[1] == 0.0


def test_goal_weights_are_the_goal_area():
    """The goal T (120x30 + 30x90 px on the 512 canvas) covers 6300/64 ~ 98.4 pixels at 64x64."""
    g = goal_weights(SIZE, SIZE)
    assert g.shape == (SIZE, SIZE) and 0 <= g.min() and g.max() <= 1
    assert g.sum().item() == pytest.approx(6300 / (512 / SIZE) ** 2, rel=0.05)


def test_agent_pixels_are_left_out():
    """A frame that is all goal green except an agent-coloured patch reads 0, and block fill reads
    1 wherever the goal is: agent pixels count for neither."""
    g = goal_weights(SIZE, SIZE)
    green = torch.tensor(PALETTE["goal"][0]) / 255
    frame = green[:, None, None].expand(3, SIZE, SIZE).clone()
    frame[:, 28:36, 28:36] = (torch.tensor(PALETTE["agent"][0]) / 255)[:, None, None]
    assert coverage_from_frames(frame[None]).item() == 0.0
    fill = (torch.tensor(PALETTE["block_fill"][0]) / 255)[:, None, None].expand(3, SIZE, SIZE)
    assert coverage_from_frames(fill[None].clone()).item() == pytest.approx(1.0)
    assert g.sum() > 0


def test_bad_shape_names_the_expected_layout():
    with pytest.raises(ValueError, match=r"\(N, 3, H, W\)"):
        coverage_from_frames(torch.zeros(64, 64, 3))
