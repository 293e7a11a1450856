"""VideoTask details not covered by the stage tests: the per-batch token cache is keyed on the
tensor itself, and the Hugging Face export reloads to the same network."""
import json

import torch
from hydra.utils import instantiate

from stage_fixtures import (
    compose_train, cpu_overrides, save_tiny_tokenizer, tiny_llama_factory, tiny_video_overrides,
    write_video_dataset)


def _task_and_batch(tmp_path):
    root = write_video_dataset(tmp_path / "squares")
    tok = save_tiny_tokenizer(tmp_path / "tok" / "last.ckpt")
    cfg = compose_train(["stage=mle", *tiny_video_overrides(root, tok), "data.task.cache_tokens=false",
                         *cpu_overrides(tmp_path / "runs", tmp_path / "data")])
    dm = instantiate(cfg.data.datamodule, _convert_="all")
    dm.setup("fit")
    task = instantiate(cfg.data.task, _convert_="all")
    task.connect(dm)
    return task, next(iter(dm.val_dataloader()))


def test_prompt_cache_never_serves_another_batch(tmp_path):
    task, batch = _task_and_batch(tmp_path)
    first = task.prompts(batch).ids.clone()
    assert torch.equal(task.prompts(batch).ids, first)            # same batch: cached
    for _ in range(5):   # new tensors of the same shape (possibly at the same address)
        other = {**batch, "frames": 1.0 - batch["frames"]}
        assert not torch.equal(task.prompts(other).ids, first)
        del other


def test_export_reloads_with_transformers(tmp_path):
    from transformers import LlamaForCausalLM

    task, batch = _task_and_batch(tmp_path)
    policy = task.build_policy(tiny_llama_factory()).eval()
    paths = task.export(policy, tmp_path / "export")
    again = LlamaForCausalLM.from_pretrained(paths["hf"]).eval()
    ids = task.prompts(batch).ids
    torch.testing.assert_close(again(input_ids=ids).logits, policy(input_ids=ids).logits)
    vocab = json.loads(paths["vocab"].read_text())
    assert vocab["vocab_size"] == policy.config.vocab_size == task.vocab.vocab_size
    assert vocab["eos_id"] == task.vocab.eos_id and vocab["layout"] == "single_step"
