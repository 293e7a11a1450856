"""num_threads: auto = 1 thread per process on CPU, torch's default on GPU; clear errors."""
import pytest
from omegaconf import OmegaConf

from wm.cli.fit import threads_for


@pytest.mark.parametrize("value, accel, want", [("auto", "cpu", 1), (None, "cpu", None),
                                                ("auto", "gpu", None), ("torch", "cpu", None),
                                                (3, "cpu", 3), ("2", "gpu", 2)])
def test_threads_for(value, accel, want):
    assert threads_for(OmegaConf.create({"num_threads": value,
                                         "trainer": {"accelerator": accel}})) == want


@pytest.mark.parametrize("bad", [0, "many"])
def test_bad_thread_count_names_the_option(bad):
    with pytest.raises(ValueError, match="num_threads"):
        threads_for(OmegaConf.create({"num_threads": bad, "trainer": {"accelerator": "cpu"}}))


def test_train_config_defaults_to_auto():
    from pathlib import Path

    text = (Path(__file__).resolve().parents[1] / "conf" / "train.yaml").read_text()
    assert "num_threads: auto" in text
