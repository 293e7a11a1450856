"""PushT task success read from frames: the fraction of the goal region covered by the T block.

Paper: RLVR-World Sec. 5 evaluates world models by what they are used for (Real2Sim policy
evaluation, model-predictive control); both need a task-level success measure that works on
*predicted* frames as well as true ones. gym-pusht's own measure is ``info["coverage"]`` =
area(goal T ∩ block T) / area(goal T), computed from the simulator state; a world model has no
state, only frames, so this module reads the same quantity from the rendered colours.

Colour rule (gym-pusht's renderer: a 512x512 pygame canvas resized by ``cv2.resize``, which at
8x downsampling samples ~2x2 canvas pixels per frame pixel, so frame pixels are nearly pure
palette colours):

* goal region: the goal T (pose (256, 256, pi/4), fixed) is drawn in LightGreen (144, 238, 144)
  under everything else. Its per-pixel weight ``g`` in [0, 1] comes from rendering the empty goal
  at the frame size with gym-pusht itself (block and agent moved off the canvas):
  ``g = clip((G - R) / 94, 0, 1)`` (1 on pure goal green, 0 on white and on the grey walls).
* every frame pixel is given its nearest palette colour (RGB distance): white background
  (255, 255, 255), goal green, block fill (142.8, 163.2, 183.6) = 1.2 x LightSlateGray,
  block outline LightSlateGray (119, 136, 153), agent RoyalBlue (65, 105, 225) and its fill
  1.2 x RoyalBlue (78, 126, 255), walls LightGray (211, 211, 211).
* block weight ``b``: 1 for block fill, 0.5 for block outline (the outline is a 4-px band centred
  on the polygon's edge, half of it outside the block; counting it fully over-estimates coverage
  by +0.044 on average at 64x64), 0 otherwise. Agent pixels hide what is under them and are left
  out of both sums.
* coverage = sum(g * b * (1 - agent)) / sum(g * (1 - agent)).

Measured error against ``info["coverage"]`` on frames rendered by gym-pusht
(re-measured by ``tests/test_planning_coverage.py``):

* 300 states, block around the goal, agent anywhere: 64x64 (the quickstart's ``data=pusht``)
  mean absolute error 0.012, max 0.095, bias +0.004; 96x96: 0.011, max 0.088.
* 1800 frames of 6 scripted-pusher episodes: 64x64 0.010 (0.015 where coverage > 0.05), max
  0.099; 96x96: 0.007.

The block exactly on the goal reads 0.95 (its outline then runs along the goal's own edge and
counts half). On *predicted* frames the rule is only as good as the frames (blurred colours fall
to their nearest palette entry); ``bench/bench_planning.py`` also reports it on the tokenizer's
reconstructions of true frames.

Shapes: frames (N, 3, H, W) float in [0, 1] (or uint8 (N, H, W, 3) via ``from_uint8``) ->
coverage (N,) float32.
"""
from __future__ import annotations

import functools
import os

import numpy as np
import torch

GOAL_POSE = (256.0, 256.0, np.pi / 4)   # gym-pusht's fixed goal pose (x, y, angle)

#: palette colour (0-255 RGB) -> (block weight, is agent)
PALETTE: dict[str, tuple[tuple[float, float, float], float, bool]] = {
    "background": ((255.0, 255.0, 255.0), 0.0, False),
    "goal": ((144.0, 238.0, 144.0), 0.0, False),
    "block_fill": ((142.8, 163.2, 183.6), 1.0, False),
    "block_outline": ((119.0, 136.0, 153.0), 0.5, False),
    "agent": ((65.0, 105.0, 225.0), 0.0, True),
    "agent_fill": ((78.0, 126.0, 255.0), 0.0, True),
    "wall": ((211.0, 211.0, 211.0), 0.0, False),
}


def make_env(height: int = 64, width: int | None = None, max_episode_steps: int | None = None):
    """A headless ``gym_pusht/PushT-v0`` rendering (height, width) frames (``pixels_agent_pos``
    observations, as ``wm.data.sources.pusht_sim`` records them)."""
    os.environ.setdefault("SDL_VIDEODRIVER", "dummy")
    try:
        import gymnasium as gym
        import gym_pusht  # noqa: F401  (registers gym_pusht/PushT-v0)
    except ImportError as e:
        raise ImportError("PushT needs gym-pusht: pip install -r requirements.txt") from e
    return gym.make("gym_pusht/PushT-v0", obs_type="pixels_agent_pos", render_mode="rgb_array",
                    observation_width=width or height, observation_height=height,
                    max_episode_steps=max_episode_steps)


def set_state(env, agent_xy, block_pose) -> None:
    """Place the agent at ``agent_xy`` and the block at ``block_pose`` (x, y, angle) exactly.

    (gym-pusht's ``reset_to_state`` sets the position before the angle and so moves the block;
    here the angle is set first, and the shapes' cached vertices are refreshed for rendering.)
    """
    u = env.unwrapped
    u.agent.position = (float(agent_xy[0]), float(agent_xy[1]))
    u.agent.velocity = (0.0, 0.0)
    u.block.angle = float(block_pose[2])
    u.block.position = (float(block_pose[0]), float(block_pose[1]))
    u.block.velocity, u.block.angular_velocity = (0.0, 0.0), 0.0
    for shape in u.space.shapes:
        shape.cache_bb()


def render_state(env, agent_xy, block_pose) -> tuple[np.ndarray, float]:
    """The frame (H, W, 3) uint8 gym-pusht renders for this state and its true coverage."""
    set_state(env, agent_xy, block_pose)
    u = env.unwrapped
    return u._render(), float(u._get_coverage())


@functools.lru_cache(maxsize=8)
def _goal_weights(height: int, width: int) -> torch.Tensor:
    env = make_env(height, width)
    try:
        env.reset(seed=0)
        set_state(env, (-5000.0, -5000.0), (-5000.0, -5000.0, 0.0))      # nothing but the goal
        empty = torch.from_numpy(env.unwrapped._render().astype(np.float32))  # (H, W, 3)
    finally:
        env.close()
    return ((empty[..., 1] - empty[..., 0]) / 94.0).clamp(0, 1)            # (H, W)


def goal_weights(height: int, width: int) -> torch.Tensor:
    """(H, W) float32 in [0, 1]: how much of each frame pixel is goal region (rendered once per
    size by gym-pusht itself, then cached)."""
    return _goal_weights(int(height), int(width)).clone()


def classify(frames: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """frames (N, 3, H, W) in [0, 1] -> (block weight (N, H, W), agent mask (N, H, W) bool) by
    nearest palette colour."""
    colours = torch.tensor([c for c, _, _ in PALETTE.values()], dtype=torch.float32)  # (P, 3)
    block_w = torch.tensor([b for _, b, _ in PALETTE.values()], dtype=torch.float32)  # (P,)
    agent = torch.tensor([a for _, _, a in PALETTE.values()])                         # (P,)
    pix = frames.float().permute(0, 2, 3, 1).mul(255.0)                               # (N,H,W,3)
    nearest = ((pix[..., None, :] - colours) ** 2).sum(-1).argmin(-1)                 # (N, H, W)
    return block_w[nearest], agent[nearest]


def coverage_from_frames(frames: torch.Tensor) -> torch.Tensor:
    """Goal coverage read from frames (N, 3, H, W) in [0, 1] -> (N,) float32 in [0, 1]."""
    if frames.ndim != 4 or frames.shape[1] != 3:
        raise ValueError(f"coverage_from_frames: frames must be (N, 3, H, W) in [0, 1], got "
                         f"{tuple(frames.shape)}")
    frames = frames.detach().cpu()
    g = goal_weights(frames.shape[2], frames.shape[3])                                # (H, W)
    block, agent = classify(frames)
    w = g * (~agent).float()                                                          # (N, H, W)
    return ((w * block).flatten(1).sum(1) / w.flatten(1).sum(1).clamp_min(1e-6)).float()


def from_uint8(frames: np.ndarray | torch.Tensor) -> torch.Tensor:
    """(N, H, W, 3) uint8 (the simulator's and the episode format's layout) -> (N, 3, H, W) in
    [0, 1]."""
    x = torch.as_tensor(np.asarray(frames))
    return x.permute(0, 3, 1, 2).float().div(255.0)
