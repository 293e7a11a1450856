"""What a MLE/GRPO stage checkpoint holds (the policy and what rebuilds it) and the export of the
trained policy in the task's release format."""
from __future__ import annotations


class PolicyCheckpointMixin:
    """Stores what the task needs to rebuild the policy (architecture, tokenizer paths) in every
    Lightning checkpoint, so the next stage loads it by path alone.

    Frozen weights that the module rebuilds at construction (the task's tokenizer and perceptual
    network from their own files, GRPO's reference from ``init_policy``) are left out of the
    file and put back from the live module on load: checkpoints hold the policy, the optimizer
    state and the counters only.
    """

    FROZEN_PREFIXES = ("task.", "reference.")

    def on_save_checkpoint(self, checkpoint: dict) -> None:
        checkpoint["wm_policy"] = self.task.policy_checkpoint(self.policy)
        state = checkpoint.get("state_dict", {})
        for key in [k for k in state if k.startswith(self.FROZEN_PREFIXES)]:
            del state[key]

    def on_load_checkpoint(self, checkpoint: dict) -> None:
        state = checkpoint.get("state_dict", {})
        for key, value in self.state_dict().items():
            if key.startswith(self.FROZEN_PREFIXES):
                state.setdefault(key, value)

    def export(self, out_dir, checkpoint=None) -> dict:
        """Write the trained policy in the task's release format (``task.export``; the text
        task writes Hugging Face folders). Called by ``wm.cli.fit.fit_stage`` on rank 0 after
        training as ``<run_dir>/export``; a task without ``export`` writes nothing (returns {}).
        A sharded (FSDP2) policy is exported from the gathered ``checkpoint`` instead of the
        live shards, whose gathering would need every rank; a LoRA text policy rebuilt so has
        its base weights written beside the adapter (``export/base``), since the checkpoint does
        not say which named model, if any, holds them (``wm.language.model.save_hf``)."""
        if not hasattr(self.task, "export"):
            return {}
        policy = self.policy
        if checkpoint is not None and any(hasattr(p, "placements") for p in policy.parameters()):
            policy = self.task.build_policy(None, init=str(checkpoint))
        return self.task.export(policy, out_dir)
