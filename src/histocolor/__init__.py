"""histocolor: deep color transfer by histogram analogy (Lee et al., 2020) and classical methods."""

__version__ = "0.1.0"

from histocolor.errors import HistocolorError  # noqa: E402

# Bound after the submodule is imported, so `histocolor.transfer` is the function.
from histocolor.transfer import ColorTransfer, TransferResult, transfer  # noqa: E402

__all__ = ["ColorTransfer", "HistocolorError", "TransferResult", "transfer", "__version__"]
