"""Model-predictive control with any world model: random shooting / CEM over action sequences,
receding horizon.

Paper: RLVR-World Sec. 5 (downstream use of world models): a web agent plans by simulating
candidate actions with the world model and scoring the predicted page changes with a value
model (WebArena success 12.06 % -> 14.29 % when the MLE world model is replaced by the RLVR one).
This module is that loop with every modality-specific part passed in:

    proposer.sample(params, n, rng) -> n action sequences (each ``horizon`` actions)
    simulate(state, sequences)      -> one prediction per sequence (predicted final state,
                                       predicted trajectory, decoded frames... anything)
    value(predictions)              -> (n,) scores, higher is better
    proposer.refit(params, elites)  -> new proposal (CEM); proposer.shift(params) -> warm start

so the web-agent setting (an LM policy proposing actions, ``CallableProposer``; a value model
scoring predicted page changes, ``value``) plugs in without changing the planner, and so do
PushT (``GaussianProposer`` over target positions, value = predicted goal coverage,
``wm.planning.pusht_mpc``) and the toy text world (``EnumerateProposer``, value = minus the
distance to a goal state, ``wm.planning.toy_text``).

``iterations=1`` is random shooting; ``iterations > 1`` is the cross-entropy method (each
iteration refits the proposal to the ``elites`` best sequences; the best sequence ever seen is
returned). ``samples > 1`` simulates every candidate that many times (a stochastic world model)
and averages its scores. ``MPC.act`` plans from the current state, executes only the first
action and warm-starts the next plan with the shifted proposal (receding horizon).

Departures: the paper's agent proposes with an LM policy and scores one step ahead; here the
horizon, the proposal and the number of candidates are options. Nothing here is trained.
"""
from __future__ import annotations

import itertools
from dataclasses import dataclass, field
from typing import Any, Callable, Protocol, Sequence

import numpy as np


class Proposer(Protocol):
    """Where candidate action sequences come from; ``params`` is the proposer's own state."""

    def init(self, state: Any, horizon: int) -> Any: ...

    def sample(self, params: Any, n: int, rng: np.random.Generator) -> list: ...

    def refit(self, params: Any, elites: list) -> Any: ...

    def shift(self, params: Any) -> Any:
        """Warm start for the next decision (``None``: initialise from the next state)."""


class GaussianProposer:
    """Continuous actions: a diagonal Gaussian per step, clipped to ``[low, high]``.

    A sequence is an array (horizon, A). ``center(state) -> (A,)`` optionally centres the first
    proposal on something read from the state (e.g. the agent's position); else the box centre.
    """

    def __init__(self, low, high, std, center: Callable[[Any], np.ndarray] | None = None,
                 min_std: float = 1e-3):
        self.low, self.high = np.asarray(low, np.float64), np.asarray(high, np.float64)
        self.std0, self.center, self.min_std = np.asarray(std, np.float64), center, min_std

    def init(self, state, horizon: int):
        mid = (self.low + self.high) / 2 if self.center is None else np.asarray(self.center(state))
        mean = np.broadcast_to(mid, (horizon,) + self.low.shape).astype(np.float64)
        return mean.copy(), np.broadcast_to(self.std0, mean.shape).copy()

    def sample(self, params, n: int, rng: np.random.Generator) -> list[np.ndarray]:
        mean, std = params
        draws = mean + std * rng.standard_normal((n,) + mean.shape)          # (n, horizon, A)
        return list(np.clip(draws, self.low, self.high))

    def refit(self, params, elites: list[np.ndarray]):
        e = np.stack(elites)                                                # (E, horizon, A)
        return e.mean(0), np.maximum(e.std(0), self.min_std)

    def shift(self, params):
        mean, std = params
        mean = np.concatenate([mean[1:], mean[-1:]])
        std = np.concatenate([std[1:], np.broadcast_to(self.std0, std[-1:].shape)])
        return mean, np.maximum(std, self.std0 * 0.5)


class EnumerateProposer:
    """Discrete actions: every sequence of ``horizon`` actions (``len(actions) ** horizon``).

    ``n`` is ignored (the enumeration is exhaustive), so CEM adds nothing over one iteration.
    """

    def __init__(self, actions: Sequence[Any]):
        self.actions = list(actions)

    def init(self, state, horizon: int):
        return horizon

    def sample(self, params, n: int, rng: np.random.Generator) -> list[tuple]:
        return list(itertools.product(self.actions, repeat=params))

    def refit(self, params, elites):
        return params

    def shift(self, params):
        return params


class CallableProposer:
    """Candidates from a function ``propose(state, n, rng) -> n sequences`` (e.g. an LM policy
    sampling actions, as the paper's web agent does). No refit: CEM degenerates to resampling."""

    def __init__(self, propose: Callable[[Any, int, np.random.Generator], list]):
        self.propose = propose

    def init(self, state, horizon: int):
        return state

    def sample(self, params, n: int, rng: np.random.Generator) -> list:
        return list(self.propose(params, n, rng))

    def refit(self, params, elites):
        return params

    def shift(self, params):
        return None                 # nothing to carry over: the next plan proposes afresh


@dataclass
class PlanResult:
    """The best sequence of one planning call and what was scored on the way.

    ``candidates``/``scores``/``predictions`` are the last iteration's (K sequences, (K,) scores,
    K predictions), for inspection (e.g. showing imagined frames).
    """

    actions: Any
    score: float
    prediction: Any            # the best sequence's prediction
    candidates: list
    scores: np.ndarray
    predictions: list
    params: Any = None
    history: list = field(default_factory=list)   # best score per iteration


class Planner:
    """Random shooting (``iterations=1``) or CEM (``iterations > 1``) over action sequences.

    Args:
        simulate: ``(state, sequences: list of K sequences) -> K predictions``.
        value: ``(predictions) -> (K,)`` scores (array or tensor; higher is better).
        proposer: a ``Proposer`` (``GaussianProposer``, ``EnumerateProposer``,
            ``CallableProposer``).
        horizon: actions per sequence.
        candidates: sequences per iteration (ignored by ``EnumerateProposer``).
        iterations: CEM iterations (1 = random shooting).
        elites: sequences the proposal is refit to after each CEM iteration.
        samples: simulations per candidate (scores averaged), for stochastic world models.
        seed: seed of the proposals' random generator.
    """

    def __init__(self, simulate, value, proposer: Proposer, horizon: int, candidates: int = 64,
                 iterations: int = 1, elites: int = 8, samples: int = 1, seed: int = 0):
        if horizon < 1 or candidates < 1 or iterations < 1 or samples < 1 or elites < 1:
            raise ValueError(f"planner: horizon, candidates, iterations, elites and samples must "
                             f"be >= 1, got {horizon}, {candidates}, {iterations}, {elites}, "
                             f"{samples}")
        self.simulate, self.value, self.proposer = simulate, value, proposer
        self.horizon, self.candidates, self.iterations = horizon, candidates, iterations
        self.elites, self.samples = elites, samples
        self.rng = np.random.default_rng(seed)

    def score(self, state, sequences: list) -> tuple[np.ndarray, list]:
        """(K,) mean scores of ``sequences`` from ``state`` and the K (first-sample) predictions."""
        batch = [s for s in sequences for _ in range(self.samples)]       # (K * samples)
        preds = list(self.simulate(state, batch))
        if len(preds) != len(batch):
            raise ValueError(f"simulate returned {len(preds)} predictions for {len(batch)} "
                             "action sequences; it must return one per sequence")
        scores = np.asarray(_to_numpy(self.value(preds)), dtype=np.float64).reshape(-1)
        if scores.shape[0] != len(batch):
            raise ValueError(f"value returned {scores.shape[0]} scores for {len(batch)} "
                             "predictions; it must return one per prediction")
        scores = scores.reshape(len(sequences), self.samples).mean(1)       # (K,)
        return scores, preds[:: self.samples]

    def plan(self, state, params=None) -> PlanResult:
        """Best action sequence from ``state``; ``params`` warm-starts the proposal."""
        params = self.proposer.init(state, self.horizon) if params is None else params
        best, best_pred, best_score, history = None, None, -np.inf, []
        for _ in range(self.iterations):
            cands = self.proposer.sample(params, self.candidates, self.rng)
            scores, preds = self.score(state, cands)
            order = np.argsort(-scores, kind="stable")                     # best first, ties: first
            if best is None or scores[order[0]] > best_score:
                best, best_score = cands[order[0]], float(scores[order[0]])
                best_pred = preds[order[0]]
            history.append(float(scores[order[0]]))
            params = self.proposer.refit(params, [cands[i] for i in order[: self.elites]])
        return PlanResult(best, best_score, best_pred, cands, scores, preds, params, history)


class MPC:
    """Receding horizon: plan from the current state, execute the first action, replan.

    ``act(state)`` returns the first action of the best sequence; the proposal of the last plan,
    shifted by one step, warm-starts the next one (``warm_start=False``: every plan starts
    afresh). ``last`` holds the last ``PlanResult``.
    """

    def __init__(self, planner: Planner, warm_start: bool = True):
        self.planner, self.warm_start = planner, warm_start
        self.last: PlanResult | None = None

    def reset(self) -> None:
        self.last = None

    def act(self, state):
        params = None
        if self.warm_start and self.last is not None:
            params = self.planner.proposer.shift(self.last.params)
        self.last = self.planner.plan(state, params)
        return self.last.actions[0]


def run_episode(policy: Callable[[Any], Any], step: Callable[[Any, Any], Any], state,
                steps: int) -> tuple[list, list]:
    """Execute ``policy`` in the true dynamics ``step(state, action) -> state`` for ``steps``
    steps. Returns (states: steps + 1, actions: steps)."""
    states, actions = [state], []
    for _ in range(steps):
        action = policy(states[-1])
        actions.append(action)
        states.append(step(states[-1], action))
    return states, actions


def _to_numpy(x):
    if hasattr(x, "detach"):
        return x.detach().float().cpu().numpy()
    return x
