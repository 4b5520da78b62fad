"""histocolor: deep color transfer by histogram analogy (Lee et al., 2020) and classical methods.

The transfer API loads on first use (PEP 562), so that ``import histocolor`` and the command
line's ``--help`` cost no more than numpy; torch comes with the network alone.
"""

import importlib
import sys
import types

__version__ = "0.1.0"

from histocolor.errors import HistocolorError  # noqa: E402

__all__ = ["ColorTransfer", "HistocolorError", "TransferResult", "transfer", "__version__"]

_LAZY = ("ColorTransfer", "TransferResult", "transfer")


class _Package(types.ModuleType):
    """Keeps ``histocolor.transfer`` the function: importing the submodule of that name binds
    the package's attribute to the module, and this binds the API's objects instead."""

    def __setattr__(self, name, value):
        if name == "transfer" and isinstance(value, types.ModuleType):
            for key in _LAZY:
                super().__setattr__(key, getattr(value, key))
            return
        super().__setattr__(name, value)


def __getattr__(name: str):
    if name in _LAZY:
        importlib.import_module("histocolor.transfer")  # binds the three names (see _Package)
        return globals()[name]
    raise AttributeError(f"module 'histocolor' has no attribute {name!r}")


def __dir__():
    return sorted(set(globals()) | set(_LAZY))


sys.modules[__name__].__class__ = _Package
