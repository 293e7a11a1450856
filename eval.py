"""Evaluate a checkpoint of any stage on the held-out split (see conf/eval.yaml).

    python eval.py ckpt=runs/pusht/mle/checkpoints/last.ckpt data=pusht
    python eval.py ckpt=runs/pusht/grpo/checkpoints/last.ckpt data=pusht num_samples=8 top_k=100
    python eval.py ckpt=runs/pusht/tokenizer/checkpoints/last.ckpt data=pusht

Results go to runs/<run>/<stage>/eval/<checkpoint>-<data>-<hash>/ (named by checkpoint version,
data and settings; never another evaluation's folder). A checkpoint is refused, before any work,
on data of another action dimension / frame size / vocabulary, on other data than its run's
(unless allow_other_data=true), and on an empty held-out split (docs/stages.md, "Run folders").
"""
import hydra
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig, OmegaConf

from wm.cli.config_check import (check_added_keys, check_choices, check_override_types,
                                  one_line_errors)


@hydra.main(version_base="1.3", config_path="conf", config_name="eval")
def main(cfg: DictConfig) -> None:
    if OmegaConf.is_missing(cfg, "ckpt"):
        raise SystemExit("ckpt: eval.py needs what to evaluate: `ckpt=<a .ckpt file, an export "
                         "folder or a hub id>` (e.g. `python eval.py "
                         "ckpt=runs/pusht/grpo/checkpoints/last.ckpt data=pusht`), or a model-free "
                         "row: `ckpt=copy_last_frame` / `ckpt=true_tokens`")
    with one_line_errors():
        overrides = HydraConfig.get().overrides.task
        check_override_types(cfg, overrides, "eval")
        check_added_keys(cfg, overrides, "eval")
        check_choices(cfg)
        from wm.cli.evaluate import evaluate

        evaluate(cfg)


if __name__ == "__main__":
    main()
