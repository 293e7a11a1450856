"""Clear errors for unreadable checkpoints: one line that names the file and says how to get a
good one, from every checkpoint load (tokenizer and language-model stage checkpoints)."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from stage_fixtures import save_tiny_tokenizer
from wm.language.presets import rebuild_from_checkpoint
from wm.utils.checkpoints import CheckpointError, load_checkpoint_file
from wm.vision.registry import load_tokenizer


def _random_bytes(path):
    path.write_bytes(np.random.default_rng(0).bytes(4096))
    return path


def _truncated(path):
    torch.save({"state_dict": {"w": torch.zeros(2000)}}, path)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    return path


def _empty(path):
    path.write_bytes(b"")
    return path


BAD = {"random_bytes": _random_bytes, "truncated": _truncated, "empty": _empty}


def _assert_one_line(err: Exception, path) -> None:
    msg = str(err)
    assert "\n" not in msg, msg
    assert str(path) in msg and "not a readable" in msg, msg


@pytest.mark.parametrize("kind", sorted(BAD))
@pytest.mark.parametrize("weights_only", [True, False])
def test_helper_names_the_file(tmp_path, kind, weights_only):
    path = BAD[kind](tmp_path / f"{kind}.ckpt")
    with pytest.raises(CheckpointError) as e:
        load_checkpoint_file(path, weights_only)
    _assert_one_line(e.value, path)
    assert isinstance(e.value, ValueError)


def test_helper_loads_a_good_file_and_passes_missing_files_through(tmp_path):
    torch.save({"x": torch.ones(3)}, tmp_path / "ok.ckpt")
    assert torch.equal(load_checkpoint_file(tmp_path / "ok.ckpt", True)["x"], torch.ones(3))
    with pytest.raises(FileNotFoundError, match="nope.ckpt"):
        load_checkpoint_file(tmp_path / "nope.ckpt", True)


class Custom:
    """An object ``weights_only`` loading refuses (a sound file it will not unpickle)."""


def test_helper_tells_a_weights_only_refusal_from_a_bad_file(tmp_path):
    path = tmp_path / "custom.ckpt"
    torch.save({"obj": Custom()}, path)
    with pytest.raises(CheckpointError) as e:
        load_checkpoint_file(path, True)
    msg = str(e.value)
    assert "\n" not in msg and str(path) in msg and "weights_only" in msg
    assert "not a readable" not in msg


@pytest.mark.parametrize("kind", sorted(BAD))
def test_load_tokenizer_names_the_file_and_the_tokenizer_stage(tmp_path, kind):
    path = BAD[kind](tmp_path / "tok.ckpt")
    with pytest.raises(ValueError) as e:
        load_tokenizer(path)
    _assert_one_line(e.value, path)
    assert "stage=tokenizer" in str(e.value)


def test_load_tokenizer_still_loads_a_good_checkpoint(tmp_path):
    tok = load_tokenizer(save_tiny_tokenizer(tmp_path / "tok.ckpt"))
    assert not tok.training


@pytest.mark.parametrize("kind", sorted(BAD))
def test_rebuild_from_checkpoint_names_the_file_and_the_stage(tmp_path, kind):
    path = BAD[kind](tmp_path / "lm.ckpt")
    with pytest.raises(ValueError) as e:
        rebuild_from_checkpoint(path)
    _assert_one_line(e.value, path)
    assert "stage=mle" in str(e.value)
