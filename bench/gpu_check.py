"""One-command GPU check (issue #27): the paper's training shapes with random weights, in bf16.

``python bench/gpu_check.py`` (one GPU, <= 8 minutes on an H100, nothing downloaded) runs the
project's own stages -- ``GRPOModule`` and ``MLEModule`` under a Lightning Trainer with
``precision="bf16-mixed"``, as ``trainer=gpu`` does -- at the sizes of RLVR-World (Sec. 4,
appendix; REFERENCE.md), and writes section "gpu_check" of docs/benchmarks.md:

* ``video_single``: single-step video GRPO step. LLaMA 12 layers / hidden 768 / 12 heads / MLP
  3,072 (``conf/model/world_paper.yaml``), vocabulary 4,633, one prompt of P=1,333 ids, G=16
  responses of L=321 ids (the 320 tokens of a 16x20 frame sampled from the 4,375 visual ids,
  then one more), decoded to 256x320 frames by the reference per-frame tokenizer architecture
  (``FrameTokenizer.preset("reference")``, random weights) and rewarded by -MAE to a fixed frame.
* ``video_multi``: multi-step video GRPO step with the compressive tokenizer's vocabulary
  (9,008): P=1,373, L=651 ids from the 4,375 future-codebook ids; reward on the ids (the
  compressive decoder is not run). Departure: every response id is sampled (the real layout
  forces the action tokens between frames, which makes sampling cheaper, not dearer).
* ``text_sft`` / ``text_grpo``: the DeepSeek-R1-Distill-Qwen-1.5B architecture (Qwen2, 28
  layers, hidden 1,536, 12 heads / 2 KV heads, MLP 8,960, vocabulary 151,936, untied head:
  1.78B parameters) in bf16 weights with LoRA r=32 / alpha=16 on all linear layers (as
  ``conf/model/lm_deepseek_1p5b.yaml``, gradient checkpointing on for SFT); prompts of 2,300
  random ids (a ByteSized32 prompt's length), SFT on 4 sequences of 2,300 + 512 tokens, GRPO
  with G=5 responses of 512 ids (no EOS, so every row is full length: the worst case).

Per phase: median step time over the steps after the first (a warm-up), peak GPU memory of a
step (``torch.cuda.max_memory_allocated``; on CPU the process's peak RSS), rollout tokens/s,
``grpo/logp_diff`` mean and max (sampler vs recomputed log-probs, the on-policy check: small
under bf16 because both take float32 logits, ``wm.utils.precision``), KL at the first step
(0: the reference is the same weights) and the GRPO phase times.

``--device cpu --tiny`` runs the same code at toy sizes in a few seconds (tests/test_gpu_check.py,
writing to a temporary file with ``--doc``).
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from dataclasses import dataclass, field, replace
from functools import partial
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import torch  # noqa: E402

from bench._grpo_step_shapes import IdsTask  # noqa: E402
from bench._report import DOC, machine, markdown_table, write_section  # noqa: E402

PHASES = ("video_single", "video_multi", "text_sft", "text_grpo")
GRPO_TIMES = ("sample", "score", "old_logp", "ref_logp", "update")


@dataclass(frozen=True)
class Spec:
    """One phase's shape. ``lo``/``hi``: the sampled id range; ``frame``: FrameTokenizer preset
    (or kwargs) decoding the first ``grid`` tokens of a response, None = reward on the ids."""

    kind: str                         # "llama" | "qwen2_lora"
    stage: str                        # "grpo" | "sft"
    vocab: int
    prompt: int
    response: int
    group: int = 1
    batch: int = 1
    lo: int = 0
    hi: int = -1
    model: dict = field(default_factory=dict)
    frame: dict | str | None = None
    grid: tuple[int, int] | None = None


LLAMA_PAPER = dict(hidden_size=768, num_layers=12, num_heads=12, intermediate_size=3072,
                   max_position_embeddings=2048)
QWEN_1P5B = dict(hidden_size=1536, num_hidden_layers=28, num_attention_heads=12,
                 num_key_value_heads=2, intermediate_size=8960, max_position_embeddings=131072,
                 rope_theta=10000.0, tie_word_embeddings=False)
LORA = {"r": 32, "alpha": 16, "target_modules": "all-linear", "dropout": 0.05}

FULL = {
    "video_single": Spec("llama", "grpo", 4633, 1333, 321, group=16, hi=4375, model=LLAMA_PAPER,
                         frame="reference", grid=(16, 20)),
    "video_multi": Spec("llama", "grpo", 9008, 1373, 651, group=16, lo=4375, hi=8750,
                        model=LLAMA_PAPER),
    "text_sft": Spec("qwen2_lora", "sft", 151936, 2300, 512, batch=4, model=QWEN_1P5B),
    "text_grpo": Spec("qwen2_lora", "grpo", 151936, 2300, 512, group=5, model=QWEN_1P5B),
}
_LLAMA_TINY = dict(hidden_size=32, num_layers=2, num_heads=2, intermediate_size=64,
                   max_position_embeddings=128)
_QWEN_TINY = dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                  num_key_value_heads=1, intermediate_size=64, max_position_embeddings=256,
                  tie_word_embeddings=False)
TINY = {
    "video_single": replace(FULL["video_single"], vocab=64, prompt=24, response=17, group=4,
                            hi=45, model=_LLAMA_TINY, grid=(4, 4),
                            frame=dict(channels=(8, 8, 8), latent_dim=4, res_blocks=1,
                                       levels=(5, 3, 3), resolution=(16, 16))),
    "video_multi": replace(FULL["video_multi"], vocab=100, prompt=28, response=12, group=4,
                           lo=45, hi=90, model=_LLAMA_TINY),
    "text_sft": replace(FULL["text_sft"], vocab=256, prompt=40, response=8, batch=2,
                        model=_QWEN_TINY),
    "text_grpo": replace(FULL["text_grpo"], vocab=256, prompt=40, response=8, model=_QWEN_TINY),
}


# ------------------------------------------------------------------------------- models
def build_policy(spec: Spec, device: torch.device, gradient_checkpointing: bool = False):
    """A random model of ``spec`` on ``device``: LLaMA in float32 weights (mixed precision, as
    ``world_paper``), or Qwen2 in bf16 weights with LoRA (as ``lm_deepseek_1p5b`` on a GPU)."""
    from wm.language.model import apply_lora, set_gradient_checkpointing

    if spec.kind == "llama":
        from wm.world.llama import build_llama

        model = build_llama(spec.vocab, seed=0, gradient_checkpointing=gradient_checkpointing,
                            **spec.model)
        return model.to(device)
    from transformers import Qwen2Config, Qwen2ForCausalLM

    config = Qwen2Config(vocab_size=spec.vocab, **spec.model)
    config._attn_implementation = "sdpa"
    torch.manual_seed(0)
    with torch.device(device):               # initialised where it runs (1.78B parameters)
        model = Qwen2ForCausalLM(config).to(torch.bfloat16)
    model = apply_lora(model, LORA)
    return set_gradient_checkpointing(model, gradient_checkpointing)


class RandomIdsTask(IdsTask):
    """Random prompt ids in, ``spec.response`` sampled ids out; reward -MAE of the decoded first
    frame to a fixed frame (``spec.frame``) or the fraction of ids in the lower half of the
    range (verifiable on the ids). Teacher-forcing targets for SFT: fixed random ids."""

    def __init__(self, spec: Spec):
        super().__init__(spec.response, spec.lo, spec.hi)
        self.spec = spec
        self.frames = None
        if spec.frame is not None:
            from wm.vision.fsq_vqgan import FrameTokenizer

            torch.manual_seed(0)
            self.frames = FrameTokenizer.preset(spec.frame) if isinstance(spec.frame, str) \
                else FrameTokenizer(**spec.frame)
            self.frames.requires_grad_(False).eval()
        self.higher_is_better = {"reward": True}

    def responses(self, batch):
        from wm.tasks.base import Responses

        ids = batch["response"]
        return Responses(ids, torch.ones_like(ids, dtype=torch.bool))

    def decode(self, tokens, batch, group_size):
        if self.frames is None:
            return {"tokens": tokens}
        h, w = self.spec.grid
        ids = (tokens[:, : h * w] - self.spec.lo).reshape(-1, h, w)       # (N, h, w)
        return {"tokens": tokens, "frames": self.frames.decode(ids)}       # (N, 3, H, W)

    def rewards(self, preds, batch, group_size):
        if "frames" in preds:
            target = batch["target"].repeat_interleave(group_size, 0)       # (N, 3, H, W)
            reward = -(preds["frames"].float() - target).abs().mean(dim=(1, 2, 3))
        else:
            hi = self.spec.hi if self.spec.hi > 0 else self.spec.vocab
            mid = (self.spec.lo + hi) // 2
            reward = (preds["tokens"] < mid).float().mean(dim=1)
        return {"reward": reward}

    def metrics(self, preds, batch, group_size, per_frame: bool = False):
        return {"reward": self.rewards(preds, batch, group_size)["reward"]}


def batches(spec: Spec, steps: int) -> list[dict]:
    """``steps`` identical batches (every step does the same work)."""
    g = torch.Generator().manual_seed(0)
    item = {"prompt": torch.randint(0, spec.vocab, (spec.batch, spec.prompt), generator=g),
            "response": torch.randint(max(spec.lo, 0), spec.hi if spec.hi > 0 else spec.vocab,
                                      (spec.batch, spec.response), generator=g)}
    if spec.frame is not None:
        res = (256, 320) if isinstance(spec.frame, str) else spec.frame["resolution"]
        item["target"] = torch.rand(spec.batch, 3, *res, generator=g)
    return [item] * steps


# ------------------------------------------------------------------------------ running
def run_phase(name: str, spec: Spec, device: torch.device, steps: int) -> dict:
    """``steps`` steps of the project's own stage at ``spec`` under bf16-mixed; one result row."""
    import lightning as L

    from wm.rl.loss import GRPOLossConfig
    from wm.stages.grpo import GRPOModule
    from wm.stages.mle import MLEModule

    cuda = device.type == "cuda"
    rows: list[dict] = []

    class Recorder(L.Callback):
        def on_train_batch_start(self, trainer, *a):
            if cuda:
                torch.cuda.synchronize(device)
                torch.cuda.reset_peak_memory_stats(device)
            self.t0 = time.perf_counter()

        def on_train_batch_end(self, trainer, *a):
            if cuda:
                torch.cuda.synchronize(device)
            m = {k: float(v) for k, v in trainer.callback_metrics.items()}
            m["step_s"] = time.perf_counter() - self.t0
            m["peak_gb"] = (torch.cuda.max_memory_allocated(device) if cuda
                            else _peak_rss_bytes()) / 2**30
            rows.append(m)

    L.seed_everything(0, verbose=False)
    task = RandomIdsTask(spec)
    ckpt = spec.stage == "sft" and spec.kind == "qwen2_lora"   # the paper presets' setting
    factory = partial(build_policy, spec, device, gradient_checkpointing=ckpt)
    optimizer = partial(torch.optim.AdamW, lr=1e-6, weight_decay=0.0)
    if spec.stage == "grpo":
        module = GRPOModule(task, factory, optimizer, GRPOLossConfig(), init_policy=None,
                            group_size=spec.group, micro_batch_size=spec.group,
                            log_images_every_n_steps=0)
    else:
        module = MLEModule(task, factory, optimizer, val_sample=False)
    from torch.utils.data import DataLoader

    loader = DataLoader(batches(spec, steps), batch_size=None)
    trainer = L.Trainer(accelerator="gpu" if cuda else "cpu", devices=1, precision="bf16-mixed",
                        max_steps=steps, logger=False, enable_checkpointing=False,
                        enable_progress_bar=False, enable_model_summary=False,
                        limit_val_batches=0, num_sanity_val_steps=0,
                        use_distributed_sampler=False, callbacks=[Recorder()])
    trainer.fit(module, train_dataloaders=loader)
    del trainer, module, task
    if cuda:
        torch.cuda.empty_cache()
    return summarize(name, spec, rows)


def _peak_rss_bytes() -> float:
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024.0


def summarize(name: str, spec: Spec, rows: list[dict]) -> dict:
    """Median over the steps after the first (all of them when there is one), max of peaks."""
    use = rows[1:] if len(rows) > 1 else rows

    def med(key):
        return statistics.median(r[key] for r in use) if all(key in r for r in use) else None

    rows_of = f"G={spec.group}" if spec.stage == "grpo" else f"B={spec.batch}"
    out = {"phase": name, "steps": len(rows), "shape": f"P={spec.prompt} L={spec.response} {rows_of}",
           "step_s": med("step_s"), "peak_gb": max(r["peak_gb"] for r in rows)}
    if spec.stage == "grpo":
        out.update(rollout_tok_s=med("grpo/rollout_tokens_per_s"),
                   logp_diff_mean=max(r["grpo/logp_diff/mean"] for r in rows),
                   logp_diff_max=max(r["grpo/logp_diff/max"] for r in rows),
                   kl_first=rows[0]["grpo/kl"])
        for t in GRPO_TIMES:
            v = med(f"grpo/time/{t}")
            if v is not None:
                out[f"{t}_s"] = v
    else:
        out["loss"] = rows[-1].get("train/loss")
    return {k: v for k, v in out.items() if v is not None}


COLUMNS = ["phase", "shape", "steps", "step_s", "peak_gb", "rollout_tok_s", "logp_diff_mean",
           "logp_diff_max", "kl_first", "sample_s", "score_s", "old_logp_s", "ref_logp_s",
           "update_s", "loss"]


def report(results: list[dict], tiny: bool, device: torch.device, wall: float) -> str:
    cols = [c for c in COLUMNS if any(c in r for r in results)]
    what = "tiny shapes (`--tiny`, the CI check)" if tiny else "the paper's shapes"
    cmd = f"python bench/gpu_check.py{' --device cpu --tiny' if tiny else ''}"
    return (f"## GPU check (`{cmd}`)\n\n{what[0].upper()}{what[1:]}, "
            f"random weights, `precision=bf16-mixed`, the project's GRPOModule/MLEModule under a "
            f"Lightning Trainer ({wall:.0f} s in all). Device: {machine()} ({device.type}).\n\n"
            "step_s: median step wall time after the first step; peak_gb: peak "
            + ("GPU memory allocated in a step" if device.type == "cuda" else "process RSS")
            + "; logp_diff: |sampler log-prob - recomputed log-prob| (max over steps); kl_first: "
            "KL to the reference at the first step (0 expected).\n\n"
            + markdown_table(results, cols))


def main(argv: list[str] | None = None) -> list[dict]:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--device", default="cuda", help="cuda (default) or cpu")
    ap.add_argument("--tiny", action="store_true", help="toy sizes (seconds on a CPU)")
    ap.add_argument("--steps", type=int, default=3, help="steps per phase (the first is a warm-up)")
    ap.add_argument("--phases", nargs="+", default=list(PHASES), choices=PHASES)
    ap.add_argument("--doc", type=Path, default=DOC, help="markdown file to write the section to")
    args = ap.parse_args(argv)
    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise SystemExit("--device cuda: no CUDA device visible; run on a GPU machine, or "
                         "`--device cpu --tiny` for the CPU check")
    if device.type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = True
    import logging

    logging.getLogger("lightning.pytorch").setLevel(logging.ERROR)
    specs = TINY if args.tiny else FULL
    t0, results = time.perf_counter(), []
    for name in args.phases:
        t = time.perf_counter()
        results.append(run_phase(name, specs[name], device, args.steps))
        print(f"{name}: {results[-1]} ({time.perf_counter() - t:.1f} s)", flush=True)
    body = report(results, args.tiny, device, time.perf_counter() - t0)
    write_section("gpu_check", body, doc=args.doc)
    print(body)
    print(f"wrote section gpu_check of {args.doc}")
    return results


if __name__ == "__main__":
    main()
