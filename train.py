"""Train the paper's 3D CNN: `python train.py`, a sweep: `python train.py -m optim.lr=0.01,0.001,0.0001`."""

import hydra
from omegaconf import DictConfig

from mer.cli_errors import exit_on_user_error
from mer.config import CONFIG_DIR


@hydra.main(version_base="1.3", config_path=str(CONFIG_DIR), config_name="train")
def main(cfg: DictConfig) -> float | None:
    from hydra.core.hydra_config import HydraConfig

    from mer.selection import objective_value
    from mer.training import train

    with exit_on_user_error():
        return objective_value(train(cfg, HydraConfig.get().overrides.task), cfg.optimized_metric)


if __name__ == "__main__":
    main()
