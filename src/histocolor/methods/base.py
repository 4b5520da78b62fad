"""What every transfer method shares: the :class:`TransferMethod` interface, the working size
and the pixels a fit sees. numpy alone."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from histocolor.colormap import to_unit
from histocolor.imageio import LoadedImage
from histocolor.regions import Regions
from histocolor.timing import Stopwatch

if TYPE_CHECKING:
    from histocolor.methods.shared import SharedPixelsMatcher


def working_shape(shape, max_side: int) -> tuple[int, int]:
    """The ``(h, w)`` an image of ``shape`` is shrunk to so that its long side is at most ``max_side``."""
    height, width = shape[:2]
    scale = min(1.0, max_side / max(height, width))
    return (max(1, round(height * scale)), max(1, round(width * scale))) if scale < 1.0 else (height, width)


def _pixels_of(image: LoadedImage, owned: np.ndarray | None = None) -> np.ndarray:
    """The visible pixels (of the ``owned`` mask, if given) as ``(N, 3)`` floats.

    Fully transparent pixels are left out, unless no owned pixel is visible.
    """
    if image.alpha is not None:
        visible = image.alpha > 0 if owned is None else owned & (image.alpha > 0)
        owned = visible if visible.any() else owned
    # Without a mask, a reshape: boolean indexing would copy a 12 MP image for nothing.
    return to_unit(image.rgb if owned is None else image.rgb[owned])


class TransferMethod:
    """Fits colour maps: ``fit_maps`` returns one per region pair of ``regions``, then one for the rest.

    ``matcher`` is the :class:`SharedPixelsMatcher` that looks for pixels the reference shares
    with the source before the method runs (None: the method never looks).

    ``weights`` are the source's feathered weights ``(R + 1, h, w)`` of the regions and the
    rest at the working size (without masks, ``R = 0``: the rest is everywhere); ``clock``
    times the stages.
    """

    matcher: SharedPixelsMatcher | None = None

    @property
    def unmatched(self) -> TransferMethod:
        """This method without its look for shared pixels (for pairs already looked at)."""
        return self

    def fit_maps(self, source: LoadedImage, reference: LoadedImage, regions: Regions,
                 weights: np.ndarray, clock: Stopwatch) -> list:
        raise NotImplementedError

    def fit_maps_batch(self, items: list, clocks: list) -> list:
        """:meth:`fit_maps` for several pairs, ``items`` of ``(source, reference, regions, weights)``
        with a clock each: per pair its maps, or the exception its fit raised (a failing pair costs
        only itself). One by one here; the network stacks pairs of one working size."""
        results = []
        for item, clock in zip(items, clocks):
            try:
                results.append(self.fit_maps(*item, clock))
            except Exception as error:  # noqa: BLE001 - delivered to the pair, as its own error
                results.append(error)
        return results
