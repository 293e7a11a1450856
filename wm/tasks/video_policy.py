"""The video task's world-model transformer: build a fresh LLaMA for the task's vocabulary, load
one (an MLE/GRPO stage checkpoint, or a Hugging Face ``LlamaForCausalLM`` folder or hub id such
as the paper's released ``thuml/rt1-world-model-single-step-base``), and export one in that
same Hugging Face layout (so the reference code and other tools load ours).
"""
from __future__ import annotations

from pathlib import Path

from torch import nn

from wm.utils.checkpoints import load_checkpoint_file
from wm.utils.hub import looks_like_hub_id


def load_checkpoint(path: str | Path, what: str, command: str) -> dict:
    """Read a checkpoint, or fail with one line naming the file and the command that makes it."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"{what} checkpoint not found: {path}. Produce it with `{command}` "
                                f"or point the config at an existing file.")
    return load_checkpoint_file(path, weights_only=False, hint=f"produce it with `{command}`")


class VideoPolicyMixin:
    """``build_policy`` / ``export`` / ``policy_checkpoint`` for :class:`wm.tasks.video.VideoTask`
    (uses its ``vocab``, ``layout_name`` and ``tokenizer_ckpt``)."""

    def build_policy(self, factory, init: str | None = None) -> nn.Module:
        """A fresh LLaMA sized to this vocabulary, or the policy stored in ``init``: an MLE/GRPO
        stage checkpoint, or a Hugging Face ``LlamaForCausalLM`` folder / hub id (the paper's
        released world models, e.g. ``thuml/rt1-world-model-single-step-base``)."""
        if not init:
            return factory(vocab_size=self.vocab.vocab_size)
        if Path(init).is_dir() or looks_like_hub_id(str(init)):
            return self._load_hf_policy(init)
        ckpt = load_checkpoint(init, "world-model", "python train.py stage=mle data=<data>")
        saved = ckpt.get("wm_policy")
        if saved is None:
            raise ValueError(f"{init} is not a world-model checkpoint of this project "
                             "(no 'wm_policy' entry); pass the MLE or GRPO stage's last.ckpt")
        from transformers import LlamaConfig, LlamaForCausalLM

        config = LlamaConfig.from_dict(saved["config"])
        if config.vocab_size != self.vocab.vocab_size:
            raise ValueError(f"{init} was trained with vocabulary {config.vocab_size} but this "
                             f"tokenizer gives {self.vocab.vocab_size}: use the same tokenizer_ckpt")
        policy = LlamaForCausalLM(config)
        state = {k[len("policy."):]: v for k, v in ckpt["state_dict"].items()
                 if k.startswith("policy.")}
        policy.load_state_dict(state)
        return policy

    def _load_hf_policy(self, name_or_path) -> nn.Module:
        from transformers import LlamaForCausalLM

        from wm.vision.released.io import resolve_checkpoint

        folder = resolve_checkpoint(name_or_path)
        if not (folder / "config.json").is_file():
            raise FileNotFoundError(f"{folder / 'config.json'} not found: a world-model folder "
                                    "holds config.json + model.safetensors (LlamaForCausalLM)")
        try:
            policy = LlamaForCausalLM.from_pretrained(folder)
        except Exception as err:  # noqa: BLE001 (safetensors/json/HF errors: one line)
            raise ValueError(f"{folder}: not a loadable LlamaForCausalLM folder "
                             f"({str(err).splitlines()[0][:160]})") from None
        if policy.config.vocab_size != self.vocab.vocab_size:
            raise ValueError(f"{folder} has vocabulary {policy.config.vocab_size} but this task's "
                             f"layout gives {self.vocab.vocab_size} (tokenizer, layout, "
                             "data.task.visual_order must match the released model's)")
        return policy

    def export(self, policy, out_dir) -> dict:
        """The world model in Hugging Face format (``out_dir/hf``, loads with
        ``LlamaForCausalLM.from_pretrained``) plus ``vocab.json`` describing its id layout."""
        import json
        from dataclasses import asdict

        out = Path(out_dir)
        policy.save_pretrained(out / "hf")
        layout = {**asdict(self.vocab), "bos_id": self.vocab.bos_id, "eos_id": self.vocab.eos_id,
                  "action_offset": self.vocab.action_offset, "vocab_size": self.vocab.vocab_size,
                  "tokenizer_ckpt": self.tokenizer_ckpt, "layout": self.layout_name}
        (out / "vocab.json").write_text(json.dumps(layout, indent=2))
        return {"hf": out / "hf", "vocab": out / "vocab.json"}

    def policy_checkpoint(self, policy) -> dict:
        return {"config": policy.config.to_dict(), "layout": self.layout_name,
                "task_kwargs": {"tokenizer_ckpt": self.tokenizer_ckpt}}

    # ----------------------------------------------------------------- tokens
