"""The shared-prefix forward (prompt once per group) equals the plain per-row forward: logits
and parameter gradients, with and without left-padded prompts, for LLaMA and Qwen2."""
import pytest
import torch

from stage_fixtures import tiny_llama
from wm.rollout.forward import grouped_response_logits, response_logits


def _qwen(vocab):
    from transformers import Qwen2Config, Qwen2ForCausalLM

    torch.manual_seed(0)
    return Qwen2ForCausalLM(Qwen2Config(vocab_size=vocab, hidden_size=32, intermediate_size=64,
                                        num_hidden_layers=2, num_attention_heads=4,
                                        num_key_value_heads=2, max_position_embeddings=64))


@pytest.mark.parametrize("arch", ["llama", "qwen2"])
@pytest.mark.parametrize("padded", [False, True])
def test_grouped_equals_plain_logits_and_gradients(arch, padded):
    vocab, B, G, P, L = 24, 3, 4, 7, 5
    model = tiny_llama(vocab) if arch == "llama" else _qwen(vocab)
    g = torch.Generator().manual_seed(1)
    p_ids = torch.randint(vocab, (B, P), generator=g)
    p_mask = torch.ones(B, P, dtype=torch.bool)
    if padded:
        p_mask[0, :3] = False          # left padding, different per prompt
        p_mask[2, :1] = False
    resp = torch.randint(vocab, (B * G, L), generator=g)
    weights = torch.randn(B * G, L, vocab, generator=g)

    def run(fn):
        model.zero_grad()
        logits = fn()
        (logits * weights).sum().backward()
        return logits.detach(), {n: p.grad.clone() for n, p in model.named_parameters()}

    plain, g_plain = run(lambda: response_logits(model, p_ids.repeat_interleave(G, 0),
                                                 p_mask.repeat_interleave(G, 0), resp))
    shared, g_shared = run(lambda: grouped_response_logits(model, p_ids, p_mask, resp, G))
    torch.testing.assert_close(shared, plain, atol=1e-5, rtol=1e-5)
    for n in g_plain:
        torch.testing.assert_close(g_shared[n], g_plain[n], atol=1e-5, rtol=1e-4, msg=n)


def test_group_of_one_and_length_one():
    model = tiny_llama(16)
    p = torch.randint(16, (2, 4))
    m = torch.ones(2, 4, dtype=torch.bool)
    r = torch.randint(16, (2, 1))
    torch.testing.assert_close(grouped_response_logits(model, p, m, r, 1),
                               response_logits(model, p, m, r), atol=1e-5, rtol=1e-5)
    with pytest.raises(ValueError, match="group_size"):
        grouped_response_logits(model, p, m, torch.randint(16, (3, 2)), 2)
