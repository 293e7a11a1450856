"""bench/gpu_check.py at toy sizes on CPU (what CI runs; the GPU run is the same code): every
phase runs the project's stages under bf16-mixed, GRPO stays on-policy, and the report goes to
the file given (docs/benchmarks.md untouched)."""
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def test_gpu_check_tiny_on_cpu(tmp_path):
    from bench import gpu_check

    doc = ROOT / "docs" / "benchmarks.md"
    before = doc.read_text() if doc.exists() else None
    out = tmp_path / "bench.md"
    results = gpu_check.main(["--device", "cpu", "--tiny", "--steps", "2", "--doc", str(out)])
    assert [r["phase"] for r in results] == list(gpu_check.PHASES)
    for r in results:
        assert r["steps"] == 2 and r["step_s"] > 0 and r["peak_gb"] > 0
        if r["phase"] != "text_sft":
            assert r["kl_first"] == 0.0, r                # the reference is the same weights
            assert r["logp_diff_mean"] < 1e-3, r           # sampled == trained distribution
            assert r["rollout_tok_s"] > 0 and "sample_s" in r and "update_s" in r
    assert 0 < results[2]["loss"] < 20
    text = out.read_text()
    assert text.count("<!-- bench:gpu_check:begin -->") == 1 and "| video_single |" in text
    gpu_check.main(["--device", "cpu", "--tiny", "--steps", "1", "--phases", "video_multi",
                    "--doc", str(out)])
    again = out.read_text()                                # the section is replaced, not added
    assert again.count("<!-- bench:gpu_check:begin -->") == 1 and "| video_single |" not in again
    assert (doc.read_text() if doc.exists() else None) == before


def test_gpu_check_without_cuda_says_what_to_run():
    import torch

    from bench import gpu_check

    if torch.cuda.is_available():
        pytest.skip("a CUDA device is visible")
    with pytest.raises(SystemExit, match="--device cpu --tiny"):
        gpu_check.main(["--phases", "video_multi"])


def test_full_shapes_are_the_papers_models():
    """The GPU run's models, counted on the meta device (nothing allocated): the reference
    world model (~120M at vocabulary 4,633) and DeepSeek-R1-Distill-Qwen-1.5B (1.78B)."""
    import torch
    from transformers import Qwen2Config, Qwen2ForCausalLM

    from bench.gpu_check import FULL
    from wm.world.llama import build_llama

    count = lambda m: sum(p.numel() for p in m.parameters()) / 1e6  # noqa: E731
    with torch.device("meta"):
        world = build_llama(FULL["video_single"].vocab, **FULL["video_single"].model)
        text = Qwen2ForCausalLM(Qwen2Config(vocab_size=FULL["text_grpo"].vocab,
                                            **FULL["text_grpo"].model))
    assert 115 < count(world) < 125
    assert 1770 < count(text) < 1785
    single, multi = FULL["video_single"], FULL["video_multi"]
    assert (single.prompt + single.response, multi.prompt + multi.response) == (1654, 2024)
    assert single.group == multi.group == 16 and FULL["text_grpo"].group == 5
