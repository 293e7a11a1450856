"""A trained PushT video world model (the quickstart's checkpoints) as a simulator of frames.

Paper: RLVR-World Sec. 5 (using world models: policy evaluation and planning), with the video
world model of Sec. 4.2 (single-step: ``Tc`` context frames + actions -> next frame). Every
prediction goes through the project's evaluation code: ``wm.rollout.scoring.sample_and_score``
with ``horizon > 1`` (``VideoTask.open_loop``: each predicted frame's tokens become the newest
context frame, the given actions are fed in order) for recorded episodes, and
``VideoTask.open_loop`` itself for candidate action sequences (no true future frames exist).

Checkpoints: ``<runs>/<data>/{tokenizer,mle,grpo}/checkpoints/last.ckpt`` as ``python train.py``
writes them; the run's ``config.yaml`` gives the dataset (frame size, ``frame_skip``, action
statistics for the action bins). A missing file fails with one line naming the command.

Shapes: clips (B, Tc + H, 3, h, w) float in [0, 1]; actions (B, Tc + H, A) raw (A = 2 *
frame_skip target positions in px; ``actions[:, t]`` applied at frame t, the last one unread);
predictions (B*G, H, 3, h, w).
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from wm.rollout.scoring import sample_and_score
from wm.utils.seeding import seeded_generator

STAGES = {"MLE": "mle", "RLVR": "grpo"}


def checkpoint_paths(runs_dir: str | Path, data: str = "pusht") -> dict[str, Path]:
    """{stage: last.ckpt} under ``runs_dir/<data>``."""
    root = Path(runs_dir) / data
    return {s: root / s / "checkpoints" / "last.ckpt" for s in ("tokenizer", "mle", "grpo")}


def require_checkpoints(runs_dir: str | Path, stages, data: str = "pusht") -> None:
    """Fail with one line naming the missing files and the command that writes them."""
    paths = checkpoint_paths(runs_dir, data)
    missing = [str(paths[s]) for s in ("tokenizer", *stages) if not paths[s].is_file()]
    if missing:
        raise SystemExit(f"--runs-dir {runs_dir}: missing {', '.join(missing)}; produce them with "
                         f"`python train.py` (the quickstart; WM_RUNS_DIR=<dir> to write "
                         f"elsewhere) or point --runs-dir at its runs folder")


class PushTWorldModel:
    """A connected ``VideoTask`` and a world-model policy, with the run's data settings.

    Attributes: ``name``, ``task``, ``policy``, ``Tc`` (context frames), ``frame_skip``,
    ``image_size``, ``action_dim``.
    """

    def __init__(self, name: str, task, policy, frame_skip: int, image_size: int):
        self.name, self.task, self.policy = name, task, policy.eval()
        self.Tc, self.frame_skip, self.image_size = int(task.Tc), int(frame_skip), int(image_size)
        self.action_dim = int(task.actions.action_dim)

    @classmethod
    def from_runs(cls, runs_dir: str | Path, stage: str, name: str | None = None,
                  data: str = "pusht") -> "PushTWorldModel":
        """Load ``<runs>/<data>/<stage>/checkpoints/last.ckpt`` with its run's config."""
        from hydra.utils import instantiate
        from omegaconf import OmegaConf

        require_checkpoints(runs_dir, [stage], data)
        paths = checkpoint_paths(runs_dir, data)
        cfg = OmegaConf.load(paths[stage].parent.parent / "config.yaml")
        src = cfg.data.get("source")
        if src is None or src.get("image_size") is None:
            raise SystemExit(f"{paths[stage]}: trained on data={cfg.data.name}, not on the "
                             "gym-pusht simulator's data (data=pusht); planning needs the "
                             "simulator")
        res = cfg.data.get("resolution")
        if res is not None and any(int(r) != int(src.image_size) for r in res):
            raise SystemExit(f"{paths[stage]}: data.resolution={list(res)} differs from "
                             f"data.source.image_size={src.image_size}; planning renders the "
                             "simulator at the trained frame size, train with them equal")
        dm = instantiate(cfg.data.datamodule, _convert_="all")
        dm.prepare_data()                              # the dataset's action statistics
        task = instantiate(cfg.data.task, _convert_="all", tokenizer_ckpt=str(paths["tokenizer"]))
        task.connect(dm)
        policy = task.build_policy(None, init=str(paths[stage]))
        return cls(name or stage, task, policy, int(src.get("frame_skip", 1)), int(src.image_size))

    # ------------------------------------------------------------------ episodes
    def episode_batch(self, frames: np.ndarray, actions: np.ndarray) -> dict:
        """Recorded episodes -> a batch: frames (B, T+1, h, w, 3) uint8 and actions (B, T, A) ->
        {"frames": (B, T+1, 3, h, w) in [0, 1], "actions": (B, T+1, A)} (last action repeated,
        never read)."""
        f = torch.from_numpy(np.ascontiguousarray(frames)).permute(0, 1, 4, 2, 3).float() / 255
        a = torch.from_numpy(np.asarray(actions, dtype=np.float32))
        return {"frames": f, "actions": torch.cat([a, a[:, -1:]], dim=1)}

    @torch.no_grad()
    def predict_episodes(self, frames: np.ndarray, actions: np.ndarray, samples: int = 1,
                         seed: int = 0, temperature: float = 1.0, top_k: int | None = None):
        """Open-loop prediction of recorded episodes from their first ``Tc`` frames with their own
        actions (``sample_and_score``, horizon = T + 1 - Tc). Returns (predicted frames
        (B*samples, H, 3, h, w), metrics {name: (B*samples,)} against the true frames)."""
        batch = self.episode_batch(frames, actions)
        horizon = batch["frames"].shape[1] - self.Tc
        if horizon < 1:
            raise ValueError(f"episodes of {batch['frames'].shape[1]} frames leave nothing to "
                             f"predict after {self.Tc} context frames; use more steps")
        gen = seeded_generator(seed, 0, 0, "cpu")
        preds, _, metrics, _ = sample_and_score(self.task, self.policy, batch, samples, gen,
                                                temperature=temperature, top_k=top_k,
                                                horizon=horizon)
        return preds["frames"], metrics

    # ---------------------------------------------------------------- candidates
    @torch.no_grad()
    def imagine(self, context: torch.Tensor, past_actions: torch.Tensor,
                candidates: torch.Tensor, generator: torch.Generator,
                temperature: float = 1.0, top_k: int | None = None) -> torch.Tensor:
        """Frames predicted for K candidate action sequences from one context.

        context (Tc, 3, h, w) in [0, 1]; past_actions (Tc - 1, A) (applied at context frames
        0..Tc-2); candidates (K, H, A) (the first applied at the last context frame).
        Returns (K, H, 3, h, w).
        """
        K, H = candidates.shape[:2]
        acts = torch.cat([past_actions[None].expand(K, -1, -1), candidates,
                          candidates[:, -1:]], dim=1).float()                 # (K, Tc + H, A)
        clip = torch.cat([context, context[-1:].expand(H, -1, -1, -1)])      # (Tc + H, 3, h, w)
        batch = {"frames": clip[None].expand(K, -1, -1, -1, -1).float(), "actions": acts}
        out = self.task.open_loop(self.policy, batch, H, 1, generator, temperature=temperature,
                                  top_k=top_k)
        return out["frames"]
