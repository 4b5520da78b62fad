"""Colour maps: what every transfer method fits, and the one step that applies them.

A *colour map* maps sRGB colours ``(N, 3)`` float32 in [0, 1] to colours of the same
shape. It depends on the colour alone, never on where a pixel sits, so it applies to an
image of any size, a chunk at a time, and tabulates into a 3D LUT (a ``.cube`` file for
other tools). The kinds: a fitted 3D LUT (the network, :class:`LutMap`), an affine map
(Reinhard, MKL), per-channel curves (histogram matching) and a composed map (IDT); the
classical ones live in :mod:`histocolor.classical`.

A :class:`Look` is what a transfer fitted: one colour map per source region plus one for
the rest of the image, and the feathered region weights. A global transfer is the look of
one region that covers everything; the same :meth:`Look.apply` serves both.
"""

from dataclasses import dataclass, field

import numpy as np

from histocolor.dtypes import full_scale, to_uint
from histocolor.lut import DEFAULT_LUT_SIZE, apply_lut, blend_luts, interpolate, lut_from_mapping, map_distinct_colours

_CHUNK_PIXELS = 1 << 21
# From this many values (a megapixel), mapping an 8-bit image's distinct colours beats mapping every pixel.
_DISTINCT_FROM = 3 << 20


def to_unit(rgb: np.ndarray) -> np.ndarray:
    """Pixels of any shape ``(..., 3)`` as ``(N, 3)`` float32 in [0, 1].

    Example:
        >>> to_unit(np.array([[[255, 0, 51]]], dtype=np.uint8))
        array([[1. , 0. , 0.2]], dtype=float32)
    """
    return rgb.reshape(-1, 3).astype(np.float32) / np.float32(full_scale(rgb.dtype))


def from_unit(values: np.ndarray, dtype) -> np.ndarray:
    """Float values in [0, 1] back to ``dtype``: :func:`~histocolor.dtypes.to_uint` for integers,
    clipped float32 otherwise."""
    if full_scale(dtype) == 1.0:
        return np.clip(values, 0.0, 1.0).astype(np.float32)
    return to_uint(values, dtype)


def _bilinear_axis(size_in: int, size_out: int):
    """Source rows (or columns) and weights of a bilinear resize along one axis (pixel centres aligned)."""
    position = np.maximum((np.arange(size_out) + 0.5) * (size_in / size_out) - 0.5, 0.0)
    lower = np.minimum(position.astype(np.intp), size_in - 1)
    upper = np.minimum(lower + 1, size_in - 1)
    return lower, upper, (position - lower).astype(np.float32)


def resize_bilinear(plane: np.ndarray, shape) -> np.ndarray:
    """An ``(h, w)`` float plane resized to ``shape`` by bilinear interpolation, float32.

    Pixel centres are aligned (as torch's ``interpolate(..., align_corners=False)``), and
    there is no antialiasing: meant for enlarging a small weight map to an image.

    Example:
        >>> resize_bilinear(np.array([[0.0, 1.0]]), (1, 4))
        array([[0.  , 0.25, 0.75, 1.  ]], dtype=float32)
    """
    plane = np.asarray(plane, dtype=np.float32)
    rows_lo, rows_hi, row_t = _bilinear_axis(plane.shape[0], shape[0])
    cols_lo, cols_hi, col_t = _bilinear_axis(plane.shape[1], shape[1])
    top, bottom = plane[rows_lo], plane[rows_hi]
    rows = top + row_t[:, None] * (bottom - top)  # (H, w): rows first, on the small width
    left, right = rows[:, cols_lo], rows[:, cols_hi]
    return left + col_t[None, :] * (right - left)


class ColorMap:
    """A map of sRGB colours ``(N, 3)`` float32 in [0, 1] -> ``(N, 3)`` float32 in [0, 1].

    Subclasses implement ``__call__``; :meth:`apply` and :meth:`to_lut` follow from it.
    """

    def __call__(self, pixels: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    def apply(self, rgb: np.ndarray) -> np.ndarray:
        """Map every pixel of an ``(H, W, 3)`` image (uint8, uint16 or float); same shape and dtype.

        An 8-bit image is mapped one distinct colour at a time (the map depends on the colour alone).
        """
        if rgb.dtype == np.uint8 and rgb.ndim == 3 and rgb.size >= _DISTINCT_FROM:
            return map_distinct_colours(rgb, self)
        flat = rgb.reshape(-1, 3)
        out = np.empty_like(flat)
        for start in range(0, len(flat), _CHUNK_PIXELS):  # chunks bound the float copies
            out[start : start + _CHUNK_PIXELS] = from_unit(self(to_unit(flat[start : start + _CHUNK_PIXELS])), rgb.dtype)
        return out.reshape(rgb.shape)

    def to_lut(self, size: int = DEFAULT_LUT_SIZE) -> np.ndarray:
        """The map tabulated on a ``size^3`` sRGB grid, ``(size, size, size, 3)`` float32, indexed [r, g, b]."""
        return lut_from_mapping(self, size)

    def tabulated(self, size: int = DEFAULT_LUT_SIZE) -> "LutMap":
        """This map as a 3D LUT of ``size`` (what a .cube file holds), fast to apply to many frames."""
        return LutMap(self.to_lut(size))

    def blended(self, strength: float) -> "ColorMap":
        """This map at ``strength``: 1 is the map, 0 the identity, in between a linear blend."""
        return self if strength == 1.0 else BlendedMap(self, float(strength))


class BlendedMap(ColorMap):
    """``x + strength * (base(x) - x)``: a map dialled toward the identity."""

    def __init__(self, base: ColorMap, strength: float):
        self.base, self.strength = base, strength

    def __call__(self, pixels: np.ndarray) -> np.ndarray:
        pixels = np.asarray(pixels, dtype=np.float32)
        return pixels + np.float32(self.strength) * (self.base(pixels) - pixels)


class ComposedMap(ColorMap):
    """Maps applied one after the other: ``maps[-1](... maps[0](x))``, e.g. hm-mkl-hm's three steps."""

    def __init__(self, maps):
        self.maps = list(maps)

    def __call__(self, pixels: np.ndarray) -> np.ndarray:
        pixels = np.asarray(pixels, dtype=np.float32)
        for step in self.maps:
            pixels = step(pixels)
        return pixels


class LutMap(ColorMap):
    """A 3D LUT ``(S, S, S, 3)`` over sRGB, applied by trilinear interpolation.

    Example:
        >>> from histocolor.lut import identity_lut
        >>> LutMap(identity_lut(5))(np.array([[0.1, 0.5, 0.9]], dtype=np.float32)).round(3)
        array([[0.1, 0.5, 0.9]], dtype=float32)
    """

    def __init__(self, lut: np.ndarray):
        self.lut = np.asarray(lut, dtype=np.float32)

    def __call__(self, pixels: np.ndarray) -> np.ndarray:
        return interpolate(self.lut, np.asarray(pixels, dtype=np.float32))

    def apply(self, rgb: np.ndarray) -> np.ndarray:
        return apply_lut(rgb, self.lut)  # 8-bit images take its one-lookup-per-colour path

    def to_lut(self, size: int = DEFAULT_LUT_SIZE) -> np.ndarray:
        return self.lut if size == self.lut.shape[0] else super().to_lut(size)

    def blended(self, strength: float) -> "LutMap":
        # Trilinear interpolation is linear in the table, so blending the table is blending the map.
        return self if strength == 1.0 else LutMap(blend_luts(self.lut, strength))


@dataclass
class Look:
    """What a transfer fitted, ready to apply to the source (or any image of its framing).

    Attributes:
        maps: one colour map per matched source region, then one for the rest of the image
            (None where that part owns no pixel). A global look holds the rest's map alone.
        weights: ``(len(maps), h, w)`` float32 weights at any resolution (they are resized to
            the image), summing to 1 per pixel; the default is the rest everywhere.
        labels: the source label groups of the regions (``maps[:-1]``), for naming them.
        label_map: the source's ``(H, W)`` label map (None without regions).
    """

    maps: list
    weights: np.ndarray = field(default_factory=lambda: np.ones((1, 1, 1), np.float32))
    labels: list = field(default_factory=list)
    label_map: np.ndarray | None = None

    @property
    def shared_pixels(self):
        """What the reference shares with the source, when this look was fitted on those pixels (else None)."""
        return next((m.shared for m in self.maps if getattr(m, "shared", None) is not None), None)

    @property
    def is_global(self) -> bool:
        """One colour map for every pixel (no regions)."""
        return not self.labels

    def blended(self, strength: float) -> "Look":
        """The look at ``strength`` (0 keeps the image, 1 is the full change)."""
        maps = [None if m is None else m.blended(strength) for m in self.maps]
        return Look(maps, self.weights, self.labels, self.label_map)

    def apply(self, rgb: np.ndarray) -> np.ndarray:
        """``sum_r weight_r(x) * map_r(rgb(x))`` for an ``(H, W, 3)`` image; same shape and dtype."""
        present = [(m, w) for m, w in zip(self.maps, self.weights) if m is not None and w.max() > 0]
        if len(present) == 1 and present[0][1].min() >= 1.0:  # one map owns every pixel: no blend needed
            return present[0][0].apply(rgb)
        height, width = rgb.shape[:2]
        scale = np.float32(full_scale(rgb.dtype))
        total = np.zeros((height, width, 3), dtype=np.float32)
        for colour_map, small in present:
            full = resize_bilinear(small, (height, width))
            total += full[..., None] * (colour_map.apply(rgb).astype(np.float32) / scale)
        return from_unit(total, rgb.dtype)
