"""Train a stage of rlvr-world, or (no arguments) the whole PushT quickstart pipeline.

    python train.py                                  # quickstart: data -> tokenizer -> MLE -> GRPO -> eval
    python train.py stage=tokenizer data=pusht       # one stage
    python train.py stage=grpo data=rt1 trainer=ddp  # RLVR post-training on RT-1, all GPUs
    python train.py --help                           # config groups and options

Configs live in conf/ (see README "Configuration"). Heavy libraries are imported lazily so
``--help`` and config errors are fast. A config error is one line naming the option
(wm/cli/config_check.py; HYDRA_FULL_ERROR=1 shows the traceback), as is an appended
``+key=...`` that nothing reads.
"""
import hydra
from hydra.core.hydra_config import HydraConfig
from hydra.utils import instantiate
from omegaconf import DictConfig

from wm.cli.config_check import (check_added_keys, check_choices, check_override_types,
                                  one_line_errors)


@hydra.main(version_base="1.3", config_path="conf", config_name="train")
def main(cfg: DictConfig) -> None:
    with one_line_errors():
        overrides = HydraConfig.get().overrides.task
        check_override_types(cfg, overrides, "train")
        check_added_keys(cfg, overrides, "train")
        check_choices(cfg)
        runner = instantiate(cfg.stage.runner)
        runner(cfg)


if __name__ == "__main__":
    main()
