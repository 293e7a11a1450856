"""PushT episodes generated in simulation (gym-pusht) by a scripted pushing policy.

The paper's PushT experiments (RLVR-World Sec. 4.3, following DINO-WM) use recorded PushT
trajectories; this source is the project's embedded default dataset, produced locally from the
same simulator (``gym_pusht/PushT-v0``, 512x512 workspace, PD-controlled circular agent, T block,
goal pose (256, 256, pi/4)) so that every pipeline runs without downloads.

Policy (scripted, not learned; a departure from human demonstrations): the block's centre of
mass is pushed towards a sub-goal, first the goal position, then, once reached, random positions
in the middle of the table so the block keeps moving. Each step the agent either *approaches* the
point behind the block (opposite the sub-goal, going around the block when the straight path would
cross it) or, once lined up, *pushes* through the centre of mass towards the sub-goal. Orientation
is not controlled; Gaussian noise on the target and a random per-episode push speed give variety.
When the agent has not got anywhere in ``STUCK_STEPS`` steps (typically: the point behind the block is
outside the table because the block lies against a wall), it walks for ``ESCAPE_STEPS`` steps
towards a random point of the table and then goes on with a new reachable sub-goal.

Frames: the env's own renderer (512x512 canvas resized by OpenCV to ``image_size``), uint8.
Actions: the 2-d target agent position in pixels, in [0, 512] (the env's action), as in the
diffusion-policy PushT data; ``actions[t]`` is applied at ``frames[t]``.

Frame skip (``frame_skip=k``): the policy and the env still run at the env's 10 Hz, but only every
k-th frame is recorded and ``actions[t]`` is the concatenation of the k env actions taken between
``frames[t]`` and ``frames[t+1]`` (2k dims, in time order), as DINO-WM prepares PushT (frameskip 5).
Without it, consecutive 64x64 frames barely differ (15 % of transitions have a mean absolute
pixel change below 0.001; 1 % at frame_skip 5), a frame-to-frame world model scores well by
copying, and the repetition rate (REFERENCE "Evaluation") measures the data more than the model.
The project's ``data=pusht`` default uses ``frame_skip=5``.
"""
from __future__ import annotations

import argparse
import logging
import os
from pathlib import Path

import numpy as np

from wm.data.episodes import DataError, EpisodeWriter

log = logging.getLogger(__name__)

GOAL = np.array([256.0, 256.0, np.pi / 4])
COG_LOCAL = np.array([0.0, 45.0])  # the T's centre of mass in its body frame (gym-pusht add_tee)
BLOCK_REACH = 80.0  # distance from the centre of mass at which the agent lines up to push
STUCK_STEPS, STUCK_PX = 8, 8.0  # less than STUCK_PX net motion over STUCK_STEPS steps = stuck
ESCAPE_STEPS = 6  # steps spent walking away from a stuck position
WALK_PX = 40.0  # the farthest target ahead of the agent when walking (approach and escape)
TABLE = (15.0, 497.0)  # where the agent can stand (the env clips targets to the 512 px table)


def _rotate(v: np.ndarray, angle: float) -> np.ndarray:
    c, s = np.cos(angle), np.sin(angle)
    return np.array([c * v[0] - s * v[1], s * v[0] + c * v[1]])


def walk_towards(agent: np.ndarray, point: np.ndarray) -> np.ndarray:
    """A target on the way from ``agent`` to ``point``, at most ``WALK_PX`` ahead."""
    step = point - agent
    return agent + step * min(1.0, WALK_PX / (np.linalg.norm(step) + 1e-6))


def block_com(pose: np.ndarray) -> np.ndarray:
    """World position of the T's centre of mass from its pose (x, y, angle)."""
    return pose[:2] + _rotate(COG_LOCAL, pose[2])


class ScriptedPusher:
    """Approach-then-push policy on the env state (agent position, block pose)."""

    def __init__(self, rng: np.random.Generator, noise: float):
        self.rng, self.noise = rng, noise
        self.speed = rng.uniform(8.0, 16.0)  # pixels per step while pushing
        self.subgoal = block_com(GOAL)
        self.pushing = False
        self.recent: list[np.ndarray] = []  # the last STUCK_STEPS agent positions
        self.escape, self.escape_left = np.zeros(2), 0  # where to walk while getting unstuck

    def new_subgoal(self, com: np.ndarray) -> np.ndarray:
        """A random point near the middle whose push start (behind the block) is on the table."""
        for _ in range(32):
            goal = self.rng.uniform(150.0, 362.0, size=2)
            u = (goal - com) / (np.linalg.norm(goal - com) + 1e-6)
            behind = com - u * BLOCK_REACH
            if np.all(behind > TABLE[0]) and np.all(behind < TABLE[1]):
                break
        return goal

    def __call__(self, agent: np.ndarray, pose: np.ndarray) -> np.ndarray:
        com = block_com(pose)
        self.recent = (self.recent + [agent.copy()])[-STUCK_STEPS:]
        # net displacement: an agent dithering between two targets is stuck as well
        stuck = (len(self.recent) == STUCK_STEPS
                 and np.linalg.norm(self.recent[-1] - self.recent[0]) < STUCK_PX)
        to_goal = self.subgoal - com
        if stuck:
            self.escape, self.escape_left = self.rng.uniform(100.0, 412.0, size=2), ESCAPE_STEPS
        if stuck or np.linalg.norm(to_goal) < 15.0:  # reached or stuck: pick a new sub-goal
            self.subgoal, self.pushing, self.recent = self.new_subgoal(com), False, []
            to_goal = self.subgoal - com
        if self.escape_left > 0:  # no action noise while escaping
            self.escape_left -= 1
            return np.clip(walk_towards(agent, self.escape), 10.0, 502.0)
        u = to_goal / (np.linalg.norm(to_goal) + 1e-6)
        perp = np.array([-u[1], u[0]])
        rel = agent - com
        along, across = rel @ u, rel @ perp
        # enter push mode when lined up behind the block; stay in it (hysteresis) while roughly behind
        if self.pushing:
            self.pushing = along < -10.0 and abs(across) < 45.0
        else:
            self.pushing = along < -BLOCK_REACH * 0.6 and abs(across) < 20.0
        if self.pushing:
            target = agent + u * self.speed - perp * across * 0.5
        else:
            behind = com - u * BLOCK_REACH
            if along > -BLOCK_REACH * 0.6 and abs(across) < BLOCK_REACH:  # go round the block
                side = 1.0 if across >= 0 else -1.0
                behind = com + perp * side * BLOCK_REACH * 1.3 - u * BLOCK_REACH * 0.5
            target = walk_towards(agent, behind)
        target = target + self.rng.normal(0.0, self.noise, size=2)
        return np.clip(target, 10.0, 502.0)


class PushTSimSource:
    """Generate PushT episodes with gym-pusht and a scripted pushing policy.

    Args:
        num_episodes: how many episodes.
        episode_length: frames per episode (shorter if the env reports success).
        image_size: rendered frame size (square).
        seed: episode ``i`` resets the env with ``seed + i`` (reproducible, order independent).
        noise: std (pixels) of Gaussian noise added to every action target.
        frame_skip: env steps per recorded frame; ``actions`` then hold ``2 * frame_skip`` dims.
    """

    def __init__(self, num_episodes: int = 200, episode_length: int = 100, image_size: int = 64,
                 seed: int = 0, noise: float = 4.0, overwrite: bool = False, frame_skip: int = 1):
        if num_episodes < 1 or episode_length < 2 or image_size < 8 or frame_skip < 1:
            raise DataError(f"pusht_sim needs num_episodes >= 1, episode_length >= 2, image_size >= 8, "
                            f"frame_skip >= 1; got {num_episodes}, {episode_length}, {image_size}, "
                            f"{frame_skip}")
        self.num_episodes, self.episode_length = num_episodes, episode_length
        self.image_size, self.seed, self.noise, self.overwrite = image_size, seed, noise, overwrite
        self.frame_skip = frame_skip

    def make_env(self):
        os.environ.setdefault("SDL_VIDEODRIVER", "dummy")
        import gymnasium as gym
        import gym_pusht  # noqa: F401  (registers gym_pusht/PushT-v0)

        return gym.make("gym_pusht/PushT-v0", obs_type="pixels_agent_pos", render_mode="rgb_array",
                        observation_width=self.image_size, observation_height=self.image_size,
                        max_episode_steps=self.episode_length * self.frame_skip + 1)

    def episode(self, env, i: int) -> tuple[np.ndarray, np.ndarray, dict]:
        """Roll out episode ``i``: frames (T, S, S, 3) uint8, actions (T, 2 * frame_skip) float32, meta."""
        obs, info = env.reset(seed=self.seed + i)
        policy = ScriptedPusher(np.random.default_rng([self.seed, i]), self.noise)
        start_pose = np.asarray(info["block_pose"], dtype=np.float64)
        frames, actions = [], []
        pose, terminated = start_pose, False
        while len(frames) < self.episode_length and not terminated:
            frames.append(obs["pixels"])
            chunk = []
            for _ in range(self.frame_skip):
                action = policy(np.asarray(obs["agent_pos"]), pose)
                chunk.append(action)
                obs, _, terminated, _, info = env.step(action)
                pose = np.asarray(info["block_pose"], dtype=np.float64)
                if terminated:  # pad the chunk with the last target (the agent holds it)
                    chunk += [action] * (self.frame_skip - len(chunk))
                    break
            actions.append(np.concatenate(chunk))
        meta = {"seed": self.seed + i, "block_pose_start": start_pose.tolist(),
                "block_pose_end": pose.tolist(), "coverage_end": float(info.get("coverage", 0.0))}
        return np.stack(frames), np.asarray(actions, dtype=np.float32), meta

    def write(self, root: str | Path) -> Path:
        from tqdm import tqdm

        env = self.make_env()
        try:
            with EpisodeWriter(root, source="pusht_sim", overwrite=self.overwrite) as w:
                for i in tqdm(range(self.num_episodes), desc="pusht_sim", unit="ep"):
                    frames, actions, meta = self.episode(env, i)
                    w.add(frames, actions, meta=meta)
        finally:
            env.close()
        return Path(root)

    @staticmethod
    def add_arguments(p: argparse.ArgumentParser) -> None:
        p.add_argument("--num-episodes", type=int, default=200)
        p.add_argument("--episode-length", type=int, default=100)
        p.add_argument("--image-size", type=int, default=64)
        p.add_argument("--seed", type=int, default=0)
        p.add_argument("--noise", type=float, default=4.0, help="action noise std in pixels")
        p.add_argument("--frame-skip", type=int, default=1,
                       help="env steps per recorded frame (actions become 2*k dims)")

    @classmethod
    def from_args(cls, a: argparse.Namespace) -> "PushTSimSource":
        return cls(a.num_episodes, a.episode_length, a.image_size, a.seed, a.noise, a.overwrite,
                   a.frame_skip)


if __name__ == "__main__":
    from wm.data.sources import cli_main
    cli_main(PushTSimSource)
