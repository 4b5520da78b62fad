"""histocolor: deep color transfer by histogram analogy (Lee et al., 2020) and classical methods."""

__version__ = "0.1.0"

from histocolor.errors import HistocolorError  # noqa: E402

__all__ = ["HistocolorError", "transfer", "ColorTransfer", "TransferResult", "__version__"]


def __getattr__(name):
    # The transfer engine pulls in torch; import it only when asked so that
    # `import histocolor` (e.g. by napari's plugin discovery) stays cheap.
    if name in ("transfer", "ColorTransfer", "TransferResult"):
        from histocolor import transfer as transfer_module

        return getattr(transfer_module, name if name != "transfer" else "transfer")
    raise AttributeError(f"module 'histocolor' has no attribute {name!r}")
