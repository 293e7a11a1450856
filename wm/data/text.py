"""Text-state DataModule for the language world models: ByteSized32, WebArena (WMA) and a toy world.

Paper: RLVR-World (NeurIPS 2025), Sec. 4.1 (ByteSized32-State-Prediction) and Sec. 4.2
(WMA/WebArena next-state descriptions). What is world-specific (reading records, prompts,
targets, changed labels) is a world object of ``wm.data.text_worlds`` built by ``_target_``;
this module only filters, batches and streams.

Item: ``{"prompt": str, "target": str, "record": dict, "changed": bool}``; the collate returns
``{"prompt": [str], "target": [str], "record": [dict], "changed": BoolTensor (B,)}`` and the
Task tokenizes.

Over-long prompts (when a tokenizer is connected) are handled deliberately, never by cutting
text blindly and never by truncating the target:

- ``overlong="shorten"`` (default): the world's shortened prompts are tried in order
  (ByteSized32 drops the in-context example; WebArena keeps the first lines of the
  accessibility tree that fit). A prompt still too long is skipped.
- ``overlong="skip"``: the record is skipped.
- A target whose tokens plus its EOS exceed ``max_response_tokens`` is always skipped: the
  budget counts the EOS, as the sampler's does (``wm.tasks.text``), so every kept target can be
  generated in full and stopped.

The counts (``records``, ``kept``, ``shortened``, ``dropped_overlong``, ``dropped_long_target``)
are in ``self.stats[split]`` and logged once per split at setup.

Departures: the validation split of ByteSized32 *is* the test set (as in the paper); a
random subset of it (``max_val_records``, seeded) can be used for speed; fewer than
``MIN_HELD_OUT`` held-out records are announced in one warning.
"""
from __future__ import annotations

import logging
import random

import lightning as L
import torch
from torch.utils.data import DataLoader

from wm.data.sampling import MIN_HELD_OUT, eval_batches, train_sampler
from wm.data.text_worlds import build_world

log = logging.getLogger(__name__)

#: fewer held-out records than this log a warning: model differences would be noise (issue #24)


def collate_text(items: list[dict]) -> dict:
    """List of items → ``{"prompt": [str], "target": [str], "record": [dict], "changed": (B,) bool}``."""
    return {
        "prompt": [it["prompt"] for it in items],
        "target": [it["target"] for it in items],
        "record": [it["record"] for it in items],
        "changed": torch.tensor([bool(it["changed"]) for it in items], dtype=torch.bool),
    }


class TextStateDataModule(L.LightningDataModule):
    """DataModule over a text world; see the module docstring.

    Args:
        world: a world object of ``wm.data.text_worlds`` (configs: ``_target_``), or its kind
            name "bytesized32" | "webarena" | "toy" (then ``path`` and ``world_kwargs`` build it,
            e.g. ``example_game``, ``val_path``, ``toy_train``).
        path: the world's data file or folder when ``world`` is a kind name.
        batch_size: items per batch.
        max_train_records / max_val_records: seeded random subsets (None = all).
        seed: for the subsets and splits.
        overlong: "shorten" | "skip" (see module docstring).
        num_workers: DataLoader workers.
        reserve_tokens: prompt tokens kept free for a chat template added by the Task.
    """

    def __init__(
        self,
        world="bytesized32",
        path: str | None = None,
        batch_size: int = 4,
        max_train_records: int | None = None,
        max_val_records: int | None = None,
        seed: int = 0,
        overlong: str = "shorten",
        num_workers: int = 0,
        reserve_tokens: int = 0,
        **world_kwargs,
    ):
        super().__init__()
        if overlong not in ("shorten", "skip"):
            raise ValueError(f"TextStateDataModule: overlong={overlong!r}; use 'shorten' or 'skip'")
        if isinstance(world, str):
            world = build_world(world, **({"path": path} if path else {}), **world_kwargs)
        elif world_kwargs or path:
            raise ValueError("TextStateDataModule: with a world object, give path and other world "
                             f"settings to the world itself (got {sorted(world_kwargs) or ['path']})")
        self.save_hyperparameters(ignore=["world", "path", "world_kwargs"])
        self.world, self.kind = world, world.name
        self.batch_size, self.seed, self.overlong = batch_size, seed, overlong
        self.tokenizer = None
        self.max_prompt_tokens: int | None = None
        self.max_response_tokens: int | None = None
        self.stats: dict[str, dict[str, int]] = {}
        self.train_items: list[dict] | None = None
        self.val_items: list[dict] | None = None
        self._records: tuple[list[dict], list[dict]] | None = None
        self._warned: int | None = None      # the held-out count last warned about

    def connect(self, tokenizer, max_prompt_tokens: int | None = None,
                max_response_tokens: int | None = None) -> None:
        """Run-time values from the model: enables the length checks at ``setup``."""
        self.tokenizer = tokenizer
        self.max_prompt_tokens = max_prompt_tokens
        self.max_response_tokens = max_response_tokens
        self.train_items = self.val_items = None  # re-filter with the new limits

    # -------------------------------------------------------------------------------- items

    def _n_tokens(self, text: str, limit: int | None) -> int:
        # byte-level BPE: a token covers at least one byte, so short texts need no tokenizing
        n_bytes = len(text.encode("utf-8"))
        if limit is not None and n_bytes <= limit:
            return n_bytes
        return len(self.tokenizer(text, add_special_tokens=False)["input_ids"])

    def _fits(self, text: str, limit: int | None) -> bool:
        return limit is None or self.tokenizer is None or self._n_tokens(text, limit) <= limit

    def _prompt_limit(self) -> int | None:
        if self.max_prompt_tokens is None:
            return None
        return self.max_prompt_tokens - self.hparams.reserve_tokens

    def _target_limit(self) -> int | None:
        """Target tokens allowed: the response budget less the EOS that ends the answer."""
        return None if self.max_response_tokens is None else self.max_response_tokens - 1

    def build_items(self, records: list[dict], split: str) -> list[dict]:
        """Items for ``records`` with the over-long policy applied; fills ``self.stats[split]``."""
        stats = {"records": len(records), "kept": 0, "shortened": 0, "dropped_overlong": 0,
                 "dropped_long_target": 0}
        items = []
        for record in records:
            target = self.world.target(record)
            if not self._fits(target, self._target_limit()):
                stats["dropped_long_target"] += 1
                continue
            prompt = None
            fits = lambda text: self._fits(text, self._prompt_limit())  # noqa: E731
            candidates = self.world.prompt_candidates(record, self.overlong == "shorten", fits)
            for k, candidate in enumerate(candidates):
                if self._fits(candidate, self._prompt_limit()):
                    prompt, stats["shortened"] = candidate, stats["shortened"] + (k > 0)
                    break
            if prompt is None:
                stats["dropped_overlong"] += 1
                continue
            items.append({"prompt": prompt, "target": target, "record": record,
                          "changed": self.world.changed(record)})
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
            self._records = self.world.load(self.seed, self.hparams.max_train_records)
        train, val = self._records
        if self.hparams.max_val_records is not None and len(val) > self.hparams.max_val_records:
            val = random.Random(self.seed).sample(val, self.hparams.max_val_records)
        if self.hparams.max_train_records is not None:
            train = train[: self.hparams.max_train_records]
        self.train_items = self.build_items(train, "train")
        self.val_items = self.build_items(val, "val")
        if 0 < len(self.val_items) < MIN_HELD_OUT and self._warned != len(self.val_items):
            self._warned = len(self.val_items)      # once, not again at each re-filter
            log.warning("TextStateDataModule[%s]: only %d held-out records (max_val_records=%s): "
                        "too few to compare models (fewer than %d); raise "
                        "data.datamodule.max_val_records (null = all) or give the world more "
                        "held-out records", self.kind, len(self.val_items),
                        self.hparams.max_val_records, MIN_HELD_OUT)

    def _loader(self, items: list[dict], train: bool) -> DataLoader:
        if not train:   # finite, sharded over ranks (each record scored by one rank)
            return DataLoader(items, batch_sampler=eval_batches(len(items), self.batch_size,
                                                                self.trainer),
                              collate_fn=collate_text, num_workers=self.hparams.num_workers)
        sampler = train_sampler(len(items), self.batch_size, self.seed, self.trainer)
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
