"""The video world-model task (paper Sec. 4.2 "Video world models", Appendix B).

A clip of ``context + future`` frames and their actions becomes a question/response pair:
frames are encoded by the frozen visual tokenizer, actions by the 256-bin action tokenizer,
and the ids are laid out by :mod:`wm.world.layout` (single-step: k frames + actions + BOS ->
next frame + EOS; multi-step: context frame + action -> N x (frame, forced action)).
Sampled responses are decoded back to frames and scored with :class:`wm.rewards.video.VideoReward`
(reference reward ``-(MAE + LPIPS)``, averaged over predicted frames).

Departures: the tokenizer and perceptual network are submodules of the task, so they follow the
LightningModule to its device and are stored in its checkpoints (a world-model checkpoint is
self-contained); both are frozen and kept in eval mode.
"""
from __future__ import annotations

import logging

import torch
from torch import nn

from wm.rewards.repetition import repetition_mask
from wm.rewards.frame_metrics import DEFAULT_METRICS, METRIC_SIGN, frame_metrics
from wm.tasks.base import Prompts, Responses
from wm.tasks.video_baselines import VideoBaselinesMixin
from wm.tasks.video_decoding import VideoDecodingMixin
from wm.tasks.video_policy import VideoPolicyMixin
from wm.tasks.video_samples import VideoSamplesMixin
from wm.world.actions import ActionTokenizer
from wm.world.layout import MultiStepLayout, SingleStepLayout
from wm.world.vocab import VocabLayout

log = logging.getLogger(__name__)

LAYOUTS = ("single_step", "multi_step")


class VideoTask(VideoPolicyMixin, VideoSamplesMixin, VideoBaselinesMixin, VideoDecodingMixin,
                nn.Module):
    """Frames + actions -> token prompts/responses -> decoded frames -> verifiable rewards.

    Args:
        tokenizer_ckpt: checkpoint of ``stage=tokenizer``, or a released tokenizer folder / hub
            id such as ``thuml/rt1-frame-tokenizer`` (``wm.vision.registry.load_tokenizer``).
        layout: ``"single_step"`` or ``"multi_step"`` (the latter with a compressive tokenizer).
        context_frames, future_frames: clip split (must match the DataModule's).
        action_bins: bins per action dimension (reference: 256).
        action_ranges: optional JSON of per-dimension [min, max] (else the dataset's stats).
        reward: a ``VideoReward`` (components + ``reward``).
        perceptual: LPIPS network or None (then LPIPS terms are unavailable).
        cache_tokens: keep each frame's token ids in memory, keyed by (episode, frame index),
            so every frame is encoded once per run (per-frame tokenizers only; memory grows with
            the number of distinct frames seen, ~tokens_per_frame * 8 bytes each).
        metric_names: table/validation metrics (default mae, mse, psnr, ssim).
        visual_order, n_prompt_future, final_action: the multi-step id and sequence layout
            (``wm.world.vocab`` / ``wm.world.layout``); the reference's released multi-step
            model: ``future_first``, 1, true (the first future frame and its action in the
            prompt, the clip's future_frames = 1 + predicted frames).
        decoding: ``"tokens"`` (the paper: the tokenizer's decoder), ``"patch"`` (ours: a
            token kept from the previous frame shows that frame's pixels) or ``"delta"`` (ours:
            a changed token redraws only the pixels its decoding changes by more than
            ``delta_threshold``, grown by ``delta_dilate`` px; :mod:`wm.tasks.video_decoding`).
    """

    def __init__(self, tokenizer_ckpt: str, layout: str = "single_step", context_frames: int = 1,
                 future_frames: int = 1, action_bins: int = 256, action_ranges: str | None = None,
                 reward=None, perceptual: nn.Module | None = None, cache_tokens: bool = False,
                 metric_names: list[str] | None = None, visual_order: str = "context_first",
                 n_prompt_future: int = 0, final_action: bool = False,
                 decoding: str = "tokens", delta_threshold: float = 0.3, delta_dilate: int = 2):
        super().__init__()
        if layout not in LAYOUTS:
            raise ValueError(f"data.task.layout={layout!r}: choose one of {LAYOUTS}")
        if layout == "single_step" and future_frames != 1:
            raise ValueError(f"data.task.layout=single_step predicts one frame but "
                             f"data.future_frames={future_frames}; set data.future_frames=1 or "
                             "data.task.layout=multi_step")
        from wm.vision.registry import load_tokenizer

        self.tokenizer_ckpt = str(tokenizer_ckpt)
        self.tokenizer = load_tokenizer(tokenizer_ckpt).eval().requires_grad_(False)
        self.perceptual = perceptual
        if reward is not None and getattr(reward, "needs_perceptual", False) and perceptual is None:
            raise ValueError("data.task.reward uses LPIPS but data.task.perceptual is null: "
                             "configure a perceptual network or drop lpips from reward.weights")
        self.reward_fn = reward
        self.metric_names = None if metric_names is None else tuple(metric_names)
        bad = [m for m in self.metric_names or () if m not in METRIC_SIGN or m == "lpips"]
        if bad:
            raise ValueError(f"data.task.metric_names has unknown metric(s) {bad}; valid: "
                             f"{sorted(k for k in METRIC_SIGN if k != 'lpips')} (LPIPS is added "
                             "when data.task.perceptual is set)")
        self.layout_name, self.Tc, self.Tf = layout, int(context_frames), int(future_frames)
        self.action_bins, self.action_ranges = int(action_bins), action_ranges
        if layout == "multi_step" and self.tokenizer.shared_codebook:
            log.warning("multi_step layout with a per-frame tokenizer: every future frame costs as "
                        "many tokens as a context frame (the paper uses a compressive tokenizer)")
        self.vocab = VocabLayout.from_tokenizer(self.tokenizer, action_bins=self.action_bins,
                                                visual_order=visual_order)
        self.n_prompt_future, self.final_action = int(n_prompt_future), bool(final_action)
        self.decoding = self._check_decoding(decoding, self.n_prompt_future)
        self.delta_threshold, self.delta_dilate = float(delta_threshold), int(delta_dilate)
        if self.n_prompt_future not in (0, 1) or (self.n_prompt_future and layout != "multi_step"):
            raise ValueError(f"data.task.n_prompt_future={n_prompt_future}: 0, or 1 with "
                             "layout=multi_step (the reference's released multi-step sequence)")
        self.actions: ActionTokenizer | None = None
        self.layout = None
        self._cache_key, self._cache = None, None
        self.cache_tokens = bool(cache_tokens) and self.tokenizer.shared_codebook
        self._frame_tokens: dict[tuple[int, int], torch.Tensor] = {}

    def train(self, mode: bool = True):
        """The tokenizer and perceptual network stay frozen in eval mode."""
        return super().train(False)

    # ------------------------------------------------------------------ wiring
    def connect(self, datamodule) -> None:
        """Action tokenizer from the data statistics (or ``action_ranges``) and the layout."""
        if self.action_ranges:
            self.actions = ActionTokenizer.from_file(self.action_ranges, bins=self.action_bins)
        else:
            self.actions = ActionTokenizer.from_stats({"action": datamodule.action_stats},
                                                      bins=self.action_bins)
        if self.actions.action_dim != datamodule.action_dim:
            raise ValueError(f"action ranges have {self.actions.action_dim} dimensions but the "
                             f"data has {datamodule.action_dim} (data.task.action_ranges)")
        self.layout = self._make_layout(datamodule.action_dim)

    def _make_layout(self, action_dim: int):
        tok = self.tokenizer
        if self.layout_name == "single_step":
            return SingleStepLayout(self.Tc, tok.tokens_per_future_frame, action_dim, self.vocab)
        n_future = self.Tf - self.n_prompt_future        # frames predicted after the prompt's
        if n_future < 1:
            raise ValueError(f"data.future_frames={self.Tf} with n_prompt_future="
                             f"{self.n_prompt_future} leaves no frame to predict")
        return MultiStepLayout(self.Tc, tok.tokens_per_context_frame, n_future,
                               tok.tokens_per_future_frame, action_dim, self.vocab,
                               n_prompt_future=self.n_prompt_future,
                               final_action=self.final_action)

    def _require_connected(self):
        if self.layout is None:
            raise RuntimeError("VideoTask.connect(datamodule) must be called before use")

    @torch.no_grad()
    def _encode(self, batch) -> dict:
        """Token ids of a batch (cached for the last batch: prompts and responses share it)."""
        self._require_connected()
        frames = batch["frames"]
        if frames is self._cache_key:     # the cache holds the tensor itself: no id reuse
            return self._cache
        Tc, Tf = self.Tc, self.Tf
        if frames.shape[1] < Tc + Tf:
            raise ValueError(f"clips have {frames.shape[1]} frames, the task needs "
                             f"context {Tc} + future {Tf}; align data.context_frames/future_frames")
        if self.cache_tokens and "episode" in batch and "start" in batch:
            codes = self._cached_codes(frames[:, : Tc + Tf], batch["episode"], batch["start"])
            ctx, fut = codes[:, :Tc], codes[:, Tc:]                           # (B,Tc,N), (B,Tf,N)
        else:
            ctx, fut = self.tokenizer.encode_clip(frames[:, : Tc + Tf], Tc)  # (B,Tc,Nc), (B,Tf,Nf)
        bins = self.actions.encode(batch["actions"].float().cpu()).to(frames.device)  # (B,T,A)
        act = self.vocab.action_ids(bins)
        ctx_ids, fut_ids = self.vocab.context_ids(ctx), self.vocab.future_ids(fut)
        if self.layout_name == "single_step":
            built = self.layout.build(ctx_ids, act[:, :Tc], fut_ids[:, :1])
        elif self.n_prompt_future:  # the reference: future frame 0 + its action in the prompt
            built = self.layout.build(ctx_ids, act[:, Tc : Tc + self.layout.num_actions],
                                      fut_ids[:, 1:], prompt_future_ids=fut_ids[:, :1])
        else:  # actions applied at the last context frame and at each predicted frame but the last
            built = self.layout.build(ctx_ids, act[:, Tc - 1 : Tc - 1 + self.layout.num_actions],
                                      fut_ids)
        built["ctx_codes"], built["fut_codes"] = ctx, fut[:, self.n_prompt_future:]
        self._cache_key, self._cache = frames, built
        return built

    def _cached_codes(self, frames: torch.Tensor, episode: torch.Tensor, start: torch.Tensor
                      ) -> torch.Tensor:
        """Per-frame codes (B, T, N) from the cache, encoding only frames not seen before."""
        B, T = frames.shape[:2]
        keys = [(int(e), int(s) + t) for e, s in zip(episode.tolist(), start.tolist())
                for t in range(T)]                                           # (B*T,) row-major
        missing = [i for i, k in enumerate(keys) if k not in self._frame_tokens]
        if missing:
            flat = frames.flatten(0, 1)[missing]                             # (m, 3, H, W)
            new = self.tokenizer.encode(flat).flatten(1).to("cpu", torch.int32)  # (m, N)
            for i, row in zip(missing, new):
                self._frame_tokens[keys[i]] = row
        codes = torch.stack([self._frame_tokens[k] for k in keys])           # (B*T, N)
        return codes.to(frames.device, torch.long).view(B, T, -1)

    def prompts(self, batch) -> Prompts:
        built = self._encode(batch)
        prompt = built["prompt"]
        plan = built["plan"]
        return Prompts(prompt, torch.ones_like(prompt, dtype=torch.bool), plan)

    def responses(self, batch) -> Responses:
        built = self._encode(batch)
        return Responses(built["response"], built["loss_mask"].to(built["response"].device))

    # ------------------------------------------------------------ predictions
    @torch.no_grad()
    def decode(self, tokens: torch.Tensor, batch, group_size: int) -> dict:
        """Sampled responses (B*G, L) -> {"frames": (B*G,Tf,3,H,W), "tokens": (B*G,Tf,Nf),
        "target": (B*G,Tf,3,H,W), "prev_tokens": (B*G,Nf) | None}."""
        built = self._encode(batch)
        ids = self.layout.split_response(tokens)                             # (N, Tf, Nf)
        codes = self.vocab.future_codes_of(ids)
        ctx = built["ctx_codes"].repeat_interleave(group_size, dim=0)        # (N, Tc, Nc)
        first = self.Tc + self.n_prompt_future                               # first predicted frame
        ref = batch["frames"][:, first - 1].float().repeat_interleave(group_size, dim=0)
        frames = self.frames_from_codes(ctx, codes, ref)                    # (N, Tf, 3, H, W)
        target = batch["frames"][:, first : self.Tc + self.Tf]
        prev = ctx[:, -1] if self.tokenizer.shared_codebook else None       # last context frame
        return {"frames": frames, "tokens": codes,
                "target": target.repeat_interleave(group_size, dim=0).to(frames.dtype),
                "prev_tokens": prev,
                "true_tokens": built["fut_codes"].repeat_interleave(group_size, dim=0)}

    @torch.no_grad()
    def open_loop(self, policy, batch, horizon: int, group_size: int, generator,
                  temperature: float = 1.0, top_k: int | None = None) -> dict:
        """Multi-step prediction with a single-step model: each predicted frame's *tokens* become
        the newest context frame of the next step (ground-truth actions), ``horizon`` times.

        batch clips hold Tc + horizon frames. Returns the ``decode`` dict with Tf = horizon:
        frames/target (N, H, 3, h, w), tokens (N, H, Ntok), prev_tokens (N, Ntok), true_tokens
        (N, H, Ntok) (the true future frames' tokens, for ``repeat_truth``), N = B*G.
        """
        from wm.rollout.sampler import Sampler

        if self.layout_name != "single_step":
            raise ValueError("open_loop needs data.task.layout=single_step (a multi_step model "
                             "predicts several frames in one response already)")
        self._require_connected()
        Tc, G = self.Tc, group_size
        frames = batch["frames"]
        if frames.shape[1] < Tc + horizon:
            raise ValueError(f"open-loop horizon {horizon} needs clips of {Tc + horizon} frames, "
                             f"got {frames.shape[1]} (set data.future_frames={horizon})")
        ctx, _ = self.tokenizer.encode_clip(frames[:, :Tc], Tc)              # (B, Tc, N)
        codes = ctx.repeat_interleave(G, dim=0)                              # (B*G, Tc, N)
        bins = self.actions.encode(batch["actions"].float().cpu()).to(frames.device)
        act = self.vocab.action_ids(bins).repeat_interleave(G, dim=0)        # (B*G, T, A)
        sampler, preds = Sampler(), []
        for h in range(horizon):
            built = self.layout.build(self.vocab.context_ids(codes[:, -Tc:]), act[:, h : h + Tc])
            prompt = built["prompt"]
            out = sampler.sample(policy, prompt, torch.ones_like(prompt, dtype=torch.bool),
                                 built["plan"], group_size=1, temperature=temperature,
                                 top_k=top_k, generator=generator)
            new = self.vocab.future_codes_of(self.layout.split_response(out.tokens))  # (N,1,N)
            preds.append(new)
            codes = torch.cat([codes, new], dim=1)
        pred = torch.cat(preds, dim=1)                                       # (B*G, H, N)
        target = frames[:, Tc : Tc + horizon].repeat_interleave(G, dim=0)
        ref = frames[:, Tc - 1].float().repeat_interleave(G, dim=0)          # (B*G, 3, h, w)
        out_frames = self.frames_from_codes(codes[:, :Tc], pred, ref)
        _, true = self.tokenizer.encode_clip(frames[:, : Tc + horizon], Tc)  # (B, H, N)
        return {"frames": out_frames, "tokens": pred, "target": target.to(out_frames.dtype),
                "prev_tokens": codes[:, Tc - 1], "true_tokens": true.repeat_interleave(G, dim=0)}

    def _repeated(self, preds) -> torch.Tensor:
        return repetition_mask(preds["tokens"], prev=preds["prev_tokens"])  # (N, Tf) bool

    def _frame_values(self, preds) -> dict[str, torch.Tensor]:
        """Per-frame metrics {name: (N, Tf)} of the predictions, computed once per sample for
        the reward and the metrics together (cached in ``preds``)."""
        if "_frame_metrics" not in preds:
            names = self.metric_names or DEFAULT_METRICS
            weights = tuple(getattr(self.reward_fn, "weights", {}) or ())
            extra = ("lpips",) if self.perceptual is not None else ()
            names = tuple(dict.fromkeys(names + weights + extra))
            preds["_frame_metrics"] = frame_metrics(preds["frames"], preds["target"],
                                                    perceptual=self.perceptual, names=names)
        return preds["_frame_metrics"]

    def _published(self, values: dict) -> dict:
        """``lpips`` renamed to the perceptual network's own name (``stlpips`` for ST-LPIPS,
        so tables never print it as the paper's LPIPS)."""
        name = getattr(self.perceptual, "metric_name", "lpips")
        return {(name + k[5:] if k == "lpips" or k.startswith("lpips@") else k): v
                for k, v in values.items()}

    def rewards(self, preds, batch, group_size: int) -> dict[str, torch.Tensor]:
        return self._published(self.reward_fn(
            preds["frames"], preds["target"], perceptual=self.perceptual,
            repeated=self._repeated(preds), per_frame=self._frame_values(preds)))

    def metrics(self, preds, batch, group_size: int, per_frame: bool = False
                ) -> dict[str, torch.Tensor]:
        """Per-row metrics averaged over predicted frames, plus ``repeat`` (1 when any predicted
        frame's tokens equal the previous frame's), ``repeat_truth`` (the same test on the
        ground-truth frames, i.e. how often the data itself repeats) and ``repeat_spurious`` (1 when
        a predicted frame repeats where the true frame does not: the copies that are errors).
        ``per_frame`` adds ``<metric>@<t>`` for t = 1..Tf."""
        shown = (self.metric_names or DEFAULT_METRICS) + \
            (("lpips",) if self.perceptual is not None else ())
        values = {k: v for k, v in self._frame_values(preds).items() if k in shown}
        out = {k: v.mean(dim=1) for k, v in values.items()}                  # (N,)
        pred_rep = self._repeated(preds)                                     # (N, Tf) bool
        out["repeat"] = pred_rep.any(dim=1).float()
        if preds.get("true_tokens") is not None:
            # the same test on the ground truth: how often the data itself repeats a frame
            true_rep = repetition_mask(preds["true_tokens"], prev=preds["prev_tokens"])
            out["repeat_truth"] = true_rep.any(dim=1).float()
            out["repeat_spurious"] = (pred_rep & ~true_rep).any(dim=1).float()
        if per_frame and preds["tokens"].shape[1] > 1:
            for k, v in values.items():                                      # v: (N, Tf)
                out.update({f"{k}@{t + 1}": v[:, t] for t in range(v.shape[1])})
        return self._published(out)

    #: which direction is better for each metric (best-of-N and tables)
    higher_is_better = {**{k: sign > 0 for k, sign in METRIC_SIGN.items()},
                        "repeat": False, "repeat_truth": False, "repeat_spurious": False,
                        "reward": True, "stlpips": False}
