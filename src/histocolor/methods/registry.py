"""Picks a method by name: :func:`build_method`."""

from __future__ import annotations

from histocolor.classical import CLASSICAL_METHODS
from histocolor.methods.base import TransferMethod
from histocolor.methods.classical import ClassicalMethod
from histocolor.methods.shared import SharedPixelsFirst, shared_pixels_matcher


def build_method(name: str, model, device, max_side: int, lut_size: int, smoothness: float,
                 match: str = "auto") -> TransferMethod:
    """The method object for ``name``: ``analogy`` (with ``model``, on the torch ``device``) or a classical method.

    ``match``: ``auto`` matches shared pixels first for the network (the default method),
    ``on`` for any method and insists on finding them, ``off`` never looks for them.
    """
    if name in CLASSICAL_METHODS:
        method = ClassicalMethod(CLASSICAL_METHODS[name])
    else:
        from histocolor.methods.network import LutHeadMethod, NetworkMethod

        if getattr(getattr(model, "config", None), "head", None) == "lut":
            method = LutHeadMethod(model, device, max_side, lut_size)
        else:
            method = NetworkMethod(model, device, max_side, lut_size, smoothness)  # the CTN, or a stand-in
    matcher = shared_pixels_matcher(name, match, lut_size, smoothness)
    return method if matcher is None else SharedPixelsFirst(method, matcher)
