"""Transfer methods: each fits the colour maps of a source/reference pair.

A method is an object chosen once (:func:`build_method`); the engine then asks it for
colour maps, one per matched source region plus one for the rest of the image. Without
masks there is no region and the rest is the whole image: the same code serves both cases.

- :class:`ClassicalMethod`: a classical fit on each region's pixels (an affine map, curves
  or a composed map, see :mod:`histocolor.classical`). numpy alone.
- the network's methods (:mod:`histocolor.network_methods`, which brings in torch): the CTN's
  change at a working size fitted with 3D LUTs, or the LUT head's own LUTs.
- :class:`SharedPixelsFirst`: routes by relevance. A reference that shares pixels with the
  source (an edited copy, a graded frame of the shot) gets the look fitted on those pixels
  (:mod:`histocolor.shared_pixels`); any other goes to the method it wraps, unchanged.
"""

from __future__ import annotations

import numpy as np

from histocolor.classical import CLASSICAL_METHODS
from histocolor.colormap import to_unit
from histocolor.errors import HistocolorError
from histocolor.imageio import LoadedImage
from histocolor.regions import Regions
from histocolor.timing import Stopwatch


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


class ClassicalMethod(TransferMethod):
    """A classical fit (``fit(source_pixels, reference_pixels) -> ColorMap``) per region."""

    def __init__(self, fit):
        self.fit = fit

    def fit_maps(self, source, reference, regions, weights, clock):
        with clock.stage("fit"):
            return [
                self.fit(_pixels_of(source, np.isin(regions.source_labels, mine)),
                         _pixels_of(reference, np.isin(regions.reference_labels, theirs)))
                for mine, theirs in regions.pairs
            ] + [self.fit(_pixels_of(source), _pixels_of(reference))]


class SharedPixelsMatcher:
    """Fits the look on the pixels a reference shares with the source (numpy and OpenCV only).

    With regions, each region's look is fitted on the shared pixels inside it (an edit that
    differs from sky to ground is followed), and the whole image's look is the rest's.

    Args:
        lut_size, smoothness: the fitted LUT's grid and smoothness.
        forced: accept weaker evidence of shared pixels, and fail when there is none.
    """

    def __init__(self, lut_size: int, smoothness: float, forced: bool = False):
        self.lut_size, self.smoothness, self.forced = lut_size, smoothness, forced

    def registration(self, source: LoadedImage, reference: LoadedImage):
        from histocolor.shared_pixels import find_shared_pixels

        return find_shared_pixels(source.rgb, reference.rgb, forced=self.forced)

    def matched_maps(self, source: LoadedImage, reference: LoadedImage, regions: Regions, clock: Stopwatch):
        """The maps fitted on the shared pixels (one per region pair, then the rest's), or None when
        there are none (an error instead when ``forced``)."""
        from histocolor.shared_pixels import fit_shared_looks

        maps = None
        # A region map that sends a region elsewhere asks for other colours than its own edit.
        if all(sorted(mine) == sorted(theirs) for mine, theirs in regions.pairs):
            with clock.stage("match"):
                shared = self.registration(source, reference)
            if shared is not None:
                with clock.stage("match_fit"):
                    maps = fit_shared_looks(source.rgb, reference.rgb, shared, label_map=regions.source_labels,
                                            groups=[mine for mine, _ in regions.pairs], lut_size=self.lut_size,
                                            smoothness=self.smoothness, source_alpha=source.alpha,
                                            reference_alpha=reference.alpha)
        if maps is None and self.forced:
            raise HistocolorError("the reference shares no pixels with the source that histocolor could find "
                                  "(drop --match on to transfer its colours)")
        return maps

    def look(self, source: LoadedImage, reference: LoadedImage, clock: Stopwatch):
        """The whole image's :class:`~histocolor.colormap.Look` fitted on the shared pixels, or None."""
        from histocolor.colormap import Look

        maps = self.matched_maps(source, reference, Regions.whole_image(), clock)
        return None if maps is None else Look(maps)


class SharedPixelsFirst(TransferMethod):
    """A reference that shares pixels with the source gets the look ``matcher`` fits on them
    (:class:`SharedPixelsMatcher`); any other, ``fallback``'s, unchanged."""

    def __init__(self, fallback: TransferMethod, matcher: SharedPixelsMatcher):
        self.fallback, self.matcher = fallback, matcher
        self.model = getattr(fallback, "model", None)

    @property
    def unmatched(self) -> TransferMethod:
        return self.fallback

    def fit_maps(self, source, reference, regions, weights, clock):
        maps = self.matcher.matched_maps(source, reference, regions, clock)
        return maps if maps is not None else self.fallback.fit_maps(source, reference, regions, weights, clock)

    def fit_maps_batch(self, items, clocks):
        results, rest = [None] * len(items), []
        for index, ((source, reference, regions, _), clock) in enumerate(zip(items, clocks)):
            try:
                results[index] = self.matcher.matched_maps(source, reference, regions, clock)
            except Exception as error:  # noqa: BLE001 - delivered to the pair
                results[index] = error
            if results[index] is None:
                rest.append(index)
        for index, maps in zip(rest, self.fallback.fit_maps_batch([items[i] for i in rest], [clocks[i] for i in rest])):
            results[index] = maps
        return results


# --match: whether a reference that shares pixels with the source gets the look fitted on them.
MATCH_MODES = ("auto", "on", "off")


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


def shared_pixels_matcher(name: str, match: str, lut_size: int, smoothness: float) -> SharedPixelsMatcher | None:
    """The matcher method ``name`` uses under ``match`` (see :func:`build_method`), or None when it does not match."""
    if match == "on" or (match == "auto" and name not in CLASSICAL_METHODS):
        return SharedPixelsMatcher(lut_size, smoothness, forced=match == "on")
    return None
