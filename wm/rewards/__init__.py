"""Verifiable rewards and metrics: pure functions plus a registry of builders by name."""
from wm.rewards.registry import REWARDS, available_rewards, build_reward, register_reward
from wm.rewards.video import METRIC_SIGN, VideoReward, frame_metrics

__all__ = ["METRIC_SIGN", "REWARDS", "VideoReward", "available_rewards", "build_reward",
           "frame_metrics", "register_reward"]
