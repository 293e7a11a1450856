"""The toy lamp-and-counter world (``wm.textworld.toy``) as a data source, generated in code."""
from __future__ import annotations

from typing import Callable, Iterator

from wm.textworld.toy import toy_prompt, toy_records, toy_target


class ToyWorld:
    """``toy_train`` / ``toy_val`` seeded random transitions (``conf/data/toy_text.yaml``)."""

    name = "toy"

    def __init__(self, toy_train: int = 256, toy_val: int = 64):
        self.toy_train, self.toy_val = int(toy_train), int(toy_val)

    def load(self, seed: int, max_train_records: int | None) -> tuple[list[dict], list[dict]]:
        return toy_records(self.toy_train, seed), toy_records(self.toy_val, seed + 1)

    def prompt_candidates(self, record: dict, shorten: bool,
                          fits: Callable[[str], bool]) -> Iterator[str]:
        yield toy_prompt(record)

    def target(self, record: dict) -> str:
        return toy_target(record)

    def changed(self, record: dict) -> bool:
        return record["next_state"] != record["state"]
