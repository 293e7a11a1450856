"""A user's own text world from a JSON-lines file of transitions (``conf/data/text_jsonl.yaml``).

Not from the paper: RLVR-World's text world model (Sec. 4.1) on any object world, scored by the
ByteSized32 rewards (``wm.rewards.text_game``). One transition per line::

    {"state": {"lamp": {"on": false}}, "action": "switch on the lamp",
     "next_state": {"lamp": {"on": true}}, "id": "t01", "split": "train"}

``state``/``next_state``: ``{object name: {property: value}}`` (``wm.textworld.object_state``
says how they are scored and what *changed* means); ``action``: a non-empty string; optional
``id`` (a string or integer, unique in the file) and ``split`` (``"train"`` or ``"test"``).
Blank lines are skipped; a ``.gz`` file is read as gzip. Any other field, a missing one, a
value of the wrong form or a line that is not JSON is an error naming ``file:line`` and the
field (``DataError``: one line on the command line).

Split: with ``split`` on every line, those; with it on none, a held-out ``val_fraction`` (at
least one line) drawn by ``split_seed``, which is a setting of the data (part of the run's
identity), not the run's ``seed``, so ``eval.py`` holds out the same lines as the training.
Appending lines redraws that split: give every line a ``split`` to fix it. A file with ``split``
on some lines only is refused. Over-long prompts drop the in-context example first.
"""
from __future__ import annotations

import json
import random
from pathlib import Path
from typing import Callable, Iterator

from wm.data.episodes import DataError
from wm.data.text_worlds.records import open_text
from wm.language.object_prompts import object_prompt_parts
from wm.language.prompts import join_parts
from wm.textworld.object_state import object_changed, object_record, object_target

REQUIRED = ("state", "action", "next_state")
OPTIONAL = ("id", "split")
SPLITS = ("train", "test")
LINE_FORM = ('{"state": {...}, "action": "...", "next_state": {...}} with optional "id" and '
             '"split" ("train" | "test")')


def parse_line(line: str, where: str) -> dict:
    """One line -> its record (``object_record`` plus ``id``, ``split``, ``where``)."""
    try:
        raw = json.loads(line)
    except ValueError as err:
        raise DataError(f"{where}: not valid JSON ({err}); each line is {LINE_FORM}") from None
    if not isinstance(raw, dict):
        raise DataError(f"{where}: expected a JSON object {LINE_FORM}, got {type(raw).__name__}")
    missing = [f for f in REQUIRED if f not in raw]
    if missing:
        raise DataError(f"{where}: missing field(s) {missing}; each line is {LINE_FORM}")
    unknown = sorted(set(raw) - set(REQUIRED) - set(OPTIONAL))
    if unknown:
        raise DataError(f"{where}: unknown field(s) {unknown}; allowed: "
                        f"{list(REQUIRED + OPTIONAL)}")
    action = raw["action"]
    if not isinstance(action, str) or not action.strip():
        raise DataError(f"{where}: field 'action' must be a non-empty string, got {action!r}")
    if "split" in raw and raw["split"] not in SPLITS:
        raise DataError(f"{where}: field 'split' is {raw['split']!r}; use one of {SPLITS}")
    if "id" in raw and (isinstance(raw["id"], bool) or not isinstance(raw["id"], (str, int))):
        raise DataError(f"{where}: field 'id' must be a string or an integer, got {raw['id']!r}")
    try:
        record = object_record(raw["state"], action, raw["next_state"])
    except ValueError as err:
        raise DataError(f"{where}: {err}") from None
    return {**record, "id": raw.get("id"), "split": raw.get("split"), "where": where}


def read_transitions(path: Path) -> list[dict]:
    """Every record of a JSON-lines file, checked line by line (see the module docstring)."""
    if not path.is_file():
        raise DataError(f"data.path={path}: no such file (a JSON-lines file of transitions, "
                        "docs/data.md \"Bring your own text world\")")
    records, ids = [], {}
    with open_text(path) as fh:
        for i, line in enumerate(fh, 1):
            if not line.strip():
                continue
            rec = parse_line(line, f"{path}:{i}")
            if rec["id"] is not None:
                if rec["id"] in ids:
                    raise DataError(f"{path}:{i}: field 'id' {rec['id']!r} is also on line "
                                    f"{ids[rec['id']]}; ids must be unique")
                ids[rec["id"]] = i
            records.append(rec)
    if not records:
        raise DataError(f"data.path={path}: the file holds no transitions")
    return records


def split_records(records: list[dict], val_fraction: float, seed: int,
                  path: Path) -> tuple[list[dict], list[dict]]:
    """(train, test): by the ``split`` fields, or a seeded held-out ``val_fraction``."""
    marked = [r for r in records if r["split"] is not None]
    if marked and len(marked) < len(records):
        first = next(r for r in records if r["split"] is None)
        raise DataError(f"{first['where']}: no field 'split', but {marked[0]['where']} has one; "
                        "give every line a split, or none (then val_fraction holds out lines)")
    if marked:
        train = [r for r in records if r["split"] == "train"]
        test = [r for r in records if r["split"] == "test"]
        for name, part in (("train", train), ("test", test)):
            if not part:
                raise DataError(f"data.path={path}: no line has \"split\": \"{name}\"; both "
                                "splits need a transition")
        return train, test
    if len(records) < 2:
        raise DataError(f"data.path={path}: one transition cannot be split into train and test; "
                        "add lines")
    order = list(range(len(records)))
    random.Random(seed).shuffle(order)
    n_test = min(len(records) - 1, max(1, round(val_fraction * len(records))))
    held = set(order[:n_test])
    return ([r for i, r in enumerate(records) if i not in held],
            [r for i, r in enumerate(records) if i in held])


class JsonlTextWorld:
    """A user's JSON-lines transitions (``conf/data/text_jsonl.yaml``; module docstring).

    Args:
        path: the JSON-lines file (``data.path``).
        val_fraction: share held out for test when the lines have no ``split``, in (0, 1).
        split_seed: draws that held-out share (not the run's seed; see the module docstring).
        description: free text about the world, shown in every prompt (null = none).
        in_context_example: show the first training transition that changes the state, with
            its answer, in every prompt (dropped first when a prompt is too long).
    """

    name = "text_jsonl"

    def __init__(self, path: str | None = None, val_fraction: float = 0.2, split_seed: int = 0,
                 description: str | None = None, in_context_example: bool = True):
        if not path:
            raise ValueError("TextStateDataModule: the text_jsonl world needs data.path (a "
                             "JSON-lines file of transitions)")
        if not 0.0 < float(val_fraction) < 1.0:
            raise ValueError(f"data.datamodule.world.val_fraction={val_fraction}: use a share in "
                             "(0, 1) of the lines to hold out for test")
        self.path, self.val_fraction, self.split_seed = Path(path), float(val_fraction), split_seed
        self.description, self.in_context_example = description, bool(in_context_example)
        self._example: dict | None = None

    def load(self, seed: int, max_train_records: int | None) -> tuple[list[dict], list[dict]]:
        """(train, test) records; ``seed`` is not used (``split_seed`` draws the split)."""
        train, test = split_records(read_transitions(self.path), self.val_fraction,
                                    self.split_seed, self.path)
        if self.in_context_example:
            self._example = next((r for r in train if object_changed(r)), None)
        return train, test

    def prompt_candidates(self, record: dict, shorten: bool,
                          fits: Callable[[str], bool]) -> Iterator[str]:
        """The full prompt, then (``shorten``) the prompt without the in-context example. The
        example's own prompt never shows it."""
        example = self._example if self._example is not record else None
        parts = object_prompt_parts(record, example, self.description)
        yield join_parts(parts)
        if shorten and parts["example"]:
            yield join_parts({**parts, "example": ""})

    def target(self, record: dict) -> str:
        return object_target(record)

    def changed(self, record: dict) -> bool:
        return object_changed(record)


def main(argv: list[str] | None = None) -> None:
    """``python -m wm.data.text_worlds.jsonl FILE``: check a file as ``data=text_jsonl`` reads it
    (the first bad line is one line naming it), print its split and one prompt with its answer."""
    import argparse

    ap = argparse.ArgumentParser(description=main.__doc__)
    ap.add_argument("path", help="a JSON-lines file of transitions")
    ap.add_argument("--val-fraction", type=float, default=0.2)
    ap.add_argument("--split-seed", type=int, default=0)
    args = ap.parse_args(argv)
    world = JsonlTextWorld(args.path, args.val_fraction, args.split_seed,
                           in_context_example=False)
    try:
        train, test = world.load(0, None)
    except DataError as err:
        raise SystemExit(f"DataError: {err}") from None
    for name, part in (("train", train), ("test", test)):
        print(f"{name}: {len(part)} transitions, {sum(map(world.changed, part))} change the state")
    prompt = next(world.prompt_candidates(train[0], False, bool))
    print(f"\n--- prompt of {train[0]['where']} ---\n{prompt}--- its answer ---\n"
          f"{world.target(train[0])}")


if __name__ == "__main__":
    main()
