"""The ``[train]`` section lives in :mod:`bayesnas_book.config` with every other section."""

from bayesnas_book.config import (
    AMP_MODES,
    LR_UPDATES,
    SCHEDULES,
    TrainConfig,
    train_config_problems,
)

__all__ = ["AMP_MODES", "LR_UPDATES", "SCHEDULES", "TrainConfig", "train_config_problems"]
