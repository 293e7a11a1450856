"""ActionTokenizer: the reference's 256-bin formula, round trip, constructors and errors."""
import json

import pytest
import torch

from wm.world.actions import ActionTokenizer


def test_formula_matches_reference_by_hand():
    tok = ActionTokenizer([-1.0, 0.0], [1.0, 10.0], bins=256)
    a = torch.tensor([[-1.0, 0.0], [1.0, 10.0], [0.0, 5.0], [-5.0, 99.0], [-0.999, 0.04]])
    # floor(clip((a-min)/(max-min+1e-8), 0, 1) * 256) clipped to 255
    expected = torch.tensor([[0, 0], [255, 255], [127, 127], [0, 255], [0, 1]])
    assert torch.equal(tok.encode(a), expected)
    assert tok.encode(a).dtype == torch.int64


def test_round_trip_within_half_a_bin():
    g = torch.Generator().manual_seed(0)
    low, high = torch.tensor([-0.4, -0.01, 0.0, -5.5]), torch.tensor([0.4, 0.004, 1.0, 22.1])
    tok = ActionTokenizer(low, high)
    a = low + torch.rand(3, 50, 4, generator=g) * (high - low)
    bins = tok.encode(a)
    assert bins.shape == (3, 50, 4) and bins.min() >= 0 and bins.max() <= 255
    half = (high - low) / 256 / 2
    assert ((tok.decode(bins) - a).abs() <= half * (1 + 1e-4) + 1e-7).all()


def test_from_file_reads_rt1_ranges(shared_data):
    path = shared_data / "rt1" / "action_ranges.json"
    tok = ActionTokenizer.from_file(path)
    assert tok.action_dim == 13 and tok.bins == 256
    ranges = json.loads(path.read_text())["ranges"]
    assert tok.low[0].item() == pytest.approx(ranges[0][0]) and tok.high[-1].item() == pytest.approx(ranges[-1][1])


def test_from_stats_and_from_file_stats_format(tmp_path):
    stats = {"action": {"min": [0.0, -1.0], "max": [2.0, 1.0], "mean": [1, 0], "std": [1, 1]}}
    p = tmp_path / "stats.json"
    p.write_text(json.dumps(stats))
    for tok in (ActionTokenizer.from_stats(stats), ActionTokenizer.from_file(p)):
        assert tok.encode(torch.tensor([2.0, 0.0])).tolist() == [255, 127]


def test_malformed_file_names_the_file(tmp_path):
    p = tmp_path / "bad_ranges.json"
    p.write_text(json.dumps({"ranges": [[0.0, 1.0, 2.0]]}))
    with pytest.raises(ValueError, match="bad_ranges.json"):
        ActionTokenizer.from_file(p)
    p.write_text("{not json")
    with pytest.raises(ValueError, match="bad_ranges.json"):
        ActionTokenizer.from_file(p)


def test_bad_inputs_raise():
    with pytest.raises(ValueError, match="high < low"):
        ActionTokenizer([1.0], [0.0])
    tok = ActionTokenizer([0.0, 0.0], [1.0, 1.0])
    with pytest.raises(ValueError, match=r"\(\.\.\., 2\)"):
        tok.encode(torch.zeros(3, 5))
    with pytest.raises(ValueError, match="bins must lie"):
        tok.decode(torch.tensor([0, 256]))
