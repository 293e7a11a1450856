"""Text-state DataModule for the language world models: ByteSized32, WebArena (WMA) and a toy world.

Paper: RLVR-World (NeurIPS 2025), Sec. 4.1 (ByteSized32-State-Prediction: train on all
transitions whose (game, state_id) is not in the 2,954 test transitions, evaluate on the test
set) and Sec. 4.2 (WMA/WebArena next-state descriptions).

Item: ``{"prompt": str, "target": str, "record": dict, "changed": bool}``; the collate returns
``{"prompt": [str], "target": [str], "record": [dict], "changed": BoolTensor (B,)}`` and the
Task tokenizes. ``changed`` (ByteSized32): ``state_id`` is in ``dynamic_states.json[game]``
``["action_change"]`` or ``["time_change"]``; toy: the action changes the state; web: True.

Over-long prompts (when a tokenizer is connected) are handled deliberately, never by cutting
text blindly and never by truncating the target:

- ``overlong="shorten"`` (default): ByteSized32 drops the in-context example; WebArena keeps
  the first lines of the accessibility tree that fit (whole lines; a note says it was cut).
  A prompt still too long is skipped.
- ``overlong="skip"``: the record is skipped.
- A target longer than ``max_response_tokens`` is always skipped.

The counts (``records``, ``kept``, ``shortened``, ``dropped_overlong``, ``dropped_long_target``)
are in ``self.stats[split]`` and logged once per split at setup.

Departures: the validation split of ByteSized32 *is* the test set (as in the paper); a
random subset of it (``max_val_records``, seeded) can be used for speed. WebArena records have
no official split here: ``val_path`` or a seeded ``val_fraction`` of ``path``.
"""
from __future__ import annotations

import gzip
import json
import logging
import random
from pathlib import Path
from typing import Any

import lightning as L
import torch
from torch.utils.data import DataLoader

from wm.data.sampling import train_sampler
from wm.language.prompts import (
    join_parts,
    text_game_prompt_parts,
    web_prompt_parts,
)
from wm.rewards import text_game, toy, web

log = logging.getLogger(__name__)

KINDS = ("bytesized32", "webarena", "toy")
BS32_FIELDS = ("game", "state_id", "current_state", "action_state", "tick_state",
               "current_score_state", "next_score_state")
WEB_FIELDS = ("objective", "url", "current_action", "observation", "next_state_tao")
_CUT_NOTE = "\n[... the rest of the accessibility tree is cut ...]"


def _open_text(path: Path):
    return gzip.open(path, "rt", encoding="utf-8") if path.suffix == ".gz" else open(path, encoding="utf-8")


def find_file(folder: Path, name: str) -> Path:
    """``folder/name`` or ``folder/name.gz``; a clear error when neither exists."""
    for candidate in (folder / name, folder / f"{name}.gz"):
        if candidate.is_file():
            return candidate
    raise FileNotFoundError(f"ByteSized32 data: neither {folder / name} nor {folder / name}.gz exists")


def _check_fields(record: Any, fields: tuple[str, ...], where: str) -> dict:
    if not isinstance(record, dict):
        raise ValueError(f"{where}: expected a JSON object, got {type(record).__name__}")
    missing = [f for f in fields if f not in record]
    if missing:
        raise KeyError(f"{where}: record is missing fields {missing} (see data/README.md)")
    return record


def read_jsonl(path: Path, fields: tuple[str, ...] = BS32_FIELDS) -> list[dict]:
    """All records of a (gzipped) JSON-lines file, checking ``fields``."""
    out = []
    with _open_text(path) as fh:
        for i, line in enumerate(fh, 1):
            if line.strip():
                try:
                    rec = json.loads(line)
                except ValueError as err:
                    raise ValueError(f"{path}:{i}: not valid JSON ({err})") from None
                out.append(_check_fields(rec, fields, f"{path}:{i}"))
    return out


def bytesized32_train(
    path: Path, exclude: set[tuple[str, int]], limit: int | None, seed: int
) -> list[dict]:
    """Transitions of ``all_transitions.jsonl(.gz)`` whose (game, state_id) is not in ``exclude``.

    With ``limit``, a seeded random subset; only the chosen lines are parsed (the file holds
    76k records).
    """
    with _open_text(path) as fh:
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
        _check_fields(rec, BS32_FIELDS, f"{path}:{i + 1}")
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


def collate_text(items: list[dict]) -> dict:
    """List of items → ``{"prompt": [str], "target": [str], "record": [dict], "changed": (B,) bool}``."""
    return {
        "prompt": [it["prompt"] for it in items],
        "target": [it["target"] for it in items],
        "record": [it["record"] for it in items],
        "changed": torch.tensor([bool(it["changed"]) for it in items], dtype=torch.bool),
    }


class TextStateDataModule(L.LightningDataModule):
    """DataModule over ByteSized32, WebArena (WMA) or the toy world; see the module docstring.

    Args:
        kind: "bytesized32" | "webarena" | "toy".
        path: ByteSized32: folder with test.jsonl(.gz), all_transitions.jsonl(.gz),
            dynamic_states.json, examples.json. WebArena: a JSON file (list of records). Toy: unused.
        batch_size: items per batch.
        max_train_records / max_val_records: seeded random subsets (None = all).
        seed: for the subsets and splits.
        example_game: ByteSized32 in-context example: "action" | "tick" (from examples.json)
            or None for no example.
        overlong: "shorten" | "skip" (see module docstring).
        val_path: WebArena validation file (else ``val_fraction`` of ``path``).
        val_fraction: WebArena validation share when ``val_path`` is None.
        toy_train / toy_val: number of toy transitions.
        num_workers: DataLoader workers.
        reserve_tokens: prompt tokens kept free for a chat template added by the Task.
    """

    def __init__(
        self,
        kind: str = "bytesized32",
        path: str | None = None,
        batch_size: int = 4,
        max_train_records: int | None = None,
        max_val_records: int | None = None,
        seed: int = 0,
        example_game: str | None = "action",
        overlong: str = "shorten",
        val_path: str | None = None,
        val_fraction: float = 0.2,
        toy_train: int = 256,
        toy_val: int = 64,
        num_workers: int = 0,
        reserve_tokens: int = 0,
    ):
        super().__init__()
        if kind not in KINDS:
            raise ValueError(f"TextStateDataModule: kind={kind!r}; use one of {KINDS}")
        if overlong not in ("shorten", "skip"):
            raise ValueError(f"TextStateDataModule: overlong={overlong!r}; use 'shorten' or 'skip'")
        if kind != "toy" and not path:
            raise ValueError(f"TextStateDataModule: kind={kind!r} needs data.path")
        self.save_hyperparameters()
        self.kind, self.path = kind, Path(path) if path else None
        self.batch_size, self.seed, self.overlong = batch_size, seed, overlong
        self.tokenizer = None
        self.max_prompt_tokens: int | None = None
        self.max_response_tokens: int | None = None
        self.stats: dict[str, dict[str, int]] = {}
        self.train_items: list[dict] | None = None
        self.val_items: list[dict] | None = None
        self._example: dict | None = None
        self._dynamic: dict = {}
        self._records: tuple[list[dict], list[dict]] | None = None

    def connect(self, tokenizer, max_prompt_tokens: int | None = None,
                max_response_tokens: int | None = None) -> None:
        """Run-time values from the model: enables the length checks at ``setup``."""
        self.tokenizer = tokenizer
        self.max_prompt_tokens = max_prompt_tokens
        self.max_response_tokens = max_response_tokens
        self.train_items = self.val_items = None  # re-filter with the new limits

    # -------------------------------------------------------------------------------- loading

    def _load_records(self) -> tuple[list[dict], list[dict]]:
        hp = self.hparams
        if self.kind == "toy":
            return toy.toy_records(hp.toy_train, self.seed), toy.toy_records(hp.toy_val, self.seed + 1)
        if self.kind == "webarena":
            return self._load_web()
        folder = self.path
        if not folder.is_dir():
            raise FileNotFoundError(f"ByteSized32 data: {folder} is not a folder (data.path)")
        with open(folder / "dynamic_states.json") as fh:
            self._dynamic = json.load(fh)
        if hp.example_game is not None:
            with open(folder / "examples.json") as fh:
                examples = json.load(fh)
            from wm.language.prompts import example_record

            self._example = example_record(examples, hp.example_game)
        test_path = find_file(folder, "test.jsonl")
        val = read_jsonl(test_path)
        exclude = {(r["game"], r["state_id"]) for r in val}
        train = bytesized32_train(
            find_file(folder, "all_transitions.jsonl"), exclude, hp.max_train_records, self.seed
        )
        return train, val

    def _load_web(self) -> tuple[list[dict], list[dict]]:
        def read(p: Path) -> list[dict]:
            with open(p) as fh:
                data = json.load(fh)
            if not isinstance(data, list):
                raise ValueError(f"{p}: expected a JSON list of WebArena records")
            return [_check_fields(r, WEB_FIELDS, f"{p}[{i}]") for i, r in enumerate(data)]

        records = read(self.path)
        if self.hparams.val_path:
            return records, read(Path(self.hparams.val_path))
        order = list(range(len(records)))
        random.Random(self.seed).shuffle(order)
        n_val = max(1, round(self.hparams.val_fraction * len(records))) if len(records) > 1 else 0
        val_ids = set(order[:n_val])
        return ([r for i, r in enumerate(records) if i not in val_ids],
                [r for i, r in enumerate(records) if i in val_ids])

    # -------------------------------------------------------------------------------- items

    def _n_tokens(self, text: str, limit: int | None) -> int:
        # byte-level BPE: a token covers at least one byte, so short texts need no tokenizing
        n_bytes = len(text.encode("utf-8"))
        if limit is not None and n_bytes <= limit:
            return n_bytes
        return len(self.tokenizer(text, add_special_tokens=False)["input_ids"])

    def _fits(self, text: str, limit: int | None) -> bool:
        return limit is None or self.tokenizer is None or self._n_tokens(text, limit) <= limit

    def _prompt_candidates(self, record: dict):
        """Yield the full prompt, then shortened versions (for ``overlong="shorten"``)."""
        if self.kind == "toy":
            yield toy.toy_prompt(record)
        elif self.kind == "bytesized32":
            parts = text_game_prompt_parts(record, self._example)
            yield join_parts(parts)
            if self.overlong == "shorten" and parts["example"]:
                yield join_parts({**parts, "example": ""})
        else:
            yield join_parts(web_prompt_parts(record))
            if self.overlong == "shorten":
                lines = record["observation"].splitlines()
                lo, hi = 0, len(lines) - 1  # binary search for the most lines that fit
                best = None
                while lo <= hi:
                    mid = (lo + hi) // 2
                    text = join_parts(web_prompt_parts(record, "\n".join(lines[:mid]) + _CUT_NOTE))
                    if self._fits(text, self._prompt_limit()):
                        best, lo = text, mid + 1
                    else:
                        hi = mid - 1
                if best is not None:
                    yield best

    def _prompt_limit(self) -> int | None:
        if self.max_prompt_tokens is None:
            return None
        return self.max_prompt_tokens - self.hparams.reserve_tokens

    def _target(self, record: dict) -> str:
        if self.kind == "toy":
            return toy.toy_target(record)
        if self.kind == "bytesized32":
            return text_game.format_target(record)
        return web.format_target(record)

    def _changed(self, record: dict) -> bool:
        if self.kind == "toy":
            return record["next_state"] != record["state"]
        if self.kind == "bytesized32":
            return changed_label(record, self._dynamic, str(self.path / "dynamic_states.json"))
        return True

    def build_items(self, records: list[dict], split: str) -> list[dict]:
        """Items for ``records`` with the over-long policy applied; fills ``self.stats[split]``."""
        stats = {"records": len(records), "kept": 0, "shortened": 0, "dropped_overlong": 0,
                 "dropped_long_target": 0}
        items = []
        for record in records:
            target = self._target(record)
            if not self._fits(target, self.max_response_tokens):
                stats["dropped_long_target"] += 1
                continue
            prompt = None
            for k, candidate in enumerate(self._prompt_candidates(record)):
                if self._fits(candidate, self._prompt_limit()):
                    prompt, stats["shortened"] = candidate, stats["shortened"] + (k > 0)
                    break
            if prompt is None:
                stats["dropped_overlong"] += 1
                continue
            items.append({"prompt": prompt, "target": target, "record": record,
                          "changed": self._changed(record)})
        stats["kept"] = len(items)
        self.stats[split] = stats
        checked = "" if self.tokenizer is not None else " (no tokenizer connected: lengths not checked)"
        log.info("TextStateDataModule[%s/%s]: %s%s", self.kind, split, stats, checked)
        if stats["kept"] == 0 and stats["records"]:
            raise ValueError(
                f"TextStateDataModule[{self.kind}/{split}]: every record was dropped as too long "
                f"({stats}); raise max_prompt_tokens / max_response_tokens"
            )
        return items

    def setup(self, stage: str | None = None) -> None:
        if self.train_items is not None:
            return
        if self._records is None:  # files are read once; connect() only re-filters
            self._records = self._load_records()
        train, val = self._records
        if self.hparams.max_val_records is not None and len(val) > self.hparams.max_val_records:
            val = random.Random(self.seed).sample(val, self.hparams.max_val_records)
        if self.hparams.max_train_records is not None:
            train = train[: self.hparams.max_train_records]
        self.train_items = self.build_items(train, "train")
        self.val_items = self.build_items(val, "val")

    def _loader(self, items: list[dict], train: bool) -> DataLoader:
        sampler = train_sampler(len(items), self.batch_size, self.seed, self.trainer) if train \
            else None
        return DataLoader(items, batch_size=self.batch_size, sampler=sampler,
                          collate_fn=collate_text, num_workers=self.hparams.num_workers)

    def train_dataloader(self) -> DataLoader:
        self.setup()
        return self._loader(self.train_items, train=True)

    def val_dataloader(self) -> DataLoader:
        self.setup()
        return self._loader(self.val_items, train=False)

    def test_dataloader(self) -> DataLoader:
        return self.val_dataloader()
