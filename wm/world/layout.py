"""Token sequences of the video world model: prompt, response, loss mask and sampling plan.

Reference (shared/REFERENCE.md, "Video world model"):

* Single-step (per-frame tokenizer, ``k`` history frames): prompt = for each context frame
  ``[N frame tokens][A action tokens]``, then ``BOS``; response = ``[N next-frame tokens] EOS``.
  Reference sizes: k=4, N=320, A=13 -> prompt 1,333, response 321.
* Multi-step (compressive tokenizer): prompt = the context frame(s) at the context rate, then
  the action(s) leading to the first predicted frame; response = for each of the ``n_future``
  predicted frames ``[Nf frame tokens][A action tokens]``. The action tokens are ground truth:
  they are *forced* in the :class:`~wm.rollout.plan.ResponsePlan` and excluded from every loss.
  Reference: prompt = 1,280 context tokens + the first frame again at the future rate (80) +
  its action (13); response = 7 x (80 + 13). Set ``n_prompt_future=1, final_action=True`` for
  exactly that sequence.

Decisions / departures:
* Multi-step: by default the last predicted frame's action is *omitted* (``final_action=False``):
  it conditions nothing that is predicted, and a clip need not hold an action after its last
  frame. The reference keeps it (7 x 93 tokens); ``final_action=True`` reproduces that.
* Multi-step has no BOS (the reference's multi-step sequence has none); ``eos=True`` appends a
  forced EOS that the MLE loss trains on (off by default, as in the reference).
* Single-step: the closing EOS is in ``loss_mask`` (MLE learns it, as in the reference) but is
  *forced* in the plan (sampling it would only cost a step; its log-prob is 0, mask False).
* The builders take *vocabulary ids* (map codes and bins with :class:`~wm.world.vocab.VocabLayout`)
  and check that every id lies in its family's range, so forgetting the mapping fails loudly.

Action alignment (multi-step): ``action_ids[:, j]`` is the action applied at the ``j``-th "step
frame", where the step frames are the prompt's last frame(s) (the last context frame when
``n_prompt_future == 0``, else the ``n_prompt_future`` prompt frames at the future rate) followed
by the predicted frames. So ``Ta = max(n_prompt_future, 1) + n_future - 1 + final_action``.
"""
from __future__ import annotations

import torch

from wm.rollout.plan import ResponsePlan
from wm.world.vocab import VocabLayout


def _check_ids(x: torch.Tensor, shape: tuple, lo_hi: tuple[int, int], name: str) -> torch.Tensor:
    x = torch.as_tensor(x)
    if x.dtype.is_floating_point or x.dtype == torch.bool:
        raise TypeError(f"{name} must hold integer vocabulary ids, got dtype {x.dtype}")
    if x.ndim != len(shape) or any(s is not None and s != d for s, d in zip(shape, x.shape)):
        want = "(" + ", ".join("B" if s is None else str(s) for s in shape) + ")"
        raise ValueError(f"{name} must have shape {want}, got {tuple(x.shape)}")
    lo, hi = lo_hi
    if x.numel() and (int(x.min()) < lo or int(x.max()) >= hi):
        raise ValueError(f"{name} must be vocabulary ids in [{lo}, {hi}) (map codes/bins with "
                         f"VocabLayout first), got values in [{int(x.min())}, {int(x.max())}]")
    return x.long()


def _split(response: torch.Tensor, slices: list[slice], length: int) -> torch.Tensor:
    response = torch.as_tensor(response)
    if response.ndim != 2 or response.shape[1] != length:
        raise ValueError(f"split_response expects (B, {length}) tokens, got {tuple(response.shape)}")
    return torch.stack([response[:, s] for s in slices], dim=1)  # (B, T, N)


class SingleStepLayout:
    """Prompt ``k x ([frame][action]) + BOS``, response ``[next frame] + EOS``."""

    def __init__(self, k_context: int, tokens_per_frame: int, action_dim: int, vocab: VocabLayout) -> None:
        for name, v in (("k_context", k_context), ("tokens_per_frame", tokens_per_frame),
                        ("action_dim", action_dim)):
            if int(v) < 1:
                raise ValueError(f"SingleStepLayout.{name} must be >= 1, got {v}")
        self.k, self.N, self.A, self.vocab = int(k_context), int(tokens_per_frame), int(action_dim), vocab

    @property
    def prompt_length(self) -> int:
        return self.k * (self.N + self.A) + 1

    @property
    def response_length(self) -> int:
        return self.N + 1

    def frame_slices(self) -> list[slice]:
        return [slice(0, self.N)]

    def split_response(self, response: torch.Tensor) -> torch.Tensor:
        """``(B, L)`` response -> ``(B, 1, N)`` predicted-frame ids."""
        return _split(response, self.frame_slices(), self.response_length)

    def plan(self) -> ResponsePlan:
        forced = torch.full((self.response_length,), -1, dtype=torch.long)
        forced[-1] = self.vocab.eos_id
        lo, hi = self.vocab.future_visual_range()
        return ResponsePlan(self.response_length, forced, lo, hi)

    def build(self, ctx_frame_ids: torch.Tensor, action_ids: torch.Tensor,
              target_ids: torch.Tensor | None = None) -> dict:
        """ctx_frame_ids ``(B, k, N)``, action_ids ``(B, k, A)``, target_ids ``(B, 1, N)`` or None
        -> ``dict(prompt (B, P), response (B, L) | None, loss_mask (B, L) | None, plan)``."""
        v = self.vocab
        ctx = _check_ids(ctx_frame_ids, (None, self.k, self.N), v.context_visual_range(), "ctx_frame_ids")
        B = ctx.shape[0]
        act = _check_ids(action_ids, (B, self.k, self.A), v.action_range(), "action_ids")
        bos = ctx.new_full((B, 1), v.bos_id)
        prompt = torch.cat([torch.cat([ctx, act], dim=2).reshape(B, -1), bos], dim=1)  # (B, k*(N+A)+1)
        out = {"prompt": prompt, "response": None, "loss_mask": None, "plan": self.plan()}
        if target_ids is not None:
            tgt = _check_ids(target_ids, (B, 1, self.N), v.future_visual_range(), "target_ids")
            eos = ctx.new_full((B, 1), v.eos_id)
            out["response"] = torch.cat([tgt.reshape(B, self.N), eos], dim=1)  # (B, N+1)
            out["loss_mask"] = torch.ones(B, self.response_length, dtype=torch.bool)
        return out


class MultiStepLayout:
    """Prompt ``context frames + action(s)``, response ``n_future x ([frame][forced action])``."""

    def __init__(self, n_context: int, tokens_per_context_frame: int, n_future: int,
                 tokens_per_future_frame: int, action_dim: int, vocab: VocabLayout,
                 n_prompt_future: int = 0, final_action: bool = False, eos: bool = False) -> None:
        for name, v in (("n_context", n_context), ("tokens_per_context_frame", tokens_per_context_frame),
                        ("n_future", n_future), ("tokens_per_future_frame", tokens_per_future_frame),
                        ("action_dim", action_dim)):
            if int(v) < 1:
                raise ValueError(f"MultiStepLayout.{name} must be >= 1, got {v}")
        if int(n_prompt_future) < 0:
            raise ValueError(f"MultiStepLayout.n_prompt_future must be >= 0, got {n_prompt_future}")
        self.Tc, self.Nc = int(n_context), int(tokens_per_context_frame)
        self.T, self.Nf, self.A = int(n_future), int(tokens_per_future_frame), int(action_dim)
        self.Tp, self.final_action, self.eos, self.vocab = int(n_prompt_future), bool(final_action), bool(eos), vocab

    # ------------------------------------------------------------------ sizes
    @property
    def num_actions(self) -> int:
        """``Ta``: actions the layout consumes (see the module docstring for the alignment)."""
        return max(self.Tp, 1) + self.T - 1 + int(self.final_action)

    @property
    def prompt_length(self) -> int:
        steps = self.Tp * (self.Nf + self.A) if self.Tp else self.A
        return self.Tc * self.Nc + steps

    def _step_length(self, i: int) -> int:
        has_action = i < self.T - 1 or self.final_action
        return self.Nf + (self.A if has_action else 0)

    @property
    def response_length(self) -> int:
        return sum(self._step_length(i) for i in range(self.T)) + int(self.eos)

    def frame_slices(self) -> list[slice]:
        """Where each predicted frame's tokens sit in the response."""
        out, start = [], 0
        for i in range(self.T):
            out.append(slice(start, start + self.Nf))
            start += self._step_length(i)
        return out

    def action_slices(self) -> list[slice]:
        """Where each forced action's tokens sit in the response."""
        return [slice(s.stop, s.stop + self.A) for i, s in enumerate(self.frame_slices())
                if i < self.T - 1 or self.final_action]

    def split_response(self, response: torch.Tensor) -> torch.Tensor:
        """``(B, L)`` response -> ``(B, n_future, Nf)`` predicted-frame ids."""
        return _split(response, self.frame_slices(), self.response_length)

    # ------------------------------------------------------------------ build
    def build(self, ctx_ids: torch.Tensor, action_ids: torch.Tensor, target_ids: torch.Tensor | None = None,
              prompt_future_ids: torch.Tensor | None = None) -> dict:
        """ctx_ids ``(B, n_context, Nc)``, action_ids ``(B, Ta, A)``, target_ids ``(B, n_future, Nf)``
        or None, prompt_future_ids ``(B, n_prompt_future, Nf)`` (required iff n_prompt_future > 0)
        -> ``dict(prompt (B, P), response (B, L) | None, loss_mask (B, L) | None, plan)``; the plan's
        ``forced`` is ``(B, L)`` (each clip's own action ids)."""
        v = self.vocab
        ctx = _check_ids(ctx_ids, (None, self.Tc, self.Nc), v.context_visual_range(), "ctx_ids")
        B = ctx.shape[0]
        act = _check_ids(action_ids, (B, self.num_actions, self.A), v.action_range(), "action_ids")
        n_lead = max(self.Tp, 1)  # actions that sit in the prompt
        parts = [ctx.reshape(B, self.Tc * self.Nc)]
        if self.Tp:
            if prompt_future_ids is None:
                raise ValueError(f"MultiStepLayout(n_prompt_future={self.Tp}) needs prompt_future_ids "
                                 f"of shape (B, {self.Tp}, {self.Nf})")
            pf = _check_ids(prompt_future_ids, (B, self.Tp, self.Nf), v.future_visual_range(), "prompt_future_ids")
            parts.append(torch.cat([pf, act[:, : self.Tp]], dim=2).reshape(B, -1))  # (B, Tp*(Nf+A))
        else:
            if prompt_future_ids is not None:
                raise ValueError("prompt_future_ids given but n_prompt_future=0")
            parts.append(act[:, 0])  # (B, A)
        prompt = torch.cat(parts, dim=1)

        L = self.response_length
        frames, actions = self.frame_slices(), self.action_slices()
        forced = torch.full((B, L), -1, dtype=torch.long)
        loss_mask = torch.zeros(B, L, dtype=torch.bool)
        for j, s in enumerate(actions):
            forced[:, s] = act[:, n_lead + j]
        for s in frames:
            loss_mask[:, s] = True
        if self.eos:
            forced[:, -1] = v.eos_id
            loss_mask[:, -1] = True
        lo, hi = v.future_visual_range()
        out = {"prompt": prompt, "response": None, "loss_mask": None,
               "plan": ResponsePlan(L, forced, lo, hi)}
        if target_ids is not None:
            tgt = _check_ids(target_ids, (B, self.T, self.Nf), v.future_visual_range(), "target_ids")
            response = forced.clone()
            for i, s in enumerate(frames):
                response[:, s] = tgt[:, i]
            out["response"], out["loss_mask"] = response, loss_mask
        return out
