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
    # A rank of this 2-process gloo probe is now and then killed by SIGABRT ("terminate called
    # without an active exception", about 1 run in 6 on a loaded 2-core machine, at no fixed
    # point): the run is repeated, up to 3 times; the counts it writes are asserted strictly.
    errors = []
    for _ in range(3):
        proc = subprocess.run([sys.executable, str(PROBE), "--out", str(out),
                               "--port", str(_free_port())],
                              cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
        if proc.returncode == 0:
            return json.loads(out.read_text())
        errors.append(proc.stdout[-1000:] + proc.stderr[-3000:])
    raise AssertionError("the sampler probe failed 3 times:\n" + "\n---\n".join(errors))


def test_no_per_token_all_reduce_without_sharding(counts):
    for row in counts["plain"]:
        assert row["steps"] > 1, row                 # decoding did run several steps
        assert row["all_reduce"] == 0, row


def test_fsdp2_keeps_ranks_in_lockstep(counts):
    rows = counts["fsdp2"]
    # one "still decoding" all-reduce per step, the same number on both ranks (no hang)
    assert rows[0]["all_reduce"] == rows[1]["all_reduce"] > 1, rows
    assert rows[0]["all_reduce"] >= max(r["steps"] for r in rows), rows
