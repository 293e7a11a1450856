"""Threads: a 2-step text GRPO run of the tiny rig at 1 thread vs torch's default (one per core),
on an idle machine and with one competing busy process; and the tiny video GRPO step likewise.

Why (issue #14, ../shared/ENVIRONMENT.md): with torch's default every small matmul is split
over all cores and waits for the slowest thread; when another process holds a core that thread
is descheduled and the run collapses. ``num_threads: auto`` (conf/train.yaml) therefore uses
1 thread per process on CPU. Each configuration runs in its own subprocess (the thread count is
fixed at process start); the timed part is ``fit_stage`` only (imports excluded). Rounds
alternate configurations; medians over rounds.

Run: ``python bench/bench_threads.py`` (about 2-4 minutes); writes section "threads" of
docs/benchmarks.md.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

TEXT = ["stage=grpo", "data=toy_text", "model=lm_tiny", "stage.module.init_policy=null",
        "stage.max_steps=2", "stage.val_check_interval=100", "stage.limit_val_batches=0",
        "data.datamodule.batch_size=2", "data.grpo_group_size=4", "logger=none",
        "trainer.enable_progress_bar=false", "trainer.accelerator=cpu"]


def worker(threads: str, out: str) -> None:
    """Compose the config, run fit_stage, print the fit wall time (seconds) as JSON."""
    from hydra import compose, initialize_config_dir

    from wm.cli.fit import configure_threads, fit_stage

    with tempfile.TemporaryDirectory() as runs, \
            initialize_config_dir(config_dir=str(ROOT / "conf"), version_base="1.3"):
        cfg = compose(config_name="train",
                      overrides=[*TEXT, f"paths.runs_dir={runs}", f"num_threads={threads}"])
        configure_threads(cfg)
        import torch

        t0 = time.perf_counter()
        fit_stage(cfg)
        Path(out).write_text(json.dumps({"seconds": time.perf_counter() - t0,
                                         "threads": torch.get_num_threads()}))


def run_config(threads: str, busy: bool) -> dict:
    competitor = None
    if busy:   # one process spinning on a core, as any other job on a shared machine would
        competitor = subprocess.Popen([sys.executable, "-c", "while True: pass"])
    try:
        with tempfile.NamedTemporaryFile(suffix=".json") as f:
            env = {k: v for k, v in os.environ.items() if k != "OMP_NUM_THREADS"}
            subprocess.run([sys.executable, __file__, "--worker", threads, f.name], cwd=ROOT,
                           env=env, check=True, capture_output=True, timeout=900)
            return json.loads(Path(f.name).read_text())
    finally:
        if competitor is not None:
            competitor.kill()
            competitor.wait()


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--worker", nargs=2, metavar=("THREADS", "OUT"))
    ap.add_argument("--rounds", type=int, default=3)
    args = ap.parse_args()
    if args.worker:
        worker(*args.worker)
        return
    from bench._report import machine, markdown_table, write_section

    configs = [("auto (1)", "auto"), ("torch default", "torch")]
    times: dict[tuple[str, bool], list[float]] = {}
    threads_seen: dict[str, int] = {}
    for r in range(args.rounds):
        for busy in (False, True):
            for label, value in configs:
                res = run_config(value, busy)
                times.setdefault((label, busy), []).append(res["seconds"])
                threads_seen[label] = res["threads"]
                print(f"round {r}: {label:14s} busy={busy}: {res['seconds']:.2f} s", flush=True)
    rows = []
    for busy in (False, True):
        base = statistics.median(times[("auto (1)", busy)])
        for label, _ in configs:
            t = statistics.median(times[(label, busy)])
            rows.append({"num_threads": label, "torch threads": threads_seen[label],
                         "competing busy process": "yes" if busy else "no",
                         "2-step text GRPO (s)": t, "vs auto": t / base})
    table = markdown_table(rows)
    print(table)
    text = (f"Machine: {machine()}; {os.cpu_count()} cores. `python bench/bench_threads.py`: "
            "a 2-step text GRPO run of the tiny rig (`data=toy_text model=lm_tiny`, G=4, 2 prompts), "
            "`fit_stage` wall time only, median of "
            f"{args.rounds} alternating rounds, each configuration in a fresh process; the "
            "competing process is one Python busy loop.\n\n" + table +
            "\n\nDefault chosen: `num_threads: auto` = 1 thread per process on CPU (per DDP rank), "
            "torch's default on GPU.")
    write_section("threads", text)


if __name__ == "__main__":
    main()
