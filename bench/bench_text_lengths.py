"""Prompt and answer lengths of the text worlds in the paper's tokenizer (DeepSeek-R1-Distill-Qwen).

Every ByteSized32 record (2,954 test + all training transitions of ``all_transitions.jsonl``)
and the WebArena samples, with prompts built by the worlds exactly as the DataModule builds them
(``wm.data.text_worlds``): ``ours`` with the in-context example (the preset), ``ours`` without it
(what ``overlong=shorten`` falls back to) and the reference's prompt (``prompt_style=reference``;
without GPT-simulator's rule files, which are not in ../shared/data, it is the no-rule variant).
Each prompt is rendered through the chat template (``wm.language.chat.render_prompts``: BOS,
``<｜User｜>``, ``<｜Assistant｜><think>\\n``) and tokenized as ``TextStateTask.prompts`` does;
an answer counts its target tokens + EOS, as the sampling budget does. Counts above the presets'
``data.task.max_prompt_tokens`` / ``max_response_tokens`` (``conf/data/{bytesized32,webarena}.yaml``,
with ``model=lm_deepseek_1p5b``) are what the DataModule would shorten or drop; the ByteSized32
test split is cross-checked against ``TextStateDataModule`` itself.

Run: ``python bench/bench_text_lengths.py`` (one tokenizer thread; writes the "text_lengths"
section of docs/benchmarks.md); ``--limit N`` for a quick look at N records per split.
"""
from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")   # one core, as reported
os.environ.setdefault("RAYON_NUM_THREADS", "1")

import numpy as np  # noqa: E402
from omegaconf import OmegaConf  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench._report import markdown_table, write_section  # noqa: E402
from wm.data.text import TextStateDataModule  # noqa: E402
from wm.data.text_worlds.bytesized32 import ByteSized32World  # noqa: E402
from wm.data.text_worlds.webarena import WebArenaWorld  # noqa: E402
from wm.language.chat import render_prompts, template_overhead  # noqa: E402
from wm.language.qwen_tokenizer import deepseek_qwen_tokenizer  # noqa: E402

SHARED = Path(os.environ.get("WM_SHARED_DATA", ROOT.parent / "shared" / "data"))
CHUNK = 256


def preset_limits(data: str) -> tuple[int, int]:
    """(max_prompt_tokens, max_response_tokens) of ``conf/data/<data>.yaml``."""
    task = OmegaConf.load(ROOT / "conf" / "data" / f"{data}.yaml").task
    return int(task.max_prompt_tokens), int(task.max_response_tokens)


def token_counts(tok, texts: list[str], chat: bool) -> np.ndarray:
    """(N,) tokens of each text: through the chat template (a prompt) or plain + EOS (an answer)."""
    out = []
    for i in range(0, len(texts), CHUNK):
        chunk = render_prompts(tok, texts[i:i + CHUNK]) if chat else texts[i:i + CHUNK]
        ids = tok(chunk, add_special_tokens=False, return_attention_mask=False)["input_ids"]
        out += [len(x) + (0 if chat else 1) for x in ids]
    return np.asarray(out, dtype=np.int64)


def summary(n: np.ndarray) -> str:
    return f"{int(np.median(n)):,} / {int(np.percentile(n, 90)):,} / {int(n.max()):,}"


def row(dataset, split, style, prompts, answers, limits, seconds) -> dict:
    p_lim, r_lim = limits
    return {"data": dataset, "split": split, "prompt style": style, "records": f"{len(prompts):,}",
            "prompt tokens median / p90 / max": summary(prompts),
            "answer tokens (+EOS) median / p90 / max": summary(answers),
            "limits prompt / answer": f"{p_lim:,} / {r_lim:,}",
            "prompts over": int((prompts > p_lim).sum()),
            "answers over": int((answers > r_lim).sum()),
            "tokenize min": round(seconds / 60, 2)}


def bytesized32_rows(tok, folder: Path, limit: int | None, log) -> tuple[list[dict], dict]:
    limits = preset_limits("bytesized32")
    ours = ByteSized32World(str(folder), example_game="action", prompt_style="ours")
    train, test = ours.load(0, None)
    ref = ByteSized32World(str(folder), prompt_style="reference")
    ref.load(0, 1)                                 # examples only; records are the same
    rows, facts = [], {"limits": limits}
    for split, records in (("test", test), ("train", train)):
        records = records[:limit] if limit else records
        t0 = time.perf_counter()
        answers = token_counts(tok, [ours.target(r) for r in records], chat=False)
        ref_answers = token_counts(tok, [ref.target(r) for r in records], chat=False)
        t_answers = time.perf_counter() - t0
        styles = {"ours (with example)": lambda r: next(ours.prompt_candidates(r, False, None)),
                  "ours (no example)": lambda r: list(ours.prompt_candidates(r, True, None))[-1],
                  "reference (no rules)": lambda r: next(ref.prompt_candidates(r, False, None))}
        lengths = {}
        for style, build in styles.items():
            t0 = time.perf_counter()
            lengths[style] = token_counts(tok, [build(r) for r in records], chat=True)
            seconds = time.perf_counter() - t0 + t_answers / 3
            target = ref_answers if style.startswith("reference") else answers
            rows.append(row("ByteSized32", split, style, lengths[style], target, limits, seconds))
            log(rows[-1])
        full, short = lengths["ours (with example)"], lengths["ours (no example)"]
        p_lim, r_lim = limits
        facts[split] = {
            "records": len(records), "shortened": int(((full > p_lim) & (short <= p_lim)).sum()),
            "dropped_overlong": int(((full > p_lim) & (short > p_lim)).sum()),
            "dropped_long_target": int((answers > r_lim).sum()),
            "example_cost": int(np.median(full - short)),
            "reference_cost": int(np.median(lengths["reference (no rules)"] - full)),
        }
    return rows, facts


def datamodule_check(tok, folder: Path, facts: dict) -> str:
    """The ByteSized32 test split through TextStateDataModule with the preset limits."""
    p_lim, r_lim = facts["limits"]
    dm = TextStateDataModule("bytesized32", str(folder), max_train_records=1, seed=0)
    dm.connect(tok, p_lim - template_overhead(tok), r_lim)
    dm.setup()
    got, want = dm.stats["val"], facts["test"]
    for key in ("shortened", "dropped_overlong", "dropped_long_target"):
        if got[key] != want[key]:
            raise AssertionError(f"DataModule {key}={got[key]} but the bench counted {want[key]}")
    return f"TextStateDataModule agrees on the test split: {got}"


def webarena_rows(tok, path: Path, log) -> list[dict]:
    limits = preset_limits("webarena")
    rows = []
    for style in ("ours", "reference"):
        world = WebArenaWorld(str(path), prompt_style=style)
        train, val = world.load(0, None)
        records = train + val
        t0 = time.perf_counter()
        prompts = token_counts(tok, [next(world.prompt_candidates(r, False, None))
                                     for r in records], chat=True)
        answers = token_counts(tok, [world.target(r) for r in records], chat=False)
        rows.append(row("WebArena (WMA samples)", "all", style, prompts, answers, limits,
                        time.perf_counter() - t0))
        log(rows[-1])
    return rows


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--limit", type=int, default=None, help="records per split (default: all)")
    p.add_argument("--no-write", action="store_true", help="print only")
    args = p.parse_args()
    log = lambda r: print(r, flush=True)  # noqa: E731
    bs32, wma = SHARED / "bytesized32", SHARED / "wma" / "sample_tao_annotated.json"
    if not bs32.is_dir():
        raise SystemExit(f"ByteSized32 data not found at {bs32} (set WM_SHARED_DATA)")
    t_start = time.perf_counter()
    tok = deepseek_qwen_tokenizer()
    overhead = template_overhead(tok)
    rows, facts = bytesized32_rows(tok, bs32, args.limit, log)
    check = datamodule_check(tok, bs32, facts) if args.limit is None else "(skipped: --limit)"
    print(check)
    if wma.is_file():
        rows += webarena_rows(tok, wma, log)
    minutes = (time.perf_counter() - t_start) / 60
    table = markdown_table(rows)
    t, tr = facts["test"], facts["train"]
    notes = (
        f"Tokenizer: DeepSeek-R1-Distill-Qwen's (`wm.language.qwen_tokenizer`, offline), chat "
        f"template of the hub's current revision: {overhead} template tokens per prompt "
        f"(BOS, `<｜User｜>`, `<｜Assistant｜>`, `<think>`, `\\n`). Limits: the presets "
        f"`data=bytesized32` ({facts['limits'][0]:,} / {facts['limits'][1]:,}) and "
        f"`data=webarena` ({preset_limits('webarena')[0]:,} / {preset_limits('webarena')[1]:,}) "
        f"with `model=lm_deepseek_1p5b`. Answers are our targets (`ours`: JSON; `reference`: "
        f"'The final answer is: {{...}}' Python dict; the reference's SFT answers with DeepSeek-"
        f"R1's reasoning are not reproducible here). The in-context example costs "
        f"{t['example_cost']:,} tokens (median); the reference prompt costs "
        f"{t['reference_cost']:,} more than ours with the example (median, test), without its "
        f"rule texts. Under the preset the DataModule shortens {t['shortened']} / drops "
        f"{t['dropped_overlong'] + t['dropped_long_target']} of {t['records']:,} test and shortens "
        f"{tr['shortened']} / drops {tr['dropped_overlong'] + tr['dropped_long_target']} of "
        f"{tr['records']:,} train records. {check}\n"
        f"Whole run {minutes:.1f} min on one tokenizer thread ({os.cpu_count()} CPU cores "
        "shared with other jobs); \"tokenize min\" is each row's rendering + tokenizing.")
    print(table + "\n\n" + notes)
    if not args.no_write and args.limit is None:
        write_section("text_lengths", "## Prompt and answer lengths in the paper's tokenizer "
                      "(`python bench/bench_text_lengths.py`)\n\n" + notes + "\n\n" + table)


if __name__ == "__main__":
    main()
