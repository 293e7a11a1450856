"""eval.py scores a text checkpoint on the held-out records its training run would keep.

Found: ``eval.py`` connected the text task to the DataModule before the checkpoint's tokenizer
was loaded, so the length filter of training (``max_prompt_tokens`` / ``max_response_tokens``,
wm/data/text.py) never ran: every held-out record was scored, over-long prompts and answers
that cannot fit the budget included, and none was counted as dropped.
"""
from __future__ import annotations

from hydra.utils import instantiate
from test_language_pipeline import make_cfg, run

from wm.cli.evaluate import evaluate
from wm.cli.fit import last_checkpoint
from wm.language.chat import template_overhead
from wm.language.presets import rebuild_from_checkpoint

DATA = ["data=text_jsonl", "model=lm_tiny", "data.datamodule.batch_size=4"]


def test_eval_keeps_only_the_records_that_fit(tmp_path):
    run(tmp_path, "mle", DATA, ["stage.max_steps=1", "stage.val_check_interval=1",
                                "stage.limit_val_batches=0"])
    ckpt = last_checkpoint(tmp_path / "text_jsonl" / "mle")
    _, tok = rebuild_from_checkpoint(ckpt)
    plain = make_cfg("eval", [f"ckpt={ckpt}", *DATA])
    dm = instantiate(plain.data.datamodule, _convert_="all")
    dm.setup()                                               # no tokenizer: every record
    overhead = template_overhead(tok, None)
    lengths = sorted(len(tok(it["prompt"], add_special_tokens=False).input_ids)
                     for it in dm.val_items)
    limit = lengths[len(lengths) // 2] + overhead            # about half of the prompts fit
    fits = sum(n + overhead <= limit for n in lengths)
    assert 0 < fits < len(lengths), lengths
    cfg = make_cfg("eval", [f"ckpt={ckpt}", f"out_dir={tmp_path / 'eval'}", "num_threads=1",
                            *DATA, f"data.task.max_prompt_tokens={limit}"])
    summary = evaluate(cfg)
    assert summary["num_predictions"] == fits
