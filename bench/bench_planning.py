"""Use the quickstart's PushT world models: policy evaluation (Real2Sim) and MPC.

    python bench/bench_planning.py                       # reads runs/pusht/{tokenizer,mle,grpo}
    python bench/bench_planning.py --runs-dir /tmp/qs/runs --episodes 8 --mpc-episodes 4
    python bench/bench_planning.py --episodes 2 --steps 3 --mpc-episodes 1 --horizon 1 --no-report

RLVR-World Sec. 5 uses world models for (a) policy evaluation, ranking policies by their success
inside the world model, and (b) planning (MPC), where the RLVR world model lifted a web agent's
success 12.06 -> 14.29 %. Both are measured here on PushT, where gym-pusht is the ground truth:

1. Policy evaluation (``wm.planning.policy_eval``): policies of different quality (the scripted
   pusher with growing action noise, a random policy; human demonstrations are not used, they
   need a download) play ``--episodes`` episodes of ``--steps`` recorded steps in the simulator
   from the same start states. True success = the simulator's goal coverage at the last frame;
   predicted success = the coverage read from the last frame the world model predicts when the
   same start frames and actions are rolled out OPEN LOOP (the policies act on simulator state,
   not on predicted frames, so they cannot be run closed loop inside the world model). MLE and
   RLVR world models side by side: per-policy means, Spearman rank correlation and MAE.
2. MPC (``wm.planning.pusht_mpc``): CEM over target positions, imagined with each world model,
   value = coverage read from the last imagined frame; executed in the simulator for ``--steps``
   steps from the first ``--mpc-episodes`` start states, against the random policy and the
   scripted pusher on the same starts, with wall time.

Writes the "planning" section of docs/benchmarks.md (unless --no-report). If the checkpoints are
missing it says which command writes them (``python train.py``). The defaults (5 policies x 16
episodes of 12 steps, 8 MPC episodes per world model) took 11.6 min on 2 shared CPU cores.

Departures from the paper's settings: PushT instead of web pages and RT-1 robots; no replayed
human demonstrations; the MPC proposal is centred on the agent position the simulator reports
(the value reads only imagined frames); success is the final coverage, not gym-pusht's 95 %
threshold (which none of these short episodes reaches).
"""
from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench._report import machine, markdown_table, write_section  # noqa: E402
from wm.planning.policy_eval import evaluate_policies, simulate_policies  # noqa: E402
from wm.planning.pusht_mpc import FrameMPC  # noqa: E402
from wm.planning.pusht_policies import PushTSim, start_states  # noqa: E402
from wm.planning.pusht_world import STAGES, PushTWorldModel, require_checkpoints  # noqa: E402

POLICIES = ["pusher", "pusher_noise20", "pusher_noise50", "pusher_noise100", "random"]


def load_worlds(runs_dir: str, models: list[str]) -> dict[str, PushTWorldModel]:
    """{"MLE": ..., "RLVR": ...} from ``runs_dir/pusht``."""
    require_checkpoints(runs_dir, [STAGES[m] for m in models])
    return {m: PushTWorldModel.from_runs(runs_dir, STAGES[m], m) for m in models}


def policy_evaluation(worlds: dict, sim: PushTSim, starts, policies: list[str], steps: int,
                      samples: int, seed: int) -> tuple[list[dict], list[dict], dict, float]:
    """(policy rows, summary rows, episodes {policy: [Episode]}, seconds)."""
    t0 = time.time()
    episodes = simulate_policies(sim, policies, starts, steps, seed)
    rows, summary = evaluate_policies(worlds, episodes, samples=samples, seed=seed)
    return rows, summary, episodes, time.time() - t0


def mpc_comparison(worlds: dict, sim: PushTSim, starts, steps: int, baselines: dict,
                   horizon: int, candidates: int, iterations: int, seed: int) -> list[dict]:
    """Rows: MPC with each world model, then the baselines (``{name: [Episode]}`` on the same
    starts); success = the simulator's coverage at the last frame."""
    rows = []
    for name, world in worlds.items():
        mpc = FrameMPC(world, horizon=horizon, candidates=candidates, iterations=iterations,
                       elites=max(2, candidates // 5), seed=seed)
        final, secs, predicted = [], [], []
        for s in starts:
            mpc.reset()
            ep = sim.run_episode(s, steps, chooser=mpc)
            final.append(ep.coverage[-1])
            secs.append(ep.seconds)
            predicted.append(np.mean(mpc.scores))
        rows.append({"controller": f"MPC, {name} world model", "episodes": len(starts),
                     "success (final coverage)": float(np.mean(final)),
                     "standard error": _se(final),
                     "mean predicted coverage of the chosen plans": float(np.mean(predicted)),
                     "seconds per episode": float(np.mean(secs))})
    for name, eps in baselines.items():
        eps = eps[: len(starts)]
        final = [e.coverage[-1] for e in eps]
        rows.append({"controller": name, "episodes": len(eps),
                     "success (final coverage)": float(np.mean(final)),
                     "standard error": _se(final),
                     "seconds per episode": float(np.mean([e.seconds for e in eps]))})
    return rows


def _se(values) -> float:
    """Standard error of the mean (0 for one value)."""
    return float(np.std(values, ddof=1) / np.sqrt(len(values))) if len(values) > 1 else 0.0


@torch.no_grad()   # scoped: tests call main() in-process
def main(argv: list[str] | None = None) -> str:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs-dir", default=os.environ.get("WM_RUNS_DIR", "runs"),
                    help="folder holding pusht/{tokenizer,mle,grpo} (python train.py writes it)")
    ap.add_argument("--models", default="MLE,RLVR", help="comma list of MLE, RLVR")
    ap.add_argument("--policies", default=",".join(POLICIES))
    ap.add_argument("--episodes", type=int, default=16,
                    help="policy-evaluation episodes per policy")
    ap.add_argument("--steps", type=int, default=12, help="recorded steps per episode")
    ap.add_argument("--spread", type=float, default=60.0,
                    help="start: block centre within this many px of the goal's")
    ap.add_argument("--samples", type=int, default=1, help="world-model rollouts per episode")
    ap.add_argument("--mpc-episodes", type=int, default=8)
    ap.add_argument("--horizon", type=int, default=2, help="MPC planning horizon (recorded steps)")
    ap.add_argument("--candidates", type=int, default=16)
    ap.add_argument("--iterations", type=int, default=2,
                    help="CEM iterations (1 = random shooting)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--no-report", action="store_true", help="print only; leave docs/ alone")
    a = ap.parse_args(argv)
    torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", "1")))
    models = [m.strip() for m in a.models.split(",") if m.strip()]
    bad = [m for m in models if m not in STAGES]
    if bad:
        raise SystemExit(f"--models {a.models}: unknown {bad}; use a comma list of {list(STAGES)}")
    if a.mpc_episodes > a.episodes:
        raise SystemExit(f"--mpc-episodes {a.mpc_episodes} > --episodes {a.episodes}: MPC reuses "
                         "the policy-evaluation starts; raise --episodes")
    policies = [p.strip() for p in a.policies.split(",") if p.strip()]
    t0 = time.time()
    worlds = load_worlds(a.runs_dir, models)
    first = next(iter(worlds.values()))
    sim = PushTSim(first.image_size, first.frame_skip)
    starts = start_states(a.episodes, a.seed, a.spread)
    rows, summary, episodes, pe_secs = policy_evaluation(worlds, sim, starts, policies, a.steps,
                                                         a.samples, a.seed)
    baselines = {f"{p} (policy)": episodes[p] for p in ("random", "pusher") if p in episodes}
    mpc_rows = mpc_comparison(worlds, sim, starts[: a.mpc_episodes], a.steps, baselines,
                              a.horizon, a.candidates, a.iterations, a.seed) \
        if a.mpc_episodes > 0 else []
    sim.close()
    total = time.time() - t0

    cmd = "python bench/bench_planning.py " + " ".join(argv if argv is not None else sys.argv[1:])
    env_s = first.frame_skip / 10      # seconds per recorded step (gym-pusht runs at 10 Hz)
    body = (
        f"## Using a world model: policy evaluation and MPC (`{cmd.strip()}`)\n\n"
        f"Machine: {machine()}, {os.cpu_count()} CPU cores; {total / 60:.1f} min in all. "
        f"World models: `{a.runs_dir}/pusht/{{mle,grpo}}` ({first.image_size}x{first.image_size} "
        f"frames, frame_skip {first.frame_skip}, {first.Tc} context frames). Episodes: "
        f"{a.steps} recorded steps ({a.steps * env_s:.1f} s of simulated time) from start states "
        f"with the block within {a.spread:g} px of the goal, seed {a.seed}; success = goal "
        "coverage at the last frame (gym-pusht's `info[\"coverage\"]`; predicted: read from the "
        "last predicted frame by `wm/planning/pusht_coverage.py`).\n\n"
        f"**Policy evaluation** ({a.episodes} episodes per policy, {pe_secs / 60:.1f} min). "
        "The world model replays each episode's actions OPEN LOOP from its first "
        f"{first.Tc} frames ({a.steps + 1 - first.Tc} predicted frames): the policies act on "
        "simulator state, which predicted frames do not give, so they cannot act inside the "
        f"world model. {a.samples} rollout(s) per episode, temperature 1.\n\n"
        + markdown_table(rows) + "\n\n" + markdown_table(summary) + "\n\n"
        + (f"**MPC** (CEM, {a.iterations} iteration(s) x {a.candidates} candidates, horizon "
           f"{a.horizon} recorded steps, value = coverage of the last imagined frame; "
           f"{a.mpc_episodes} episodes, the first starts above):\n\n" + markdown_table(mpc_rows)
           if mpc_rows else "MPC: skipped (--mpc-episodes 0)."))
    print(body)
    if not a.no_report:
        write_section("planning", body)
    return body


if __name__ == "__main__":
    main()
