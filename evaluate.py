"""Evaluate a checkpoint or an MLflow run: `python evaluate.py run_id=<id>` or `ckpt_path=<file>`."""

import hydra
from omegaconf import DictConfig

from mer.cli_errors import exit_on_user_error
from mer.config import CONFIG_DIR


@hydra.main(version_base="1.3", config_path=str(CONFIG_DIR), config_name="evaluate")
def main(cfg: DictConfig) -> None:
    from mer.evaluation import evaluate, format_metrics

    with exit_on_user_error():
        print(format_metrics(evaluate(cfg)))


if __name__ == "__main__":
    main()
