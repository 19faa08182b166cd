"""The training engine shared by CIFAR-10 evaluation, ImageNet transfer and compression.

* :func:`train_model`, :class:`Trainer`, :class:`TrainResult`, :class:`TrainError`: the engine
  (:mod:`bayesnas_book.train.engine`; resumable, checkpointed, one process or a torchrun job)
* :func:`init_distributed`, :func:`shutdown_distributed`, :class:`DistributedContext`,
  :class:`DistributedError`: torchrun / DistributedDataParallel (:mod:`bayesnas_book.train.distributed`)
* :class:`TrainConfig`, :func:`train_config_problems`: the ``[train]`` section
* :func:`evaluate`: loss, top-1 and top-5 accuracy of a classifier on a dataset
* :class:`LRSchedule`, :func:`build_optimizer`, :func:`build_scheduler`, :func:`parameter_groups`:
  SGD and the cosine / exponential / constant schedules with linear warm-up
* :func:`training_loss`: smoothed cross-entropy plus the auxiliary head's loss
"""

from bayesnas_book.train.config import TrainConfig, train_config_problems
from bayesnas_book.train.distributed import (
    DistributedContext,
    DistributedError,
    init_distributed,
    shutdown_distributed,
)
from bayesnas_book.train.engine import (
    CHECKPOINT,
    OUTPUTS,
    Trainer,
    TrainError,
    TrainResult,
    check_dataset,
    train_model,
)
from bayesnas_book.train.evaluate import evaluate, topk_correct
from bayesnas_book.train.losses import split_output, training_loss
from bayesnas_book.train.optim import LRSchedule, build_optimizer, build_scheduler, parameter_groups
from bayesnas_book.train.precision import amp_dtype

__all__ = [
    "CHECKPOINT",
    "OUTPUTS",
    "DistributedContext",
    "DistributedError",
    "LRSchedule",
    "TrainConfig",
    "TrainError",
    "TrainResult",
    "Trainer",
    "amp_dtype",
    "build_optimizer",
    "build_scheduler",
    "check_dataset",
    "evaluate",
    "init_distributed",
    "parameter_groups",
    "shutdown_distributed",
    "split_output",
    "topk_correct",
    "train_config_problems",
    "train_model",
    "training_loss",
]
