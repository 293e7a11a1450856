"""FSDP2 sharding of a stage's policy (and frozen reference) over the data-parallel mesh."""
from __future__ import annotations

import torch


def _block_classes(model: torch.nn.Module) -> set[str]:
    """Class names of the repeated blocks (decoder layers) that Hugging Face marks unsplittable."""
    names: set[str] = set()
    for sub in model.modules():
        names.update(getattr(sub, "_no_split_modules", None) or ())
    return names


def shard_policy(module) -> None:
    """FSDP2 for ``trainer=fsdp2_cpu`` / ModelParallelStrategy: ``fully_shard`` every decoder
    layer of ``module.policy`` (and of the frozen ``module.reference``, if any), then the model
    itself, over the mesh's data-parallel dimension. A no-op under any other strategy (no mesh).

    Called from ``configure_model``, i.e. before the optimizer is built, so the optimizer holds
    the sharded (DTensor) parameters.
    """
    mesh = module.device_mesh
    if mesh is None:
        return
    from torch.distributed.fsdp import fully_shard

    dp = mesh["data_parallel"] if mesh.mesh_dim_names and "data_parallel" in mesh.mesh_dim_names \
        else mesh
    for model in (module.policy, getattr(module, "reference", None)):
        if model is None:
            continue
        blocks = _block_classes(model)
        if not blocks:
            raise TypeError(f"shard_policy: {type(model).__name__} names no decoder-layer class "
                            "(`_no_split_modules`); FSDP2 needs to know which blocks to shard")
        for sub in list(model.modules()):
            if type(sub).__name__ in blocks:
                fully_shard(sub, mesh=dp)
        fully_shard(model, mesh=dp)
