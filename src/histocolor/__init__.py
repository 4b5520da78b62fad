"""histocolor: deep color transfer by histogram analogy (Lee et al., 2020) and classical methods.

The transfer API (:mod:`histocolor.engine`) loads on first use (PEP 562), so that ``import
histocolor`` and the command line's ``--help`` cost no more than numpy; torch comes with the
network alone.
"""

import importlib
import os

# torch's OpenMP threads wait for work by spinning (OMP_WAIT_POLICY=active) unless told otherwise.
# histocolor runs them beside its own threads (decoding, matching, LUT fits, writing): spinning
# threads then steal those threads' cores, and on 2 cores a batch ran 2-3 times slower, a single
# transfer under load 20 times slower (docs/BENCHMARKS.md, issue 39). Set before torch loads; a
# value the user set is kept.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

__version__ = "0.1.0"

from histocolor.errors import HistocolorError  # noqa: E402

__all__ = ["ColorTransfer", "HistocolorError", "TransferResult", "transfer", "__version__"]

_LAZY = ("ColorTransfer", "TransferResult", "transfer")


def __getattr__(name: str):
    if name in _LAZY:
        value = getattr(importlib.import_module("histocolor.engine"), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'histocolor' has no attribute {name!r}")


def __dir__():
    return sorted(set(globals()) | set(_LAZY))
