"""bayesnas_book: the library taught by the BayesNAS book.

BayesNAS (Zhou, Yang, Wang, Pan, ICML 2019) searches neural architectures as sparse Bayesian
learning: switches on a one-shot supernet get hierarchical ARD priors, a Laplace posterior with a
fast Gauss-Newton curvature updates their variances, and an entropy rule prunes them.

Importing the package is cheap (no torch: ``resolve_device``, ``describe_device`` and
``seed_everything`` import it on first use) and runs nothing; the submodules hold the work:

* :mod:`bayesnas_book.config`: typed configs and the ``quick`` / ``paper`` profiles
* :mod:`bayesnas_book.seeding`, :mod:`bayesnas_book.device`: reproducibility and devices
* :mod:`bayesnas_book.data`: CIFAR-10, MNIST, ImageNet folders, shipped digits, fixtures
* :mod:`bayesnas_book.book`: keeps the paired chapter notebooks in sync and executed
"""

from importlib import metadata as _metadata

try:
    __version__ = _metadata.version("bayesnas-book")
except _metadata.PackageNotFoundError:  # running from a source tree that was not installed
    __version__ = "0.0.0+unknown"

from bayesnas_book.config import ConfigError, RunConfig, load_config, profile_from_env

# Names whose modules import torch load on first use: `bayesnas-book --help` answers without it.
_LAZY = {"describe_device": "bayesnas_book.device", "resolve_device": "bayesnas_book.device",
         "seed_everything": "bayesnas_book.seeding"}


def __getattr__(name: str):
    if name in _LAZY:
        from importlib import import_module

        return getattr(import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'bayesnas_book' has no attribute {name!r}")

__all__ = [
    "ConfigError",
    "RunConfig",
    "__version__",
    "describe_device",
    "load_config",
    "profile_from_env",
    "resolve_device",
    "seed_everything",
]
