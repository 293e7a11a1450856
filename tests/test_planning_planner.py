"""The modality-agnostic MPC planner (wm.planning.planner) on hand-made deterministic worlds
whose optimal actions are known: a 1-d point mass (continuous, CEM and random shooting) and a
grid with a wall (discrete, enumeration; the greedy step is wrong, planning finds the detour)."""
from __future__ import annotations

import numpy as np
import pytest

from wm.planning.planner import (MPC, CallableProposer, EnumerateProposer, GaussianProposer,
                                 Planner, run_episode)


# ------------------------------------------------------------------ 1-d point mass, continuous
def mass_simulate(x, sequences):
    """x' = x + a, a in [-1, 1]; predictions are final positions."""
    return [x + float(np.sum(s)) for s in sequences]


def test_cem_finds_the_optimal_continuous_action():
    goal = 0.37
    value = lambda xs: -np.abs(np.asarray(xs) - goal)  # noqa: E731
    cem = Planner(mass_simulate, value, GaussianProposer([-1.0], [1.0], [0.5]), horizon=1,
                  candidates=32, iterations=6, elites=6, seed=0)
    plan = cem.plan(0.0)
    assert plan.actions[0][0] == pytest.approx(goal, abs=0.01)
    assert plan.history[-1] >= plan.history[0]            # CEM refines
    shooting = Planner(mass_simulate, value, GaussianProposer([-1.0], [1.0], [0.5]), horizon=1,
                       candidates=256, iterations=1, seed=0)
    assert shooting.plan(0.0).actions[0][0] == pytest.approx(goal, abs=0.05)
    # the optimum is outside the box: the clipped boundary action is optimal
    far = Planner(mass_simulate, lambda xs: -np.abs(np.asarray(xs) - 5.0),
                  GaussianProposer([-1.0], [1.0], [0.5]), horizon=1, candidates=64, iterations=3)
    assert far.plan(0.0).actions[0][0] == pytest.approx(1.0, abs=1e-9)


def test_receding_horizon_reaches_a_continuous_goal():
    """Value = minus the mean distance along the trajectory: the optimal plan from 0 towards 2.5
    is (1, 1, 0.5); MPC gets there in 3 steps and stays."""
    goal = 2.5

    def simulate(x, sequences):                            # trajectories of positions
        return [x + np.cumsum(np.asarray(s)[:, 0]) for s in sequences]

    value = lambda trajs: [-np.abs(t - goal).mean() for t in trajs]  # noqa: E731
    planner = Planner(simulate, value, GaussianProposer([-1.0], [1.0], [0.5]), horizon=3,
                      candidates=64, iterations=5, elites=8, seed=1)
    assert planner.plan(0.0).actions[0][0] == pytest.approx(1.0, abs=0.02)
    states, _ = run_episode(MPC(planner).act, lambda x, a: x + float(a[0]), 0.0, 5)
    assert abs(states[3] - goal) < 0.05 and abs(states[-1] - goal) < 0.05


# --------------------------------------------------------------------- grid with a wall, discrete
# 3 x 2 grid, a wall between start and goal on the bottom row:   . . .
#                                                                 S # G
WALL, START, GOAL = {(1, 0)}, (0, 0), (2, 0)
MOVES = {"up": (0, 1), "down": (0, -1), "left": (-1, 0), "right": (1, 0), "stay": (0, 0)}


def grid_step(s, a):
    nx, ny = s[0] + MOVES[a][0], s[1] + MOVES[a][1]
    return (nx, ny) if 0 <= nx <= 2 and 0 <= ny <= 1 and (nx, ny) not in WALL else s


def grid_simulate(s, sequences):
    out = []
    for seq in sequences:
        traj, x = [], s
        for a in seq:
            x = grid_step(x, a)
            traj.append(x)
        out.append(traj)
    return out


def grid_value(trajs):
    """Minus the mean Manhattan distance to the goal along the trajectory (reach it early)."""
    return np.array([-np.mean([abs(x - GOAL[0]) + abs(y - GOAL[1]) for x, y in t])
                     for t in trajs])


def test_enumeration_finds_the_detour_a_myopic_planner_misses():
    """The only optimal first action is "up" (away from the goal, round the wall): 4 steps."""
    deep = Planner(grid_simulate, grid_value, EnumerateProposer(MOVES), horizon=4)
    plan = deep.plan(START)
    assert plan.actions == ("up", "right", "right", "down") and len(plan.candidates) == 5 ** 4
    states, _ = run_episode(MPC(deep).act, grid_step, START, 6)
    assert states[4] == GOAL and states[-1] == GOAL            # fastest path, then stays
    myopic = Planner(grid_simulate, grid_value, EnumerateProposer(MOVES), horizon=1)
    assert myopic.plan(START).actions[0] != "up"
    states, _ = run_episode(MPC(myopic).act, grid_step, START, 10)
    assert GOAL not in states                                  # greedy stays at the wall


def test_callable_proposer_plugs_in_a_policy_and_a_value_model():
    """The web-agent setting: a policy proposes candidate actions, the world model predicts,
    a value model scores the predictions; the planner only ranks."""
    asked = []

    def policy(state, n, rng):
        return [("click", i) for i in range(n)]

    def simulate(state, seqs):
        asked.extend(seqs)
        return [f"page after {s[1]}" for s in seqs]

    value = lambda preds: [1.0 if p == "page after 3" else 0.0 for p in preds]  # noqa: E731
    planner = Planner(simulate, value, CallableProposer(policy), horizon=1, candidates=5)
    plan = planner.plan("p0")
    assert plan.actions == ("click", 3) and plan.prediction == "page after 3"
    assert len(asked) == 5
    seen = []                                                 # receding horizon: the policy
    planner.proposer = CallableProposer(lambda s, n, rng: seen.append(s) or [("a", s)] * n)
    run_episode(MPC(planner).act, lambda s, a: s + 1, 0, 3)   # proposes from the current state
    assert seen == [0, 1, 2]


def test_samples_average_a_stochastic_world_model():
    rng = np.random.default_rng(0)
    # action 1 is better on average but noisier; 200 samples per candidate rank it first

    def simulate(s, seqs):
        return [a[0] + rng.normal(0, 3.0 if a[0] == 1 else 0.0) for a in seqs]

    plan = Planner(simulate, np.asarray, EnumerateProposer([0, 1]), horizon=1, samples=200).plan(0)
    assert plan.actions == (1,) and plan.scores.shape == (2,)


def test_wrong_simulator_or_value_output_is_named():
    value = lambda preds: np.zeros(len(preds))  # noqa: E731
    with pytest.raises(ValueError, match="one per sequence"):
        Planner(lambda s, q: [0], value, EnumerateProposer("ab"), horizon=1).plan(0)
    with pytest.raises(ValueError, match="one per prediction"):
        Planner(lambda s, q: q, lambda p: [0.0], EnumerateProposer("ab"), horizon=1).plan(0)
    with pytest.raises(ValueError, match=">= 1"):
        Planner(lambda s, q: q, value, EnumerateProposer("ab"), horizon=0)


def test_warm_start_shifts_the_proposal():
    prop = GaussianProposer([-1.0], [1.0], [0.5])
    mean = np.array([[0.1], [0.2], [0.3]])
    shifted, std = prop.shift((mean, np.full_like(mean, 0.01)))
    np.testing.assert_allclose(shifted[:, 0], [0.2, 0.3, 0.3])
    assert std[-1, 0] == 0.5 and std[0, 0] == 0.25          # fresh last step, floor on the rest
