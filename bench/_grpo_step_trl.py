"""TRL 1.16's ``GRPOTrainer`` at the video and text shapes of ``bench/bench_grpo_step.py``, and
the loss-parity check at those shapes.

Settings equal to ours (see bench_trl_grpo.py for the reasoning): same weights (our factory,
seed 0, saved with ``save_pretrained`` so TRL reloads its reference from it; checked equal),
same prompt ids (checked), G completions of the same maximum length, temperature 1, AdamW
(lr 1e-4, betas 0.9/0.999, weight decay 0.01), grad clip 1, constant lr, beta 0.001 with the
reference model (k3), eps 0.2/0.2, ``loss_type="bnpo"`` (= our token-mean), one optimizer step
per rollout, fp32, CPU, 1 thread, TRL's default generation (``transformers.generate``, dynamic
cache).

Video shape: a word-level tokenizer maps "t<i>" <-> id i; its EOS/PAD ids lie outside the
model's 4,633 logits, so no completion can stop early (exactly 321 tokens), and
``generation_kwargs={"suppress_tokens": ids 4375..4632}`` samples the 4,375 visual ids only, as
our plan does. Remaining difference: TRL's training log-probs use the full-vocabulary softmax
(ours the restricted one the sampler drew from); same cost.
"""
from __future__ import annotations

import json
import time
from collections import defaultdict
from pathlib import Path

import torch

from bench import _grpo_step_shapes as S

LR, BETA = 1e-4, 0.001


def video_reward(prompts, completions, completion_ids, **_):
    return S.low_id_rate(torch.tensor(completion_ids)).tolist()


def text_reward(prompts, completions, record_json, **_):
    from wm.rewards.text_game import text_game_rewards

    out = text_game_rewards(list(completions), [json.loads(r) for r in record_json])
    return torch.as_tensor(out["task_specific"], dtype=torch.float32).tolist()


def _same_weights(a: torch.nn.Module, b: torch.nn.Module) -> None:
    sa, sb = a.state_dict(), b.state_dict()
    for k, v in sa.items():
        if k in sb:
            assert torch.equal(v, sb[k]), f"TRL's model differs from ours at {k}"


def trl_trainer(shape: str, out: Path, steps: int, callbacks=(), loss_type: str = "bnpo"):
    """A ``GRPOTrainer`` at ``shape`` ("video" | "text"), on the same weights and prompt as ours."""
    from datasets import Dataset
    from transformers import AutoModelForCausalLM
    from trl import GRPOConfig, GRPOTrainer

    n = 64
    if shape == "video":
        ours, tok = S.video_llama(0), S.word_tokenizer()
        prompt = S.video_prompt_text()
        assert tok(prompt).input_ids == S.video_prompt_ids().tolist(), "prompt ids differ"
        data, reward, length = {"prompt": [prompt] * n}, video_reward, S.L_VIDEO
        gen = {"suppress_tokens": list(range(S.VISUAL, S.VOCAB))}
        group = S.G_VIDEO
    elif shape == "text":
        ours, tok = S.text_factory()()
        prompt, record, our_ids = S.text_prompt()
        assert tok(prompt).input_ids == our_ids[0].tolist(), "prompt ids differ"
        data = {"prompt": [prompt] * n, "record_json": [json.dumps(record)] * n}
        reward, length, gen, group = text_reward, S.L_TEXT, None, S.G_TEXT
    else:
        raise ValueError(f"no TRL comparison at shape {shape!r}")
    ours.save_pretrained(out / "model")
    model = AutoModelForCausalLM.from_pretrained(out / "model", dtype=torch.float32)
    _same_weights(ours, model)
    args = GRPOConfig(
        output_dir=str(out / "trl"), per_device_train_batch_size=group, num_generations=group,
        max_completion_length=length, learning_rate=LR, weight_decay=0.01, adam_beta1=0.9,
        adam_beta2=0.999, max_grad_norm=1.0, lr_scheduler_type="constant", warmup_steps=0,
        loss_type=loss_type, beta=BETA, epsilon=0.2, temperature=1.0, use_cpu=True, bf16=False,
        fp16=False, gradient_checkpointing=False, report_to="none", save_strategy="no",
        logging_steps=1, max_steps=steps, disable_tqdm=True, seed=0, dataloader_num_workers=0,
        generation_kwargs=gen)
    trainer = GRPOTrainer(model=model, reward_funcs=reward, processing_class=tok, args=args,
                          train_dataset=Dataset.from_dict(data), callbacks=list(callbacks))
    return trainer, prompt


def measure_trl(shape: str, steps: int, out: Path) -> dict:
    """Per-step wall time of TRL's training step split into phases (sample = generate + decode,
    score = reward functions, ref_logp / old_logp = its no-grad log-prob passes, update = the
    rest of the step: loss forward/backward and optimizer), per step."""
    from transformers import TrainerCallback

    rows: list[dict] = []
    cur: dict[str, float] = defaultdict(float)

    class Timer(TrainerCallback):
        def on_step_begin(self, *a, **k):
            cur.clear()
            self.t0, self.c0 = time.perf_counter(), time.process_time()

        def on_step_end(self, *a, **k):
            row = dict(cur)
            row["step"] = time.perf_counter() - self.t0
            row["step_cpu"] = time.process_time() - self.c0
            row["update"] = row["step"] - row.pop("prepare", 0.0)
            rows.append(row)

        def on_log(self, args, state, control, logs=None, **k):
            if logs and "completions/mean_length" in logs and rows:
                rows[-1]["response_tokens"] = float(logs["completions/mean_length"])
                rows[-1]["reward"] = float(logs.get("reward", float("nan")))

    trainer, _ = trl_trainer(shape, out, steps, callbacks=[Timer()])

    def timed(name, key):
        fn = getattr(trainer, name)

        def wrapper(*a, **k):
            t0 = time.perf_counter()
            try:
                return fn(*a, **k)
            finally:
                cur[key(a, k) if callable(key) else key] += time.perf_counter() - t0

        setattr(trainer, name, wrapper)

    def logp_kind(a, k):
        model = a[0] if a else k.get("model")
        if model is getattr(trainer, "ref_model", None):
            return "ref_logp"
        return "old_logp" if not torch.is_grad_enabled() else "train_logp"

    timed("_generate", "sample")
    timed("_calculate_rewards", "score")
    timed("_get_per_token_logps_and_entropies", logp_kind)
    timed("_generate_and_score_completions", "prepare")
    trainer.train()
    return {"rows": rows}


# ---------------------------------------------------------------------------- loss parity
def loss_parity_at(shape: str, out: Path, seed: int = 0) -> dict:
    """The ``loss_parity`` check of bench_trl_grpo.py at a benchmark shape: one prepared batch
    (the shape's real prompt, G completions of the shape's length, advantages, old and
    reference log-probs) fed to TRL's ``compute_loss`` (bnpo, plain per-row forward) and to
    ours (token-mean, shared-prefix forward ``grouped_response_logits`` + ``grpo_loss``, on the
    full-vocabulary distribution TRL's loss uses). Returns both losses and the largest absolute
    difference of the parameter gradients."""
    from bench.bench_trl_grpo import compare_on_batch
    from wm.rollout.distribution import sampling_logprobs
    from wm.rollout.forward import grouped_response_logits

    trainer, _ = trl_trainer(shape, out, steps=1)
    model = trainer.model
    model.train()
    g = torch.Generator().manual_seed(seed)
    if shape == "video":
        prompt = S.video_prompt_ids()[None]
        G, L, hi = S.G_VIDEO, S.L_VIDEO, S.VISUAL
        lengths = torch.full((G,), L)                       # TRL's case here: all full length
    else:
        prompt = S.text_prompt()[2]
        G, L, hi = S.G_TEXT, S.L_TEXT, len(trainer.processing_class)
        lengths = torch.randint(1, L + 1, (G,), generator=g)
    lengths[0] = L
    completion = torch.randint(0, hi, (G, L), generator=g)
    cmask = (torch.arange(L)[None] < lengths[:, None]).long()
    pmask = torch.ones_like(prompt, dtype=torch.bool)

    def ours_logp():
        logits = grouped_response_logits(model, prompt, pmask, completion, G)
        return sampling_logprobs(logits, completion, None, 1.0, valid=cmask.bool())

    with torch.no_grad():
        logp0 = ours_logp()
    old = logp0 + 0.3 * torch.randn(G, L, generator=g)
    ref = logp0 + 0.3 * torch.randn(G, L, generator=g)
    adv = torch.randn(G, generator=g)

    inputs = {"prompt_ids": prompt.expand(G, -1), "prompt_mask": pmask.long().expand(G, -1),
              "completion_ids": completion, "completion_mask": cmask, "advantages": adv,
              "old_per_token_logps": old, "ref_per_token_logps": ref,
              "num_items_in_batch": cmask.sum()}
    return compare_on_batch(trainer, inputs, ours_logp, "token-mean", L, beta=BETA)
