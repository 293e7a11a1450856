"""Sample, decode and score: the one path from a batch to rewarded predictions, used by GRPO's
rollout, the stages' validation and ``eval.py`` (so MLE and RLVR are scored identically).

The task is passed in (duck-typed ``wm.tasks.base.Task``); this module knows nothing about
frames or JSON.

Bounded memory (issue #27): with ``chunk_rows`` the task's ``decode`` / ``rewards`` /
``metrics`` run on row chunks of at most that many rows (part of a group when it is smaller than
the group size) and the results are concatenated in row order; per-row scores do not depend on
which rows share a call (tests/test_grpo_scale.py), so the numbers are those of one call.
Each phase's wall time and peak memory is measured by ``wm.utils.phases.phase`` (GRPO's
``grpo/time/*`` and ``grpo/peak_mem_mb/*``).
"""
from __future__ import annotations

import torch

from wm.rollout.sampler import Sampler
from wm.utils.phases import phase
from wm.utils.precision import full_precision


def _batch_rows(batch, prompts: slice, n_prompts: int):
    """The prompts ``prompts`` of a collated batch: tensors and lists whose first dimension is
    the batch's ``n_prompts`` are sliced, anything else is shared."""
    if not isinstance(batch, dict):
        raise TypeError(f"chunked scoring needs a dict batch, got {type(batch).__name__}; "
                        "score without chunk_rows")
    out = {}
    for k, v in batch.items():
        if (torch.is_tensor(v) and v.dim() > 0 or isinstance(v, (list, tuple))) \
                and len(v) == n_prompts:
            v = v[prompts]
        out[k] = v
    return out


def _concat_rows(parts: list):
    """Row-wise concatenation of the chunks' predictions / scores (tensors along dim 0, lists
    extended, dicts key by key; anything else, e.g. None, taken from the first chunk)."""
    first = parts[0]
    if torch.is_tensor(first) and first.dim() > 0:
        return torch.cat(parts, dim=0)
    if isinstance(first, dict):
        return {k: _concat_rows([p[k] for p in parts]) for k in first}
    if isinstance(first, list):
        return [x for p in parts for x in p]
    return first


def row_chunks(n_prompts: int, group_size: int, rows: int | None):
    """(prompt slice, first row of the group, rows per prompt) pieces covering the
    n_prompts * group_size rows in order, at most ``rows`` rows each: whole groups
    (``rows // group_size`` of them) when a group fits, else row chunks of one group."""
    G = group_size
    if rows is None or rows >= n_prompts * G:
        yield slice(0, n_prompts), 0, G
    elif rows >= G:
        k = rows // G
        for s in range(0, n_prompts, k):
            yield slice(s, min(s + k, n_prompts)), 0, G
    else:
        for b in range(n_prompts):
            for s in range(0, G, rows):
                yield slice(b, b + 1), s, min(rows, G - s)


def score_rows(task, tokens: torch.Tensor, batch, group_size: int, chunk_rows: int | None = None,
               per_frame: bool = False):
    """``task.decode`` -> ``rewards`` -> ``metrics`` of ``tokens`` (B*G, L), on row chunks of at
    most ``chunk_rows`` rows (None: one call). Returns (predictions, rewards, metrics)."""
    def score(toks, b, g):
        with full_precision(toks.device):    # float32 frames and rewards under bf16 autocast
            preds = task.decode(toks, b, g)
            rewards = task.rewards(preds, b, g)
            metrics = task.metrics(preds, b, g, per_frame=True) if per_frame \
                else task.metrics(preds, b, g)
        return preds, rewards, metrics

    G = int(group_size)
    B = tokens.shape[0] // G
    if chunk_rows is None or chunk_rows >= B * G:
        return score(tokens, batch, G)
    parts, sub, sub_of = [], None, None
    for prompts, first, g in row_chunks(B, G, int(chunk_rows)):
        # one sub-batch per prompt range, reused by its row chunks (tasks cache on its tensors)
        if sub_of != (prompts.start, prompts.stop):
            sub, sub_of = _batch_rows(batch, prompts, B), (prompts.start, prompts.stop)
        rows = (torch.arange(prompts.start, prompts.stop)[:, None] * G
                + torch.arange(first, first + g)[None]).flatten()          # (n*g,)
        parts.append(score(tokens[rows.to(tokens.device)], sub, g))
    return tuple(_concat_rows([p[i] for p in parts]) for i in range(3))


@torch.no_grad()
def sample_and_score(task, policy, batch, group_size: int, generator: torch.Generator,
                     temperature: float = 1.0, top_k: int | None = None,
                     top_p: float | None = None, prompts=None, per_frame: bool = False,
                     horizon: int = 1, cascade: bool = True, timings: dict | None = None,
                     chunk_rows: int | None = None, peaks: dict | None = None):
    """Sample ``group_size`` responses per prompt with ``policy``, decode and score them.

    ``prompts``: the batch's ``Task.prompts`` when the caller already built them (not rebuilt).
    ``horizon > 1``: open-loop multi-step prediction of a single-step model
    (``task.open_loop``; no rollout is returned). ``per_frame``: also per-frame metric keys
    ``<m>@<t>`` (evaluation tables). ``cascade``: the sampler's shared-prompt attention
    (``wm.rollout.cascade``; False copies the prompt per row). ``timings``: a dict filled with
    the seconds spent sampling (``"sample"``) and decoding + scoring (``"score"``); ``peaks``
    the same phases' peak memory in MB (``phase``). ``chunk_rows``: decode and score at most that
    many rows per call (``score_rows``; the sampler still runs all rows together).
    Sampling runs in the caller's autocast (bf16 under ``trainer.precision=bf16-mixed``);
    decoding, rewards and metrics in float32 (``wm.utils.precision``).
    ``policy`` may be a baseline (``predict_baseline``, ``wm.evaluation.baselines``): scored
    the same way, nothing sampled.
    Returns (predictions, rewards, metrics, rollout): ``rewards`` maps reward components
    (``"reward"`` is the optimized scalar) and ``metrics`` maps evaluation metrics to (B*G,).
    """
    was_training = policy.training
    if hasattr(policy, "predict_baseline"):     # a model-free baseline (wm.evaluation.baselines)
        preds = policy.predict_baseline(task, batch, group_size, horizon)
        metrics = task.metrics(preds, batch, group_size, per_frame=per_frame)
        return preds, task.rewards(preds, batch, group_size), metrics, None
    if horizon > 1:
        policy.eval()
        preds = task.open_loop(policy, batch, horizon, group_size, generator,
                               temperature=temperature, top_k=top_k)
        policy.train(was_training)
        with full_precision(next(policy.parameters()).device):
            metrics = task.metrics(preds, batch, group_size, per_frame=per_frame)
            return preds, task.rewards(preds, batch, group_size), metrics, None
    prompts = task.prompts(batch) if prompts is None else prompts
    device = prompts.ids.device
    times: dict = {} if timings is None else timings
    with phase("sample", times, peaks, device):
        policy.eval()
        rollout = Sampler(cascade=cascade).sample(
            policy, prompts.ids, prompts.mask, prompts.plan, group_size=group_size,
            temperature=temperature, top_k=top_k, top_p=top_p, generator=generator)
        policy.train(was_training)
    with phase("score", times, peaks, device):
        preds, rewards, metrics = score_rows(task, rollout.tokens, batch, group_size,
                                             chunk_rows, per_frame)
    return preds, rewards, metrics, rollout
