"""GRPO loop settings: one typed, validated dataclass; errors name the option; docs follow it."""
from pathlib import Path

import pytest

from wm.stages.grpo_settings import GRPOSettings, field_docs, settings_table

DOCS = Path(__file__).resolve().parents[1] / "docs" / "stages.md"


def test_every_field_is_documented_and_the_docs_table_is_current():
    docs = field_docs()
    assert set(docs) == set(GRPOSettings.__dataclass_fields__), "a field lacks its docstring"
    text = DOCS.read_text()
    table = text.split("<!-- grpo-settings:begin -->\n")[1].split("\n<!-- grpo-settings:end -->")[0]
    assert table == settings_table(), "regenerate the table in docs/stages.md from settings_table()"


def test_unknown_option_names_the_valid_ones():
    with pytest.raises(ValueError, match=r"stage\.module\.grup_size.*group_size"):
        GRPOSettings.from_options({"grup_size": 4})


@pytest.mark.parametrize("options, name", [({"group_size": 1}, "group_size"),
                                           ({"temperature": 0.0}, "temperature"),
                                           ({"micro_batch_size": 0}, "micro_batch_size"),
                                           ({"top_p": 0.9}, "top_p"),
                                           ({"top_k": 50}, "top_k")])
def test_bad_values_name_the_option(options, name):
    with pytest.raises(ValueError, match=rf"stage\.module\.{name}="):
        GRPOSettings.from_options(options)


def test_config_defaults_are_valid():
    assert GRPOSettings.from_options({"group_size": 5, "val_top_k": 100}).val_top_k == 100
