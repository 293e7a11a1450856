"""The paper's Table 1 at CPU scale: base / SFT / RLVR (binary) / RLVR (task-specific) on ByteSized32.

    python -m wm.language.smollm2                       # once: the pretrained model (offline)
    python bench/bench_text_rlvr.py                     # ~1.5-2 h on 2 cores
    python bench/bench_text_rlvr.py --workdir /tmp/t    # resumes: finished steps are skipped

Model: SmolLM2-135M-Instruct (``model=lm_smollm2_135m``), not the paper's 1.5B. Steps, each the
user's own command (``conf/experiment/bytesized32_smol_{sft,grpo}.yaml``): evaluate the base
model; SFT on training transitions; GRPO from the SFT checkpoint with the binary reward and,
separately, with the task-specific reward; evaluate each. All four are scored by ``eval.py`` on
the same held-out test transitions (the paper's split: test = the 2,954 released records; a
seeded subset whose prompt fits, see the experiment file), greedy decoding (the paper's
validation setting). Columns as the paper's Table 1: exact-match accuracy on unchanged, changed
and all transitions, plus the parse-failure rate, the mean task-specific reward, N, optimizer
steps and minutes of every step. Writes docs/benchmarks.md (section ``text_rlvr``) and the
README block between its ``text_rlvr`` markers.
Training curves (reward, held-out accuracy) are in ``<workdir>/runs/*/*/tb`` (TensorBoard).
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench._report import (machine, markdown_table, write_readme_block,  # noqa: E402
                           write_section)

PAPER = ("| paper, 1.5B (Table 1) | base 11.98 / 0.08 / 7.11 | SFT 38.88 / 24.21 / 32.87 | RLVR "
         "task-specific 83.66 / 33.80 / 63.24 |")
COLUMNS = ["model", "unchanged %", "changed %", "overall %", "parse fail %", "task-specific",
           "N (unch./ch.)", "steps", "train min", "eval min"]


def shared_data() -> Path:
    root = Path(os.environ.get("WM_SHARED_DATA", ROOT.parent / "shared" / "data"))
    return root / "bytesized32"


def run(cmd: list[str], log: Path, threads: int) -> float:
    """Run ``python <cmd>`` in the repository root, output to ``log``; minutes taken."""
    env = {**os.environ, "OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads)}
    start = time.time()
    with open(log, "a") as fh:
        fh.write(f"\n$ python {' '.join(cmd)}\n")
        fh.flush()
        done = subprocess.run([sys.executable, *cmd], cwd=ROOT, env=env, stdout=fh,
                              stderr=subprocess.STDOUT)
    if done.returncode != 0:
        raise SystemExit(f"step failed (exit {done.returncode}): python {' '.join(cmd)}; see {log}")
    return (time.time() - start) / 60


class Bench:
    def __init__(self, args):
        self.args, self.work = args, args.workdir.resolve()
        self.runs, self.log = self.work / "runs", self.work / "bench.log"
        self.work.mkdir(parents=True, exist_ok=True)
        self.times_path = self.work / "times.json"
        self.times = json.loads(self.times_path.read_text()) if self.times_path.exists() else {}
        self.lock = threading.Lock()
        self.common = [f"data.path={args.data}", f"paths.runs_dir={self.runs}",
                       f"num_threads={args.threads}"]

    def timed(self, key: str, cmd: list[str], done: Path) -> float:
        """Run ``cmd`` unless ``done`` exists (a rerun resumes); remember its minutes."""
        if not done.exists() or key not in self.times:
            print(f"[{key}] python {' '.join(cmd)}", flush=True)
            minutes = run(cmd, self.log, self.args.threads)
            with self.lock:
                self.times[key] = minutes
                self.times_path.write_text(json.dumps(self.times, indent=2))
        print(f"[{key}] {self.times[key]:.1f} min", flush=True)
        return self.times[key]

    def train(self, key: str, experiment: str, run_name: str, steps: int, extra: list[str]) -> Path:
        stage = "mle" if experiment.endswith("_sft") else "grpo"
        ckpt = self.runs / run_name / stage / "checkpoints" / "last.ckpt"
        cmd = ["train.py", f"experiment={experiment}", f"run_name={run_name}",
               f"stage.max_steps={steps}", *self.common, *extra]
        self.timed(key, cmd, ckpt)
        return ckpt

    def evaluate(self, key: str, ckpt: Path) -> dict:
        out = self.work / "eval" / key
        cmd = ["eval.py", f"ckpt={ckpt}", "experiment=bytesized32_smol_sft", "temperature=0",
               "data.task.reward_key=task_specific", f"out_dir={out}",
               f"batch_size={self.args.eval_batch_size}", *self.common]
        if self.args.max_batches:
            cmd.append(f"max_batches={self.args.max_batches}")
        self.timed(f"eval_{key}", cmd, out / "metrics.json")
        return json.loads((out / "metrics.json").read_text())["metrics"]


def row(label: str, metrics: dict, steps: int, train_min: float, eval_min: float) -> dict:
    pct = lambda k: 100 * float(metrics[k])  # noqa: E731
    n = int(metrics["num_predictions"])
    changed = round(n * float(metrics["changed_frac"])) if "changed_frac" in metrics else "?"
    split = f"{n - changed if changed != '?' else '?'}/{changed}"
    return {"model": label, "unchanged %": pct("acc_unchanged"), "changed %": pct("acc_changed"),
            "overall %": pct("acc_all"), "parse fail %": pct("parse_fail"),
            "task-specific": float(metrics["reward"]), "N (unch./ch.)": f"{n} ({split})",
            "steps": steps, "train min": round(train_min, 1), "eval min": round(eval_min, 1)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", type=Path, default=shared_data(), help="ByteSized32 folder")
    ap.add_argument("--workdir", type=Path, default=ROOT / "runs" / "bench_text_rlvr")
    ap.add_argument("--model", default=None, help="SmolLM2 folder (default: the cache)")
    ap.add_argument("--sft-steps", type=int, default=40)
    ap.add_argument("--grpo-steps", type=int, default=24, help="optimizer steps of each GRPO run")
    ap.add_argument("--threads", type=int, default=1, help="torch threads per step")
    ap.add_argument("--jobs", type=int, default=2, help="steps run at once (one per core)")
    ap.add_argument("--eval-batch-size", type=int, default=8, help="prompts per eval batch "
                    "(decoding reads every weight once a step for all rows: memory-bound on CPU)")
    ap.add_argument("--max-batches", type=int, default=None, help="score only the first N eval "
                    "batches (a quick look; the table needs >= 300 transitions)")
    ap.add_argument("--no-write", action="store_true", help="do not write docs/benchmarks.md")
    args = ap.parse_args()
    from wm.language.smollm2 import resolve

    base = resolve(args.model)
    if not (args.data / "test.jsonl.gz").exists() and not (args.data / "test.jsonl").exists():
        raise SystemExit(f"--data {args.data}: no ByteSized32 test.jsonl(.gz) (docs/data.md)")
    b = Bench(args)
    b.common += [f"model.policy.path={base}"] if args.model else []
    start = time.time()
    sft = b.runs / "bytesized32_smol" / "mle" / "checkpoints" / "last.ckpt"
    grpo = {r: b.runs / f"bytesized32_smol_{r}" / "grpo" / "checkpoints" / "last.ckpt"
            for r in ("binary", "task_specific")}
    jobs = {   # name: (needs, call); one torch thread each, --jobs of them at once
        "sft": ((), lambda: b.train("sft", "bytesized32_smol_sft", "bytesized32_smol",
                                    args.sft_steps, [])),
        "eval_base": ((), lambda: b.evaluate("base", base)),
        **{f"grpo_{r}": (("sft",), lambda r=r: b.train(
            f"grpo_{r}", "bytesized32_smol_grpo", f"bytesized32_smol_{r}", args.grpo_steps,
            [f"data.task.reward_key={r}", f"stage.module.init_policy={sft}"]))
           for r in grpo},
        "eval_sft": (("sft",), lambda: b.evaluate("sft", sft)),
        **{f"eval_{r}": ((f"grpo_{r}",), lambda r=r: b.evaluate(r, grpo[r])) for r in grpo},
    }
    results = run_jobs(jobs, args.jobs)
    rows = [row("base (SmolLM2-135M-Instruct)", results["eval_base"], 0, 0, b.times["eval_base"]),
            row("SFT", results["eval_sft"], args.sft_steps, b.times["sft"], b.times["eval_sft"])]
    rows += [row(f"RLVR ({r.replace('_', '-')} reward)", results[f"eval_{r}"], args.grpo_steps,
                 b.times[f"grpo_{r}"], b.times[f"eval_{r}"]) for r in grpo]
    table = markdown_table(rows, COLUMNS)
    body = (f"`python bench/bench_text_rlvr.py` (SmolLM2-135M-Instruct; {args.jobs} steps at a "
            f"time, {args.threads} thread each; {sum(b.times.values()):.0f} min of steps, "
            f"{(time.time() - start) / 60:.0f} min wall this call; {machine()}).\n"
            "Held-out: seeded test transitions whose prompt fits (conf/experiment/"
            "bytesized32_smol_sft.yaml), greedy decoding, scored by `eval.py`. Accuracy = "
            "exact match of the whole next state; task-specific = the reference's reward "
            "(max 0.3 unchanged / 1.3 changed).\n\n" + table
            + "\n\nThe paper (unchanged / changed / overall %):\n\n| | | | |\n|---|---|---|---|\n"
            + PAPER + "\n")
    print(body)
    if not args.no_write:
        write_section("text_rlvr", body)
        write_readme_block("text_rlvr", body)


def run_jobs(jobs: dict, workers: int) -> dict:
    """Run ``{name: (needs, call)}`` on ``workers`` threads, each job once its needs are done;
    ``{name: call()}``. A failing job stops the bench (its log is named)."""
    from concurrent.futures import FIRST_COMPLETED, ThreadPoolExecutor, wait

    results, running = {}, {}
    with ThreadPoolExecutor(workers) as pool:
        while len(results) < len(jobs):
            for name, (needs, call) in jobs.items():
                if (name not in results and name not in running.values()
                        and all(n in results for n in needs) and len(running) < workers):
                    running[pool.submit(call)] = name
            finished, _ = wait(running, return_when=FIRST_COMPLETED)
            for fut in finished:
                results[running.pop(fut)] = fut.result()
    return results


if __name__ == "__main__":
    main()
