"""Model-predictive control in the toy text world with a trained language world model.

Paper: RLVR-World Sec. 5 (web agents plan by simulating candidate actions with the language
world model and scoring the predicted states). Here the world is the toy lamp-and-counter world
(``wm.textworld.toy``; a world model trained with ``data=toy_text model=lm_tiny``): from a start
state, be in a goal state after ``budget`` steps (success; every goal is 1..budget steps away).
Each step the planner (``wm.planning.planner``) enumerates every sequence of ``horizon`` actions
(toggle/increment/look), the world model predicts the states they lead to (greedy decoding of
the task's prompt, the answer read back with ``extract_answer``; an unparseable answer is a dead
end), the value is minus the mean number of steps still needed to reach the goal along the
predicted trajectory (``toy_distance``: count steps forward mod 10, plus 1 if the lamp differs;
the mean rewards getting there early), and the first action is executed in the true dynamics
(``toy_step``).

Baselines on the same (start, goal) pairs: a random policy, and the oracle (shortest path by
breadth-first search in the true dynamics: success 1 by construction, since every goal is
reachable within the budget). Plugging the true transition in as the world model
(``true_simulate``) must reproduce the oracle.

    python -m wm.planning.toy_text --ckpt runs/toy_text/mle/checkpoints/last.ckpt

Departures: the paper's value model is learned; here it is the known distance to the goal.
Predictions are memoized per (state, action): the world has 20 states x 3 actions, and greedy
decoding is deterministic, so each transition is asked of the model once.
"""
from __future__ import annotations

import argparse
import random
from collections import deque
from pathlib import Path

import numpy as np
import torch

from wm.planning.planner import EnumerateProposer, MPC, Planner, run_episode
from wm.textworld.toy import ACTIONS, extract_answer, toy_prompt, toy_step

DEAD_END = 20.0   # distance of an unparseable / invalid predicted state (worse than any real one)


def _key(state: dict | None):
    return None if state is None else (state["lamp"], int(state["count"]))


def toy_distance(state: dict | None, goal: dict) -> float:
    """Steps still needed to reach ``goal`` in the true dynamics (``DEAD_END`` for ``None``)."""
    if state is None:
        return DEAD_END
    return float((goal["count"] - state["count"]) % 10 + (state["lamp"] != goal["lamp"]))


def trajectory_value(goal: dict):
    """value(predictions) for the planner: predictions are trajectories (lists of states);
    score = -mean distance to ``goal`` over the trajectory."""
    def value(trajectories: list[list]) -> np.ndarray:
        return np.array([-np.mean([toy_distance(s, goal) for s in traj])
                         for traj in trajectories])
    return value


def valid_state(obj) -> dict | None:
    """A parsed answer as a toy state, or None when it is not one."""
    if not isinstance(obj, dict) or obj.get("lamp") not in ("on", "off"):
        return None
    count = obj.get("count")
    if isinstance(count, bool) or not isinstance(count, int) or not 0 <= count <= 9:
        return None
    return {"lamp": obj["lamp"], "count": count}


def true_simulate(state: dict, sequences: list) -> list[list]:
    """The true dynamics as a "world model": one predicted trajectory per action sequence."""
    out = []
    for seq in sequences:
        traj, s = [], state
        for a in seq:
            s = toy_step(s, a)
            traj.append(s)
        out.append(traj)
    return out


class LMToySimulator:
    """A language world model (a ``TextStateTask`` and its policy) as the planner's simulator.

    ``__call__(state, sequences) -> trajectories`` (lists of predicted states, ``None`` after an
    unparseable answer). Each depth of all sequences is one batched greedy generation over the
    (state, action) pairs not asked before. ``queries`` counts the pairs asked of the model.
    """

    def __init__(self, task, policy):
        self.task, self.policy = task, policy.eval()
        self.memo: dict = {}
        self.queries = 0

    @torch.no_grad()
    def generate(self, records: list[dict]) -> list[str]:
        """The model's greedy answers to toy records ``{"state", "action"}`` (one batch)."""
        from wm.rollout.sampler import Sampler

        batch = {"prompt": [toy_prompt(r) for r in records], "record": records,
                 "changed": torch.zeros(len(records), dtype=torch.bool)}
        prompts = self.task.prompts(batch)
        out = Sampler().sample(self.policy, prompts.ids, prompts.mask, prompts.plan,
                               group_size=1, temperature=0.0, generator=None)
        return self.task.decode(out.tokens, batch, 1)["texts"]

    def predict(self, pairs: list[tuple]) -> None:
        """Fill the memo for ``pairs`` = [(state key, action)] not asked before (one batch)."""
        todo = [p for p in dict.fromkeys(pairs) if p not in self.memo]
        if not todo:
            return
        texts = self.generate([{"state": {"lamp": k[0], "count": k[1]}, "action": a}
                               for k, a in todo])
        for pair, text in zip(todo, texts):
            self.memo[pair] = valid_state(extract_answer(text)[0])
        self.queries += len(todo)

    def __call__(self, state: dict, sequences: list) -> list[list]:
        current = [_key(state)] * len(sequences)
        trajs: list[list] = [[] for _ in sequences]
        for depth in range(len(sequences[0])):
            self.predict([(k, seq[depth]) for k, seq in zip(current, sequences) if k is not None])
            for i, seq in enumerate(sequences):
                nxt = None if current[i] is None else self.memo[(current[i], seq[depth])]
                trajs[i].append(nxt)
                current[i] = _key(nxt)
        return trajs


def shortest_path(start: dict, goal: dict) -> list[str]:
    """The oracle: fewest actions from ``start`` to ``goal`` (BFS in the true dynamics)."""
    seen, queue = {_key(start)}, deque([(start, [])])
    while queue:
        s, path = queue.popleft()
        if s == goal:
            return path
        for a in ACTIONS:
            n = toy_step(s, a)
            if _key(n) not in seen:
                seen.add(_key(n))
                queue.append((n, path + [a]))
    raise ValueError(f"toy world: {goal} is unreachable from {start}")


def episode_pairs(n: int, budget: int, seed: int = 0) -> list[tuple[dict, dict]]:
    """``n`` (start, goal) pairs whose shortest path has 1..``budget`` actions (deterministic)."""
    rng, pairs = random.Random(seed), []
    while len(pairs) < n:
        start = {"lamp": rng.choice(["off", "on"]), "count": rng.randrange(10)}
        goal = {"lamp": rng.choice(["off", "on"]), "count": rng.randrange(10)}
        if 1 <= len(shortest_path(start, goal)) <= budget:
            pairs.append((start, goal))
    return pairs


def mpc_success(simulate, pairs, budget: int, horizon: int = 2) -> float:
    """Success rate (state == goal after ``budget`` true steps) of MPC with ``simulate``."""
    wins = 0
    for start, goal in pairs:
        planner = Planner(simulate, trajectory_value(goal), EnumerateProposer(ACTIONS), horizon)
        states, _ = run_episode(MPC(planner).act, toy_step, start, budget)
        wins += states[-1] == goal
    return wins / len(pairs)


def random_success(pairs, budget: int, seed: int = 0) -> float:
    """Success rate of uniformly random actions."""
    rng, wins = random.Random(seed), 0
    for start, goal in pairs:
        states, _ = run_episode(lambda s: rng.choice(ACTIONS), toy_step, start, budget)
        wins += states[-1] == goal
    return wins / len(pairs)


def oracle_success(pairs, budget: int) -> float:
    """Success rate of the shortest path (then "look"): 1 when every goal is within budget."""
    wins = 0
    for start, goal in pairs:
        path = shortest_path(start, goal)
        plan = iter(path + ["look"] * (budget - len(path)))
        states, _ = run_episode(lambda s: next(plan), toy_step, start, budget)
        wins += states[-1] == goal
    return wins / len(pairs)


def load_world_model(ckpt: str | Path):
    """(task, policy) of a ``data=toy_text`` MLE/GRPO checkpoint, built from its run's
    config.yaml (``<run>/checkpoints/last.ckpt`` -> ``<run>/config.yaml``)."""
    from hydra.utils import instantiate
    from omegaconf import OmegaConf

    ckpt = Path(ckpt)
    config = ckpt.parent.parent / "config.yaml"
    if not ckpt.is_file() or not config.is_file():
        raise SystemExit(f"--ckpt {ckpt}: need the checkpoint and its run's {config}; train one "
                         "with `python train.py stage=mle data=toy_text model=lm_tiny`")
    cfg = OmegaConf.load(config)
    task = instantiate(cfg.data.task, _convert_="all")
    return task, task.build_policy(None, init=str(ckpt))


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--ckpt", required=True, help="a data=toy_text world model's last.ckpt")
    ap.add_argument("--episodes", type=int, default=100)
    ap.add_argument("--budget", type=int, default=6, help="true steps per episode")
    ap.add_argument("--horizon", type=int, default=2, help="planning horizon (3**h sequences)")
    ap.add_argument("--seed", type=int, default=0)
    a = ap.parse_args(argv)
    torch.set_num_threads(1)
    task, policy = load_world_model(a.ckpt)
    pairs = episode_pairs(a.episodes, a.budget, a.seed)
    sim = LMToySimulator(task, policy)
    rates = {"random policy": random_success(pairs, a.budget, a.seed),
             "MPC, world model": mpc_success(sim, pairs, a.budget, a.horizon),
             "MPC, true dynamics": mpc_success(true_simulate, pairs, a.budget, a.horizon),
             "oracle (shortest path)": oracle_success(pairs, a.budget)}
    right = sum(pred == toy_step({"lamp": k[0], "count": k[1]}, act)
                for (k, act), pred in sim.memo.items())
    print(f"toy text world, {a.episodes} episodes, budget {a.budget}, horizon {a.horizon}; "
          f"the world model predicted {right}/{sim.queries} of the transitions it was asked")
    for name, r in rates.items():
        print(f"  {name:<24} success {r:.3f}")
    rates["transitions right"] = right / max(sim.queries, 1)
    return rates


if __name__ == "__main__":
    main()
