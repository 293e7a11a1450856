"""Small shared pieces for the stage tests (tests/test_stage_{mle,grpo,distributed}.py).

- ``compose_train``: the real ``conf/train.yaml`` composed with overrides and shrunk for CPU.
- ``write_video_dataset`` / ``save_tiny_tokenizer``: a tiny wm-episodes dataset (16x16 frames,
  moving squares) and a tiny per-frame tokenizer saved in the tokenizer stage's checkpoint
  format, so the video MLE/GRPO stages run in seconds without the tokenizer stage.
- ``MetricRecorder``: a callback (built by ``_target_`` from the config) that appends every
  training step's logged scalars, rank and batch identity to a JSON-lines file.
- ``TargetTokenTask`` / ``TargetTokenData``: a synthetic verifiable task for the GRPO learning
  test: the reward is the fraction of response tokens equal to a target id.
"""
from __future__ import annotations

import json
import math
from functools import partial
from pathlib import Path

import lightning as L
import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader

from wm.data.sampling import StepSeededSampler, batches_completed
from wm.rollout.plan import ResponsePlan
from wm.tasks.base import Prompts, Responses

ROOT = Path(__file__).resolve().parents[1]
CONF = ROOT / "conf"
RES = 16  # frame side of the tiny video dataset


# ----------------------------------------------------------------------------- configs
def compose_train(overrides: list[str]):
    """``conf/train.yaml`` composed with ``overrides`` (Hydra's compose API, struct mode on)."""
    from hydra import compose, initialize_config_dir

    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        return compose("train", overrides=list(overrides))


def cpu_overrides(runs: Path, data: Path) -> list[str]:
    """Overrides every stage test shares: CPU, no logger, no progress bar, tmp folders."""
    return [f"paths.runs_dir={runs}", f"paths.data_dir={data}", "logger=none",
            "trainer.enable_progress_bar=false", "+trainer.enable_model_summary=false",
            "trainer.accelerator=cpu", "num_threads=1"]


#: the tiny frames (RES x RES) are below ST-LPIPS's minimum size: score them with MAE alone
TINY_SCORING = ["data.task.perceptual=null", "~data.task.reward.weights.lpips"]


def tiny_video_overrides(data_root: Path, tokenizer_ckpt: Path) -> list[str]:
    """``data=pusht`` pointed at the tiny dataset and tokenizer, and a tiny LLaMA."""
    return ["data=pusht", *TINY_SCORING, f"data.root={data_root}", f"data.resolution=[{RES},{RES}]",
            "data.source=null", f"data.task.tokenizer_ckpt={tokenizer_ckpt}",
            "data.datamodule.batch_size=2", "data.datamodule.val_every=4",
            "data.datamodule.val_clips_per_episode=1",
            "model.policy.hidden_size=32", "model.policy.num_layers=2",
            "model.policy.num_heads=2", "model.policy.intermediate_size=64",
            "model.policy.max_position_embeddings=128", "model.warmup_steps=0"]


def recorder_override(path: Path) -> list[str]:
    return ["+callbacks.recorder._target_=stage_fixtures.MetricRecorder",
            f"+callbacks.recorder.path={path}"]


# ----------------------------------------------------------------------- exact resume
def fit(overrides):
    from wm.cli.fit import fit_stage

    return fit_stage(compose_train(overrides))


def policy_state(run_dir: Path) -> dict:
    ckpt = torch.load(run_dir / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=False)
    return {k: v for k, v in ckpt["state_dict"].items() if k.startswith("policy.")}


def resume_pair(tmp_path, common, total: int):
    """(rows, weights) of one uninterrupted run of ``total`` steps and of a run stopped at
    ``total // 2`` and resumed from its last.ckpt in a second process-like call."""
    out = {}
    for name, stops in (("straight", [total]), ("resumed", [total // 2, total])):
        runs = tmp_path / name
        for stop in stops:
            fit(common + cpu_overrides(runs, tmp_path / "data")
                + recorder_override(runs / "rows.jsonl")
                + [f"stage.max_steps={stop}", f"stage.checkpoint_every_n_steps={total // 2}"])
        run_dir = next(runs.glob("*/*/checkpoints")).parent
        out[name] = (read_rows(runs / "rows.jsonl"), policy_state(run_dir))
    return out


def assert_same_run(out, rows: int):
    (rows_a, w_a), (rows_b, w_b) = out["straight"], out["resumed"]
    assert [r["step"] for r in rows_a] == [r["step"] for r in rows_b]
    assert len(rows_a) == rows
    for a, b in zip(rows_a, rows_b):
        assert a["batch"] == b["batch"], f"step {a['step']}: a different batch after resuming"
        assert a["metrics"].keys() == b["metrics"].keys()
        for k in a["metrics"]:
            assert a["metrics"][k] == b["metrics"][k], (a["step"], k)
    assert w_a.keys() == w_b.keys()
    for k in w_a:
        torch.testing.assert_close(w_a[k], w_b[k], rtol=0, atol=0, msg=k)


# ---------------------------------------------------------------------- tiny video world
def write_video_dataset(root: Path, episodes: int = 8, length: int = 10, seed: int = 0) -> Path:
    """Episodes of a bright square moved by a 2-D action on a dark 16x16 background."""
    from wm.data.episodes import EpisodeWriter

    rng = np.random.default_rng(seed)
    with EpisodeWriter(root, source="test_squares") as writer:
        for _ in range(episodes):
            pos = rng.integers(2, RES - 6, size=2)
            frames, actions = [], []
            for _ in range(length):
                act = rng.integers(-1, 2, size=2)
                img = np.full((RES, RES, 3), 20, dtype=np.uint8)
                img[pos[0]:pos[0] + 4, pos[1]:pos[1] + 4] = (230, 200, 40)
                frames.append(img)
                actions.append(act.astype(np.float32))
                pos = np.clip(pos + act, 0, RES - 4)
            writer.add(np.stack(frames), np.stack(actions))
    return root


def save_tiny_tokenizer(path: Path, seed: int = 0) -> Path:
    """A random ``FrameTokenizer`` (16x16 -> 4x4 tokens, 45 codes) in the checkpoint format
    ``wm.vision.registry.load_tokenizer`` reads: ``tokenizer_config`` + ``tokenizer.*`` weights."""
    from wm.vision.fsq_vqgan import FrameTokenizer
    from wm.vision.registry import tokenizer_config

    torch.manual_seed(seed)
    tok = FrameTokenizer(channels=(8, 8, 8), levels=(5, 3, 3), latent_dim=4, res_blocks=1,
                         resolution=(RES, RES))
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save({"tokenizer_config": tokenizer_config(tok),
                "state_dict": {f"tokenizer.{k}": v for k, v in tok.state_dict().items()}}, path)
    return path


# ------------------------------------------------------------------------ metric recorder
class MetricRecorder(L.Callback):
    """Append ``{"rank", "step", "batch", "metrics"}`` per training batch to ``path`` (one file
    per rank: ``path`` gets ``.rank<r>`` appended when the world size is above 1)."""

    def __init__(self, path: str, prefixes: tuple[str, ...] = ("train/", "grpo/")):
        self.path, self.prefixes = str(path), tuple(prefixes)

    def _file(self, trainer) -> Path:
        p = Path(self.path)
        return p.with_name(f"{p.name}.rank{trainer.global_rank}") if trainer.world_size > 1 else p

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        skip = ("grpo/rollout_tokens_per_s",)     # wall-clock, never reproducible
        metrics = {k: float(v) for k, v in trainer.callback_metrics.items()
                   if k.startswith(self.prefixes) and k not in skip
                   and not k.startswith(("grpo/time/", "grpo/peak_mem_mb/"))}  # machine state
        ident = {k: batch[k].tolist() for k in ("episode", "start", "target_id")
                 if isinstance(batch, dict) and torch.is_tensor(batch.get(k))}
        if isinstance(batch, dict) and "prompt" in batch:
            ident["prompt"] = list(batch["prompt"])
        row = {"rank": trainer.global_rank, "step": trainer.global_step,
               "batch": ident, "metrics": metrics}
        with open(self._file(trainer), "a") as fh:
            fh.write(json.dumps(row) + "\n")


def read_rows(path: Path) -> list[dict]:
    return [json.loads(line) for line in Path(path).read_text().splitlines() if line.strip()]


# -------------------------------------------------------------- synthetic verifiable task
class TargetTokenTask(nn.Module):
    """Prompt: ``P`` random ids; response: up to ``L`` ids in ``[0, V)`` (stopping at ``eos``
    when one is given, so responses differ in length). Verifiable reward: the fraction of the
    ``L`` response slots holding ``target`` (pure function of the sampled ids). A random policy
    scores ~1/V; the optimum is 1."""

    higher_is_better = {"reward": True, "hit_rate": True}

    def __init__(self, vocab: int = 16, response_len: int = 6, target: int = 3,
                 eos: int | None = None):
        super().__init__()
        self.vocab, self.L, self.target, self.eos = vocab, response_len, target, eos

    def build_policy(self, factory, init=None):
        if init:
            raise ValueError("TargetTokenTask has no checkpoint to start from")
        return factory(vocab_size=self.vocab)

    def policy_checkpoint(self, policy) -> dict:
        return {"config": policy.config.to_dict()}

    def connect(self, datamodule) -> None:
        pass

    def prompts(self, batch) -> Prompts:
        ids = batch["prompt"]
        plan = ResponsePlan(self.L, allowed_lo=0, allowed_hi=self.vocab, eos_id=self.eos)
        return Prompts(ids, torch.ones_like(ids, dtype=torch.bool), plan)

    def responses(self, batch) -> Responses:
        ids = torch.full((batch["prompt"].shape[0], self.L), self.target, dtype=torch.long)
        return Responses(ids.to(batch["prompt"].device), torch.ones_like(ids, dtype=torch.bool))

    def decode(self, tokens, batch, group_size):
        return {"tokens": tokens}

    def rewards(self, preds, batch, group_size):
        hit = (preds["tokens"] == self.target).float().mean(dim=1)          # (N,)
        return {"reward": hit, "hit_rate": hit}

    def metrics(self, preds, batch, group_size):
        return {"hit_rate": (preds["tokens"] == self.target).float().mean(dim=1)}


class TargetTokenData(L.LightningDataModule):
    """Random prompts; an infinite step-seeded training stream (like the real DataModules)."""

    def __init__(self, n_train: int = 64, n_val: int = 16, prompt_len: int = 4, vocab: int = 16,
                 batch_size: int = 4, seed: int = 0):
        super().__init__()
        g = torch.Generator().manual_seed(seed)
        self.train_ids = torch.randint(vocab, (n_train, prompt_len), generator=g)
        self.val_ids = torch.randint(vocab, (n_val, prompt_len), generator=g)
        self.batch_size, self.seed = batch_size, seed

    @staticmethod
    def _collate(items):
        return {"prompt": torch.stack(items)}

    def train_dataloader(self):
        rank = self.trainer.global_rank if self.trainer is not None else 0
        sampler = StepSeededSampler(len(self.train_ids), self.batch_size, seed=self.seed,
                                    start_batch=batches_completed(self.trainer), rank=rank)
        return DataLoader(list(self.train_ids), batch_size=self.batch_size, sampler=sampler,
                          collate_fn=self._collate)

    def val_dataloader(self):
        return DataLoader(list(self.val_ids), batch_size=self.batch_size, collate_fn=self._collate)


def tiny_llama(vocab_size: int, seed: int = 0):
    from wm.world.llama import build_llama

    return build_llama(vocab_size=vocab_size, hidden_size=32, num_layers=2, num_heads=2,
                       intermediate_size=64, max_position_embeddings=64, seed=seed)


def tiny_llama_factory(seed: int = 0):
    return partial(tiny_llama, seed=seed)


def isfinite(x: float) -> bool:
    return isinstance(x, float) and math.isfinite(x)


def run_probe(probe: Path, devices: int, out: Path, *extra: str):
    """Run a DDP probe script (``tests/ddp_*_probe.py``) on ``devices`` CPU ranks, one thread
    each; returns what it saved to ``out`` (``torch.load``)."""
    import os
    import subprocess
    import sys

    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.run([sys.executable, str(probe), "--devices", str(devices), "--out",
                           str(out), *extra], cwd=ROOT, env=env, capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-4000:]
    return torch.load(out)
