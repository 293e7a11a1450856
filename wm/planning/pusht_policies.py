"""PushT policies of known, different quality, and their episodes in the gym-pusht simulator.

Paper: RLVR-World Sec. 5 (Real2Sim policy evaluation: policies are ranked by their success
inside the world model, which should agree with their real success). Here "real" is the
gym-pusht simulator the world model imitates, so every policy's true success is known.

Policies act on the simulator *state* (agent position, block pose), 10 Hz, one 2-d target per
env step:

* ``pusher(noise)``: the data's scripted pusher (``wm.data.sources.pusht_sim.ScriptedPusher``)
  with its sub-goal fixed at the goal (the data generator moves on to random sub-goals once the
  goal is reached; an evaluated policy keeps the block there), Gaussian noise of ``noise`` px on
  every target; quality falls as the noise grows.
* ``random``: uniformly random targets on the table.
* ``MPCPolicy`` (``wm.planning.pusht_mpc``) plans on frames instead and is run by the same loop.

Episodes (``run_episode``) are recorded as the world model was trained: every ``frame_skip``-th
frame at the run's image size, ``actions[t]`` the ``frame_skip`` targets taken between frames
``t`` and ``t+1`` (2 * frame_skip dims). Start states (``start_states``): agent anywhere, block
placed around the goal (centre of mass within ``spread`` px of the goal's, any angle), so that a
short episode can change the coverage; success = the simulator's coverage at the last frame.

Departures: no replayed human demonstrations (the 206 PushT demonstrations need a download; the
benchmark says so); no termination at 95 % coverage, so every episode has the same length.

Shapes: frames (T+1, H, W, 3) uint8, actions (T, 2 * frame_skip) float32, coverage (T+1,).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np

from wm.data.sources.pusht_sim import GOAL, ScriptedPusher, block_com
from wm.planning.pusht_coverage import make_env, set_state

TABLE_LOW, TABLE_HIGH = 10.0, 502.0      # where targets are clipped to (as the data's pusher)


class GoalPusher(ScriptedPusher):
    """The scripted pusher with its sub-goal always the goal."""

    def new_subgoal(self, com: np.ndarray) -> np.ndarray:
        return block_com(GOAL)


class RandomPolicy:
    """Uniformly random targets on the table."""

    def __init__(self, rng: np.random.Generator):
        self.rng = rng

    def __call__(self, agent: np.ndarray, pose: np.ndarray) -> np.ndarray:
        return self.rng.uniform(TABLE_LOW, TABLE_HIGH, size=2)


def make_policy(name: str, rng: np.random.Generator
                ) -> Callable[[np.ndarray, np.ndarray], np.ndarray]:
    """``"pusher"``, ``"pusher_noise<px>"`` (e.g. ``pusher_noise30``) or ``"random"``."""
    if name == "random":
        return RandomPolicy(rng)
    if name == "pusher":
        return GoalPusher(rng, 0.0)
    if name.startswith("pusher_noise"):
        return GoalPusher(rng, float(name[len("pusher_noise"):]))
    raise ValueError(f"unknown PushT policy {name!r}: use random, pusher or pusher_noise<px>")


@dataclass
class StartState:
    seed: int
    agent: np.ndarray        # (2,) px
    block: np.ndarray        # (3,) x, y, angle


def start_states(n: int, seed: int = 0, spread: float = 90.0) -> list[StartState]:
    """``n`` start states: block centre of mass within ``spread`` px of the goal's (any angle),
    agent uniformly on the table, clear of the block (> 100 px from its centre of mass);
    deterministic in ``seed``."""
    rng, out = np.random.default_rng([seed, 17]), []
    goal_com = block_com(GOAL)
    while len(out) < n:
        angle = rng.uniform(-np.pi, np.pi)
        r, phi = spread * np.sqrt(rng.uniform()), rng.uniform(0, 2 * np.pi)
        com = goal_com + r * np.array([np.cos(phi), np.sin(phi)])
        pos = com - (block_com(np.array([0.0, 0.0, angle])))                 # body origin
        agent = rng.uniform(40.0, 472.0, size=2)
        if np.linalg.norm(agent - com) > 100.0:
            out.append(StartState(seed + len(out), agent, np.array([*pos, angle])))
    return out


@dataclass
class Episode:
    frames: np.ndarray       # (T+1, H, W, 3) uint8
    actions: np.ndarray      # (T, 2 * frame_skip) float32
    coverage: np.ndarray     # (T+1,) the simulator's coverage at each recorded frame
    agent: np.ndarray        # (T+1, 2) agent position at each recorded frame
    seconds: float = 0.0     # wall time (policy + simulator)


class PushTSim:
    """A gym-pusht env recording (image_size x image_size) frames every ``frame_skip`` steps."""

    def __init__(self, image_size: int = 64, frame_skip: int = 5):
        self.env = make_env(image_size)
        self.frame_skip = int(frame_skip)
        self.env.reset(seed=0)

    def close(self) -> None:
        self.env.close()

    def reset(self, start: StartState) -> tuple[np.ndarray, np.ndarray, np.ndarray, float]:
        """(frame, agent, block pose, coverage) after placing ``start``."""
        self.env.reset(seed=start.seed)
        set_state(self.env, start.agent, start.block)
        return self._observe()

    def _observe(self):
        u = self.env.unwrapped
        pose = np.array([*u.block.position, u.block.angle], dtype=np.float64)
        return u._render(), np.array(u.agent.position), pose, float(u._get_coverage())

    def step(self, targets: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, float]:
        """Apply ``targets`` (frame_skip, 2) one per env step; (frame, agent, pose, coverage)."""
        for a in np.asarray(targets, dtype=np.float64).reshape(self.frame_skip, 2):
            self.env.step(np.clip(a, TABLE_LOW, TABLE_HIGH))
        return self._observe()

    def run_episode(self, start: StartState, steps: int, policy=None, chooser=None) -> Episode:
        """``steps`` recorded steps from ``start``.

        ``policy(agent, pose) -> (2,)`` is asked at every env step (state policies);
        ``chooser(frames so far, actions so far, agent) -> (frame_skip, 2)`` once per recorded
        step (frame-based planners, ``wm.planning.pusht_mpc``). Exactly one of them is given.
        """
        import time

        if (policy is None) == (chooser is None):
            raise ValueError("run_episode: pass exactly one of policy= or chooser=")
        t0 = time.time()
        frame, agent, pose, cov = self.reset(start)
        frames, actions, covs, agents = [frame], [], [cov], [agent]
        for _ in range(steps):
            if chooser is not None:
                chunk = np.asarray(chooser(frames, actions, agent), dtype=np.float64)
                frame, agent, pose, cov = self.step(chunk)
            else:
                chunk = []
                for _ in range(self.frame_skip):
                    target = np.clip(policy(agent, pose), TABLE_LOW, TABLE_HIGH)
                    chunk.append(target)
                    self.env.step(target)
                    u = self.env.unwrapped
                    agent = np.array(u.agent.position)
                    pose = np.array([*u.block.position, u.block.angle], dtype=np.float64)
                frame, agent, pose, cov = self._observe()
            frames.append(frame)
            actions.append(np.asarray(chunk, dtype=np.float32).reshape(-1))
            covs.append(cov)
            agents.append(agent)
        return Episode(np.stack(frames), np.stack(actions), np.array(covs), np.stack(agents),
                       time.time() - t0)
