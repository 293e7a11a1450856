"""Verifiable rewards and metrics: pure functions that score predicted states against the truth.

Video: ``frame_metrics`` (per-frame metrics) and ``video`` (the weighted reward); text:
``text_game`` (ByteSized32), ``web`` (WMA item F1), ``toy``; ``repetition`` (repeated frames).
Configs name the reward they use by ``_target_`` (``conf/task/video.yaml``, ``conf/data/*.yaml``).
"""
