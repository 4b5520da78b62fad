"""Transfer methods: each fits the colour maps of a source/reference pair.

A method is an object chosen once (:func:`build_method`); the engine then asks it for
colour maps, one per matched source region plus one for the rest of the image. Without
masks there is no region and the rest is the whole image: the same code serves both cases.

- :mod:`~histocolor.methods.base`: :class:`TransferMethod` (the interface), the working size,
  the pixels a fit sees.
- :mod:`~histocolor.methods.classical`: :class:`ClassicalMethod`, a classical fit on each
  region's pixels (an affine map, curves or a composed map, see :mod:`histocolor.classical`).
  numpy alone.
- :mod:`~histocolor.methods.network`: the network's methods, the only module here that brings in
  torch (imported when a network method is built): the CTN's change at a working size fitted
  with 3D LUTs, or the LUT head's own LUTs.
- :mod:`~histocolor.methods.shared`: :class:`SharedPixelsFirst` routes by relevance. A reference
  that shares pixels with the source (an edited copy, a graded frame of the shot) gets the look
  fitted on those pixels (:mod:`histocolor.shared_pixels`); any other goes to the method it
  wraps, unchanged.
- :mod:`~histocolor.methods.registry`: :func:`build_method` picks the method by name.

Importing this package does not import torch.
"""

from histocolor.methods.base import TransferMethod, working_shape
from histocolor.methods.classical import ClassicalMethod
from histocolor.methods.registry import build_method
from histocolor.methods.shared import MATCH_MODES, SharedPixelsFirst, SharedPixelsMatcher, shared_pixels_matcher

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
