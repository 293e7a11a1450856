"""The three shapes of ``bench/bench_grpo_step.py``: tasks, data, models, and what TRL needs.

* ``toy``: today's tiny toy of tests/test_stage_grpo.py (TargetTokenTask, 4 prompts x G=8,
  6 response ids of a 16-id vocabulary, LLaMA h32/L2).
* ``video``: the paper's video single-step layout: one prompt of P=1,333 ids per step, L=321
  free response ids restricted to the 4,375 visual ids of a 4,633-id vocabulary, G=16, LLaMA
  hidden 256 / 4 layers (bench_rollout.py's "small" preset: 4 heads, MLP 768). Reward: the
  fraction of response ids below ``REWARD_HI`` (cheap, verifiable on the ids).
* ``text``: one real ByteSized32 test prompt, rendered by the project's prompt code
  (``TextStateDataModule`` + ``TextStateTask``, chat template of the tiny rig), the tiny Qwen2
  rig, up to 300 response tokens, G=5, the text-game reward (``task_specific``).

Every builder is deterministic (fixed seeds), so a worker process rebuilds exactly the model,
prompt and data another worker (ours or TRL) uses.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import torch
from torch import nn

ROOT = Path(__file__).resolve().parents[1]
# the real data (../shared/data, or WM_SHARED_DATA as the tests read it)
BS32 = Path(os.environ.get("WM_SHARED_DATA", ROOT.parent / "shared" / "data")) / "bytesized32"

# video single-step layout (RLVR-World, reference VocabLayout with the 4,375-code FSQ tokenizer)
VOCAB, VISUAL, P_VIDEO, L_VIDEO, G_VIDEO = 4633, 4375, 1333, 321, 16
HIDDEN, LAYERS, HEADS, INTER = 256, 4, 4, 768
REWARD_HI = 2048            # reward: fraction of response ids in [0, REWARD_HI)
# text shape
L_TEXT, G_TEXT, TEXT_POSITIONS = 300, 5, 4096
# toy shape
G_TOY, B_TOY = 8, 4


@dataclass
class Shape:
    name: str               # key used on the command line and in the JSON results
    label: str              # how the doc names it (the "<shape>" of the summary lines)
    group: int
    micro_batch_size: int


SHAPES = {
    "toy": Shape("toy", "tiny toy", G_TOY, 32),
    "video": Shape("video", "video single-step", G_VIDEO, G_VIDEO),
    "text": Shape("text", "text ByteSized32", G_TEXT, G_TEXT),
}


# ------------------------------------------------------------------------------ video shape
def video_llama(seed: int = 0):
    from wm.world.llama import build_llama

    return build_llama(VOCAB, HIDDEN, LAYERS, HEADS, intermediate_size=INTER,
                       max_position_embeddings=2048, seed=seed)


def video_prompt_ids(seed: int = 0) -> torch.Tensor:
    """The one prompt (P_VIDEO,) of the video shape: fixed random ids over the vocabulary."""
    return torch.randint(0, VOCAB, (P_VIDEO,), generator=torch.Generator().manual_seed(seed))


def low_id_rate(tokens: torch.Tensor) -> torch.Tensor:
    """(N, L) ids -> (N,) fraction below REWARD_HI: the video shape's verifiable reward."""
    return (tokens < REWARD_HI).float().mean(dim=1)


class IdsTask(nn.Module):
    """The plumbing every synthetic benchmark task shares: built from its factory (no checkpoint
    to start from), no DataModule to connect, ``batch["prompt"]`` ids in and ``response_len``
    free ids in ``[lo, hi)`` out."""

    def __init__(self, response_len: int, lo: int, hi: int):
        super().__init__()
        self.response_len, self.lo, self.hi = int(response_len), int(lo), int(hi)

    def build_policy(self, factory, init=None):
        if init:
            raise ValueError(f"{type(self).__name__} has no checkpoint to start from")
        return factory()

    def policy_checkpoint(self, policy) -> dict:
        return {"config": policy.config.to_dict()}

    def connect(self, datamodule) -> None:
        pass

    def prompts(self, batch):
        from wm.rollout.plan import ResponsePlan
        from wm.tasks.base import Prompts

        ids = batch["prompt"]
        plan = ResponsePlan(self.response_len, allowed_lo=self.lo, allowed_hi=self.hi)
        return Prompts(ids, torch.ones_like(ids, dtype=torch.bool), plan)


class VideoLayoutTask(IdsTask):
    """The video single-step layout without frames: prompt ids in, L free visual ids out."""

    higher_is_better = {"reward": True, "low_id_rate": True}

    def __init__(self, response_len: int = L_VIDEO, visual: int = VISUAL):
        super().__init__(response_len, 0, visual)

    def decode(self, tokens, batch, group_size):
        return {"tokens": tokens}

    def rewards(self, preds, batch, group_size):
        if "_rate" not in preds:
            preds["_rate"] = low_id_rate(preds["tokens"])
        return {"reward": preds["_rate"], "low_id_rate": preds["_rate"]}

    def metrics(self, preds, batch, group_size, per_frame: bool = False):
        return {"low_id_rate": self.rewards(preds, batch, group_size)["low_id_rate"]}


def _one_prompt_loader(items, collate, trainer, seed=0):
    from torch.utils.data import DataLoader

    from wm.data.sampling import train_sampler

    return DataLoader(items, batch_size=1, sampler=train_sampler(len(items), 1, seed, trainer),
                      collate_fn=collate)


def video_datamodule():
    import lightning as L

    class VideoLayoutData(L.LightningDataModule):
        """The same prompt every step (B=1): steps do equal work and TRL gets this prompt too."""

        def train_dataloader(self):
            return _one_prompt_loader([video_prompt_ids()], lambda xs: {"prompt": torch.stack(xs)},
                                      self.trainer)

    return VideoLayoutData()


def word_tokenizer():
    """Word-level tokenizer for TRL at the video shape: "t<i>" <-> id i for i < VOCAB; EOS, PAD
    and UNK are ids VOCAB.. (outside the model's logits, so never sampled: every completion has
    exactly max_completion_length tokens)."""
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    vocab = {f"t{i}": i for i in range(VOCAB)}
    vocab.update({"<eos>": VOCAB, "<pad>": VOCAB + 1, "<unk>": VOCAB + 2})
    tok = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    return PreTrainedTokenizerFast(tokenizer_object=tok, eos_token="<eos>", pad_token="<pad>",
                                   unk_token="<unk>")


def video_prompt_text() -> str:
    return " ".join(f"t{i}" for i in video_prompt_ids().tolist())


# ------------------------------------------------------------------------------- text shape
def text_factory():
    from wm.language.presets import tiny_causal_lm

    return partial(tiny_causal_lm, seed=0)


def text_task():
    from wm.tasks.text import TextStateTask

    return TextStateTask("wm.rewards.text_game.text_game_rewards", "task_specific",
                         max_prompt_tokens=TEXT_POSITIONS - L_TEXT - 4, max_response_tokens=L_TEXT)


def text_datamodule():
    from wm.data.text import TextStateDataModule

    class OneTestPrompt(TextStateDataModule):
        """ByteSized32 through the project's prompt code; training stream = the first kept
        test (validation) transition only, so every step samples from the same prompt."""

        def setup(self, stage=None):
            super().setup(stage)
            self.train_items = self.val_items[:1]

    return OneTestPrompt("bytesized32", path=str(BS32), batch_size=1, max_train_records=1,
                         max_val_records=8, seed=0)


def text_prompt() -> tuple[str, dict, torch.Tensor]:
    """(rendered prompt text, record, our prompt ids (1, P)) of the text shape, built exactly as
    the GRPO run builds them (task connected to the DataModule, chat template applied)."""
    from wm.data.text import collate_text
    from wm.language.chat import render_prompts

    task, dm = text_task(), text_datamodule()
    task.build_policy(text_factory())
    task.connect(dm)
    dm.setup()
    batch = collate_text(dm.train_items[:1])
    text = render_prompts(task.tokenizer, batch["prompt"], task.chat_template)[0]
    return text, batch["record"][0], task.prompts(batch).ids


# ------------------------------------------------------------------------------- toy shape
def toy_parts():
    import sys

    sys.path.insert(0, str(ROOT / "tests"))
    from stage_fixtures import TargetTokenData, TargetTokenTask, tiny_llama_factory

    return TargetTokenTask(), tiny_llama_factory(0), TargetTokenData(batch_size=B_TOY)


def build(shape: str):
    """(task, model factory, datamodule) of a shape, for ``GRPOModule`` + a Lightning Trainer."""
    if shape == "toy":
        return toy_parts()
    if shape == "video":
        return VideoLayoutTask(), partial(video_llama, seed=0), video_datamodule()
    if shape == "text":
        return text_task(), text_factory(), text_datamodule()
    raise ValueError(f"unknown shape {shape!r}; one of {sorted(SHAPES)}")
