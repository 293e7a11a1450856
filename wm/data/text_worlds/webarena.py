"""The WebArena (WMA) web-page world as a data source: records, prompts, SFT targets.

Paper: RLVR-World (NeurIPS 2025), Sec. 4.2 (WMA next-state descriptions). Records have no
official split here: ``val_path`` or a seeded ``val_fraction`` of ``path``. An over-long prompt
keeps the first lines of the accessibility tree that fit (whole lines; a note says it was cut).
Every record counts as changed.

``prompt_style="reference"``: the reference world model's exact prompt
(``wm.language.reference_prompts``, following thuml/RLVR-World ``lang_wm/webagent/agent/prompts/
jsons/state_prediction/rlvr_world_model_prompt.json``), never shortened (an over-long one is
dropped). The target (the record's ``next_state_tao``) is the same in both styles.
"""
from __future__ import annotations

import json
import random
from pathlib import Path
from typing import Callable, Iterator

from wm.data.text_worlds.records import check_fields
from wm.language.prompts import join_parts, web_prompt_parts
from wm.language.reference_prompts import web_reference_prompt
from wm.textworld.web_answer import format_target

PROMPT_STYLES = ("ours", "reference")

WEB_FIELDS = ("objective", "url", "current_action", "observation", "next_state_tao")
CUT_NOTE = "\n[... the rest of the accessibility tree is cut ...]"


class WebArenaWorld:
    """WMA records (``conf/data/webarena.yaml``).

    Args:
        path: a JSON file (list of records) (``data.path``).
        val_path: validation file (else ``val_fraction`` of ``path``, seeded).
        val_fraction: validation share when ``val_path`` is None.
        prompt_style: "ours" (default) or "reference" (the reference's exact prompt).
    """

    name = "webarena"

    def __init__(self, path: str | None = None, val_path: str | None = None,
                 val_fraction: float = 0.2, prompt_style: str = "ours"):
        if not path:
            raise ValueError("TextStateDataModule: the webarena world needs data.path (a JSON list "
                             "of WMA records)")
        if prompt_style not in PROMPT_STYLES:
            raise ValueError(f"WebArenaWorld: prompt_style={prompt_style!r}; use one of "
                             f"{PROMPT_STYLES} (data.datamodule.world.prompt_style)")
        self.path, self.val_path, self.val_fraction = Path(path), val_path, val_fraction
        self.prompt_style = prompt_style

    @staticmethod
    def _read(p: Path) -> list[dict]:
        with open(p) as fh:
            data = json.load(fh)
        if not isinstance(data, list):
            raise ValueError(f"{p}: expected a JSON list of WebArena records")
        return [check_fields(r, WEB_FIELDS, f"{p}[{i}]") for i, r in enumerate(data)]

    def load(self, seed: int, max_train_records: int | None) -> tuple[list[dict], list[dict]]:
        records = self._read(self.path)
        if self.val_path:
            return records, self._read(Path(self.val_path))
        order = list(range(len(records)))
        random.Random(seed).shuffle(order)
        n_val = max(1, round(self.val_fraction * len(records))) if len(records) > 1 else 0
        val_ids = set(order[:n_val])
        return ([r for i, r in enumerate(records) if i not in val_ids],
                [r for i, r in enumerate(records) if i in val_ids])

    def prompt_candidates(self, record: dict, shorten: bool,
                          fits: Callable[[str], bool]) -> Iterator[str]:
        """The full prompt, then (``shorten``) the longest prefix of whole tree lines that fits;
        the reference prompt alone for ``prompt_style="reference"``."""
        if self.prompt_style == "reference":
            yield web_reference_prompt(record)
            return
        yield join_parts(web_prompt_parts(record))
        if shorten:
            lines = record["observation"].splitlines()
            lo, hi = 0, len(lines) - 1  # binary search for the most lines that fit
            best = None
            while lo <= hi:
                mid = (lo + hi) // 2
                text = join_parts(web_prompt_parts(record, "\n".join(lines[:mid]) + CUT_NOTE))
                if fits(text):
                    best, lo = text, mid + 1
                else:
                    hi = mid - 1
            if best is not None:
                yield best

    def target(self, record: dict) -> str:
        return format_target(record)

    def changed(self, record: dict) -> bool:
        return True
