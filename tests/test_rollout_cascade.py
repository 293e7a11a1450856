"""Cascade attention (prompt keys/values read once per group) samples exactly what the copying
cache samples: same logits at every step, same tokens for the same seed, with left-padded text
prompts, forced runs (multi-step video) and grouped-query attention."""
import pytest
import torch

from stage_fixtures import tiny_llama
from wm.rollout.plan import ResponsePlan
from wm.rollout.sampler import Sampler


def _qwen(vocab):
    from transformers import Qwen2Config, Qwen2ForCausalLM

    torch.manual_seed(0)
    return Qwen2ForCausalLM(Qwen2Config(vocab_size=vocab, hidden_size=32, intermediate_size=64,
                                        num_hidden_layers=2, num_attention_heads=4,
                                        num_key_value_heads=2, max_position_embeddings=128))


def _both(model, ids, mask, plan, G, **kw):
    out = []
    for cascade in (True, False):
        out.append(Sampler(cascade=cascade).sample(model, ids, mask, plan, group_size=G,
                                                   generator=torch.Generator().manual_seed(3),
                                                   return_logits=True, **kw))
    return out


@pytest.mark.parametrize("arch", ["llama", "qwen2"])
def test_text_mode_with_left_padding(arch):
    vocab = 40
    model = _qwen(vocab) if arch == "qwen2" else tiny_llama(vocab)
    ids = torch.randint(3, vocab, (3, 9), generator=torch.Generator().manual_seed(0))
    mask = torch.ones_like(ids, dtype=torch.bool)
    mask[0, :4] = False
    mask[1, :2] = False
    plan = ResponsePlan(12, allowed_lo=0, allowed_hi=vocab, eos_id=2, pad_id=0)
    fast, plain = _both(model, ids, mask, plan, G=4)
    torch.testing.assert_close(fast.logits, plain.logits, atol=1e-5, rtol=1e-5)
    assert torch.equal(fast.tokens, plain.tokens) and torch.equal(fast.mask, plain.mask)
    torch.testing.assert_close(fast.logprobs, plain.logprobs, atol=1e-5, rtol=0)


def test_video_mode_with_forced_runs():
    vocab = 30
    model = tiny_llama(vocab)
    ids = torch.randint(vocab, (2, 10), generator=torch.Generator().manual_seed(1))
    L = 9   # 2 free, 2 forced, 2 free, 1 forced, 2 free
    forced = torch.full((2, L), -1)
    forced[:, 2:4] = torch.tensor([[25, 26], [27, 28]])
    forced[:, 6] = torch.tensor([29, 24])
    plan = ResponsePlan(L, forced=forced, allowed_lo=0, allowed_hi=20)
    fast, plain = _both(model, ids, None, plan, G=5)
    free = plan.free_positions
    torch.testing.assert_close(fast.logits[:, free], plain.logits[:, free], atol=1e-5, rtol=1e-5)
    assert torch.equal(fast.tokens, plain.tokens)


def test_group_of_one_uses_the_plain_cache_and_top_k_still_works():
    model = tiny_llama(20)
    ids = torch.randint(20, (2, 5))
    plan = ResponsePlan(4, allowed_lo=0, allowed_hi=20)
    fast, plain = _both(model, ids, None, plan, G=1)
    assert torch.equal(fast.tokens, plain.tokens)
    fast, plain = _both(model, ids, None, plan, G=3, top_k=5)
    assert torch.equal(fast.tokens, plain.tokens)
    assert model.config._attn_implementation == "sdpa"        # restored after sampling


def test_a_single_prompt_batch():
    """B = 1 (one prompt, G rows): the merged output is laid out correctly (was a view error)."""
    model = _qwen(40)
    ids = torch.randint(3, 40, (1, 6), generator=torch.Generator().manual_seed(2))
    plan = ResponsePlan(5, allowed_lo=0, allowed_hi=40, eos_id=2, pad_id=0)
    fast, plain = _both(model, ids, torch.ones_like(ids, dtype=torch.bool), plan, G=3)
    torch.testing.assert_close(fast.logits, plain.logits, atol=1e-5, rtol=1e-5)
