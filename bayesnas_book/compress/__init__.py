"""Network compression with the BayesNAS machinery: unit gates on neurons and filters.

* :mod:`~bayesnas_book.compress.gates`: :class:`UnitGate`, :class:`GatedNet`, the structured
  groups (:func:`gate_groups`) and the gate's rule for the fast curvature recursion
* :mod:`~bayesnas_book.compress.models`: LeNet-300-100, LeNet-5-Caffe, VGG-16 (:func:`build_model`)
* :mod:`~bayesnas_book.compress.bayes_prune`: penalty, curvature, Laplace update, entropy rule
* :mod:`~bayesnas_book.compress.physical`: the pruned units removed (:func:`physically_prune`),
  units, params and MACs before and after (:func:`size_report`)
* :mod:`~bayesnas_book.compress.baselines`: magnitude pruning and group lasso on the same groups
* :mod:`~bayesnas_book.compress.run`: the resumable run behind ``bayesnas-book compress``
* :mod:`~bayesnas_book.compress.published`: the published results the paper compares with
"""

from bayesnas_book.compress.baselines import (
    apply_masks,
    group_lasso_prox,
    group_norms,
    group_sizes,
    kept_counts,
    magnitude_masks,
)
from bayesnas_book.compress.bayes_prune import (
    GATE_CURVATURE_METHODS,
    CompressionError,
    entropy_prune_gates,
    gate_curvature,
    gate_laplace_update,
    initial_gate_state,
    prox_gates,
)
from bayesnas_book.compress.gates import (
    GatedNet,
    GateGroup,
    UnitGate,
    gate_groups,
    gate_modules,
    kept_units,
    unit_gate,
)
from bayesnas_book.compress.models import MODELS, build_model, lenet5, lenet300, model_names, vgg
from bayesnas_book.compress.physical import (
    NetworkSize,
    SelectFeatures,
    dense_copy,
    network_size,
    physically_prune,
    size_report,
    units_text,
)
from bayesnas_book.compress.published import (
    PublishedBaselines,
    PublishedResult,
    parse_units,
    published_baselines,
)
from bayesnas_book.compress.run import (
    METHODS,
    CompressionData,
    CompressionResult,
    CompressionRun,
    compress_schedule,
    compression_data,
    run_compress,
)

__all__ = [
    "GATE_CURVATURE_METHODS",
    "METHODS",
    "MODELS",
    "CompressionData",
    "CompressionError",
    "CompressionResult",
    "CompressionRun",
    "GateGroup",
    "GatedNet",
    "NetworkSize",
    "PublishedBaselines",
    "PublishedResult",
    "SelectFeatures",
    "UnitGate",
    "apply_masks",
    "build_model",
    "compress_schedule",
    "compression_data",
    "dense_copy",
    "entropy_prune_gates",
    "gate_curvature",
    "gate_groups",
    "gate_laplace_update",
    "gate_modules",
    "group_lasso_prox",
    "group_norms",
    "group_sizes",
    "initial_gate_state",
    "kept_counts",
    "kept_units",
    "lenet300",
    "lenet5",
    "magnitude_masks",
    "model_names",
    "network_size",
    "parse_units",
    "physically_prune",
    "prox_gates",
    "published_baselines",
    "run_compress",
    "size_report",
    "unit_gate",
    "units_text",
    "vgg",
]
