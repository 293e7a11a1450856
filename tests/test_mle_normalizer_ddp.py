"""The MLE loss normalizer under real DDP (global loss-token count, loss x world size), with
plain SGD (scale-sensitive): a 2-process step whose ranks hold 39 and 2 target tokens lands on
the weights of one process taking the whole batch (a per-rank token mean is off by ~165 %)."""
import pytest
import torch

from stage_fixtures import ROOT, run_probe, tiny_llama_factory

pytestmark = pytest.mark.slow
PROBE = ROOT / "tests" / "ddp_mle_probe.py"


def _run(devices: int, out):
    return run_probe(PROBE, devices, out)


def test_two_rank_mle_step_equals_one_process(tmp_path):
    one = _run(1, tmp_path / "one.pt")
    two = _run(2, tmp_path / "two.pt")
    init = tiny_llama_factory(0)(vocab_size=16).state_dict()
    moved = max((one[k] - init[k]).abs().max().item() for k in one)
    assert moved > 1e-3, "the step must change the weights for the comparison to mean anything"
    for k in one:
        torch.testing.assert_close(two[k], one[k], rtol=0, atol=1e-6, msg=k)


def test_gradient_accumulation_is_refused(tmp_path):
    from functools import partial

    import lightning as L
    from stage_fixtures import TargetTokenData, TargetTokenTask
    from wm.stages.mle import MLEModule

    module = MLEModule(TargetTokenTask(), tiny_llama_factory(0), partial(torch.optim.SGD, lr=0.1),
                       val_sample=False)
    trainer = L.Trainer(accelerator="cpu", max_steps=1, accumulate_grad_batches=2, logger=False,
                        enable_checkpointing=False, enable_progress_bar=False,
                        default_root_dir=tmp_path)
    with pytest.raises(ValueError, match="accumulate_grad_batches=2"):
        trainer.fit(module, datamodule=TargetTokenData())
