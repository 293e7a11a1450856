"""One GRPO step of ours vs TRL's ``GRPOTrainer`` on the same tiny model, on CPU, plus a check
that both compute the same loss (and gradient) on the same batch.

Needs ``pip install -r requirements.txt -r requirements-bench.txt`` (trl 1.16.0, accelerate,
datasets). Run: ``python bench/bench_trl_grpo.py`` (about 1-2 minutes); writes section "trl" of
docs/benchmarks.md.

Setting (both sides): the tiny preset's Qwen2 (``wm.language.presets.tiny_causal_lm``, random
weights, saved with ``save_pretrained`` so TRL can reload its reference model), one toy-world
prompt per step, group G=8, at most 32 completion tokens, temperature 1, AdamW (lr 1e-4,
betas 0.9/0.999, weight decay 0.01), grad clip 1.0, constant lr, KL coefficient (TRL ``beta``)
0.001 with the k3 estimator, clip eps 0.2/0.2, one optimizer step per rollout, fp32, 1 thread.
Loss aggregation: our ``token-mean`` == TRL ``loss_type="bnpo"`` (masked mean over all tokens of
the batch). Our dual clip is off (TRL has none). Ours is ``GRPOModule.training_step`` driven by
a Lightning Trainer; TRL's is ``GRPOTrainer``'s training step (generation included). Each step
is timed by a callback (first step = warm-up, dropped); rounds alternate ours / TRL and the
ratio is taken per round.

Differences that remain: TRL's advantage uses ``std + 1e-4``, ours ``std + 1e-6``; ours also
computes the behaviour policy's log-probs with an extra no-grad forward (TRL reuses the
detached training log-probs when ``num_iterations == 1``).

Parity check (``loss_parity``): identical completions, advantages, old and reference log-probs
fed to TRL's ``compute_loss`` and to ``wm.rl.loss.grpo_loss``; losses and parameter gradients
must agree, for bnpo <-> token-mean, grpo <-> seq-mean-token-mean, dr_grpo <-> dr_grpo.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from functools import partial
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch  # noqa: E402

G, MAX_LEN, LR, BETA = 8, 32, 1e-4, 0.001
# ours <-> TRL loss_type
LOSS_PAIRS = {"token-mean": "bnpo", "seq-mean-token-mean": "grpo", "dr_grpo": "dr_grpo"}


def save_tiny(out: Path, seed: int = 0) -> Path:
    """The tiny preset's model + tokenizer, written with ``save_pretrained``."""
    from wm.language.presets import tiny_causal_lm

    model, tok = tiny_causal_lm(seed=seed)
    model.save_pretrained(out)
    tok.save_pretrained(out)
    return out


def toy_reward(prompts, completions, record_json, **_):
    """TRL reward function: the toy world's key accuracy (same reward as our task)."""
    from wm.rewards.toy import toy_rewards

    return toy_rewards(list(completions), [json.loads(r) for r in record_json])["key_acc"].tolist()


def trl_config(out: Path, loss_type: str, steps: int = 1, **kw):
    from trl import GRPOConfig

    return GRPOConfig(
        output_dir=str(out), per_device_train_batch_size=G, num_generations=G,
        max_completion_length=MAX_LEN, learning_rate=LR, weight_decay=0.01,
        adam_beta1=0.9, adam_beta2=0.999, max_grad_norm=1.0, lr_scheduler_type="constant",
        warmup_steps=0, loss_type=loss_type, beta=BETA, epsilon=0.2, temperature=1.0,
        use_cpu=True, bf16=False, fp16=False, gradient_checkpointing=False, report_to="none",
        save_strategy="no", logging_steps=1, max_steps=steps, disable_tqdm=True, seed=0,
        dataloader_num_workers=0, **kw)


def toy_dataset(n: int, seed: int = 0):
    from datasets import Dataset

    from wm.textworld.toy import toy_prompt, toy_records

    recs = toy_records(n, seed)
    return Dataset.from_dict({"prompt": [toy_prompt(r) for r in recs],
                              "record_json": [json.dumps(r) for r in recs]})


def trl_trainer(model_dir: Path, out: Path, loss_type: str, steps: int, callbacks=()):
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from trl import GRPOTrainer

    tok = AutoTokenizer.from_pretrained(model_dir)
    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32)
    return GRPOTrainer(model=model, reward_funcs=toy_reward, processing_class=tok,
                       args=trl_config(out, loss_type, steps), train_dataset=toy_dataset(64),
                       callbacks=list(callbacks))


# ------------------------------------------------------------------------------ parity check
def loss_parity(model_dir: Path, out: Path, ours: str = "token-mean", seed: int = 0) -> dict:
    """Feed one prepared batch to TRL's ``compute_loss`` and to ``grpo_loss``.

    Returns {"ours", "trl", "max_grad_diff", "max_grad"}: the two losses and the largest
    absolute difference between their parameter gradients.
    """
    from wm.rl.loss import token_logprobs
    from wm.rollout.forward import response_logits

    trainer = trl_trainer(model_dir, out, LOSS_PAIRS[ours], steps=1)
    model = trainer.model
    model.train()
    g = torch.Generator().manual_seed(seed)
    vocab = model.config.vocab_size
    n, p, length = 2 * G, 12, MAX_LEN                        # equal-length prompts: no padding
    prompt_ids = torch.randint(4, vocab, (n, p), generator=g)
    prompt_mask = torch.ones(n, p, dtype=torch.long)
    completion_ids = torch.randint(4, vocab, (n, length), generator=g)
    lengths = torch.randint(1, length + 1, (n,), generator=g)  # rows end at different lengths
    completion_mask = (torch.arange(length)[None] < lengths[:, None]).long()
    with torch.no_grad():
        logp0 = token_logprobs(response_logits(model, prompt_ids, prompt_mask.bool(),
                                               completion_ids), completion_ids)
    # old/ref log-probs away from the current ones, so clipping and KL both act
    old = logp0 + 0.3 * torch.randn(n, length, generator=g)
    ref = logp0 + 0.3 * torch.randn(n, length, generator=g)
    adv = torch.randn(n, generator=g)

    inputs = {"prompt_ids": prompt_ids, "prompt_mask": prompt_mask,
              "completion_ids": completion_ids, "completion_mask": completion_mask,
              "advantages": adv, "old_per_token_logps": old, "ref_per_token_logps": ref,
              "num_items_in_batch": completion_mask.sum()}

    def ours_logp():
        logits = response_logits(model, prompt_ids, prompt_mask.bool(), completion_ids)
        return token_logprobs(logits, completion_ids)

    return compare_on_batch(trainer, inputs, ours_logp, ours, MAX_LEN)


def compare_on_batch(trainer, inputs: dict, ours_logp, aggregation: str, max_len: int,
                     beta: float = BETA) -> dict:
    """TRL's ``compute_loss`` and our ``grpo_loss`` on one prepared batch ``inputs`` (TRL's
    keys: completion_mask, advantages, old/ref_per_token_logps, ...); ``ours_logp()`` gives our
    per-token log-probs (N, L) with gradients. Returns {"ours", "trl", "max_grad_diff",
    "max_grad"}: the two losses and the largest absolute difference between their parameter
    gradients (and TRL's largest gradient, the scale). ``beta``: the KL coefficient the
    trainer was configured with."""
    from wm.rl.loss import GRPOLossConfig, grpo_loss

    model = trainer.model
    trainer.current_gradient_accumulation_steps = 1
    model.zero_grad()
    loss_trl = trainer.compute_loss(model, inputs)
    loss_trl.backward()
    grads_trl = {k: v.grad.clone() for k, v in model.named_parameters() if v.grad is not None}
    model.zero_grad()
    cfg = GRPOLossConfig(eps_low=0.2, eps_high=0.2, dual_clip=None, kl_coef=beta,
                         kl_estimator="k3", aggregation=aggregation)
    loss_ours, _ = grpo_loss(ours_logp(), inputs["old_per_token_logps"],
                             inputs["ref_per_token_logps"], inputs["advantages"],
                             inputs["completion_mask"].bool(), cfg, max_len=max_len)
    loss_ours.backward()
    diff = max((v.grad - grads_trl[k]).abs().max().item()
               for k, v in model.named_parameters() if v.grad is not None)
    scale = max(v.abs().max().item() for v in grads_trl.values())
    return {"ours": loss_ours.item(), "trl": loss_trl.item(), "max_grad_diff": diff,
            "max_grad": scale}


def agree(r: dict) -> bool:
    """Equal up to float32 noise: TRL computes log-probs with its fused LM-head kernel, which
    differs from a plain log-softmax by ~1e-6 per token (measured), so the losses may differ by
    a few 1e-6 and the gradients by ~1e-4 of their scale. A real mismatch (another aggregation,
    clipping or KL) is orders of magnitude larger (see tests/test_trl_parity.py)."""
    return (abs(r["ours"] - r["trl"]) <= 2e-5 * max(1.0, abs(r["trl"]))
            and r["max_grad_diff"] <= 1e-3 * r["max_grad"])


# -------------------------------------------------------------------------------- timing
def our_module(model_dir: Path):
    """GRPOModule on the same tiny model (the preset factory, same seed as ``save_tiny``)."""
    from wm.language.presets import tiny_causal_lm
    from wm.rl.loss import GRPOLossConfig
    from wm.stages.grpo import GRPOModule
    from wm.tasks.text import TextStateTask

    task = TextStateTask("wm.rewards.toy.toy_rewards", "key_acc", max_prompt_tokens=64,
                         max_response_tokens=MAX_LEN)
    loss = GRPOLossConfig(eps_low=0.2, eps_high=0.2, dual_clip=None, kl_coef=BETA,
                          kl_estimator="k3", aggregation="token-mean")
    module = GRPOModule(task, partial(tiny_causal_lm, seed=0),
                        partial(torch.optim.AdamW, lr=LR, weight_decay=0.01), loss,
                        init_policy=None, group_size=G, micro_batch_size=G, grad_clip=1.0,
                        log_images_every_n_steps=0)
    from transformers import AutoModelForCausalLM

    saved = AutoModelForCausalLM.from_pretrained(model_dir).state_dict()
    for k, v in module.policy.state_dict().items():     # really the same weights
        assert torch.equal(v, saved[k]), k
    return module


def time_ours(model_dir: Path, steps: int) -> list[float]:
    import lightning as L

    from wm.data.text import TextStateDataModule

    times: list[float] = []

    class Timer(L.Callback):
        def on_train_batch_start(self, *a):
            self.t0 = time.perf_counter()

        def on_train_batch_end(self, *a):
            times.append(time.perf_counter() - self.t0)

    dm = TextStateDataModule(kind="toy", batch_size=1, toy_train=64, toy_val=8)
    trainer = L.Trainer(accelerator="cpu", devices=1, max_steps=steps, logger=False,
                        enable_checkpointing=False, enable_progress_bar=False,
                        enable_model_summary=False, limit_val_batches=0, callbacks=[Timer()])
    trainer.fit(our_module(model_dir), datamodule=dm)
    return times[1:]


def time_trl(model_dir: Path, out: Path, steps: int) -> list[float]:
    from transformers import TrainerCallback

    times: list[float] = []

    class Timer(TrainerCallback):
        def on_step_begin(self, *a, **k):
            self.t0 = time.perf_counter()

        def on_step_end(self, *a, **k):
            times.append(time.perf_counter() - self.t0)

    trl_trainer(model_dir, out, "bnpo", steps, callbacks=[Timer()]).train()
    return times[1:]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--rounds", type=int, default=4, help="alternating ours/TRL rounds")
    ap.add_argument("--steps", type=int, default=8, help="GRPO steps per run (first dropped)")
    ap.add_argument("--no-write", action="store_true", help="do not touch docs/benchmarks.md")
    args = ap.parse_args()
    torch.set_num_threads(1)
    import logging

    logging.getLogger("lightning.pytorch").setLevel(logging.ERROR)
    from bench._report import machine, markdown_table, write_section

    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        model_dir = save_tiny(tmp / "tiny")
        parity_rows = []
        for ours, theirs in LOSS_PAIRS.items():
            r = loss_parity(model_dir, tmp / f"parity_{theirs}", ours)
            ok = agree(r)
            parity_rows.append({"ours": ours, "TRL loss_type": theirs, "loss (ours)": r["ours"],
                                "loss (TRL)": r["trl"], "max abs grad diff": r["max_grad_diff"],
                                "max abs grad": r["max_grad"], "agree": "yes" if ok else "NO"})
            print(f"parity {ours} <-> {theirs}: ours {r['ours']:.8f} TRL {r['trl']:.8f} "
                  f"max grad diff {r['max_grad_diff']:.2e} (max grad {r['max_grad']:.2e})")
            assert ok, f"loss parity failed for {ours} <-> {theirs}: {r}"

        rows = []
        for i in range(args.rounds):
            ours = statistics.median(time_ours(model_dir, args.steps))
            theirs = statistics.median(time_trl(model_dir, tmp / f"trl_{i}", args.steps))
            rows.append({"round": i, "ours s/step": ours, "TRL s/step": theirs,
                         "TRL / ours": theirs / ours})
            print(f"round {i}: ours {ours:.4f} s/step, TRL {theirs:.4f} s/step, "
                  f"ratio {theirs / ours:.2f}")
    ratios = [r["TRL / ours"] for r in rows]
    summary = (f"median TRL/ours = {statistics.median(ratios):.2f} "
               f"(min {min(ratios):.2f}, max {max(ratios):.2f}) over {len(rows)} alternating rounds")
    print(summary)
    body = "\n\n".join([
        "## GRPO step: ours vs TRL 1.16.0 `GRPOTrainer` (`python bench/bench_trl_grpo.py`)",
        f"Machine: {machine()}.",
        f"Tiny preset Qwen2 (random weights), 1 toy prompt x G={G}, <= {MAX_LEN} completion "
        f"tokens, AdamW lr {LR}, beta/kl_coef {BETA} (k3), eps 0.2, fp32, CPU, 1 thread. Ours = "
        "`GRPOModule.training_step` (token-mean, dual clip off); TRL = its training step, "
        "`loss_type=\"bnpo\"` (the same token-mean). Median seconds per step of "
        f"{args.steps - 1} timed steps per run, rounds alternating.",
        markdown_table(rows), summary + ".",
        "Loss parity on one prepared batch (same completions, advantages, old and reference "
        "log-probs; TRL's `compute_loss` vs `wm.rl.loss.grpo_loss`):",
        markdown_table(parity_rows)])
    if not args.no_write:
        write_section("trl", body)


if __name__ == "__main__":
    main()
