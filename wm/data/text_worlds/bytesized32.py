"""The ByteSized32 text world as a data source: records, prompts, SFT targets, changed labels.

Paper: RLVR-World (NeurIPS 2025), Sec. 4.1 (ByteSized32-State-Prediction: train on all
transitions whose (game, state_id) is not in the 2,954 test transitions, evaluate on the test
set). ``changed``: ``state_id`` is in ``dynamic_states.json[game]["action_change"]`` or
``["time_change"]``. Over-long prompts drop the in-context example first.

``prompt_style="reference"``: the reference's exact prompt and answer form
(``wm.language.reference_prompts``, following thuml/RLVR-World
``lang_wm/data_process/text_game/process_jsonl.py``): both dishwasher examples, the game rules
when ``rules_path`` names GPT-simulator's ``rules/human_written_rules`` folder (without it, the
reference's no-rule variant, with a warning), targets via ``format_target(style="reference")``.
That prompt is never shortened (an over-long one is dropped, as the reference filters them).
"""
from __future__ import annotations

import json
import logging
import random
from pathlib import Path
from typing import Callable, Iterator

from wm.data.text_worlds.records import check_fields, find_file, open_text, read_jsonl
from wm.language.prompts import example_record, join_parts, text_game_prompt_parts
from wm.language.reference_prompts import (bytesized32_reference_prompt, load_reference_rules,
                                           reference_examples)
from wm.textworld.game_answer import STYLES, format_target

log = logging.getLogger(__name__)

BS32_FIELDS = ("game", "state_id", "current_state", "action_state", "tick_state",
               "current_score_state", "next_score_state")


def bytesized32_train(
    path: Path, exclude: set[tuple[str, int]], limit: int | None, seed: int
) -> list[dict]:
    """Transitions of ``all_transitions.jsonl(.gz)`` whose (game, state_id) is not in ``exclude``.

    With ``limit``, a seeded random subset; only the chosen lines are parsed (the file holds
    76k records).
    """
    with open_text(path) as fh:
        lines = [ln for ln in fh if ln.strip()]
    order = list(range(len(lines)))
    if limit is not None:
        random.Random(seed).shuffle(order)
    out = []
    for i in order:
        try:
            rec = json.loads(lines[i])
        except ValueError as err:
            raise ValueError(f"{path}:{i + 1}: not valid JSON ({err})") from None
        check_fields(rec, BS32_FIELDS, f"{path}:{i + 1}")
        if (rec["game"], rec["state_id"]) in exclude:
            continue
        out.append(rec)
        if limit is not None and len(out) >= limit:
            break
    return out


def changed_label(record: dict, dynamic_states: dict, where: str = "dynamic_states.json") -> bool:
    game = record["game"]
    if game not in dynamic_states:
        raise KeyError(f"{where}: no entry for game {game!r}")
    entry = dynamic_states[game]
    return record["state_id"] in entry.get("action_change", ()) or record["state_id"] in entry.get(
        "time_change", ()
    )


class ByteSized32World:
    """ByteSized32-State-Prediction records (``conf/data/bytesized32.yaml``).

    Args:
        path: folder with test.jsonl(.gz), all_transitions.jsonl(.gz), dynamic_states.json,
            examples.json (``data.path``).
        example_game: in-context example, "action" | "tick" (from examples.json) or None
            (prompt_style "ours" only; the reference always shows its two examples).
        prompt_style: "ours" (default) or "reference" (the reference's exact prompt and answer).
        rules_path: GPT-simulator's ``rules/human_written_rules`` folder (object_rules.json,
            action_rules.json, score_rules.json) for the reference prompt; None leaves the rules
            out (the released models were trained with them).
    """

    name = "bytesized32"

    def __init__(self, path: str | None = None, example_game: str | None = "action",
                 prompt_style: str = "ours", rules_path: str | None = None):
        if not path:
            raise ValueError("TextStateDataModule: the bytesized32 world needs data.path (a folder "
                             "with test.jsonl, all_transitions.jsonl, dynamic_states.json, "
                             "examples.json)")
        if prompt_style not in STYLES:
            raise ValueError(f"ByteSized32World: prompt_style={prompt_style!r}; use one of "
                             f"{STYLES} (data.datamodule.world.prompt_style)")
        self.path, self.example_game = Path(path), example_game
        self.prompt_style, self.rules_path = prompt_style, rules_path
        self._dynamic: dict = {}
        self._example: dict | None = None
        self._reference: tuple[dict, dict | None, dict | None] | None = None  # examples, rules

    def load(self, seed: int, max_train_records: int | None) -> tuple[list[dict], list[dict]]:
        """(train, val): val is the test set; train all other transitions (a seeded subset)."""
        folder = self.path
        if not folder.is_dir():
            raise FileNotFoundError(f"ByteSized32 data: {folder} is not a folder (data.path)")
        with open(folder / "dynamic_states.json") as fh:
            self._dynamic = json.load(fh)
        if self.prompt_style == "reference":
            with open(folder / "examples.json") as fh:
                action, tick = reference_examples(json.load(fh), self._dynamic)
            rules = load_reference_rules(self.rules_path) if self.rules_path else None
            if rules is None:
                log.warning("ByteSized32World: prompt_style=reference without rules_path: the "
                            "prompts leave out the game rules the released models were trained "
                            "with (set data.datamodule.world.rules_path)")
            self._reference = (action, tick, rules)
        elif self.example_game is not None:
            with open(folder / "examples.json") as fh:
                self._example = example_record(json.load(fh), self.example_game)
        val = read_jsonl(find_file(folder, "test.jsonl"), BS32_FIELDS)
        exclude = {(r["game"], r["state_id"]) for r in val}
        train = bytesized32_train(find_file(folder, "all_transitions.jsonl"), exclude,
                                  max_train_records, seed)
        return train, val

    def prompt_candidates(self, record: dict, shorten: bool,
                          fits: Callable[[str], bool]) -> Iterator[str]:
        """The full prompt, then (``shorten``) the prompt without the in-context example; the
        reference prompt alone for ``prompt_style="reference"``."""
        if self.prompt_style == "reference":
            if self._reference is None:
                raise RuntimeError("ByteSized32World: call load() before building prompts")
            yield bytesized32_reference_prompt(record, *self._reference)
            return
        parts = text_game_prompt_parts(record, self._example)
        yield join_parts(parts)
        if shorten and parts["example"]:
            yield join_parts({**parts, "example": ""})

    def target(self, record: dict) -> str:
        return format_target(record, style=self.prompt_style)

    def changed(self, record: dict) -> bool:
        return changed_label(record, self._dynamic, str(self.path / "dynamic_states.json"))
