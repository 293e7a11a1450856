"""Evaluate a checkpoint of any stage on the held-out split (see conf/eval.yaml).

    python eval.py ckpt=runs/pusht/mle/checkpoints/last.ckpt data=pusht
    python eval.py ckpt=runs/pusht/grpo/checkpoints/last.ckpt data=pusht num_samples=8 top_k=100
    python eval.py ckpt=runs/pusht/tokenizer/checkpoints/last.ckpt data=pusht
"""
import hydra
from omegaconf import DictConfig


@hydra.main(version_base="1.3", config_path="conf", config_name="eval")
def main(cfg: DictConfig) -> None:
    from wm.cli.evaluate import evaluate

    evaluate(cfg)


if __name__ == "__main__":
    main()
