"""Policy evaluation inside a world model (Real2Sim): do policies rank the same in the world model
as in the simulator?

Paper: RLVR-World Sec. 5 (Real2Sim policy evaluation: a policy's success rolled out in the world
model should track its real success, so a better world model ranks policies better). Here the
"real" world is the gym-pusht simulator (``wm.planning.pusht_policies``): each policy plays
episodes there (true success = the simulator's goal coverage at the last frame); the same start
frames and the same actions are then rolled out in the world model (``PushTWorldModel.
predict_episodes``) and the predicted success is the coverage read from the last predicted frame
(``wm.planning.pusht_coverage``).

The actions are replayed OPEN LOOP: the policies act on simulator state (agent position, block
pose), which a world model's predicted frames do not provide, so the world model cannot be
closed-loop with them; it predicts what the recorded actions would do. This measures the world
model's long-horizon prediction of task outcome, which is what policy ranking needs; a
closed-loop evaluation would need frame-based policies.

Reported per policy: true success, coverage read from the true last frame (the colour rule's own
error), predicted success per world model; per world model: Spearman rank correlation between
true and predicted success over policies (means) and over episodes, and the mean absolute error.

Shapes: per policy, success arrays (N episodes,).
"""
from __future__ import annotations

import numpy as np
import torch

from wm.planning.pusht_coverage import coverage_from_frames, from_uint8


def ranks(x) -> np.ndarray:
    """Ranks 1..n with ties given their average rank."""
    x = np.asarray(x, dtype=np.float64)
    order = np.argsort(x, kind="stable")
    r = np.empty(len(x))
    r[order] = np.arange(1, len(x) + 1)
    for v in np.unique(x):
        tie = x == v
        r[tie] = r[tie].mean()
    return r


def spearman(x, y) -> float:
    """Spearman rank correlation (Pearson on average ranks); NaN when either side is constant."""
    rx, ry = ranks(x), ranks(y)
    if len(rx) < 2 or rx.std() == 0 or ry.std() == 0:
        return float("nan")
    return float(np.corrcoef(rx, ry)[0, 1])


def simulate_policies(sim, policies: list[str], starts, steps: int, seed: int = 0) -> dict:
    """{policy: [Episode]}: every policy from every start state (``PushTSim.run_episode``);
    policy randomness is seeded per (seed, start index)."""
    from wm.planning.pusht_policies import make_policy

    return {name: [sim.run_episode(s, steps, policy=make_policy(name, np.random.default_rng(
                    [seed, i]))) for i, s in enumerate(starts)] for name in policies}


def predicted_success(world, episodes, samples: int = 1, seed: int = 0) -> dict[str, np.ndarray]:
    """Open-loop replay of ``episodes`` in ``world``: {"success": (N,) predicted coverage of the
    last frame (mean over ``samples``), "frame_mae": (N,) pixel MAE of the predicted frames}."""
    frames = np.stack([e.frames for e in episodes])                          # (N, T+1, h, w, 3)
    actions = np.stack([e.actions for e in episodes])                        # (N, T, A)
    pred, metrics = world.predict_episodes(frames, actions, samples=samples, seed=seed)
    cov = coverage_from_frames(pred[:, -1]).view(len(episodes), samples).mean(1)
    mae = metrics["mae"].view(len(episodes), samples).mean(1)
    return {"success": cov.numpy().astype(np.float64), "frame_mae": mae.numpy().astype(np.float64)}


def read_success(episodes) -> np.ndarray:
    """(N,) coverage read by the colour rule from each episode's true last frame."""
    return coverage_from_frames(from_uint8(np.stack([e.frames[-1] for e in episodes]))).numpy()


def evaluate_policies(worlds: dict, episodes: dict, samples: int = 1, seed: int = 0):
    """Per-policy rows and per-world-model summary rows.

    worlds: {name: PushTWorldModel}; episodes: {policy: [Episode]} (``simulate_policies``).
    Returns (policy rows, model rows): policy rows have ``true success``, ``read from true
    frames``, ``read from tokenizer reconstructions`` (the first world model's tokenizer) and
    ``<model> predicted`` / ``<model> frame MAE``; summary rows (the colour rule on true frames,
    on reconstructions, each world model) have the Spearman correlations and MAEs.
    """
    true = {p: np.array([e.coverage[-1] for e in eps]) for p, eps in episodes.items()}
    read = {p: read_success(eps) for p, eps in episodes.items()}
    first = next(iter(worlds.values()), None)
    recon = {p: reconstruction_success(first, eps) for p, eps in episodes.items()} if first \
        else {}
    pred = {m: {p: predicted_success(w, eps, samples, seed) for p, eps in episodes.items()}
            for m, w in worlds.items()}
    rows = []
    for p in episodes:
        row = {"policy": p, "episodes": len(true[p]), "true success": float(true[p].mean()),
               "read from true frames": float(read[p].mean())}
        if recon:
            row["read from tokenizer reconstructions"] = float(recon[p].mean())
        for m in worlds:
            row[f"{m} predicted"] = float(pred[m][p]["success"].mean())
        for m in worlds:
            row[f"{m} frame MAE"] = float(pred[m][p]["frame_mae"].mean())
        rows.append(row)
    policies = list(episodes)
    t_means = [true[p].mean() for p in policies]
    t_all = np.concatenate([true[p] for p in policies])
    summary = []
    for name, values in [("colour rule on true frames", read),
                         *([("colour rule on tokenizer reconstructions", recon)] if recon else []),
                         *[(m, {p: pred[m][p]["success"] for p in policies}) for m in worlds]]:
        means = [values[p].mean() for p in policies]
        allv = np.concatenate([values[p] for p in policies])
        summary.append({"success from": name,
                        "Spearman (policies)": spearman(t_means, means),
                        "Spearman (episodes)": spearman(t_all, allv),
                        "MAE (episodes)": float(np.abs(allv - t_all).mean()),
                        "MAE (policy means)": float(np.abs(np.subtract(means, t_means)).mean())})
    return rows, summary


@torch.no_grad()
def reconstruction_success(world, episodes) -> np.ndarray:
    """(N,) coverage read from the tokenizer's reconstruction of each true last frame: what a
    world model that predicts every token right scores under ``data.task.decoding=tokens``
    (patch decoding copies unchanged cells from the previous frame and can do better)."""
    last = from_uint8(np.stack([e.frames[-1] for e in episodes]))           # (N, 3, h, w)
    tok = world.task.tokenizer
    return coverage_from_frames(tok.decode(tok.encode(last)).clamp(0, 1)).numpy()
