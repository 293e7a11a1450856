"""Text sampling communicates only where it must: under FSDP2 (sharded parameters, every forward
a collective) the decode loop all-reduces "ranks still decoding" once per step so no rank stops
early; under DDP (rollouts call the unwrapped policy) or one process, ranks stop on their own and
no collective runs per token. Two real CPU processes (gloo), tests/ddp_sampler_probe.py."""
import json
import os
import socket
import subprocess
import sys

import pytest

from stage_fixtures import ROOT

pytestmark = pytest.mark.slow
PROBE = ROOT / "tests" / "ddp_sampler_probe.py"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def counts(tmp_path_factory):
    out = tmp_path_factory.mktemp("sampler") / "counts.json"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.run([sys.executable, str(PROBE), "--out", str(out),
                           "--port", str(_free_port())],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-4000:]
    return json.loads(out.read_text())


def test_no_per_token_all_reduce_without_sharding(counts):
    for row in counts["plain"]:
        assert row["steps"] > 1, row                 # decoding did run several steps
        assert row["all_reduce"] == 0, row


def test_fsdp2_keeps_ranks_in_lockstep(counts):
    rows = counts["fsdp2"]
    # one "still decoding" all-reduce per step, the same number on both ranks (no hang)
    assert rows[0]["all_reduce"] == rows[1]["all_reduce"] > 1, rows
    assert rows[0]["all_reduce"] >= max(r["steps"] for r in rows), rows
