"""Group sampling with a KV cache, forced tokens and range-restricted vocabularies.

Contract: docs/architecture.md, "Sampler". Serves GRPO rollouts (RLVR-World, Sec. 3: G responses
per question, here G = 16 for video, 5 for text) and evaluation (temperature 1, top-k 100 for
video; greedy, ``temperature=0``, for text validation).

How it departs from the reference (which calls ``generate`` once per predicted frame and prefills
each of the G copies of a prompt):

* One decode loop for the whole response. Forced tokens (ground-truth action tokens between
  predicted frames, a closing EOS) are written, not sampled, and a run of forced tokens is fed in
  the *same* forward pass as the sampled token before it, so a multi-step rollout costs
  ``#free tokens + 1`` forward passes and no re-prefill.
* Each prompt is prefilled once; its keys/values are broadcast into its G rows of a pre-allocated
  cache (:mod:`wm.rollout.cache`), and decoding attends to a view of the filled prefix.
* Free positions sample only ids in the plan's ``[lo, hi)`` range (future-frame visual ids for
  video). Slicing the logits to the range equals masking the others to ``-inf``.
* Sampling is by inverse CDF with one uniform per row drawn from the given ``torch.Generator``
  (cheaper than ``torch.multinomial``'s exponential race, which draws one number per id); with
  top-k only the k candidates are normalised and searched. Runs are reproducible, and the cached
  sampler and :func:`sample_no_cache` draw identical tokens for the same seed (up to float noise
  moving a CDF boundary across the uniform, which has probability ~1e-6 per token).

Log-probs: ``Rollout.logprobs`` is the log-probability of the sampled token under the distribution
it was actually drawn from (after temperature, range restriction, top-k, top-p); 0 at forced and
padded positions and for greedy decoding. GRPO recomputes the training log-probs (old and current
policy) with a full forward pass over prompt + response, so these are for logging/diagnostics
and for importance ratios only when no recomputation is wanted.

Text mode (``plan.eos_id`` set): prompts are left-padded (``prompt_mask`` 0 on the left);
position ids count only real tokens; a row stops after it samples EOS (later tokens are
``plan.pad_id``, logprob 0, mask False) and the loop ends when every row has stopped. Under
FSDP/FSDP2 (sharded parameters: every forward is a collective) the loop ends only when every
rank's rows have stopped (one all-reduce per step); elsewhere -- one process, or DDP, whose
rollouts call the unwrapped policy -- each rank stops on its own, with no collective.

The model is put in ``eval()`` mode for sampling and restored afterwards.
"""
from __future__ import annotations

import math
from contextlib import nullcontext

import torch

from wm.rollout.cache import PreallocatedCache
from wm.rollout.cascade import CascadeCache, cascade_attention_enabled
from wm.rollout.distribution import restrict
from wm.rollout.lockstep import all_ranks_finished, is_sharded
from wm.rollout.plan import ResponsePlan, Rollout


# --------------------------------------------------------------------------- one sampling step
def sample_step(logits: torch.Tensor, lo: int, hi: int, temperature: float, top_k: int | None,
                top_p: float | None, generator: torch.Generator | None) -> tuple[torch.Tensor, torch.Tensor]:
    """Sample one id per row from ``logits (R, V)`` restricted to ``[lo, hi)``.

    Returns ``(ids (R,) int64, logprob (R,) float32)``; ``temperature == 0`` is greedy (logprob 0).
    """
    if temperature == 0:
        return restrict(logits, lo, hi, 1.0).argmax(-1) + lo, \
            torch.zeros(logits.shape[0], device=logits.device)
    x = restrict(logits, lo, hi, temperature)  # (R, n): the allowed ids only, / temperature
    cand = None  # (R, k) ids (relative to lo) of the candidates when x holds only some of them
    if top_k and top_k < x.shape[-1]:
        x, cand = torch.topk(x, top_k, dim=-1)  # (R, k), sorted descending
    if top_p is not None and top_p < 1.0:
        if cand is None:
            x, cand = torch.sort(x, dim=-1, descending=True)
        probs = x.softmax(-1)
        drop = probs.cumsum(-1) - probs > top_p  # the mass before this id already exceeds top_p
        drop[:, 0] = False
        x = x.masked_fill(drop, -math.inf)
    logp = x.log_softmax(-1)  # (R, n or k): the distribution actually sampled from
    # inverse CDF with one uniform per row from the generator (R draws, not R * n)
    cdf = logp.exp().cumsum(-1)  # (R, n)
    u = torch.rand(x.shape[0], 1, generator=generator, device=x.device, dtype=cdf.dtype) * cdf[:, -1:]
    j = (cdf <= u).sum(-1).clamp(max=x.shape[-1] - 1)  # (R,) first index whose cdf exceeds u
    lp = logp.gather(1, j[:, None]).squeeze(1)
    ids = j if cand is None else cand.gather(1, j[:, None]).squeeze(1)
    return ids + lo, lp


# --------------------------------------------------------------------------- helpers
def _check_inputs(prompt_ids, prompt_mask, plan, group_size):
    if not isinstance(plan, ResponsePlan):
        raise TypeError(f"plan must be a ResponsePlan, got {type(plan).__name__}")
    prompt_ids = torch.as_tensor(prompt_ids)
    if prompt_ids.ndim != 2 or prompt_ids.shape[1] == 0 or prompt_ids.dtype.is_floating_point:
        raise ValueError(f"prompt_ids must be (B, P) integer ids with P >= 1, got {tuple(prompt_ids.shape)} "
                         f"{prompt_ids.dtype}")
    if int(group_size) < 1:
        raise ValueError(f"group_size must be >= 1, got {group_size}")
    if prompt_mask is None:
        prompt_mask = torch.ones_like(prompt_ids, dtype=torch.bool)
    prompt_mask = torch.as_tensor(prompt_mask, device=prompt_ids.device).bool()
    if prompt_mask.shape != prompt_ids.shape:
        raise ValueError(f"prompt_mask {tuple(prompt_mask.shape)} must match prompt_ids {tuple(prompt_ids.shape)}")
    m = prompt_mask.long()
    if (m[:, 1:] < m[:, :-1]).any():
        raise ValueError("prompts must be LEFT-padded: prompt_mask may not go from 1 back to 0 in a row")
    if not prompt_mask[:, -1].all():
        raise ValueError("every prompt needs at least one real token (prompt_mask[:, -1] must be 1)")
    if plan.forced.ndim == 2 and plan.forced.shape[0] not in (1, prompt_ids.shape[0]):
        raise ValueError(f"plan.forced has {plan.forced.shape[0]} rows for {prompt_ids.shape[0]} prompts")
    return prompt_ids.long(), prompt_mask, int(group_size)


def _prompt_positions(prompt_mask: torch.Tensor) -> torch.Tensor:
    """``(B, P)`` left-padded mask -> position ids counting only real tokens (pads get 0)."""
    return (prompt_mask.long().cumsum(1) - 1).clamp(min=0)


def _attention(key_valid: torch.Tensor | None, q: int, kv: int, device) -> torch.Tensor | None:
    """4D boolean mask ``(R|1, 1, q, kv)`` (True = attend) for the last ``q`` of ``kv`` positions.

    Causal plus key padding; each query may always attend to itself so padded query rows never
    see an all-masked row (their outputs are discarded anyway). None where plain causal
    attention without padding is meant and SDPA can handle it alone.
    """
    if key_valid is None and (q == 1 or q == kv):
        return None
    cols = torch.arange(kv, device=device)
    rows = torch.arange(kv - q, kv, device=device)
    mask = (cols[None, :] <= rows[:, None])[None, None]  # (1, 1, q, kv)
    if key_valid is not None:
        diag = (cols[None, :] == rows[:, None])[None, None]
        mask = (mask & key_valid[:, None, None, :kv]) | diag  # (R, 1, q, kv)
    return mask


class _Loop:
    """The decode loop shared by the cached sampler and the no-cache reference.

    ``forward(t)`` must return next-token logits ``(R, V)`` after tokens ``[0, t]`` of the
    response are known. Only called before a free position.
    """

    def __init__(self, plan: ResponsePlan, B: int, G: int, device, temperature, top_k, top_p, generator,
                 return_logits: bool, lockstep: bool = False):
        self.plan, self.B, self.G, self.R, self.L = plan, B, G, B * G, plan.length
        self.device, self.lockstep = device, lockstep
        self.sampling = (float(temperature), top_k, top_p, generator)
        self.return_logits = return_logits
        if float(temperature) < 0:
            raise ValueError(f"temperature must be >= 0 (0 = greedy), got {temperature}")
        if top_k is not None and int(top_k) < 0:
            raise ValueError(f"top_k must be >= 0 or None, got {top_k}")
        if top_p is not None and not 0.0 < float(top_p) <= 1.0:
            raise ValueError(f"top_p must be in (0, 1], got {top_p}")

    def run(self, first_logits: torch.Tensor, forward) -> Rollout:
        plan, R, L, dev = self.plan, self.R, self.L, self.device
        eos, pad = plan.eos_id, plan.pad_id
        forced = plan.forced_rows(self.B, self.G).to(dev)  # (R, L)
        free = plan.free_positions.tolist()
        ranges = plan.ranges.tolist()
        tokens = torch.full((R, L), pad if pad is not None else 0, dtype=torch.long, device=dev)
        logprobs = torch.zeros(R, L, dtype=torch.float32, device=dev)
        mask = torch.zeros(R, L, dtype=torch.bool, device=dev)
        finished = torch.zeros(R, dtype=torch.bool, device=dev)
        all_logits = None
        if self.return_logits:
            all_logits = torch.zeros(R, L, first_logits.shape[-1], dtype=torch.float32, device=dev)
        logits = first_logits
        for t in range(L):
            if free[t]:
                tok, lp = sample_step(logits, ranges[t][0], ranges[t][1], *self.sampling)
                live = ~finished
                mask[:, t] = live
                if all_logits is not None:
                    all_logits[:, t] = logits.float()
            else:
                tok, lp, live = forced[:, t], None, ~finished
            if eos is not None:
                tok = torch.where(live, tok, torch.full_like(tok, pad))
            tokens[:, t] = tok
            if lp is not None:
                logprobs[:, t] = torch.where(live, lp, torch.zeros_like(lp))
            if eos is not None:
                finished |= tok == eos
                if all_ranks_finished(bool(finished.all()), dev, self.lockstep):
                    break
            if t + 1 < L and free[t + 1]:
                logits = forward(t, tokens)
        return Rollout(tokens=tokens, logprobs=logprobs, mask=mask,
                       prompt_index=torch.arange(self.B, device=dev).repeat_interleave(self.G),
                       logits=all_logits)


def _forward_logits(model, ids, mask4d, positions, cache=None, **extra) -> torch.Tensor:
    out = model(input_ids=ids, attention_mask=mask4d, position_ids=positions, past_key_values=cache,
                use_cache=cache is not None, logits_to_keep=1, **extra)
    return out.logits[:, -1]  # (rows, V)


class _EvalMode:
    def __init__(self, model):
        self.model = model

    def __enter__(self):
        self.was_training = self.model.training
        self.model.eval()

    def __exit__(self, *exc):
        self.model.train(self.was_training)


# --------------------------------------------------------------------------- public API
class Sampler:
    """Sample ``G`` responses per prompt following a :class:`ResponsePlan`.

    Args:
        temperature, top_k, top_p: defaults for :meth:`sample` (reference video evaluation:
            1.0 / 100 / None). ``temperature=0`` is greedy; ``top_k=0`` / ``top_p=1`` disable.
        use_cache: False runs :func:`sample_no_cache` (slow; for tests and debugging).
    """

    def __init__(self, temperature: float = 1.0, top_k: int | None = None, top_p: float | None = None,
                 use_cache: bool = True, cascade: bool = True) -> None:
        self.temperature, self.top_k, self.top_p, self.use_cache = temperature, top_k, top_p, use_cache
        self.cascade = cascade

    @torch.no_grad()
    def sample(self, model, prompt_ids: torch.Tensor, prompt_mask: torch.Tensor | None, plan: ResponsePlan,
               group_size: int = 1, temperature: float | None = None, top_k: int | None = None,
               top_p: float | None = None, generator: torch.Generator | None = None,
               return_logits: bool = False) -> Rollout:
        """prompt_ids ``(B, P)``, prompt_mask ``(B, P)`` (1 = real token, left padding) ->
        :class:`Rollout` with ``(B*G, L)`` tensors; arguments left None use the constructor's."""
        temperature = self.temperature if temperature is None else temperature
        top_k = self.top_k if top_k is None else top_k
        top_p = self.top_p if top_p is None else top_p
        if not self.use_cache:
            return sample_no_cache(model, prompt_ids, prompt_mask, plan, group_size, temperature,
                                   top_k, top_p, generator, return_logits)
        return sample_cached(model, prompt_ids, prompt_mask, plan, group_size, temperature, top_k,
                             top_p, generator, return_logits, cascade=self.cascade)


@torch.no_grad()
def sample_cached(model, prompt_ids, prompt_mask, plan, group_size=1, temperature=1.0, top_k=None,
                  top_p=None, generator=None, return_logits=False, cascade=True) -> Rollout:
    """The fast path: prefill once per prompt, pre-allocated cache, forced runs in one pass.

    ``cascade=True`` (default, for G > 1): the prompt's keys/values are stored once per prompt and
    read once per decode step for its G rows (``wm.rollout.cascade``); False copies them into
    each row (``wm.rollout.cache``)."""
    prompt_ids, prompt_mask, G = _check_inputs(prompt_ids, prompt_mask, plan, group_size)
    B, P = prompt_ids.shape
    dev, R = prompt_ids.device, B * G
    loop = _Loop(plan, B, G, dev, temperature, top_k, top_p, generator, return_logits,
                 lockstep=plan.eos_id is not None and is_sharded(model))
    padded = not bool(prompt_mask.all())
    key_valid = None
    if padded:  # (R, P+L): prompt padding, response always valid
        key_valid = torch.cat([prompt_mask.repeat_interleave(G, 0),
                               torch.ones(R, plan.length, dtype=torch.bool, device=dev)], dim=1)
    n_real = prompt_mask.long().sum(1).repeat_interleave(G)  # (R,) position of the first response token
    use_cascade = bool(cascade) and G > 1
    cache = CascadeCache(R, G, plan.length) if use_cascade else \
        PreallocatedCache(rows=R, max_len=P + plan.length)
    extra = {"wm_cascade": cache} if use_cascade else {}
    fed = 0  # response tokens already in the cache

    def forward(t, tokens):
        nonlocal fed
        ids = tokens[:, fed:t + 1]  # (R, q): last sampled token + the forced run after it
        q = ids.shape[1]
        pos = n_real[:, None] + torch.arange(fed, t + 1, device=dev)[None]  # (R, q)
        kv_mask = _attention(key_valid, q, P + t + 1, dev)
        fed = t + 1
        return _forward_logits(model, ids, kv_mask, pos, cache, **extra)

    with _EvalMode(model), (cascade_attention_enabled(model) if use_cascade else nullcontext()):
        prefill_mask = _attention(prompt_mask if padded else None, P, P, dev)
        first = _forward_logits(model, prompt_ids, prefill_mask, _prompt_positions(prompt_mask), cache,
                                **extra)
        first = first.repeat_interleave(G, 0)  # (B, V) -> (R, V)
        return loop.run(first, forward)


@torch.no_grad()
def sample_no_cache(model, prompt_ids, prompt_mask, plan, group_size=1, temperature=1.0, top_k=None,
                    top_p=None, generator=None, return_logits=False) -> Rollout:
    """Reference implementation: re-runs the full ``(B*G, P + t)`` sequence before every free token.

    Same sampling maths and the same random draws as :func:`sample_cached`; tests check both
    produce identical tokens for the same generator seed.
    """
    prompt_ids, prompt_mask, G = _check_inputs(prompt_ids, prompt_mask, plan, group_size)
    B, P = prompt_ids.shape
    dev, R = prompt_ids.device, B * G
    loop = _Loop(plan, B, G, dev, temperature, top_k, top_p, generator, return_logits,
                 lockstep=plan.eos_id is not None and is_sharded(model))
    rows_ids = prompt_ids.repeat_interleave(G, 0)  # (R, P)
    rows_mask = prompt_mask.repeat_interleave(G, 0)  # (R, P)
    padded = not bool(prompt_mask.all())
    prompt_pos = _prompt_positions(rows_mask)  # (R, P)
    n_real = rows_mask.long().sum(1)  # (R,)

    def full(resp: torch.Tensor) -> torch.Tensor:
        n = resp.shape[1]
        ids = torch.cat([rows_ids, resp], dim=1)  # (R, P+n)
        pos = torch.cat([prompt_pos, n_real[:, None] + torch.arange(n, device=dev)[None]], dim=1)
        valid = torch.cat([rows_mask, torch.ones(R, n, dtype=torch.bool, device=dev)], dim=1) if padded else None
        return _forward_logits(model, ids, _attention(valid, P + n, P + n, dev), pos)

    with _EvalMode(model):
        first = full(torch.empty(R, 0, dtype=torch.long, device=dev))
        return loop.run(first, lambda t, tokens: full(tokens[:, :t + 1]))
