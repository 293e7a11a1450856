"""The paper's released world models see exactly the ids they were trained on (#15).

Multi-step: the reference's id order (future ids 0-4374, context ids 4375-8749, actions from
8750; prompt = 1,280 context + 80 future + 13 action = 1,373, response = 7 x (80 + 13) = 651, no
BOS/EOS; shared/CHECKPOINTS.md) written by hand here, against what our VideoTask produces with
``visual_order=future_first, n_prompt_future=1, final_action=true``. Released transformer folders
(random weights at the released config, 2 layers) load through ``init_policy`` and ``eval.py``'s
entry point; export -> load is exact; wrong or missing files give one clear line.
"""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from torch import nn

import wm.vision.registry as registry
from wm.tasks.video import VideoTask
from wm.world.vocab import VocabLayout

NC, NF, A, T_PRED = 1280, 80, 13, 7


class StubCompressive(nn.Module):
    """Stands in for the released compressive tokenizer: fixed codes, the same sizes."""

    tokens_per_context_frame, tokens_per_future_frame = NC, NF
    codebook_sizes, shared_codebook = (4375, 4375), False

    def __init__(self, ctx, fut):
        super().__init__()
        self.ctx, self.fut = ctx, fut

    def encode_clip(self, frames, n_context):
        return self.ctx, self.fut

    def decode_clip(self, ctx, fut):
        return torch.zeros(fut.shape[0], fut.shape[1], 3, 8, 8)


class Stats:
    action_dim = A
    action_stats = None


def _reference_bins(actions, ranges):
    """CHECKPOINTS.md: bin = floor(clip((a - min)/(max - min + 1e-8), 0, 1) * 256), <= 255."""
    lo, hi = ranges[:, 0], ranges[:, 1]
    unit = np.clip((actions - lo) / (hi - lo + 1e-8), 0, 1)
    return np.minimum(np.floor(unit * 256), 255).astype(np.int64)


@pytest.mark.real_data
def test_multi_step_task_writes_the_reference_sequence(shared_data, monkeypatch):
    g = torch.Generator().manual_seed(0)
    ctx = torch.randint(4375, (1, 1, NC), generator=g)
    fut = torch.randint(4375, (1, 1 + T_PRED, NF), generator=g)
    monkeypatch.setattr(registry, "load_tokenizer",
                        lambda *a, **k: StubCompressive(ctx, fut))
    ranges_file = shared_data / "rt1" / "action_ranges.json"
    task = VideoTask("unused", layout="multi_step", context_frames=1, future_frames=1 + T_PRED,
                     action_ranges=str(ranges_file), visual_order="future_first",
                     n_prompt_future=1, final_action=True)
    task.connect(Stats())
    assert task.vocab.vocab_size == 9008
    ranges = np.array(json.loads(ranges_file.read_text())["ranges"], dtype=np.float64)
    actions = torch.from_numpy(ranges[:, 0] + (ranges[:, 1] - ranges[:, 0])
                               * np.random.default_rng(0).random((1, 1 + 1 + T_PRED, A)))
    batch = {"frames": torch.zeros(1, 1 + 1 + T_PRED, 3, 8, 8), "actions": actions.float()}

    bins = _reference_bins(actions.float().double().numpy()[0], ranges)        # (9, 13)
    # by hand, in the reference's order: context ids + 4375; future ids as they are; actions +
    # 8750; the frame of clip index i (i >= 1) followed by the action at index i
    prompt = (list((ctx[0, 0] + 4375).tolist()) + fut[0, 0].tolist()
              + list(bins[1] + 8750))
    response = []
    for i in range(1, 1 + T_PRED):
        response += fut[0, i].tolist() + list(bins[1 + i] + 8750)
    assert len(prompt) == 1373 and len(response) == 651

    got = task.prompts(batch)
    assert got.ids[0].tolist() == prompt
    truth = task.responses(batch)
    assert truth.ids[0].tolist() == response
    # frames are free in [0, 4375); every action (the last included) is forced
    free = got.plan.free_positions
    assert int(free.sum()) == T_PRED * NF and got.plan.ranges[free][0].tolist() == [0, 4375]
    assert truth.loss_mask[0].sum() == T_PRED * NF                                   # frames only


def test_visual_orders_round_trip():
    codes = torch.randint(4375, (3, 80))
    for order in ("context_first", "future_first"):
        v = VocabLayout(4375, 4375, False, visual_order=order)
        assert torch.equal(v.future_codes_of(v.future_ids(codes)), codes)
        assert torch.equal(v.context_codes_of(v.context_ids(codes)), codes)
    ours = VocabLayout(4375, 4375, False)
    ref = VocabLayout(4375, 4375, False, visual_order="future_first")
    # the same frame's ids in one order map to the other by a fixed permutation of the rows
    assert torch.equal(ref.future_ids(codes), ours.future_ids(codes) - 4375)
    assert torch.equal(ref.context_ids(codes), ours.context_ids(codes) + 4375)
    assert ours.action_range() == ref.action_range() == (8750, 9006)
    with pytest.raises(ValueError, match="visual_order"):
        VocabLayout(4375, 4375, False, visual_order="sideways")


class StubFrame(nn.Module):
    tokens_per_context_frame = tokens_per_future_frame = 320
    codebook_sizes, shared_codebook = (4375, 4375), True


def _released_llama(vocab: int, layers: int = 2):
    """The released transformer's config (shared/CHECKPOINTS.md) with 2 layers, random weights."""
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    cfg = LlamaConfig(vocab_size=vocab, hidden_size=768, intermediate_size=3072,
                      num_hidden_layers=layers, num_attention_heads=12, num_key_value_heads=12,
                      hidden_act="silu", rms_norm_eps=1e-6, max_position_embeddings=8192,
                      rope_theta=10000.0, tie_word_embeddings=False)
    return LlamaForCausalLM(cfg)


def test_released_transformer_folder_loads_and_export_round_trips(tmp_path, monkeypatch):
    monkeypatch.setattr(registry, "load_tokenizer", lambda *a, **k: StubFrame())
    task = VideoTask("unused", layout="single_step", context_frames=4)
    assert task.vocab.vocab_size == 4633
    folder = tmp_path / "rt1-world-model-single-step-base"
    _released_llama(4633).save_pretrained(folder)
    policy = task.build_policy(None, init=str(folder))            # stage.module.init_policy=...
    ref = _released_llama(4633).state_dict()
    for k, v in policy.state_dict().items():
        assert torch.equal(v, ref[k]), k
    out = task.export(policy, tmp_path / "export")                # our release: the same layout
    again = task.build_policy(None, init=str(out["hf"]))
    for k, v in again.state_dict().items():
        assert torch.equal(v, ref[k]), k
    assert (out["hf"] / "model.safetensors").is_file()


def test_wrong_or_missing_world_model_files_give_one_line(tmp_path, monkeypatch):
    monkeypatch.setattr(registry, "load_tokenizer", lambda *a, **k: StubFrame())
    task = VideoTask("unused", layout="single_step", context_frames=4)
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(FileNotFoundError, match=r"empty/config.json"):
        task.build_policy(None, init=str(empty))
    wrong = tmp_path / "wrong_vocab"
    _released_llama(9008).save_pretrained(wrong)
    with pytest.raises(ValueError, match=r"vocabulary 9008 .* 4633"):
        task.build_policy(None, init=str(wrong))
    broken = tmp_path / "broken"
    _released_llama(4633).save_pretrained(broken)
    (broken / "model.safetensors").write_bytes(b"not a safetensors file")
    with pytest.raises(ValueError, match="broken") as err:
        task.build_policy(None, init=str(broken))
    assert "\n" not in str(err.value)
