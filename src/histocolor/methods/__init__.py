"""Transfer methods (moved from methods.py and network_methods.py; split up in the next commit)."""

from histocolor.methods.base import (
    MATCH_MODES,
    ClassicalMethod,
    SharedPixelsFirst,
    SharedPixelsMatcher,
    TransferMethod,
    build_method,
    shared_pixels_matcher,
    working_shape,
)

__all__ = [
    "MATCH_MODES",
    "ClassicalMethod",
    "SharedPixelsFirst",
    "SharedPixelsMatcher",
    "TransferMethod",
    "build_method",
    "shared_pixels_matcher",
    "working_shape",
]
