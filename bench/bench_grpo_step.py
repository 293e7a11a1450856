"""One GRPO step split into phases, before and after the #14 speed-ups, against TRL, and the
sampler's decode step against the memory-bound limit (CPU, 1 torch thread).

Shapes (``bench/_grpo_step_shapes.py``): (1) ``toy``: today's tiny toy (TargetTokenTask as in
tests/test_stage_grpo.py); (2) ``video``: the paper's video single-step layout, P=1,333 prompt
ids, L=321 free visual ids (of 4,375; vocabulary 4,633), G=16, one prompt per step, LLaMA
hidden 256 / 4 layers; (3) ``text``: one real ByteSized32 test prompt built by the project's
prompt code, the tiny Qwen2 rig, up to 300 response tokens, G=5, the text-game reward.

Ours = the real ``GRPOModule`` driven by a Lightning Trainer; per step it logs the wall time of
its phases ``grpo/time/{sample,score,old_logp,ref_logp,update}`` (a callback reads them after
each batch; the step's own wall time is taken from batch start to batch end). "before" = the
switches ``shared_prefix``, ``cascade``, ``skip_old_logp`` all False (the plain path); "after"
= the defaults. Loss: token-mean, clip 0.2/0.2, no dual clip, KL 0.001 (k3) to a frozen
reference; AdamW lr 1e-4; micro-batch = one whole group. TRL = ``GRPOTrainer`` at equal
settings (``bench/_grpo_step_trl.py``). Every configuration runs in its own subprocess (peak
memory = that process's ``ru_maxrss``); the first step of each run is a warm-up and dropped;
per-run medians over steps; rounds alternate the configurations (order reversed every other
round) and the ratios are taken per round, then their median.

Decode: our sampler at the video shape (G=16 rows, temperature 1, the GRPO rollout), each
decode step timed from one forward call's start to the next (forward + sampling + loop; nothing
subtracted), against the bytes one decode step must read divided by this machine's measured
read bandwidth (``torch.sum`` over 1 GB of float32, 1 thread).

Run: ``python bench/bench_grpo_step.py`` (about 15 minutes on 2 cores); writes section
"grpo_step" of docs/benchmarks.md. Needs the bench requirements (trl, datasets) and
../shared/data/bytesized32.
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from functools import partial
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import torch  # noqa: E402

from bench import _grpo_step_shapes as S  # noqa: E402
from wm.utils.phases import rss_mb  # noqa: E402

LR, BETA = 1e-4, 0.001
PHASES = ("sample", "score", "old_logp", "ref_logp", "update")
VARIANTS = {"after": {"shared_prefix": True, "cascade": True, "skip_old_logp": True},
            "before": {"shared_prefix": False, "cascade": False, "skip_old_logp": False}}


def peak_rss_mb() -> float:
    """This process's peak resident memory (Linux: ru_maxrss is in KiB). The kernel updates
    that high-water mark lazily (when memory is unmapped), so the current RSS can be above it
    for a while: the larger of the two."""
    return max(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, rss_mb())


def medians(rows: list[dict], drop_first: bool = True) -> dict:
    """Median of each key over the steps (the first, a warm-up, dropped when there are more)."""
    use = rows[1:] if drop_first and len(rows) > 1 else rows
    keys = sorted({k for r in use for k in r})
    return {k: statistics.median(r[k] for r in use if k in r) for k in keys}


# ------------------------------------------------------------------------------------ ours
def measure_ours(shape: str, variant: str = "after", steps: int = 3) -> dict:
    """Run the real ``GRPOModule`` for ``steps`` steps at ``shape``; per step: its logged phase
    times, the step's wall time, response tokens and reward. Returns ``{"rows": [...],
    "median": {...} (first step dropped), "peak_rss_mb", "rss_before_fit_mb"}``."""
    import logging

    import lightning as L

    from wm.rl.loss import GRPOLossConfig
    from wm.stages.grpo import GRPOModule

    logging.getLogger("lightning.pytorch").setLevel(logging.ERROR)
    torch.set_num_threads(1)
    rows: list[dict] = []

    class PhaseRecorder(L.Callback):
        def on_train_batch_start(self, *a):
            self.t0, self.c0 = time.perf_counter(), time.process_time()

        def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
            wall, cpu = time.perf_counter() - self.t0, time.process_time() - self.c0
            m = trainer.callback_metrics
            row = {p: float(m[f"grpo/time/{p}"]) for p in PHASES if f"grpo/time/{p}" in m}
            row["step"], row["step_cpu"] = wall, cpu
            ids = pl_module.task.prompts(batch).ids                  # (B, P), outside the timing
            # logged: the batch's response tokens; per row = / (B*G)
            row["response_tokens"] = float(m["grpo/response_tokens"]) / (ids.shape[0] * spec.group)
            row["prompt_tokens"] = float(ids.shape[1])
            row["reward"] = float(m.get("grpo/reward/reward/mean", float("nan")))
            rows.append(row)

    spec = S.SHAPES[shape]
    task, factory, dm = S.build(shape)
    L.seed_everything(0, verbose=False)
    loss = GRPOLossConfig(eps_low=0.2, eps_high=0.2, dual_clip=None, kl_coef=BETA,
                          kl_estimator="k3", aggregation="token-mean")
    module = GRPOModule(task, factory, partial(torch.optim.AdamW, lr=LR, weight_decay=0.01), loss,
                        init_policy=None, group_size=spec.group,
                        micro_batch_size=spec.micro_batch_size, grad_clip=1.0,
                        log_images_every_n_steps=0, **VARIANTS[variant])
    trainer = L.Trainer(accelerator="cpu", devices=1, max_steps=steps, logger=False,
                        enable_checkpointing=False, enable_progress_bar=False,
                        enable_model_summary=False, limit_val_batches=0,
                        use_distributed_sampler=False, callbacks=[PhaseRecorder()])
    before = rss_mb()
    trainer.fit(module, datamodule=dm)
    return {"rows": rows, "median": medians(rows), "peak_rss_mb": peak_rss_mb(),
            "rss_before_fit_mb": before}


# ------------------------------------------------------------------------------------ TRL
def measure_trl(shape: str, steps: int) -> dict:
    from bench._grpo_step_trl import measure_trl as run

    torch.set_num_threads(1)
    with tempfile.TemporaryDirectory() as tmp:
        before = rss_mb()
        res = run(shape, steps, Path(tmp))
    res.update(median=medians(res["rows"]), peak_rss_mb=peak_rss_mb(), rss_before_fit_mb=before)
    return res


def parity() -> dict:
    """The existing tiny ``loss_parity`` (bench_trl_grpo.py, token-mean <-> bnpo) and the same
    check at the video and text shapes (bench/_grpo_step_trl.py ``loss_parity_at``)."""
    from bench._grpo_step_trl import loss_parity_at
    from bench.bench_trl_grpo import agree, loss_parity, save_tiny

    torch.set_num_threads(1)
    out = {}
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        r = loss_parity(save_tiny(tmp / "tiny"), tmp / "p_tiny", "token-mean")
        out["toy prompt (bench_trl_grpo, G=8, 32 tokens)"] = {**r, "agree": agree(r)}
        for shape in ("video", "text"):
            r = loss_parity_at(shape, tmp / f"p_{shape}")
            out[S.SHAPES[shape].label] = {**r, "agree": agree(r)}
    return out


# --------------------------------------------------------------------------------- decode
def read_bandwidth(gb: float = 1.0, repeats: int = 7) -> float:
    """Bytes/s of ``torch.sum`` over ``gb`` GB of float32 (1 thread), median of ``repeats``."""
    x = torch.ones(int(gb * 1e9) // 4)
    x.sum()
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        x.sum()
        times.append(time.perf_counter() - t0)
    return x.numel() * 4 / statistics.median(times)


def decode_bytes(model, P: int, n: int, G: int, cascade: bool) -> dict:
    """Bytes one decode step of G rows reads when n response tokens (the new one included) are
    in the cache: every weight matrix once (the input embedding only at the G rows' ids; the
    LM head whole: ``logits_to_keep=1``), and the keys/values it attends to (cascade: the
    prompt's once + each row's response; else the prompt's in every row)."""
    cfg = model.config
    emb = model.get_input_embeddings().weight
    weights = sum(p.numel() * p.element_size() for p in model.parameters()) \
        - emb.numel() * emb.element_size() + G * emb.shape[1] * emb.element_size()
    head_dim = getattr(cfg, "head_dim", None) or cfg.hidden_size // cfg.num_attention_heads
    per_token = 2 * cfg.num_key_value_heads * head_dim * 4 * cfg.num_hidden_layers  # K+V, fp32
    tokens = (P + G * n) if cascade else G * (P + n)
    return {"weights": weights, "kv": tokens * per_token, "total": weights + tokens * per_token}


def decode_flops(model, P: int, n: int, G: int) -> dict:
    """FLOPs of one decode step of G rows with n response tokens in the cache: 2 per weight of
    every linear layer and row (the LM head included, the embedding lookup not), and the
    attention's two products (scores, weighted values) over the P + n keys."""
    cfg = model.config
    linear = sum(m.weight.numel() for m in model.modules() if isinstance(m, torch.nn.Linear))
    head_dim = getattr(cfg, "head_dim", None) or cfg.hidden_size // cfg.num_attention_heads
    attn = 2 * 2 * G * cfg.num_attention_heads * head_dim * (P + n) * cfg.num_hidden_layers
    return {"linear": 2 * G * linear, "attention": attn, "total": 2 * G * linear + attn}


def matmul_throughput(model, G: int, repeats: int = 7) -> float:
    """FLOP/s of the decode step's own products at their shapes: every linear layer of
    ``model`` applied to G rows (1 thread), warm in cache, median of ``repeats`` sweeps. The
    best this CPU does on these shapes, so FLOPs / this is the compute-bound limit."""
    weights = [m.weight.detach() for m in model.modules() if isinstance(m, torch.nn.Linear)]
    xs = [torch.randn(G, w.shape[1]) for w in weights]
    flops = sum(2 * G * w.numel() for w in weights)
    times = []
    for _ in range(repeats + 1):
        t0 = time.perf_counter()
        for x, w in zip(xs, weights):
            torch.nn.functional.linear(x, w)
        times.append(time.perf_counter() - t0)
    return flops / statistics.median(times[1:])


def measure_decode(rollouts: int = 3) -> dict:
    """Our sampler at the video shape, cascade on and off in alternating rollouts: median time
    per decode step (start of one forward to the start of the next) vs the memory-bound limit."""
    from wm.rollout.plan import ResponsePlan
    from wm.rollout.sampler import sample_cached

    torch.set_num_threads(1)
    model = S.video_llama(0).eval()
    prompt = S.video_prompt_ids()[None]
    plan = ResponsePlan(S.L_VIDEO, allowed_lo=0, allowed_hi=S.VISUAL)
    G, P, L = S.G_VIDEO, S.P_VIDEO, S.L_VIDEO
    starts, ends, cpu = [], [], []
    def mark(*_):                       # returns None: the call's arguments stay as they are
        starts.append(time.perf_counter())
        cpu.append(time.thread_time())

    model.register_forward_pre_hook(mark)
    model.register_forward_hook(lambda *a: ends.append(time.perf_counter()))
    bw = [read_bandwidth()]
    res = {True: [], False: []}
    for i in range(rollouts + 1):                      # the first pair is a warm-up
        for cascade in ((True, False) if i % 2 == 0 else (False, True)):
            starts.clear(), ends.clear(), cpu.clear()
            t0 = time.perf_counter()
            sample_cached(model, prompt, None, plan, G, temperature=1.0,
                          generator=torch.Generator().manual_seed(i), cascade=cascade)
            total = time.perf_counter() - t0
            steps = [b - a for a, b in zip(starts[1:], starts[2:])]   # decode forward k -> k+1
            fwd = [e - s for s, e in zip(starts[1:], ends[1:])]
            steps_cpu = [b - a for a, b in zip(cpu[1:], cpu[2:])]
            if i:
                res[cascade].append({"step": statistics.median(steps),
                                     "step_cpu": statistics.median(steps_cpu),
                                     "forward": statistics.median(fwd),
                                     "prefill": ends[0] - starts[0], "rollout": total,
                                     "decode_steps": len(fwd)})
    bw.append(read_bandwidth())
    bandwidth = statistics.median(bw)
    throughput = matmul_throughput(model, G)
    out = {"bandwidth": bandwidth, "bandwidths": bw, "flops_per_s": throughput}
    mid = (L - 1 + 1) // 2 + 1          # response tokens in the cache at the median decode step
    for cascade, runs in res.items():
        need = decode_bytes(model, P, mid, G, cascade=True)     # the minimum: cascade layout
        reads = decode_bytes(model, P, mid, G, cascade=cascade)  # what this layout reads
        step = statistics.median(r["step"] for r in runs)
        flops = decode_flops(model, P, mid, G)
        compute_ms = 1e3 * flops["total"] / throughput
        roofline_ms = max(compute_ms, 1e3 * need["total"] / bandwidth)
        out["cascade" if cascade else "copied"] = {
            "flops": flops, "compute_limit_ms": compute_ms, "roofline_ms": roofline_ms,
            "pct_of_roofline": 100 * roofline_ms / (1e3 * step),
            "step_ms": 1e3 * step,
            "step_cpu_ms": 1e3 * statistics.median(r["step_cpu"] for r in runs),
            "pct_of_limit_cpu": 100 * need["total"] / bandwidth
            / statistics.median(r["step_cpu"] for r in runs),
            "forward_ms": 1e3 * statistics.median(r["forward"] for r in runs),
            "prefill_s": statistics.median(r["prefill"] for r in runs),
            "rollout_s": statistics.median(r["rollout"] for r in runs),
            "decode_steps": runs[0]["decode_steps"], "n_mid": mid,
            "bytes_min": need, "bytes_layout": reads,
            "limit_ms": 1e3 * need["total"] / bandwidth,
            "limit_layout_ms": 1e3 * reads["total"] / bandwidth,
            "pct_of_limit": 100 * need["total"] / bandwidth / step,
            "pct_of_layout_limit": 100 * reads["total"] / bandwidth / step}
    return out


# -------------------------------------------------------------------------- orchestration
def worker(job: dict) -> dict:
    kind = job["kind"]
    if kind == "ours":
        return measure_ours(job["shape"], job["variant"], job["steps"])
    if kind == "trl":
        return measure_trl(job["shape"], job["steps"])
    if kind == "parity":
        return parity()
    if kind == "decode":
        return measure_decode(job.get("rollouts", 3))
    raise ValueError(kind)


LOADS: list[float] = []


def spawn(job: dict, timeout: float = 1800) -> dict:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1",
           "TOKENIZERS_PARALLELISM": "false"}
    t0 = time.perf_counter()
    LOADS.append(os.getloadavg()[0])
    proc = subprocess.run([sys.executable, __file__, "--worker", json.dumps(job)], cwd=ROOT,
                          env=env, capture_output=True, text=True, timeout=timeout)
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT ")]
    if proc.returncode or not lines:
        raise RuntimeError(f"worker {job} failed ({proc.returncode}):\n{proc.stderr[-4000:]}")
    res = json.loads(lines[-1][len("RESULT "):])
    LOADS.append(os.getloadavg()[0])
    print(f"  {job} -> {time.perf_counter() - t0:.0f} s (load {LOADS[-1]:.1f})", flush=True)
    return res


def shares(runs: dict, shapes: list[str]) -> str:
    """One sentence per shape: each phase's share of ours-after's median step (wall)."""
    out = []
    for shape in shapes:
        if (shape, "after") not in runs:
            continue
        res = runs[(shape, "after")]
        med = {k: statistics.median(x["median"][k] for x in res) for k in ("step", *PHASES)}
        parts = ", ".join(f"{p} {100 * med[p] / med['step']:.0f} %" for p in PHASES
                          if med[p] / med["step"] >= 0.005)
        out.append(f"{S.SHAPES[shape].label}: {parts}")
    note = ("Where ours-after's step goes (share of the median step, wall; the rest is Lightning "
            "and logging): " + "; ".join(out) + ".")
    if ("text", "TRL") in runs:
        note += (" At the text shape both sides stop rows at EOS (random weights: the mean row "
                 "length differs by sampling, column 'resp. tokens/row'); generation and the "
                 "training passes run to the longest row of the group on both sides.")
    return note


def fmt_ratio(vals: list[float]) -> str:
    return f"{statistics.median(vals):.2f} (min {min(vals):.2f}, max {max(vals):.2f})"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--worker", help=argparse.SUPPRESS)
    ap.add_argument("--rounds", type=int, default=2, help="alternating rounds per shape")
    ap.add_argument("--toy-rounds", type=int, default=6,
                    help="rounds at the toy shape (cheap, and its ratio is noisier)")
    ap.add_argument("--steps", default="toy=10,video=2,text=4",
                    help="steps per run, the first a warm-up (dropped)")
    ap.add_argument("--shapes", default="toy,video,text")
    ap.add_argument("--no-trl", action="store_true")
    ap.add_argument("--decode-rollouts", type=int, default=2)
    ap.add_argument("--no-write", action="store_true", help="do not touch docs/benchmarks.md")
    args = ap.parse_args()
    if args.worker:
        print("RESULT " + json.dumps(worker(json.loads(args.worker))), flush=True)
        return
    from bench._report import machine, markdown_table, write_section

    torch.set_num_threads(1)
    t_start, loads = time.time(), [os.getloadavg()[0]]
    steps = {k: int(v) for k, v in (kv.split("=") for kv in args.steps.split(","))}
    shapes = args.shapes.split(",")
    runs: dict[tuple, list[dict]] = {}
    for r in range(max(args.rounds, args.toy_rounds if "toy" in shapes else 0)):
        for shape in shapes:
            if r >= (args.toy_rounds if shape == "toy" else args.rounds):
                continue
            configs = [("ours", "after"), ("ours", "before")]
            if shape != "toy" and not args.no_trl:
                configs.append(("trl", "TRL"))
            for kind, variant in (configs if r % 2 == 0 else configs[::-1]):
                job = {"kind": kind, "shape": shape, "variant": variant, "steps": steps[shape]}
                runs.setdefault((shape, variant), []).append(spawn(job))
    decode = spawn({"kind": "decode", "rollouts": args.decode_rollouts})
    par = None if args.no_trl else spawn({"kind": "parity"})
    loads += LOADS + [os.getloadavg()[0]]

    # ---- tables
    rows, ratio_rows, summary = [], [], []
    for shape in shapes:
        label = S.SHAPES[shape].label
        for variant in ("before", "after", "TRL"):
            if (shape, variant) not in runs:
                continue
            res = runs[(shape, variant)]
            med = lambda k: statistics.median(x["median"].get(k, float("nan")) for x in res)  # noqa: E731
            rows.append({"shape": label, "code": {"TRL": "TRL 1.16 GRPOTrainer"}.get(variant, f"ours {variant}"),
                         "step s": med("step"), "step CPU s": med("step_cpu"),
                         **{f"{p} s": med(p) for p in PHASES},
                         "resp. tokens/row": med("response_tokens"),
                         "peak RSS MB": max(x["peak_rss_mb"] for x in res),
                         "RSS growth MB": max(x["peak_rss_mb"] - x["rss_before_fit_mb"] for x in res),
                         "timed steps": sum(len(x["rows"]) - 1 for x in res)})
        ratios = {}
        for other, name in (("before", "before / after"), ("TRL", "TRL / after")):
            if (shape, other) not in runs:
                continue
            for key, what in (("step", "wall"), ("step_cpu", "CPU")):
                after = [x["median"][key] for x in runs[(shape, "after")]]
                them = [x["median"][key] for x in runs[(shape, other)]]
                vals = [t / a for a, t in zip(after, them)]
                ratios[(other, what)] = vals
                ratio_rows.append({"shape": label, "ratio": f"{name} ({what} time)",
                                   "per round": ", ".join(f"{v:.2f}" for v in vals),
                                   "median (min, max)": fmt_ratio(vals)})
        if ("TRL", "wall") in ratios:
            summary.append(f"speed-up vs TRL at {label}: "
                           f"{statistics.median(ratios[('TRL', 'wall')]):.2f}x")
        summary.append(f"speed-up vs before at {label}: "
                       f"{statistics.median(ratios[('before', 'wall')]):.2f}x")
    summary.sort(key=lambda s: not s.startswith("speed-up vs TRL"))
    dec_rows = []
    for key, name in (("cascade", "cascade on (default)"), ("copied", "cascade off (prompt K/V copied per row)")):
        d = decode[key]
        dec_rows.append({
            "sampler": name, "median decode step ms": d["step_ms"], "of which forward ms": d["forward_ms"],
            "step CPU ms": d["step_cpu_ms"],
            "prefill s": d["prefill_s"], "rollout s": d["rollout_s"],
            "bytes/step (minimum) MB": d["bytes_min"]["total"] / 1e6,
            "limit ms": d["limit_ms"], "% of limit": d["pct_of_limit"],
            "% of limit (CPU time)": d["pct_of_limit_cpu"],
            "bytes/step (this layout) MB": d["bytes_layout"]["total"] / 1e6,
            "% of this layout's limit": d["pct_of_layout_limit"],
            "compute limit ms": d["compute_limit_ms"],
            "% of roofline max(memory, compute)": d["pct_of_roofline"]})
    dm = decode["cascade"]
    summary.append(f"sampler decode at {S.SHAPES['video'].label}: {dm['pct_of_limit']:.1f} % of the "
                   "memory-bound limit")
    summary.append(f"sampler decode at {S.SHAPES['video'].label}: {dm['pct_of_roofline']:.1f} % of "
                   f"the roofline (compute-bound limit {dm['compute_limit_ms']:.2f} ms, "
                   f"memory-bound limit {dm['limit_ms']:.2f} ms)")
    summary.append(f"sampler decode at {S.SHAPES['video'].label} (cascade off): "
                   f"{decode['copied']['pct_of_limit']:.1f} % of the memory-bound limit")
    minutes = (time.time() - t_start) / 60
    text_p = int(runs[("text", "after")][0]["median"].get("prompt_tokens", 0)) \
        if ("text", "after") in runs else "?"
    phase_cols = ["shape", "code", "step s", "step CPU s", *[f"{p} s" for p in PHASES], "resp. tokens/row",
                  "peak RSS MB", "RSS growth MB", "timed steps"]
    parts = [
        "## GRPO step by phase: before / after #14, and TRL (`python bench/bench_grpo_step.py`)",
        f"Machine: {machine()}, {os.cpu_count()} CPU cores, shared: the 1-minute load average "
        f"was {min(loads):.1f}-{max(loads):.1f} over the run (other jobs on the same 2 cores), "
        "so wall times carry the other jobs' load; 'CPU' columns are this process's CPU time "
        f"(1 thread: time actually run, so less sensitive to descheduling). {minutes:.0f} min "
        "in all.",
        "Shapes: **tiny toy** = TargetTokenTask (4 prompts x G=8, 6 ids of 16, LLaMA h32/L2); "
        f"**video single-step** = P={S.P_VIDEO} prompt ids, L={S.L_VIDEO} free ids restricted "
        f"to [0, {S.VISUAL}) of a {S.VOCAB}-id vocabulary, G={S.G_VIDEO}, B=1, LLaMA hidden "
        f"{S.HIDDEN} / {S.LAYERS} layers / {S.HEADS} heads / MLP {S.INTER}, reward = fraction of "
        f"ids < {S.REWARD_HI}; **text ByteSized32** = one real test prompt (project prompt code, "
        f"tiny rig's chat template; P={text_p} tokens), tiny Qwen2 rig "
        f"(h64/L2), <= {S.L_TEXT} response tokens, G={S.G_TEXT}, reward `task_specific`. "
        "Ours: the real `GRPOModule` under a Lightning Trainer, token-mean, clip 0.2, KL 0.001 "
        "(k3) to a frozen reference, AdamW lr 1e-4, one micro-batch = one whole group. "
        "before = `shared_prefix`/`cascade`/`skip_old_logp` all false; after = defaults. "
        "TRL: `GRPOTrainer` at equal settings (same weights and prompt ids, checked; bnpo, "
        "beta 0.001 with its reference model, fp32, default `generate`), TRL's phases timed by "
        "wrapping its `_generate` (sample), `_calculate_rewards` (score), no-grad log-prob "
        "passes (ref/old) and the rest of the step (update).",
        "Each configuration ran in its own process (peak RSS = its `ru_maxrss`; RSS growth = "
        "peak minus RSS before `fit`); the first step of every run is a warm-up, dropped; "
        "values are medians over steps, then over rounds; rounds alternate the configurations.",
        markdown_table(rows, phase_cols),
        shares(runs, shapes),
        "Ratios of the median step time, per round (run side by side):",
        markdown_table(ratio_rows),
    ]
    if par:
        prow = [{"batch": k, "loss (ours)": v["ours"], "loss (TRL)": v["trl"],
                 "max abs grad diff": v["max_grad_diff"], "max abs grad": v["max_grad"],
                 "agree": "yes" if v["agree"] else "NO"} for k, v in par.items()]
        parts += ["Loss parity (one prepared batch, token-mean <-> bnpo; ours through the "
                  "shared-prefix forward, TRL its plain per-row forward; at the video shape on "
                  "the full-vocabulary distribution TRL's loss uses):", markdown_table(prow)]
    parts += [
        f"Sampler decode at the video shape (G={S.G_VIDEO}, temperature 1, no top-k: the GRPO "
        f"rollout; median over the {dm['decode_steps']} decode steps of a rollout, median of "
        f"{args.decode_rollouts} rollouts each, alternating). A step is timed from one forward call's start to the "
        "next (forward + sampling + loop; nothing subtracted). Memory-bound limit = bytes one "
        "step must read / measured read bandwidth; bytes = every weight once (LM head whole, "
        "input embedding only at the 16 rows' ids) + keys/values attended, fp32, at the "
        f"median step (n={dm['n_mid']} response tokens in the cache): the minimum is the "
        "cascade layout (the prompt's K/V once + the 16 rows' response K/V). Weights "
        f"{dm['bytes_min']['weights'] / 1e6:.1f} MB, K/V {dm['bytes_min']['kv'] / 1e6:.1f} MB "
        f"(copied layout: {decode['copied']['bytes_layout']['kv'] / 1e6:.1f} MB). Read "
        f"bandwidth (`torch.sum` over 1 GB float32, 1 thread, median of 7, before and after): "
        + ", ".join(f"{b / 1e9:.1f}" for b in decode["bandwidths"]) + " GB/s. "
        f"Compute-bound limit = FLOPs of the step ({dm['flops']['total'] / 1e6:.0f} MFLOP: "
        f"linear layers {dm['flops']['linear'] / 1e6:.0f}, attention "
        f"{dm['flops']['attention'] / 1e6:.0f}) / the throughput of the step's own linear "
        f"layers at 16 rows, 1 thread, warm ({decode['flops_per_s'] / 1e9:.1f} GFLOP/s). "
        + ("**On this CPU the compute-bound limit is above the memory-bound one**, so a decode "
           "step cannot reach the memory-bound limit on one thread; the roofline column is the "
           "fraction of max(memory, compute) limit." if dm["compute_limit_ms"] > dm["limit_ms"]
           else "The memory-bound limit is the binding one here."),
        markdown_table(dec_rows),
        "\n".join(summary),
    ]
    body = "\n\n".join(parts)
    print(body)
    if not args.no_write:
        write_section("grpo_step", body)


if __name__ == "__main__":
    main()
