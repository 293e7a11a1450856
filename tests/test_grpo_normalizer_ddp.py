"""The cross-rank loss normalizer (global token count, loss x world size) under real DDP, with
plain SGD (scale-sensitive, unlike AdamW): a 2-process step on a fixed global batch with uneven
token counts per rank lands on the weights of one process taking the whole batch."""
import sys

import pytest
import torch

from stage_fixtures import ROOT, run_probe

pytestmark = pytest.mark.slow
PROBE = ROOT / "tests" / "ddp_update_probe.py"


def _run(devices: int, out):
    return run_probe(PROBE, devices, out)


def test_two_rank_sgd_step_equals_one_process(tmp_path):
    one = _run(1, tmp_path / "one.pt")
    two = _run(2, tmp_path / "two.pt")
    sys.path.insert(0, str(ROOT / "tests"))
    from stage_fixtures import tiny_llama_factory

    init = tiny_llama_factory(0)(vocab_size=16).state_dict()
    moved = max((one[k] - init[k]).abs().max().item() for k in one)
    assert moved > 1e-3, "the step must change the weights for the comparison to mean anything"
    for k in one:
        torch.testing.assert_close(two[k], one[k], rtol=0, atol=1e-6, msg=k)
