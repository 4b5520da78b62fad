"""Shared pixels first: a reference that shares pixels with the source (an edited copy, a graded
frame of the shot) gets the look fitted on those pixels (:mod:`histocolor.shared_pixels`); any
other goes to the method it wraps, unchanged. numpy and OpenCV only (OpenCV when it looks)."""

from __future__ import annotations

from histocolor.classical import CLASSICAL_METHODS
from histocolor.errors import HistocolorError
from histocolor.imageio import LoadedImage
from histocolor.methods.base import TransferMethod
from histocolor.regions import Regions
from histocolor.timing import Stopwatch

# --match: whether a reference that shares pixels with the source gets the look fitted on them.
MATCH_MODES = ("auto", "on", "off")


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


def shared_pixels_matcher(name: str, match: str, lut_size: int, smoothness: float) -> SharedPixelsMatcher | None:
    """The matcher method ``name`` uses under ``match`` (see :func:`~histocolor.methods.build_method`), or None when it does not match."""
    if match == "on" or (match == "auto" and name not in CLASSICAL_METHODS):
        return SharedPixelsMatcher(lut_size, smoothness, forced=match == "on")
    return None
