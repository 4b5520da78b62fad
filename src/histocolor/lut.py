"""3D colour lookup tables: fit one to example colour pairs, apply one to any image.

A LUT here is a float32 array ``(S, S, S, 3)`` indexed ``[r, g, b]`` over an even grid
of sRGB in [0, 1], holding output sRGB in [0, 1]; it is applied by trilinear
interpolation. The transfer engine runs the network at a small working size, fits a
LUT to the (source colour -> output colour) pairs it sees there and applies it to the
full-resolution source: the colour change reaches every pixel without any blur,
because no pixel looks at its neighbours.
"""

import os
from concurrent.futures import ThreadPoolExecutor
from functools import lru_cache

import numpy as np

from histocolor.dtypes import full_scale, to_uint

DEFAULT_LUT_SIZE = 17  # by measurement: see docs/BENCHMARKS.md (33 for the finest fit)
DEFAULT_SMOOTHNESS = 1e-6
# The largest LUT :func:`fit_lut` fits: its cost grows with the grid's nodes (a 200x133 image
# took 17 s at 65 and 6 minutes, 1.4 GB, at 129). Tabulating a look is cheap at any size.
MAX_FITTED_LUT_SIZE = 65
_COARSEST_SIZE = 9
_TOLERANCE = 1e-4  # relative residual of the LUT fit's linear solve
_COARSE_TOLERANCE = 1e-2  # coarse grids only provide the starting point
_THREADS = max(1, min(8, os.cpu_count() or 1))

# The eight cell corners as (dr, dg, db) offsets, in a fixed order.
_CORNERS = np.array([(dr, dg, db) for dr in (0, 1) for dg in (0, 1) for db in (0, 1)])


def identity_lut(size: int = DEFAULT_LUT_SIZE) -> np.ndarray:
    """The LUT that maps every colour to itself, ``(size, size, size, 3)`` float32."""
    axis = np.linspace(0.0, 1.0, size, dtype=np.float32)
    r, g, b = np.meshgrid(axis, axis, axis, indexing="ij")
    return np.stack([r, g, b], axis=-1)


def lut_from_mapping(mapping, size: int = DEFAULT_LUT_SIZE) -> np.ndarray:
    """Tabulate a colour mapping ``(N, 3) -> (N, 3)`` (sRGB in [0, 1]) on the LUT grid."""
    nodes = identity_lut(size).reshape(-1, 3)
    return np.clip(mapping(nodes), 0.0, 1.0).astype(np.float32).reshape(size, size, size, 3)


def blend_luts(lut: np.ndarray, strength: float) -> np.ndarray:
    """Blend ``lut`` toward the identity: strength 1 keeps it, 0 changes nothing."""
    identity = identity_lut(lut.shape[0])
    return (identity + np.float32(strength) * (lut - identity)).astype(np.float32)


def _cells(pixels: np.ndarray, size: int):
    """Flat index of each pixel's lower cell corner and its position inside the cell."""
    scaled = np.clip(pixels, 0.0, 1.0).astype(np.float32) * (size - 1)
    lower = np.minimum(scaled.astype(np.int64), size - 2)
    fraction = scaled - lower
    base = (lower[:, 0] * size + lower[:, 1]) * size + lower[:, 2]
    return base, fraction


def _corner_weights(fraction: np.ndarray):
    """Trilinear weight of each of the eight corners, ``(8, N)``, and their flat offsets."""
    weights = np.ones((8, len(fraction)), dtype=np.float32)
    for k, corner in enumerate(_CORNERS):
        for axis in range(3):
            weights[k] *= fraction[:, axis] if corner[axis] else 1.0 - fraction[:, axis]
    return weights


def _corner_offsets(size: int) -> np.ndarray:
    return (_CORNERS[:, 0] * size + _CORNERS[:, 1]) * size + _CORNERS[:, 2]


def interpolate(lut: np.ndarray, pixels: np.ndarray) -> np.ndarray:
    """Trilinear lookup of ``pixels`` ``(N, 3)`` in [0, 1] -> ``(N, 3)`` float32."""
    size = lut.shape[0]
    base, fraction = _cells(pixels, size)
    weights = _corner_weights(fraction)
    table = lut.reshape(-1, 3)
    out = np.zeros((len(pixels), 3), dtype=np.float32)
    for k, offset in enumerate(_corner_offsets(size)):
        out += weights[k, :, None] * table[base + offset]
    return out


class _BandedMatrix:
    """A symmetric matrix held as a few diagonals: ``diagonals[shift][i]`` is ``M[i, i + shift]``
    (and ``M[i + shift, i]``), zero past the end. The LUT fit's normal equations have 14 (27 with
    their mirrors), so a product is 27 shifted multiply-adds: no sparse-matrix package needed.
    """

    def __init__(self, cells: int):
        self.cells = cells
        self.diagonals: dict[int, np.ndarray] = {}

    def add(self, shift: int, values: np.ndarray, scale: float = 1.0) -> None:
        self.diagonals[shift] = self.diagonals.get(shift, 0.0) + scale * np.asarray(values, dtype=np.float64)
        self.__dict__.pop("_bands", None)  # products see the new diagonal

    def diagonal(self) -> np.ndarray:
        return self.diagonals[0]

    def __matmul__(self, x: np.ndarray) -> np.ndarray:
        """``M @ x`` for ``x`` ``(cells, k)``."""
        if not hasattr(self, "_bands"):  # (shift, column of the diagonal) once, for the solver's many products
            self._bands = [(shift, values[:-shift, None]) for shift, values in self.diagonals.items() if shift]
            self._main = self.diagonals[0][:, None]
        y = self._main * x
        scratch = np.empty_like(x)
        for shift, band in self._bands:
            product = np.multiply(band, x[shift:], out=scratch[:-shift])
            y[:-shift] += product
            np.multiply(band, x[:-shift], out=product)
            y[shift:] += product
        return y


@lru_cache(maxsize=4)
def _grid_laplacian(size: int) -> dict[int, np.ndarray]:
    """Graph Laplacian of the ``size^3`` grid (6-neighbourhood), the smoothness penalty, as the
    diagonals of a :class:`_BandedMatrix`: each node's degree, and -1 towards each next neighbour
    along b (shift 1), g (shift ``size``) and r (shift ``size^2``)."""
    r, g, b = np.meshgrid(*(np.arange(size),) * 3, indexing="ij")
    diagonals, degree = {}, np.zeros((size,) * 3)
    for shift, axis in ((1, b), (size, g), (size * size, r)):
        has_next = axis < size - 1
        diagonals[shift] = -has_next.astype(np.float64).ravel()
        degree += has_next.astype(np.float64) + (axis > 0)
    diagonals[0] = degree.ravel()
    return diagonals


def _normal_matrix(base, weights, size) -> _BandedMatrix:
    """``W^T W`` of the trilinear design matrix, built diagonal by diagonal with bincount.

    Corners a and b of a cell sit a fixed flat distance apart, so every product
    ``w_a * w_b`` lands on one of 14 diagonals (and their mirrors); this avoids a 64 N-entry
    sparse product. Each pair a <= b is counted once.
    """
    cells = size**3
    offsets = _corner_offsets(size)
    matrix = _BandedMatrix(cells)
    for a in range(8):
        rows = base + offsets[a]
        for b in range(a, 8):
            matrix.add(int(offsets[b] - offsets[a]), np.bincount(rows, weights=weights[a] * weights[b], minlength=cells))
    return matrix


def _columnwise_dot(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return np.einsum("ij,ij->j", a, b)


def _conjugate_gradient(matrix, rhs, initial, tolerance=1e-4, max_iterations=1000):
    """Jacobi-preconditioned CG on several right-hand sides at once (columns of ``rhs``)."""
    inverse_diagonal = 1.0 / matrix.diagonal()[:, None]
    solution = initial.copy()
    residual = rhs - matrix @ solution
    preconditioned = residual * inverse_diagonal
    direction = preconditioned.copy()
    residual_dot = _columnwise_dot(residual, preconditioned)
    stop = (tolerance**2) * np.maximum(_columnwise_dot(rhs, rhs), 1e-60)
    for _ in range(max_iterations):
        if np.all(_columnwise_dot(residual, residual) <= stop):
            break
        product = matrix @ direction
        step = residual_dot / np.maximum(_columnwise_dot(direction, product), 1e-30)
        solution += step * direction
        residual -= step * product
        np.multiply(residual, inverse_diagonal, out=preconditioned)
        new_residual_dot = _columnwise_dot(residual, preconditioned)
        direction *= new_residual_dot / np.maximum(residual_dot, 1e-30)
        direction += preconditioned
        residual_dot = new_residual_dot
    return solution


def fit_lut(
    source: np.ndarray,
    target: np.ndarray,
    size: int = DEFAULT_LUT_SIZE,
    smoothness: float = DEFAULT_SMOOTHNESS,
    weights: np.ndarray | None = None,
    start: np.ndarray | None = None,
) -> np.ndarray:
    """Fit the LUT whose trilinear lookup of ``source`` best reproduces ``target``.

    Least squares on the colour *change* (LUT minus identity) with a Laplacian
    smoothness penalty: cells the examples never reach are filled by the smoothest
    continuation of the change around them, so unseen colours move like their
    neighbours instead of snapping back to themselves.

    Args:
        source: ``(N, 3)`` sRGB in [0, 1], the colours the change was observed on.
        target: ``(N, 3)`` sRGB in [0, 1], what they became.
        size: grid points per axis.
        smoothness: weight of the penalty relative to the mean squared data error.
        weights: ``(N,)`` non-negative weight of each example (default: all 1), e.g. a
            robust refit's, so that examples that disagree count for little.
        start: a LUT of the same size to start the solver from (a refit's previous LUT): the
            same solution, in fewer iterations.

    Returns:
        ``(size, size, size, 3)`` float32 LUT with values in [0, 1].
    """
    source = np.clip(np.asarray(source, dtype=np.float32).reshape(-1, 3), 0.0, 1.0)
    target = np.asarray(target, dtype=np.float32).reshape(-1, 3)
    if len(source) == 0 or len(source) != len(target):
        raise ValueError("fit_lut needs as many target colours as source colours, at least one")
    if weights is not None:
        weights = np.asarray(weights, dtype=np.float32).reshape(-1)
        if len(weights) != len(source) or not (weights >= 0).all() or not weights.sum() > 0:
            raise ValueError("fit_lut's weights must be one non-negative number per example, not all zero")
    change = (target - source).astype(np.float64)
    if start is not None and np.shape(start) != (size, size, size, 3):
        raise ValueError(f"fit_lut's start must be a ({size}, {size}, {size}, 3) LUT, got {np.shape(start)}")
    initial = None if start is None else (np.asarray(start, np.float64) - identity_lut(size)).reshape(-1, 3)
    return np.clip(identity_lut(size) + _fit_change(source, change, size, smoothness, _TOLERANCE, weights, initial),
                   0.0, 1.0)


def _fit_change(source, change, size, smoothness, tolerance, sample_weights=None, initial=None) -> np.ndarray:
    """The regularised least-squares colour change on a ``size^3`` grid, ``(S, S, S, 3)``."""
    base, fraction = _cells(source, size)
    weights = _corner_weights(fraction)
    count, weighted_change = float(len(source)), change
    if sample_weights is not None:  # each example's weight enters both W^T W and W^T y
        count = float(sample_weights.sum())
        weighted_change = change * sample_weights[:, None]
    rhs = np.zeros((size**3, 3))
    for k, offset in enumerate(_corner_offsets(size)):
        for channel in range(3):
            rhs[:, channel] += np.bincount(base + offset, weights=weights[k] * weighted_change[:, channel],
                                           minlength=size**3)
    # W^T S W: the products of two corner weights each carry the example's weight once.
    matrix = _normal_matrix(base, weights if sample_weights is None else weights * np.sqrt(sample_weights), size)
    for values in matrix.diagonals.values():
        values /= count
    for shift, values in _grid_laplacian(size).items():
        matrix.add(shift, values, smoothness)
    matrix.add(0, np.full(size**3, 1e-9))  # a tiny ridge keeps the system positive definite whatever the data
    # Coarse to fine: the solution on a half-resolution grid (solved loosely, it is only a
    # start) saves most of the iterations the Laplacian would otherwise need.
    if initial is None and size <= _COARSEST_SIZE:
        initial = np.zeros((size**3, 3))
    elif initial is None:
        coarse = _fit_change(source, change, (size + 1) // 2, smoothness, _COARSE_TOLERANCE, sample_weights)
        initial = interpolate(coarse, identity_lut(size).reshape(-1, 3)).astype(np.float64)
    solution = _conjugate_gradient(matrix, rhs / count, initial, tolerance)
    return solution.reshape(size, size, size, 3).astype(np.float32)


# Pixels per step of the distinct-colour passes: their colour codes stay in a small, warm buffer.
_CODES_CHUNK = 1 << 16


def _colour_codes(raw: np.ndarray, start: int, stop: int, out: np.ndarray) -> np.ndarray:
    """Pixels ``start:stop`` of a flat C-contiguous uint8 RGB buffer as integers r | g << 8 | b << 16,
    written into ``out`` (at least ``stop - start`` long); returns the filled part.

    Read straight from the bytes: a little-endian uint32 every 3 bytes holds a pixel and the
    next pixel's red, which the mask drops (the image's last pixel, lacking a 4th byte, is done
    apart).
    """
    count = raw.size // 3
    codes = out[: stop - start]
    whole = min(stop, count - 1) - start  # pixels that own a 4th byte to read
    if whole > 0:
        words = np.ndarray((whole,), dtype="<u4", buffer=raw, offset=3 * start, strides=(3,))
        np.bitwise_and(words, 0xFFFFFF, out=codes[:whole])
    if stop == count:
        last = raw[-3:].astype(np.uint32)
        codes[-1] = last[0] | (last[1] << 8) | (last[2] << 16)
    return codes


def map_distinct_colours(image: np.ndarray, mapping) -> np.ndarray:
    """Apply a colour ``mapping`` (``(N, 3)`` float32 in [0, 1] -> ``(N, 3)`` in [0, 1]) to an 8-bit
    ``(H, W, 3)`` image, looking up each distinct colour once; uint8 out.

    A photo of 12 megapixels holds well under a million distinct colours, so mapping them in a
    2^24-entry table beats mapping every pixel, and the result is the same: the map depends
    on the colour alone. The table's entries are 3-byte records, so the gather writes each
    output pixel whole (a quarter faster than gathering 4-byte words and dropping a byte);
    marking and gathering run in threads over bands of pixels (numpy releases the GIL there),
    each reading its pixels' colour codes a small chunk at a time rather than keeping a code
    per pixel (4 bytes a pixel of fresh memory, which costs more to touch than to compute).
    """
    raw = np.ascontiguousarray(image).reshape(-1)
    count = raw.size // 3
    seen = np.zeros(1 << 24, dtype=bool)
    bounds = np.linspace(0, count, _THREADS + 1).astype(np.int64)
    spans = list(zip(bounds[:-1], bounds[1:]))

    def chunks(span):
        buffer = np.empty(_CODES_CHUNK, dtype=np.uint32)
        for start in range(span[0], span[1], _CODES_CHUNK):
            stop = min(start + _CODES_CHUNK, span[1])
            yield start, stop, _colour_codes(raw, start, stop, buffer)

    def mark(span):
        for _, _, codes in chunks(span):
            seen[codes] = True

    with ThreadPoolExecutor(_THREADS) as pool:
        list(pool.map(mark, spans))
        distinct = np.flatnonzero(seen).astype(np.uint32)
        colors = np.stack([distinct & 255, (distinct >> 8) & 255, distinct >> 16], axis=1)
        mapped = mapping(colors.astype(np.float32) / np.float32(255.0))
        table = np.empty((1 << 24, 3), dtype=np.uint8)  # only the seen entries are ever read
        table[distinct] = to_uint(mapped, np.uint8)
        records = table.view("V3").ravel()
        out = np.empty((count, 3), dtype=np.uint8)
        out_records = out.view("V3").ravel()

        def gather(span):
            for start, stop, codes in chunks(span):
                np.take(records, codes, out=out_records[start:stop])

        list(pool.map(gather, spans))
    return out.reshape(image.shape)


def _apply_chunked(image: np.ndarray, lut: np.ndarray, rows_per_chunk: int) -> np.ndarray:
    """Any dtype: trilinear interpolation of every pixel, bands of rows in threads."""
    scale = np.float32(full_scale(image.dtype))
    out = np.empty_like(image)

    def band(start: int) -> None:
        pixels = image[start : start + rows_per_chunk].reshape(-1, 3).astype(np.float32) / scale
        mapped = np.clip(interpolate(lut, pixels), 0.0, 1.0)  # interpolate clamps its input to [0, 1]
        if scale != 1.0:
            mapped = to_uint(mapped, image.dtype)
        out[start : start + rows_per_chunk] = mapped.reshape(out[start : start + rows_per_chunk].shape)

    starts = range(0, image.shape[0], rows_per_chunk)
    with ThreadPoolExecutor(max(1, min(_THREADS, len(starts)))) as pool:  # numpy releases the GIL
        list(pool.map(band, starts))
    return out


def apply_lut(image: np.ndarray, lut: np.ndarray, chunk_pixels: int = 1 << 18) -> np.ndarray:
    """Apply ``lut`` to an ``(H, W, 3)`` image (uint8, uint16 or float in [0, 1]); same dtype out."""
    if image.ndim != 3 or image.shape[-1] != 3:
        raise ValueError(f"expected an (H, W, 3) image, got shape {image.shape}")
    if image.dtype == np.uint8:  # 8-bit fast path: interpolate each distinct colour once, then gather
        return map_distinct_colours(image, lambda colours: interpolate(lut, colours))
    rows_per_chunk = max(1, chunk_pixels // max(1, image.shape[1]))
    return _apply_chunked(image, lut, rows_per_chunk)
