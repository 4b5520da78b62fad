"""Colour transfer of whole images: any size in, same size, dtype and alpha out.

One path for every method, globally or by regions: the method (an object chosen once,
:mod:`histocolor.methods`) fits colour maps, one per matched region plus one for the rest
of the image (a single one without masks); :class:`~histocolor.colormap.Look` applies and
blends them at full resolution. The network runs on a copy shrunk to a working size and
its change is fitted with 3D LUTs, so the result keeps every detail of the original (see
docs/BENCHMARKS.md for why a LUT). The same look exports as ``.cube`` files and drives video.
"""

import functools
from pathlib import Path

import numpy as np

from histocolor.classical import CLASSICAL_METHODS
from histocolor.colormap import Look
from histocolor.errors import HistocolorError
from histocolor.imageio import as_image
from histocolor.lut import DEFAULT_LUT_SIZE, DEFAULT_SMOOTHNESS, MAX_FITTED_LUT_SIZE
from histocolor.methods import MATCH_MODES, build_method, working_shape
from histocolor.regions import DEFAULT_FEATHER, prepare_regions
from histocolor.timing import Stopwatch

METHODS = ("analogy", *CLASSICAL_METHODS)
DEFAULT_MAX_SIDE = 256  # by measurement: see docs/BENCHMARKS.md
# The network's working size never exceeds the image (no upscaling); past this its memory
# (about 1 GB per megapixel of working size) is not worth it: the LUT carries the change.
MAX_WORKING_SIDE = 4096


class TransferResult:
    """The recoloured image and how it was made.

    Attributes:
        image: the source's shape convention and dtype (float input comes back float32;
            grayscale sources come back RGB; alpha is passed through untouched).
        look: the colour maps that made it (strength included): apply it to the source,
            blend it to another strength, or export it (:mod:`histocolor.cube`).
        method: the method name.
        timings: seconds per stage.
        shared_pixels: what the reference shares with the source
            (:class:`~histocolor.shared_pixels.SharedPixels`) when the look was fitted on those pixels, else None.
    """

    def __init__(self, image: np.ndarray, look: Look, method: str, timings: dict[str, float], lut_size: int):
        self.image = image
        self.look = look
        self.method = method
        self.timings = timings
        self._lut_size = lut_size

    @property
    def shared_pixels(self):
        return self.look.shared_pixels

    @functools.cached_property
    def lut(self) -> np.ndarray | None:
        """``(S, S, S, 3)`` float32 LUT over sRGB of a global look (None by regions, whose change varies by place)."""
        return self.look.maps[0].to_lut(self._lut_size) if self.look.is_global else None


class ColorTransfer:
    """A configured transfer, reusable over many pairs (the model is loaded once).

    Args:
        method: ``analogy`` (the network) or a classical method (``reinhard``, ``mkl``,
            ``histmatch``, ``idt``).
        weights: weights directory for ``analogy`` (default: the shipped model).
        model: an already built :class:`~histocolor.model.HistogramAnalogy` (overrides weights).
        device: ``auto``, ``cpu`` or ``cuda``.
        max_side: long side of the working size the network runs at.
        lut_size: grid points per axis of the fitted (and exported) LUT.
        lut_smoothness: weight of the LUT fit's smoothness penalty.
        match: a reference that shares pixels with the source (an edited copy of it, a graded
            frame of the shot) gets the look fitted on those pixels: ``auto`` (default) for the
            network, ``on`` for any method (and an error when none are found), ``off`` never.
    """

    def __init__(
        self,
        method: str = "analogy",
        *,
        weights=None,
        model=None,
        device="auto",
        max_side: int = DEFAULT_MAX_SIDE,
        lut_size: int = DEFAULT_LUT_SIZE,
        lut_smoothness: float = DEFAULT_SMOOTHNESS,
        match: str = "auto",
    ):
        if method not in METHODS:
            raise HistocolorError(f"unknown method {method!r}: choose one of {', '.join(METHODS)}")
        if not 16 <= max_side <= MAX_WORKING_SIDE:
            raise HistocolorError(f"the working size must be between 16 and {MAX_WORKING_SIDE} pixels, got {max_side}")
        if not 2 <= lut_size <= 129:
            raise HistocolorError(f"the LUT size must be between 2 and 129, got {lut_size}")
        if match not in MATCH_MODES:
            raise HistocolorError(f"unknown match mode {match!r}: choose one of {', '.join(MATCH_MODES)}")
        if lut_size > MAX_FITTED_LUT_SIZE and (method == "analogy" or match == "on"):
            raise HistocolorError(f"the LUT size must be at most {MAX_FITTED_LUT_SIZE} for a fitted look (the network's, "
                                  f"or one matched on shared pixels; a larger fit takes minutes), got {lut_size}")
        if not lut_smoothness > 0:
            raise HistocolorError(f"the LUT smoothness must be positive, got {lut_smoothness}")
        self.method = method
        self.max_side = int(max_side)
        self.lut_size = int(lut_size)
        # The classical methods run on numpy alone: torch is loaded for the network only,
        # or to check a GPU asked for by name (a missing one is an error whatever the method).
        self.device = None
        if method == "analogy" or str(device) not in ("auto", "cpu"):
            from histocolor.device import resolve_device

            self.device = resolve_device(device)
        if method == "analogy" and model is None:
            from histocolor.model.io import load_weights

            model = load_weights(weights, self.device)
        self.strategy = build_method(method, model, self.device, self.max_side, self.lut_size, float(lut_smoothness),
                                     match)
        self.model = getattr(self.strategy, "model", None)

    def _prepare(self, source, reference, source_labels, reference_labels, region_map, feather):
        """The fit's inputs of one pair: both images, their regions and the source's working-size weights."""
        source_image, reference_image = as_image(source), as_image(reference)
        regions = prepare_regions(
            source_labels, reference_labels, source_image.rgb.shape, reference_image.rgb.shape, region_map, feather
        )
        weights = regions.source_weights(working_shape(source_image.rgb.shape, self.max_side))
        return source_image, reference_image, regions, weights

    @staticmethod
    def _look(maps, regions, weights) -> Look:
        return Look(maps, weights, [mine for mine, _ in regions.pairs], regions.source_labels)

    def find_shared(self, source, reference):
        """Where ``reference`` shows ``source``'s pixels (:class:`~histocolor.shared_pixels.SharedPixels`),
        or None when it shows none or this engine does not look (``match="off"``)."""
        matcher = self.strategy.matcher
        return None if matcher is None else matcher.registration(as_image(source), as_image(reference))

    def fit_shared(self, source, reference):
        """The look fitted on the pixels ``reference`` shares with ``source``, or None when they share
        none or this engine does not match them (``match="off"``)."""
        matcher = self.strategy.matcher
        return None if matcher is None else matcher.look(as_image(source), as_image(reference), Stopwatch(self.device))

    def fit(self, source, reference, *, source_labels=None, reference_labels=None, region_map=None,
            feather: float = DEFAULT_FEATHER, clock: Stopwatch | None = None) -> Look:
        """The look that recolours ``source`` after ``reference`` (see :meth:`__call__` for the arguments)."""
        clock = clock or Stopwatch(self.device)
        item = self._prepare(source, reference, source_labels, reference_labels, region_map, feather)
        return self._look(self.strategy.fit_maps(*item, clock), *item[2:])

    def __call__(
        self,
        source,
        reference,
        *,
        strength: float = 1.0,
        source_labels=None,
        reference_labels=None,
        region_map: dict[int, list[int]] | None = None,
        feather: float = DEFAULT_FEATHER,
    ) -> TransferResult:
        """Recolour ``source`` after ``reference`` (paths or arrays); see :class:`TransferResult`.

        With ``source_labels`` and ``reference_labels`` (``(H, W)`` label maps of each image,
        or mask paths) the transfer is region-wise: a region takes the colours of the
        reference region with the same label, or of those ``region_map`` names for it;
        ``feather`` (a share of the image diagonal) blends the seams.
        """
        result = self.batch([(source, reference, source_labels, reference_labels)], strength=strength,
                            region_map=region_map, feather=feather)[0]
        if isinstance(result, BaseException):
            raise result
        return result

    def batch(self, pairs, *, strength: float = 1.0, region_map: dict[int, list[int]] | None = None,
              feather: float = DEFAULT_FEATHER) -> list:
        """Recolour several pairs: ``pairs`` of ``(source, reference)`` or ``(source, reference,
        source_labels, reference_labels)``, as :meth:`__call__` takes them.

        Returns, per pair and in order, its :class:`TransferResult` or the exception it raised: a
        pair that fails costs only itself. The network recolours pairs of the same working size
        together (one stacked run), which is faster than one by one; each result equals the pair's
        own up to float rounding (about 1e-5 in Lab).
        """
        if not 0.0 <= strength <= 1.0:
            raise HistocolorError(f"strength must be between 0 and 1, got {strength}")
        clocks = [Stopwatch(self.device) for _ in pairs]
        results = []
        for fitted, clock in zip(self._fit_batch(pairs, region_map, feather, clocks), clocks):
            if isinstance(fitted, BaseException):
                results.append(fitted)
                continue
            try:
                results.append(self.finish(*fitted, strength, clock))
            except Exception as error:  # noqa: BLE001 - delivered to the pair
                results.append(error)
        return results

    def finish(self, look: Look, source, strength: float = 1.0, clock: Stopwatch | None = None) -> TransferResult:
        """The result of a fitted ``look`` (at full strength) on ``source``: blended to ``strength``
        and applied; ``clock`` (its ``apply`` stage) times it."""
        clock = clock or Stopwatch(self.device)
        look = look.blended(strength)
        with clock.stage("apply"):
            image = self.apply(look, source)
        return TransferResult(image, look, self.method, clock.timings, self.lut_size)

    def fit_batch(self, pairs, *, region_map: dict[int, list[int]] | None = None,
                  feather: float = DEFAULT_FEATHER, match: bool = True, clocks: list | None = None) -> list:
        """:meth:`fit` for several pairs (as :meth:`batch` takes them): per pair its look at full
        strength, or the exception it raised. ``match=False`` skips the look for shared pixels
        (pairs the caller looked at already, :meth:`fit_shared`); ``clocks``, one per pair, time
        the stages."""
        clocks = clocks or [Stopwatch(self.device) for _ in pairs]
        fitted = self._fit_batch(pairs, region_map, feather, clocks, match)
        return [item if isinstance(item, BaseException) else item[0] for item in fitted]

    def _fit_batch(self, pairs, region_map, feather, clocks, match: bool = True) -> list:
        """Per pair ``(look, source image)`` or its exception; the strategy fits them all at once."""
        outcomes, prepared, prepared_clocks = [None] * len(pairs), [], []
        for index, ((source, reference, *labels), clock) in enumerate(zip(pairs, clocks)):
            try:
                if isinstance(source, (str, Path)) or isinstance(reference, (str, Path)):
                    with clock.stage("decode"):
                        source, reference = as_image(source), as_image(reference)
                source_labels, reference_labels = (*labels, None, None)[:2]
                item = self._prepare(source, reference, source_labels, reference_labels, region_map, feather)
            except Exception as error:  # noqa: BLE001 - delivered to the pair
                outcomes[index] = error
                continue
            prepared.append((index, item))
            prepared_clocks.append(clock)
        strategy = self.strategy if match else self.strategy.unmatched
        fitted = strategy.fit_maps_batch([item for _, item in prepared], prepared_clocks)
        for (index, item), maps in zip(prepared, fitted):
            outcomes[index] = maps if isinstance(maps, BaseException) else (self._look(maps, *item[2:]), item[0])
        return outcomes

    @staticmethod
    def apply(look: Look, source, strength: float = 1.0) -> np.ndarray:
        """``look`` at ``strength`` applied to ``source`` (path or array), its shape, dtype and alpha kept.

        Re-applying a fitted look is cheap: a strength slider needs no new :meth:`fit`.
        """
        if not 0.0 <= strength <= 1.0:
            raise HistocolorError(f"strength must be between 0 and 1, got {strength}")
        source_image = as_image(source)
        rgb = look.blended(strength).apply(source_image.rgb)
        return rgb if source_image.alpha is None else np.dstack([rgb, source_image.alpha])


def transfer(
    source,
    reference,
    method: str = "analogy",
    *,
    strength: float = 1.0,
    source_labels=None,
    reference_labels=None,
    region_map=None,
    **options,
) -> TransferResult:
    """Recolour ``source`` with the colours of ``reference``.

    Args:
        source, reference: image paths or arrays (``(H, W)``, ``(H, W, 3)`` or ``(H, W, 4)``;
            uint8, uint16 or float in [0, 1]). Any sizes and aspect ratios.
        method: ``analogy`` (default, the network), ``reinhard``, ``mkl``, ``histmatch`` or ``idt``.
        strength: 0 keeps the source, 1 applies the full change.
        source_labels, reference_labels: label maps (arrays or mask paths) for a region-wise
            transfer; ``region_map`` maps source labels to reference labels (default: same label).
        **options: passed to :class:`ColorTransfer` (``weights``, ``device``, ``max_side``,
            ``lut_size``, ``model``).

    Returns:
        :class:`TransferResult` with ``.image`` (same size and dtype as the source, alpha
        untouched) and ``.look``.
    """
    return ColorTransfer(method, **options)(
        source, reference, strength=strength, source_labels=source_labels, reference_labels=reference_labels,
        region_map=region_map,
    )
