"""Smoke test of bench/bench_grpo_step.py's core measurement (issue #14): the real GRPOModule
at the tiny toy shape, before and after the speed-ups, reports every phase time (no TRL)."""
from bench.bench_grpo_step import PHASES, measure_ours


def test_measure_ours_reports_every_phase():
    for variant in ("after", "before"):
        res = measure_ours("toy", variant, steps=2)
        assert len(res["rows"]) == 2
        for row in res["rows"]:
            for key in (*PHASES, "step", "step_cpu"):
                assert key in row, (variant, key)
                skipped = variant == "after" and key == "old_logp"   # the pass is skipped
                assert row[key] >= 0 if skipped else row[key] > 0, (variant, key, row[key])
            assert row["step"] >= row["sample"] + row["update"]
            assert row["response_tokens"] == 6.0           # TargetTokenTask: 6 ids, no EOS
        assert set(PHASES) <= set(res["median"])
        assert res["peak_rss_mb"] >= res["rss_before_fit_mb"] > 0
