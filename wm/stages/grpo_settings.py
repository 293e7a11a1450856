"""The GRPO stage's settings: one typed, validated dataclass with one docstring per field.

``conf/stage/grpo.yaml`` lists them flat under ``stage.module`` (``stage.module.group_size=8``);
``GRPOModule`` builds a :class:`GRPOSettings` from them, so an unknown or bad setting fails here
with a message that names the option and how to fix it. ``settings_table()`` renders the field
docs as the table in ``docs/stages.md`` (a test keeps the two equal). The loss options are a
separate dataclass, ``wm.rl.loss.GRPOLossConfig`` (``stage.module.loss.*``), rendered the same way.

The dataclasses are the one source of truth: ``conf/stage/grpo.yaml`` lists every field with its
default (a quickstart size that differs says ``# code default: <value>`` on its line), so every
option is settable without ``+``; tests/test_config_options.py fails when the YAML, the docs and
the fields disagree.
"""
from __future__ import annotations

import ast
import dataclasses
import inspect
from dataclasses import dataclass


@dataclass
class GRPOSettings:
    """Options of the GRPO loop (``stage.module.*``). Defaults are the reference's where it has one."""

    group_size: int = 16
    """G responses sampled per prompt (reference: 16 video, 5 text)."""
    mini_batch_size: int | None = None
    """Prompts per optimizer step; null = the whole rollout batch (reference: 32 of 128)."""
    micro_batch_size: int = 16
    """Responses per forward/backward pass and per decode/score call: a memory knob, the maths
    is unchanged. At least group_size: micro_batch_size // group_size whole groups (the prompt
    runs once per group); smaller: row chunks of one group (the update reruns the prompt per
    chunk)."""
    ppo_epochs: int = 1
    """Passes over each rollout batch (reference: 1)."""
    temperature: float = 1.0
    """Rollout sampling temperature (reference: 1.0)."""
    top_k: int | None = None
    """Rollout top-k: refused (must be null). Truncation changes the sampled distribution per
    step, so the training log-probs would be of another policy; the paper trains without it."""
    top_p: float | None = None
    """Rollout nucleus top-p: refused (must be null), for the same reason as top_k."""
    grad_clip: float = 1.0
    """Max global gradient norm; 0 or null = no clipping (reference: 1.0)."""
    warmup_steps: int = 0
    """Linear learning-rate warmup, in optimizer steps."""
    use_reference: bool = True
    """Keep a frozen reference for the KL term (a LoRA policy uses its adapters-off base)."""
    val_group_size: int = 1
    """Responses per prompt in validation."""
    val_top_k: int | None = None
    """Validation top-k (the paper's video tables: 100); null = off."""
    log_images_every_n_steps: int = 0
    """Log predicted-vs-true samples to TensorBoard every n steps; 0 = never."""
    shared_prefix: bool = True
    """Training-side passes run each prompt once for its G responses (keys/values broadcast;
    exact). false = the plain computation, every row's prompt again (for checks and benchmarks)."""
    dynamic_sampling: bool = False
    """DAPO dynamic sampling: replace groups whose rewards are all equal (no learning signal) by
    informative groups of freshly drawn prompts; the batch keeps its size
    (``wm.stages.dynamic_sampling``)."""
    dynamic_sampling_max_draws: int = 2
    """Extra prompt batches drawn per step at most when dynamic_sampling is on."""
    cascade: bool = True
    """Sampler reads each prompt's keys/values once per decode step for its G rows (exact).
    false = the prompt's keys/values copied into every row (for checks and benchmarks)."""
    skip_old_logp: bool = True
    """When one optimizer step consumes the rollout (ppo_epochs 1, one mini-batch), the behaviour
    log-probs are the update's own, detached (exact; ratio 1). false = always run that pass."""
    seed: int = 0
    """Base of every per-step seed (``wm.utils.seeding``)."""

    def validate(self) -> "GRPOSettings":
        """Raise ``ValueError`` naming the option (``stage.module.<name>``) and the fix."""
        def bad(name, why):
            raise ValueError(f"stage.module.{name}={getattr(self, name)!r}: {why}")

        if self.group_size < 2:
            bad("group_size", "GRPO needs a group of at least 2 responses per prompt "
                              "(reference: 16 video, 5 text)")
        for name in ("micro_batch_size", "ppo_epochs", "val_group_size"):
            if getattr(self, name) < 1:
                bad(name, "must be >= 1")
        if self.mini_batch_size is not None and self.mini_batch_size < 1:
            bad("mini_batch_size", "must be >= 1 prompt, or null for the whole rollout batch")
        if self.temperature <= 0:
            bad("temperature", "must be > 0 (1.0 samples from the model's distribution)")
        for name in ("top_k", "top_p"):
            if getattr(self, name) is not None:
                bad(name, "GRPO rollouts sample the full (range-restricted, tempered) "
                          "distribution, the one the training log-probs evaluate; truncating it "
                          "would train another policy than the one sampled. Set it to null (the "
                          "paper trains without it); val_top_k is allowed for validation")
        if self.val_top_k is not None and self.val_top_k < 1:
            bad("val_top_k", "must be >= 1 or null")
        if self.grad_clip is not None and self.grad_clip < 0:
            bad("grad_clip", "must be >= 0 (0 or null: no clipping)")
        if self.dynamic_sampling_max_draws < 0:
            bad("dynamic_sampling_max_draws", "must be >= 0")
        if self.warmup_steps < 0 or self.log_images_every_n_steps < 0:
            bad("warmup_steps" if self.warmup_steps < 0 else "log_images_every_n_steps",
                "must be >= 0")
        return self

    @classmethod
    def from_options(cls, options: dict) -> "GRPOSettings":
        """Build from ``stage.module`` options; an unknown key names the valid ones."""
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(options) - names)
        if unknown:
            raise ValueError(f"unknown GRPO option(s) {['stage.module.' + k for k in unknown]}; "
                             f"valid: {sorted(names)} (see docs/stages.md)")
        return cls(**options).validate()


def field_docs(cls=GRPOSettings) -> dict[str, str]:
    """``{field: its docstring}`` read from the class source (attribute docstrings)."""
    tree = ast.parse(inspect.getsource(cls))
    body = tree.body[0].body
    docs = {}
    for node, nxt in zip(body, body[1:]):
        if isinstance(node, ast.AnnAssign) and isinstance(nxt, ast.Expr) \
                and isinstance(nxt.value, ast.Constant) and isinstance(nxt.value.value, str):
            docs[node.target.id] = " ".join(nxt.value.value.split())
    return docs


def settings_table(cls=GRPOSettings, prefix: str = "stage.module") -> str:
    """Markdown table of the fields: option (under ``prefix``), default, meaning."""
    docs = field_docs(cls)
    rows = [f"| option (`{prefix}.*`) | default | meaning |", "|---|---|---|"]
    for f in dataclasses.fields(cls):
        default = "null" if f.default is None else str(f.default).lower() \
            if isinstance(f.default, bool) else f.default
        rows.append(f"| `{f.name}` | `{default}` | {docs.get(f.name, '')} |")
    return "\n".join(rows)
