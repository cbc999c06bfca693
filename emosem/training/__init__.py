"""Training EmoSEM with accelerate: configuration, data, optimisation, checkpoints, the loop."""

from .config import TrainConfig, load_train_config
from .trainer import train

__all__ = ["TrainConfig", "load_train_config", "train"]
