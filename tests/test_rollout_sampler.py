"""Sampler: cached == no-cache reference, forced tokens, allowed ranges, text mode, groups."""
import pytest
import torch

from wm.rollout import ResponsePlan, Sampler, sample_cached, sample_no_cache
from wm.world.llama import build_llama

V = 24


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    return build_llama(V, hidden_size=32, num_layers=2, num_heads=4, max_position_embeddings=128, seed=0)


def video_plan(B=2):
    """10 tokens: frame(2) act(2) frame(2) act(2) frame(2); free ids in [4, 16); per-row actions."""
    forced = torch.full((B, 10), -1)
    forced[:, 2:4] = torch.tensor([[16, 17], [18, 19]])[:B]
    forced[:, 6:8] = torch.tensor([[20, 21], [22, 23]])[:B]
    return ResponsePlan(10, forced, 4, 16)


def gen(seed):
    return torch.Generator().manual_seed(seed)


@pytest.mark.parametrize("top_k,top_p,temperature", [(None, None, 1.0), (5, None, 0.7), (None, 0.8, 1.3), (3, 0.9, 1.0)])
def test_cached_equals_no_cache(model, top_k, top_p, temperature):
    prompt = torch.randint(0, V, (2, 7), generator=gen(1))
    plan = video_plan()
    kw = dict(group_size=4, temperature=temperature, top_k=top_k, top_p=top_p, return_logits=True)
    a = sample_cached(model, prompt, None, plan, generator=gen(3), **kw)
    b = sample_no_cache(model, prompt, None, plan, generator=gen(3), **kw)
    assert torch.equal(a.tokens, b.tokens)
    assert torch.equal(a.mask, b.mask)
    torch.testing.assert_close(a.logprobs, b.logprobs, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(a.logits, b.logits, atol=1e-4, rtol=1e-4)


def test_forced_tokens_ranges_and_mask(model):
    prompt = torch.randint(0, V, (2, 5), generator=gen(2))
    plan = video_plan()
    r = Sampler(top_k=8).sample(model, prompt, None, plan, group_size=3, generator=gen(0))
    assert r.tokens.shape == r.logprobs.shape == r.mask.shape == (6, 10)
    assert r.prompt_index.tolist() == [0, 0, 0, 1, 1, 1]
    for row in range(6):
        p = row // 3
        assert r.tokens[row, 2:4].tolist() == plan.forced[p, 2:4].tolist()
        assert r.tokens[row, 6:8].tolist() == plan.forced[p, 6:8].tolist()
    free = plan.free_positions
    assert ((r.tokens[:, free] >= 4) & (r.tokens[:, free] < 16)).all()
    assert torch.equal(r.mask, free.expand(6, -1))
    assert (r.logprobs[:, ~free] == 0).all() and (r.logprobs[:, free] < 0).all()


def test_logprobs_match_a_full_forward(model):
    """Independent of the sampler's own code path: re-score the rollout with one HF forward."""
    prompt = torch.randint(0, V, (1, 6), generator=gen(4))
    plan = video_plan(1)
    r = sample_cached(model, prompt, None, plan, group_size=5, generator=gen(5))
    seq = torch.cat([prompt.expand(5, -1), r.tokens], dim=1)
    logits = model(seq).logits[:, prompt.shape[1] - 1:-1, 4:16]  # (5, L, 12) predicting response tokens
    lp = logits.log_softmax(-1)
    free = plan.free_positions
    picked = lp.gather(2, (r.tokens - 4).clamp(0, 11)[..., None]).squeeze(2)
    torch.testing.assert_close(r.logprobs[:, free], picked[:, free], atol=1e-5, rtol=1e-5)


def test_forced_runs_are_fed_in_one_pass(model):
    calls = []
    h = model.register_forward_pre_hook(lambda m, a, kw: calls.append(kw["input_ids"].shape[1]), with_kwargs=True)
    try:
        sample_cached(model, torch.randint(0, V, (2, 7), generator=gen(1)), None, video_plan(), 2, generator=gen(0))
    finally:
        h.remove()
    # prefill(7); then: tok0 | tok1+act+act | tok4 | tok5+act+act | tok8  (no pass after the last token)
    assert calls == [7, 1, 3, 1, 3, 1]


def test_group_rows_share_prompt_but_differ(model):
    prompt = torch.randint(0, V, (2, 6), generator=gen(6))
    r = sample_cached(model, prompt, None, ResponsePlan(12, allowed_lo=0, allowed_hi=16), 8, generator=gen(7))
    for p in range(2):
        rows = r.tokens[r.prompt_index == p]
        assert len({tuple(x) for x in rows.tolist()}) > 1
    # the same seed reproduces, another seed does not
    again = sample_cached(model, prompt, None, ResponsePlan(12, allowed_lo=0, allowed_hi=16), 8, generator=gen(7))
    other = sample_cached(model, prompt, None, ResponsePlan(12, allowed_lo=0, allowed_hi=16), 8, generator=gen(8))
    assert torch.equal(r.tokens, again.tokens) and not torch.equal(r.tokens, other.tokens)


def text_plan():
    return ResponsePlan(12, allowed_lo=0, allowed_hi=4, eos_id=3, pad_id=5)


def test_text_mode_stops_at_eos_and_masks_after(model):
    prompt = torch.randint(6, V, (3, 6), generator=gen(9))
    mask = torch.ones(3, 6, dtype=torch.bool)
    mask[0, :3] = False
    mask[1, :1] = False
    prompt[~mask] = 5
    a = sample_cached(model, prompt, mask, text_plan(), group_size=4, generator=gen(10))
    b = sample_no_cache(model, prompt, mask, text_plan(), group_size=4, generator=gen(10))
    assert torch.equal(a.tokens, b.tokens) and torch.equal(a.mask, b.mask)
    torch.testing.assert_close(a.logprobs, b.logprobs, atol=1e-5, rtol=1e-5)
    stopped = 0
    for row, mrow, lrow in zip(a.tokens.tolist(), a.mask.tolist(), a.logprobs.tolist()):
        if 3 in row:
            e = row.index(3)
            stopped += 1
            assert all(t == 5 for t in row[e + 1:]) and not any(mrow[e + 1:]) and all(x == 0 for x in lrow[e + 1:])
            assert all(mrow[: e + 1])
        else:
            assert all(mrow)
    assert stopped > 0


def test_text_mode_ends_loop_when_all_rows_finished(model):
    calls = []
    h = model.register_forward_pre_hook(lambda m, a, kw: calls.append(1), with_kwargs=True)
    try:  # only EOS is allowed: every row stops at the first token, after the prefill alone
        r = sample_cached(model, torch.randint(0, V, (2, 4)), None,
                          ResponsePlan(9, allowed_lo=3, allowed_hi=4, eos_id=3, pad_id=5), 3)
    finally:
        h.remove()
    assert len(calls) == 1
    assert (r.tokens[:, 0] == 3).all() and (r.tokens[:, 1:] == 5).all() and r.mask.sum() == 6


def test_left_padding_gives_the_unpadded_distribution(model):
    short = torch.randint(6, V, (1, 4), generator=gen(11))
    padded = torch.cat([torch.full((1, 3), 5), short], dim=1)
    mask = torch.tensor([[0, 0, 0, 1, 1, 1, 1]], dtype=torch.bool)
    other = torch.randint(6, V, (1, 7), generator=gen(12))
    plan = ResponsePlan(6, allowed_lo=0, allowed_hi=V)
    ref = sample_cached(model, short, None, plan, temperature=0, return_logits=True)
    both = sample_cached(model, torch.cat([padded, other]), torch.cat([mask, torch.ones_like(mask)]), plan,
                         temperature=0, return_logits=True)
    assert torch.equal(both.tokens[:1], ref.tokens)
    torch.testing.assert_close(both.logits[:1], ref.logits, atol=1e-4, rtol=1e-4)


def test_model_mode_restored_and_bad_inputs(model):
    model.train()
    sample_cached(model, torch.randint(0, V, (1, 3)), None, ResponsePlan(2), 1)
    assert model.training
    model.eval()
    with pytest.raises(ValueError, match="LEFT-padded"):
        sample_cached(model, torch.zeros(1, 3, dtype=torch.long), torch.tensor([[1, 1, 0]]), ResponsePlan(2), 1)
    with pytest.raises(ValueError, match="forced has 2 rows for 3 prompts"):
        sample_cached(model, torch.zeros(3, 3, dtype=torch.long), None, video_plan(2), 1)
    with pytest.raises(ValueError, match="group_size"):
        sample_cached(model, torch.zeros(1, 3, dtype=torch.long), None, ResponsePlan(2), 0)
    with pytest.raises(ValueError, match="same in every row"):
        ResponsePlan(3, torch.tensor([[-1, 2, -1], [-1, -1, 2]]))


def test_works_with_qwen2():
    from transformers import Qwen2Config, Qwen2ForCausalLM

    torch.manual_seed(0)
    cfg = Qwen2Config(vocab_size=V, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                      num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=64)
    cfg._attn_implementation = "sdpa"
    m = Qwen2ForCausalLM(cfg).eval()
    prompt = torch.randint(6, V, (2, 5))
    mask = torch.tensor([[0, 1, 1, 1, 1], [1, 1, 1, 1, 1]], dtype=torch.bool)
    a = sample_cached(m, prompt, mask, text_plan(), 3, generator=gen(1))
    b = sample_no_cache(m, prompt, mask, text_plan(), 3, generator=gen(1))
    assert torch.equal(a.tokens, b.tokens)


def test_forced_first_and_last_positions(model):
    forced = torch.tensor([20, 21, -1, -1, 22, -1, 23])
    plan = ResponsePlan(7, forced, 4, 16)
    prompt = torch.randint(0, V, (2, 5), generator=gen(13))
    a = sample_cached(model, prompt, None, plan, 3, generator=gen(14))
    b = sample_no_cache(model, prompt, None, plan, 3, generator=gen(14))
    assert torch.equal(a.tokens, b.tokens)
    assert (a.tokens[:, [0, 1, 4, 6]] == torch.tensor([20, 21, 22, 23])).all()
