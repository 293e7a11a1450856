"""Model-predictive control of PushT with a video world model: plan on imagined frames, act in the
simulator.

Paper: RLVR-World Sec. 5 (MPC with a world model: candidate actions are simulated and the
predicted states scored; the RLVR world model raised the web agent's success 12.06 -> 14.29 %).
Here the planner is ``wm.planning.planner`` (random shooting / CEM, receding horizon) and:

* candidate: ``horizon`` target positions (px), one per recorded step, each held for the
  ``frame_skip`` env steps of that step (the world model's action is the 2 * frame_skip targets
  between two frames); proposal: a Gaussian (``std`` px) centred on the agent's position, which
  the simulator reports with every frame (gym-pusht's ``pixels_agent_pos`` observation);
* simulate: ``PushTWorldModel.imagine`` (``VideoTask.open_loop``) from the last ``Tc`` real
  frames and the actions taken between them;
* value: the goal coverage read from the last imagined frame (``wm.planning.pusht_coverage``);
* the first step's targets are executed in gym-pusht, a new frame is observed, and the plan is
  redone from it (warm-started CEM).

Before ``Tc`` frames exist, the context is padded with the first frame and "hold position"
actions (what the agent does when its target is where it stands).

Departures: the proposal reads the agent position from the simulator state (the value reads only
frames); targets are held for a whole recorded step (5 env steps) to keep candidates short.

Shapes: frames uint8 (h, w, 3) as the simulator renders them; candidates (horizon, 2) px;
executed chunk (frame_skip, 2) px.
"""
from __future__ import annotations

import numpy as np
import torch

from wm.planning.planner import MPC, GaussianProposer, Planner
from wm.planning.pusht_coverage import coverage_from_frames
from wm.planning.pusht_policies import TABLE_HIGH, TABLE_LOW
from wm.utils.seeding import seeded_generator


class FrameMPC:
    """A chooser for ``PushTSim.run_episode(chooser=...)`` that plans with a world model.

    Args:
        world: a ``wm.planning.pusht_world.PushTWorldModel``.
        horizon: recorded steps per candidate; candidates, iterations (1 = random shooting,
            > 1 = CEM), elites: planner settings; std: proposal std in px.
        samples: imagined rollouts per candidate (scores averaged; the world model samples).
        seed: seeds proposals and the world model's sampling (decision k uses stream step k).

    ``imagined`` collects, per decision, the best candidate's imagined frames (H, 3, h, w);
    ``scores`` its predicted coverage.
    """

    def __init__(self, world, horizon: int = 2, candidates: int = 32, iterations: int = 2,
                 elites: int = 6, std: float = 80.0, samples: int = 1, seed: int = 0,
                 temperature: float = 1.0):
        self.world, self.seed, self.temperature = world, int(seed), float(temperature)
        self.fs = world.frame_skip
        proposer = GaussianProposer([TABLE_LOW] * 2, [TABLE_HIGH] * 2, [std, std],
                                    center=lambda state: state["agent"], min_std=5.0)
        self.planner = Planner(self.simulate, self.value, proposer, horizon, candidates,
                               iterations, elites, samples, seed)
        self.mpc = MPC(self.planner)
        self.decisions = 0
        self.imagined: list[torch.Tensor] = []
        self.scores: list[float] = []

    def reset(self) -> None:
        self.mpc.reset()
        self.imagined, self.scores = [], []

    def expand(self, targets: np.ndarray) -> np.ndarray:
        """(H, 2) targets -> (H, 2 * frame_skip) world-model actions (each target held)."""
        return np.repeat(np.asarray(targets, np.float32)[:, None, :], self.fs, 1).reshape(
            len(targets), -1)

    def simulate(self, state: dict, sequences: list[np.ndarray]) -> list[torch.Tensor]:
        cands = torch.from_numpy(np.stack([self.expand(s) for s in sequences]))  # (K, H, A)
        gen = seeded_generator(self.seed, self.decisions, 0, "cpu")
        self.decisions += 1
        frames = self.world.imagine(state["context"], state["past"], cands, gen,
                                    temperature=self.temperature)              # (K, H, 3, h, w)
        return list(frames)

    def value(self, predictions: list[torch.Tensor]) -> torch.Tensor:
        return coverage_from_frames(torch.stack([p[-1] for p in predictions]))  # (K,)

    def state(self, frames: list[np.ndarray], actions: list[np.ndarray], agent) -> dict:
        """The planner's state: last Tc frames (Tc, 3, h, w), the Tc - 1 actions between them,
        the agent position (2,)."""
        Tc = self.world.Tc
        hold = np.tile(np.asarray(agent, np.float32), self.fs)                 # stay in place
        fr = [frames[0]] * max(0, Tc - len(frames)) + list(frames[-Tc:])
        past = [hold] * max(0, Tc - 1 - len(actions)) + [np.asarray(a, np.float32)
                                                         for a in actions[-(Tc - 1):]][: Tc - 1]
        context = torch.from_numpy(np.stack(fr)).permute(0, 3, 1, 2).float() / 255
        past_t = torch.from_numpy(np.stack(past)) if past else torch.zeros(0, self.fs * 2)
        return {"context": context, "past": past_t, "agent": np.asarray(agent, np.float64)}

    def __call__(self, frames: list[np.ndarray], actions: list[np.ndarray], agent) -> np.ndarray:
        first = self.mpc.act(self.state(frames, actions, agent))               # (2,) px
        self.imagined.append(self.mpc.last.prediction)
        self.scores.append(self.mpc.last.score)
        return np.repeat(np.asarray(first)[None], self.fs, 0)                  # (frame_skip, 2)
