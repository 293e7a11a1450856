"""Our GRPO loss equals TRL's on the same batch (TRL 1.16.0 ``GRPOTrainer.compute_loss``).

Same model, completions (rows of different lengths), advantages, old and reference log-probs;
compared: the loss and every parameter gradient. Pairs: our ``token-mean`` == TRL ``bnpo``,
``seq-mean-token-mean`` == ``grpo``, ``dr_grpo`` == ``dr_grpo`` (dual clip off: TRL has none).
A mismatched pair must *not* agree, so the check can fail. Needs the optional bench packages
(``pip install -r requirements.txt -r requirements-bench.txt``, as ``.ci/run`` does); skipped
without trl.
"""
from __future__ import annotations

import pytest

pytest.importorskip("trl", reason="trl not installed (optional: pip install -r requirements.txt "
                                  "-r requirements-bench.txt, as .ci/run does)")

from bench.bench_trl_grpo import LOSS_PAIRS, agree, loss_parity, save_tiny  # noqa: E402


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    return save_tiny(tmp_path_factory.mktemp("tiny"))


@pytest.mark.parametrize("ours", list(LOSS_PAIRS))
def test_grpo_loss_matches_trl(ours, model_dir, tmp_path):
    r = loss_parity(model_dir, tmp_path, ours)
    assert abs(r["trl"]) > 1e-3 and r["max_grad"] > 1e-3      # a non-trivial batch
    assert agree(r), r


def test_mismatched_aggregation_is_detected(model_dir, tmp_path, monkeypatch):
    """Ours with seq-mean-token-mean against TRL bnpo: the rows' lengths differ, so the
    losses differ far beyond the tolerance."""
    import bench.bench_trl_grpo as bench

    monkeypatch.setitem(bench.LOSS_PAIRS, "seq-mean-token-mean", "bnpo")
    r = loss_parity(model_dir, tmp_path, "seq-mean-token-mean")
    assert not agree(r), r
