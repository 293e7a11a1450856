"""LLaMA builder and the model presets in conf/model."""
from pathlib import Path

import pytest
import torch
from hydra.utils import instantiate
from omegaconf import OmegaConf

from wm.world.llama import build_llama, load_llama

CONF = Path(__file__).resolve().parents[1] / "conf" / "model"


def test_build_is_seeded_and_sized():
    a = build_llama(50, 32, 2, 4, max_position_embeddings=64, seed=3)
    b = build_llama(50, 32, 2, 4, max_position_embeddings=64, seed=3)
    assert a.config.vocab_size == 50 and a.config.num_hidden_layers == 2
    assert a.config._attn_implementation == "sdpa"
    assert a.config.intermediate_size == 128  # 8/3 * 32 rounded up to 64
    assert all(torch.equal(p, q) for p, q in zip(a.parameters(), b.parameters()))
    assert a(torch.zeros(1, 5, dtype=torch.long)).logits.shape == (1, 5, 50)


def test_save_and_load_round_trip(tmp_path):
    m = build_llama(30, 32, 1, 2, max_position_embeddings=32, seed=0).eval()
    m.save_pretrained(tmp_path)
    n = load_llama(str(tmp_path)).eval()
    x = torch.randint(0, 30, (1, 6))
    torch.testing.assert_close(m(x).logits, n(x).logits)


def test_bad_config_raises():
    with pytest.raises(ValueError, match="vocab_size"):
        build_llama("???", 32, 1, 2)
    with pytest.raises(ValueError, match="not divisible"):
        build_llama(10, 30, 1, 4)
    with pytest.raises(ValueError, match="unknown dtype"):
        build_llama(10, 32, 1, 4, dtype="fp8")


@pytest.mark.parametrize("name,params_m", [("world_tiny", (0.5, 3.0)), ("world_paper", (115, 125))])
def test_presets_instantiate(name, params_m):
    cfg = OmegaConf.load(CONF / f"{name}.yaml")
    factory = instantiate(cfg.policy)
    if name == "world_paper":  # count from the config without building 120M parameters twice
        c = cfg.policy
        h, layers, V = c.hidden_size, c.num_layers, 4633
        inter = c.intermediate_size
        n = 2 * V * h + layers * (4 * h * h + 3 * h * inter)
        assert params_m[0] < n / 1e6 < params_m[1]
        return
    model = factory(vocab_size=4633)
    n = sum(p.numel() for p in model.parameters())
    assert params_m[0] < n / 1e6 < params_m[1]
