"""Text worlds as data sources, one object per world, built by ``_target_`` from
``conf/data/*.yaml`` (``data.datamodule.world``), like the video sources.

A world object has ``name``, ``load(seed, max_train_records) -> (train, val)`` records,
``prompt_candidates(record, shorten, fits)`` (the full prompt, then shortened versions),
``target(record)`` (the SFT answer, written by the world's answer format in ``wm.textworld``)
and ``changed(record)`` (does the action change the state).
"""
from __future__ import annotations

WORLDS = {
    "bytesized32": "wm.data.text_worlds.bytesized32.ByteSized32World",
    "webarena": "wm.data.text_worlds.webarena.WebArenaWorld",
    "toy": "wm.data.text_worlds.toy.ToyWorld",
    "text_jsonl": "wm.data.text_worlds.jsonl.JsonlTextWorld",
}


def build_world(kind: str, **kwargs):
    """The world object for a kind name (Python convenience; configs use ``_target_``)."""
    import importlib

    if kind not in WORLDS:
        raise ValueError(f"TextStateDataModule: kind={kind!r}; use one of {tuple(WORLDS)} or pass "
                         "a world object (wm.data.text_worlds)")
    module, _, cls = WORLDS[kind].rpartition(".")
    return getattr(importlib.import_module(module), cls)(**kwargs)
