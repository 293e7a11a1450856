"""DAPO's dynamic sampling for GRPO (Yu et al. 2025, "DAPO", Sec. 3.2): groups whose G rewards
are all equal carry no learning signal; replace them with groups of freshly drawn prompts.

Groups are judged on the task's outcome: the unshaped reward ``task_reward`` when the task
returns one (text with ``data.task.overlong_cache``: the reward before the overlong penalty), as
DAPO filters on accuracy; otherwise on ``reward``. NaN (unscorable) rows are left out, as in the
advantages: a group with fewer than two scored rows, or whose scored rows agree, is replaced.

``stage.module.dynamic_sampling=true``: after the rollout, each zero-variance group's slot is
refilled with an informative group from up to ``dynamic_sampling_max_draws`` extra prompt
batches (drawn from the training set with the step-seeded "resample" stream, so a resumed run
draws the same ones). The batch keeps its size B: slots that stay unfilled keep their
zero-variance group (no gradient, counted in the normalizer). A fixed size keeps every DDP
rank's micro-batch count, and so its collectives, in step; DAPO instead grows the batch until
it is full, which is the same when enough informative groups are found.

Pure helpers (``select_groups``, ``merge_prompts``) are tested on hand-made tensors.
Shapes: B prompts, G responses each, N = B*G rows, L response length, P prompt length.
"""
from __future__ import annotations

import torch

from wm.rl.advantages import zero_std_groups
from wm.rollout.plan import ResponsePlan, Rollout
from wm.tasks.base import Prompts


def plan_slots(zero: torch.Tensor, extra_ok: list[torch.Tensor]) -> list[tuple[int, int]]:
    """Where each group of the final batch comes from: ``(source, group)`` per slot, source 0 =
    the original rollout, k >= 1 = extra draw k. zero: (B,) bool for the original; extra_ok:
    per draw a (B_k,) bool, True = informative. Informative originals keep their slot; each
    zero-variance slot takes the next informative extra group, in draw order."""
    donors = [(k + 1, int(g)) for k, ok in enumerate(extra_ok) for g in ok.nonzero().flatten()]
    slots, d = [], 0
    for g, is_zero in enumerate(zero.tolist()):
        if is_zero and d < len(donors):
            slots.append(donors[d])
            d += 1
        else:
            slots.append((0, g))
    return slots


def _left_pad(ids: torch.Tensor, mask: torch.Tensor, width: int):
    pad = width - ids.shape[1]
    if pad == 0:
        return ids, mask
    return (torch.cat([ids.new_zeros(ids.shape[0], pad), ids], 1),
            torch.cat([mask.new_zeros(mask.shape[0], pad), mask], 1))


def merge_prompts(sources: list[Prompts], slots: list[tuple[int, int]]) -> Prompts:
    """One Prompts of the slots' groups; prompts left-padded to the longest (positions count real
    tokens only, so padding changes nothing); per-prompt forced tokens follow their prompt."""
    width = max(p.ids.shape[1] for p in sources)
    padded = [_left_pad(p.ids, p.mask, width) for p in sources]
    ids = torch.stack([padded[s][0][g] for s, g in slots])                     # (B, P)
    mask = torch.stack([padded[s][1][g] for s, g in slots])                    # (B, P)
    base = sources[0].plan
    forced = base.forced
    if forced.ndim == 2 and forced.shape[0] > 1:
        forced = torch.stack([sources[s].plan.forced[g] for s, g in slots])    # (B, L)
    plan = ResponsePlan(base.length, forced, base.ranges[:, 0], base.ranges[:, 1],
                        base.eos_id, base.pad_id)
    return Prompts(ids, mask, plan)


def select_groups(rows_of: list[torch.Tensor], slots: list[tuple[int, int]], G: int
                  ) -> torch.Tensor:
    """Concatenate the slots' G rows: rows_of[k] is source k's (B_k*G, ...) tensor."""
    return torch.cat([rows_of[s][g * G:(g + 1) * G] for s, g in slots])


def merge_rollouts(sources: list[Rollout], slots, G: int) -> Rollout:
    tokens = select_groups([r.tokens for r in sources], slots, G)
    return Rollout(tokens=tokens,
                   logprobs=select_groups([r.logprobs for r in sources], slots, G),
                   mask=select_groups([r.mask for r in sources], slots, G),
                   prompt_index=torch.arange(len(slots), device=tokens.device
                                             ).repeat_interleave(G))


def merge_scores(sources: list[dict], slots, G: int) -> dict:
    """Per-row score dicts {name: (N_k,)} -> one, keeping names present in every source."""
    names = [n for n in sources[0] if all(n in s for s in sources)]
    return {n: select_groups([s[n] for s in sources], slots, G) for n in names}


def draw_prompts(module, step: int, k: int, B: int):
    """Extra prompt batch k (B prompts) of this step from the training set ("resample" stream)."""
    from wm.utils.seeding import seeded_generator

    loader = module.trainer.train_dataloader
    gen = seeded_generator(module.cfg.seed, step * 1009 + k, module.global_rank, "cpu",
                           stream="resample")
    idx = torch.randint(len(loader.dataset), (B,), generator=gen).tolist()
    batch = loader.collate_fn([loader.dataset[i] for i in idx])
    return module.trainer.strategy.batch_to_device(batch)


#: reward component holding the task's verifiable outcome before any shaping (a task that adds
#: e.g. DAPO's overlong penalty to ``"reward"`` returns it); groups are judged on it when present
OUTCOME_KEY = "task_reward"


def informative(rewards: dict, G: int) -> torch.Tensor:
    """(B,) bool: the group's task outcomes differ (``OUTCOME_KEY`` when the task returns it,
    else ``"reward"``), so length shaping alone never makes a group informative. NaN rows are
    left out, as in the advantages (``wm.rl.advantages.zero_std_groups``)."""
    outcome = rewards.get(OUTCOME_KEY, rewards["reward"])
    return ~zero_std_groups(outcome.float(), G)


def refill(module, step: int, gen, prompts, rollout, rewards: dict, metrics: dict):
    """The step's rollout with zero-variance groups replaced (see the module docstring).

    Returns (prompts, rollout, rewards, metrics, stats) with stats ``draws`` (extra prompt
    batches sampled) and ``replaced`` (groups swapped in)."""
    cfg, task = module.cfg, module.task
    G, B = cfg.group_size, prompts.ids.shape[0]
    zero = ~informative(rewards, G)
    needed, found, extra = int(zero.sum()), 0, []
    for k in range(cfg.dynamic_sampling_max_draws):
        if found >= needed:
            break
        batch = draw_prompts(module, step, k, B)
        p = task.prompts(batch)
        from wm.rollout.scoring import sample_and_score

        _, r, m, ro = sample_and_score(task, module.policy, batch, G, gen,
                                       temperature=cfg.temperature, prompts=p,
                                       cascade=cfg.cascade, chunk_rows=cfg.micro_batch_size)
        extra.append((p, ro, r, m))
        found += int(informative(r, G).sum())
    if not extra:
        return prompts, rollout, rewards, metrics, {"draws": 0.0, "replaced": 0.0}
    slots = plan_slots(zero, [informative(e[2], G) for e in extra])
    sources = [(prompts, rollout, rewards, metrics), *extra]
    merged = (merge_prompts([s[0] for s in sources], slots),
              merge_rollouts([s[1] for s in sources], slots, G),
              merge_scores([s[2] for s in sources], slots, G),
              merge_scores([s[3] for s in sources], slots, G))
    replaced = sum(1 for s, _ in slots if s > 0)
    return (*merged, {"draws": float(len(extra)), "replaced": float(replaced)})
