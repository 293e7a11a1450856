"""VocabLayout: the reference's id numbers and the code <-> id maps."""
from types import SimpleNamespace

import pytest
import torch

from wm.world.vocab import VocabLayout


def test_reference_single_step_vocabulary():
    tok = SimpleNamespace(codebook_sizes=(4375, 4375), shared_codebook=True)
    v = VocabLayout.from_tokenizer(tok, action_dim=13)
    assert (v.context_offset, v.future_offset, v.action_offset) == (0, 0, 4375)
    assert v.action_range() == (4375, 4631)
    assert (v.bos_id, v.eos_id, v.pad_id, v.vocab_size) == (4631, 4632, 4632, 4633)
    assert v.future_visual_range() == (0, 4375)


def test_reference_multi_step_vocabulary():
    tok = SimpleNamespace(codebook_sizes=(4375, 4375), shared_codebook=False)
    v = VocabLayout.from_tokenizer(tok)
    assert v.vocab_size == 9008
    assert v.future_visual_range() == (4375, 8750)
    assert v.action_range() == (8750, 9006)
    assert (v.bos_id, v.eos_id) == (9006, 9007)


def test_maps_round_trip_and_check_ranges():
    v = VocabLayout(10, 6, shared_codebook=False, action_bins=4, action_dim=2)
    codes = torch.tensor([[0, 5], [3, 1]])
    assert v.future_ids(codes).tolist() == [[10, 15], [13, 11]]
    assert torch.equal(v.future_codes_of(v.future_ids(codes)), codes)
    assert v.action_ids(torch.tensor([[0, 3]])).tolist() == [[16, 19]]
    assert torch.equal(v.action_bins_of(torch.tensor([16, 19])), torch.tensor([0, 3]))
    assert v.context_ids(torch.tensor([9])).tolist() == [9]
    with pytest.raises(ValueError, match=r"future codes must lie in \[0, 6\)"):
        v.future_ids(torch.tensor([6]))
    with pytest.raises(ValueError, match="action-dim|\\(\\.\\.\\., 2\\)"):
        v.action_ids(torch.tensor([0, 1, 2]))
    with pytest.raises(ValueError, match="future-frame ids"):
        v.future_codes_of(torch.tensor([3]))  # a context id


def test_bad_tokenizer_and_config():
    with pytest.raises(ValueError, match="codebook_sizes"):
        VocabLayout.from_tokenizer(object())
    with pytest.raises(ValueError, match="shared_codebook"):
        VocabLayout(10, 12, shared_codebook=True)
