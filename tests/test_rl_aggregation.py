"""Loss aggregation, including exactness over uneven micro-batches (wm.rl.aggregation)."""
import pytest
import torch

from wm.rl.aggregation import AGGREGATIONS, aggregate, count_valid, masked_mean, masked_sum

LOSS = torch.tensor([[1.0, 2.0, 3.0], [4.0, 5.0, 6.0]])
MASK = torch.tensor([[True, True, False], [True, False, False]])


def test_hand_computed_modes():
    assert aggregate(LOSS, MASK, "token-mean").item() == pytest.approx(7 / 3)  # (1+2+4)/3
    assert aggregate(LOSS, MASK, "seq-mean-token-mean").item() == pytest.approx(2.75)  # (1.5+4)/2
    assert aggregate(LOSS, MASK, "seq-mean-token-sum").item() == pytest.approx(3.5)  # (3+4)/2
    assert aggregate(LOSS, MASK, "dr_grpo").item() == pytest.approx(7 / 6)  # 7/(2*3)
    assert aggregate(LOSS, MASK, "dr_grpo", max_len=7).item() == pytest.approx(0.5)  # 7/(2*7)


@pytest.mark.parametrize("mode", sorted(AGGREGATIONS))
def test_fully_masked_row_contributes_nothing(mode):
    loss = torch.cat([LOSS, torch.tensor([[100.0, float("nan"), float("inf")]])])
    mask = torch.cat([MASK, torch.zeros(1, 3, dtype=torch.bool)])
    assert aggregate(loss, mask, mode).item() == pytest.approx(aggregate(LOSS, MASK, mode).item())


@pytest.mark.parametrize("mode", sorted(AGGREGATIONS))
def test_all_masked_is_zero_not_nan(mode):
    out = aggregate(LOSS, torch.zeros_like(MASK), mode)
    assert out.item() == 0.0


def test_helpers():
    assert masked_sum(LOSS, MASK).item() == 7.0
    torch.testing.assert_close(masked_mean(LOSS, MASK, dim=-1), torch.tensor([1.5, 4.0]))
    torch.testing.assert_close(masked_mean(LOSS, torch.zeros_like(MASK), dim=-1), torch.zeros(2))
    tokens, seqs = count_valid(MASK)
    assert (tokens.item(), seqs.item()) == (3, 2)


def _micro_batches():
    """Micro-batch A: 3 rows padded to L=4; micro-batch B: 5 rows padded to L=6."""
    a = torch.arange(12, dtype=torch.float32).reshape(3, 4)          # values 0..11
    ma = torch.tensor([[1, 1, 1, 1], [1, 0, 0, 0], [1, 1, 0, 0]], dtype=torch.bool)
    b = 100 + torch.arange(30, dtype=torch.float32).reshape(5, 6)    # values 100..129
    mb = torch.tensor([[1, 1, 1, 1, 1, 1], [1, 1, 1, 1, 1, 0], [1, 1, 1, 0, 0, 0],
                       [1, 1, 1, 1, 1, 1], [1, 1, 1, 1, 1, 1]], dtype=torch.bool)
    return (a, ma), (b, mb)


def _full_batch_numbers():
    """Python sums over the valid entries, written from the masks above."""
    a_rows = [[0, 1, 2, 3], [4], [8, 9]]
    b_rows = [[100 + 6 * i + j for j in range(n)] for i, n in enumerate([6, 5, 3, 6, 6])]
    rows = a_rows + b_rows
    flat = [v for r in rows for v in r]
    token_mean = sum(flat) / len(flat)                         # 7 + 26 = 33 tokens
    seq_mean = sum(sum(r) / len(r) for r in rows) / len(rows)   # 8 sequences
    naive = (sum(sum(r) for r in a_rows) / 7 + sum(sum(r) for r in b_rows) / 26) / 2
    return token_mean, seq_mean, sum(flat), naive


def test_token_mean_sums_exactly_over_uneven_micro_batches():
    (a, ma), (b, mb) = _micro_batches()
    token_mean, _, _, naive = _full_batch_numbers()
    g_tokens = count_valid(ma)[0] + count_valid(mb)[0]
    assert g_tokens.item() == 33
    summed = (aggregate(a, ma, "token-mean", global_tokens=g_tokens)
              + aggregate(b, mb, "token-mean", global_tokens=g_tokens))
    assert summed.item() == pytest.approx(token_mean, rel=1e-6)
    # the verl bug: per-micro-batch token-mean divided by the number of accumulation steps
    buggy = (aggregate(a, ma, "token-mean") + aggregate(b, mb, "token-mean")) / 2
    assert buggy.item() == pytest.approx(naive, rel=1e-6)
    assert abs(buggy.item() - token_mean) > 1.0


def test_seq_modes_sum_exactly_over_micro_batches():
    (a, ma), (b, mb) = _micro_batches()
    _, seq_mean, total, _ = _full_batch_numbers()
    g_seqs = count_valid(ma)[1] + count_valid(mb)[1]
    summed = sum(aggregate(x, m, "seq-mean-token-mean", global_seqs=g_seqs)
                 for x, m in [(a, ma), (b, mb)])
    assert summed.item() == pytest.approx(seq_mean, rel=1e-6)
    summed = sum(aggregate(x, m, "dr_grpo", global_seqs=g_seqs, max_len=6)
                 for x, m in [(a, ma), (b, mb)])
    assert summed.item() == pytest.approx(total / (8 * 6), rel=1e-6)
    summed = sum(aggregate(x, m, "seq-mean-token-sum", global_seqs=8)
                 for x, m in [(a, ma), (b, mb)])
    assert summed.item() == pytest.approx(total / 8, rel=1e-6)


def test_gradient_weights_every_token_equally_across_micro_batches():
    (a, ma), (b, mb) = _micro_batches()
    a.requires_grad_(True)
    b.requires_grad_(True)
    (aggregate(a, ma, global_tokens=33) + aggregate(b, mb, global_tokens=33)).backward()
    assert torch.equal(a.grad, ma.float() / 33)
    assert torch.equal(b.grad, mb.float() / 33)


def test_bad_config():
    with pytest.raises(ValueError, match="seq-mean-token-mean"):
        aggregate(LOSS, MASK, "mean")
    with pytest.raises(ValueError, match="global_tokens"):
        aggregate(LOSS, MASK, global_tokens=0)
    with pytest.raises(ValueError, match=r"\(N, L\)"):
        aggregate(LOSS, MASK[:, :2])
