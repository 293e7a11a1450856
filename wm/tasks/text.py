"""Language world-model tasks: text state in, predicted next text state out (paper Sec. 4.1-4.2).

The prompt is the DataModule's text (instructions, state, action); the response is the model's
completion, stopped at EOS. Decoding is the tokenizer's; the verifiable reward is a pure
function of (completion, record) chosen by import path in the config:
``wm.rewards.text_game.text_game_rewards`` (ByteSized32: binary / task-specific),
``wm.rewards.web.web_rewards`` (WebArena item F1), ``wm.rewards.toy.toy_rewards`` (toy world).
Unparseable completions score 0 and are counted (``parse_fail``), never raise.

SFT (the MLE stage) trains on the target's tokens plus EOS only. GRPO starting from an SFT
checkpoint merges the SFT adapter into the weights and trains a fresh LoRA on top, so the KL
reference (adapters disabled) is the SFT model, as in the paper, without a second copy.
"""
from __future__ import annotations

import math
from pathlib import Path

import torch
from hydra.utils import get_method
from torch import nn

from wm.language.chat import render_prompts, template_overhead
from wm.language.presets import checkpoint_entry, lora_settings, rebuild_from_checkpoint
from wm.rewards.overlong import soft_overlong_penalty
from wm.utils.hub import looks_like_hub_id
from wm.rollout.plan import ResponsePlan
from wm.tasks.base import Prompts, Responses


class TextStateTask(nn.Module):
    """Text prompts -> sampled completions -> parsed states -> verifiable rewards.

    Args:
        reward: import path of a batch reward ``fn(completions, records) -> {name: (N,)}``.
        reward_key: which returned component GRPO optimizes (e.g. ``task_specific``, ``f1``).
        max_prompt_tokens: prompts longer than this are shortened or dropped by the DataModule.
        max_response_tokens: sampling budget, EOS included (``ResponsePlan.length``, as verl's
            ``max_response_length``); targets whose tokens + EOS exceed it are dropped by the
            DataModule (never cut), so every kept target can be generated in full.
        chat_template: render prompts as a user turn of the tokenizer's chat template (as the
            reference does for its chat base models): null = when the tokenizer has one,
            true = required, false = plain text (``wm.language.chat``).
        overlong_cache: DAPO's soft overlong punishment interval in tokens
            (``wm.rewards.overlong``); null = off. The penalty is added to the reward and logged
            as the component ``overlong_penalty``.
    """

    higher_is_better = {"reward": True, "binary": True, "task_specific": True, "f1": True,
                        "precision": True, "recall": True, "acc_all": True, "acc_changed": True,
                        "acc_unchanged": True, "key_acc": True, "parse_fail": False}

    def __init__(self, reward: str, reward_key: str, max_prompt_tokens: int = 1024,
                 max_response_tokens: int = 256, chat_template: bool | None = None,
                 overlong_cache: int | None = None):
        super().__init__()
        if overlong_cache is not None and not 0 < overlong_cache <= max_response_tokens:
            raise ValueError(f"data.task.overlong_cache={overlong_cache} must be in (0, "
                             f"max_response_tokens={max_response_tokens}] or null")
        self.overlong_cache = overlong_cache
        self.chat_template = chat_template
        self.reward_path, self.reward_key = reward, reward_key
        self.reward_fn = get_method(reward)
        self.max_prompt_tokens, self.max_response_tokens = max_prompt_tokens, max_response_tokens
        self.tokenizer = None
        self._lora = None
        self._base_source: str | None = None   # hub id / folder under the LoRA (build_policy)

    # ------------------------------------------------------------------ wiring
    def build_policy(self, factory, init: str | None = None) -> nn.Module:
        """Base model (+LoRA) from the factory, or the policy stored in ``init``: an SFT/GRPO stage
        checkpoint, or a Hugging Face folder / hub id.

        From ``init`` with a LoRA factory (GRPO after SFT): the stored adapter is merged and a
        fresh one is added, so disabling adapters yields the SFT model (the KL reference).
        Remembers which named model (hub id / folder), if any, holds exactly the weights under
        the LoRA, for ``export``: none after a merge or from a stage checkpoint.
        """
        from wm.language.model import pretrained_source

        self._lora = lora_settings(factory) if factory is not None else None
        self._base_source = None
        if not init:
            model, self.tokenizer = factory()
            self._base_source = pretrained_source(model)
            return model
        if Path(init).is_dir() or looks_like_hub_id(str(init)):
            # a Hugging Face folder or hub id: e.g. the paper's released text world models
            # (thuml/bytesized32-world-model-rlvr-task-specific-reward), or our export/merged
            from wm.language.model import load_causal_lm

            model, self.tokenizer = load_causal_lm(str(init))
            source = str(Path(init).resolve()) if Path(init).is_dir() else str(init)
        else:      # weights a stage trained: no named model holds them
            model, self.tokenizer = rebuild_from_checkpoint(init)
            source = None
        if factory is None:          # evaluation: the stored policy as it is
            self._base_source = source
            return model
        if hasattr(model, "merge_and_unload"):
            model, source = model.merge_and_unload(), None
        if self._lora:
            from wm.language.model import apply_lora

            model = apply_lora(model, self._lora)
        self._base_source = source
        return model

    def policy_checkpoint(self, policy) -> dict:
        lora = self._lora if hasattr(policy, "disable_adapter") else None
        return checkpoint_entry(policy, self.tokenizer, lora)

    def export(self, policy, out_dir) -> dict:
        """Hugging Face release of ``policy`` (``wm.language.model.save_hf``): ``out_dir/merged``
        (plain model, adapters merged) and, for a LoRA policy, ``out_dir/adapter`` whose
        ``adapter_config.json`` names the weights it was trained on: the pretrained model when
        those are unchanged, else ``out_dir/base`` written beside it (GRPO after SFT: the merged
        SFT model). Each loads into the trained policy by the plain ``from_pretrained`` call;
        ``out_dir/manifest.json`` lists them. Returns the paths."""
        from wm.language.model import save_hf

        return save_hf(policy, self.tokenizer, out_dir, base=self._base_source)

    def connect(self, datamodule) -> None:
        """The DataModule's length limits, with the chat template's tokens kept free."""
        overhead = template_overhead(self.tokenizer, self.chat_template)
        datamodule.connect(self.tokenizer, self.max_prompt_tokens - overhead,
                           self.max_response_tokens)

    # ----------------------------------------------------------------- tokens
    def prompts(self, batch) -> Prompts:
        tok = self.tokenizer
        texts = render_prompts(tok, batch["prompt"], self.chat_template)
        enc = tok(texts, padding=True, padding_side="left", return_tensors="pt",
                  add_special_tokens=False)      # the template writes BOS where it belongs
        device = batch["changed"].device if torch.is_tensor(batch.get("changed")) else "cpu"
        plan = ResponsePlan(self.max_response_tokens, allowed_lo=0, allowed_hi=len(tok),
                            eos_id=tok.eos_token_id, pad_id=tok.pad_token_id)
        return Prompts(enc.input_ids.to(device), enc.attention_mask.bool().to(device), plan)

    def responses(self, batch) -> Responses:
        """Target tokens + EOS, right-padded; the loss covers the target and its EOS."""
        tok = self.tokenizer
        rows = [tok(t, add_special_tokens=False).input_ids + [tok.eos_token_id]
                for t in batch["target"]]
        longest = max(len(r) for r in rows)     # target + EOS
        if longest > self.max_response_tokens:
            raise ValueError(f"a target has {longest - 1} tokens + EOS > data.task."
                             f"max_response_tokens={self.max_response_tokens} (the budget counts "
                             "the EOS); connect the DataModule (it drops such records) or raise "
                             "the limit")
        ids = torch.full((len(rows), longest), tok.pad_token_id, dtype=torch.long)
        mask = torch.zeros(len(rows), longest, dtype=torch.bool)
        for i, r in enumerate(rows):
            ids[i, : len(r)] = torch.tensor(r)
            mask[i, : len(r)] = True
        device = batch["changed"].device if torch.is_tensor(batch.get("changed")) else "cpu"
        return Responses(ids.to(device), mask.to(device))

    # ------------------------------------------------------------ predictions
    def decode(self, tokens: torch.Tensor, batch, group_size: int) -> dict:
        """(N, L) ids -> {"texts": [N str], "records": [N dict], "changed": (N,) bool}."""
        tok, eos = self.tokenizer, self.tokenizer.eos_token_id
        texts, lengths = [], []
        for row in tokens.tolist():
            cut = row.index(eos) if eos in row else len(row)
            texts.append(tok.decode(row[:cut], skip_special_tokens=True))
            # tokens generated, EOS included; a row that never stopped used the whole budget
            lengths.append(cut + 1 if eos in row else self.max_response_tokens + 1)
        records = [r for r in batch["record"] for _ in range(group_size)]
        changed = batch["changed"].repeat_interleave(group_size).cpu()
        return {"texts": texts, "records": records, "changed": changed,
                "lengths": torch.tensor(lengths)}

    def rewards(self, preds, batch, group_size: int) -> dict[str, torch.Tensor]:
        """Reward components {name: (N,)}; every answer is parsed and scored once (cached in
        ``preds`` for ``metrics``)."""
        if "_rewards" in preds:
            return dict(preds["_rewards"])
        comps = {k: torch.as_tensor(v, dtype=torch.float32)
                 for k, v in self.reward_fn(preds["texts"], preds["records"]).items()}
        if self.reward_key not in comps:
            raise KeyError(f"data.task.reward_key={self.reward_key!r} is not returned by "
                           f"{self.reward_path} (it returns {sorted(comps)})")
        comps["reward"] = comps[self.reward_key]   # NaN stays NaN: GRPO counts it (reward_nan)
        if self.overlong_cache is not None and "lengths" in preds:
            pen = soft_overlong_penalty(preds["lengths"], self.max_response_tokens,
                                        self.overlong_cache)
            comps["overlong_penalty"] = pen
            comps["task_reward"] = comps["reward"]     # unshaped: dynamic sampling judges on it
            comps["reward"] = comps["reward"] + pen
        preds["_rewards"] = dict(comps)
        return comps

    def metrics(self, preds, batch, group_size: int, per_frame: bool = False
                ) -> dict[str, torch.Tensor]:
        """Exact-match accuracy on all / changed / unchanged transitions (NaN where a row is
        not in the subset; averaged with nanmean), the parse-failure rate, and the share of
        changed transitions (``changed_frac``: with N, how many rows each accuracy is over)."""
        comps = self.rewards(preds, batch, group_size)
        exact = comps.get("exact", comps.get("binary", comps["reward"]))
        changed = preds["changed"]
        nan = torch.full_like(exact, math.nan)
        return {"acc_all": exact, "acc_changed": torch.where(changed, exact, nan),
                "acc_unchanged": torch.where(~changed, exact, nan),
                "parse_fail": comps.get("parse_fail", torch.zeros_like(exact)),
                "changed_frac": changed.to(exact.dtype)}

    # --------------------------------------------------------------- visuals
    def sample_table(self, preds, rows: int = 4, group_size: int = 1) -> str:
        """Markdown table of prompts' targets, completions and rewards."""
        comps = self.rewards(preds, None, group_size)
        lines = ["| # | completion | reward |", "|---|---|---|"]
        for i in range(min(rows * group_size, len(preds["texts"]))):
            text = preds["texts"][i].replace("|", "\\|").replace("\n", " ")[:400]
            lines.append(f"| {i} | {text} | {float(comps['reward'][i]):.3f} |")
        return "\n".join(lines)

    def log_samples(self, logger, tag: str, preds, batch, step: int, rows: int = 4) -> None:
        exp = getattr(logger, "experiment", None)
        if exp is not None and hasattr(exp, "add_text"):
            exp.add_text(tag, self.sample_table(preds, rows), step)

    def save_samples(self, preds, batch, out_dir, rows: int = 4, group_size: int = 1) -> list:
        from pathlib import Path

        path = Path(out_dir) / "samples.md"
        path.write_text(self.sample_table(preds, rows, group_size) + "\n")
        return [path]
