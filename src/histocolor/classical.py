"""Classical colour transfer methods, each fitted as a colour map (:mod:`histocolor.colormap`).

A fit looks at source and reference pixels, ``(N, 3)`` and ``(M, 3)`` float32 sRGB in
[0, 1], and returns a :class:`~histocolor.colormap.ColorMap` (an affine map for Reinhard and
MKL, per-channel curves for histogram matching, a composed map for IDT) that maps any
``(K, 3)`` colours to ``(K, 3)`` float32 colours clipped to [0, 1]. The mapping depends on the colour alone (never on where a pixel
sits), so applying it chunk by chunk equals applying it to the whole image, and it can be
evaluated on the nodes of an RGB lattice to export a 3D LUT.

Methods:
    ``reinhard``  Reinhard et al. 2001, mean/std matching per CIELab channel.
    ``mkl``       Pitié & Kokaram 2007, the linear Monge-Kantorovitch map between the
                  Gaussians fitted to source and reference (in RGB).
    ``histmatch`` per-channel histogram (quantile) matching in RGB.
    ``idt``       Pitié, Kokaram & Dahyot 2005, iterative distribution transfer: repeated
                  1-D matching of the marginals along random rotations of RGB.
    ``hm-mkl-hm`` histogram matching, then MKL from that result, then histogram matching
                  again: per-channel curves fix the marginals, MKL the correlations
                  between channels that they cannot reach, and the last matching the
                  marginals that MKL moved.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

import numpy as np

from histocolor.colorspace import lab_to_rgb, rgb_to_lab
from histocolor.colormap import ColorMap, ComposedMap
from histocolor.errors import HistocolorError

__all__ = [
    "CLASSICAL_METHODS",
    "fit_histmatch",
    "fit_hm_mkl_hm",
    "fit_idt",
    "fit_mkl",
    "fit_reinhard",
]

# Fits estimate Lab statistics and quantiles from at most this many pixels: a 1M random
# sample pins them to ~1e-3, and converting or ranking all 12M pixels would cost far more.
_MAX_FIT_SAMPLES = 1_000_000
# IDT ranks six sets of projections per iteration, so it works on a smaller sample.
_MAX_IDT_SAMPLES = 300_000
# Quantile levels of a 1-D matching (including the minimum and the maximum), and the
# number of cells that order statistics are counted in (see _quantiles).
_QUANTILE_LEVELS = 4096
_QUANTILE_CELLS = 1 << 16
# Histogram matching of RGB channels tabulates its maps on [0, 1] with 255 * 16 cells,
# so that every 8-bit value k/255 falls on a table node and is mapped exactly.
_CHANNEL_GRID = 255 * 16 + 1
# IDT tabulates each 1-D map on this many nodes across the source's projected range.
_PROJECTION_GRID = 4096
# Mappings process pixels in blocks this large so that their temporaries stay in cache,
# on up to this many threads.
_BLOCK = 1 << 16
_THREADS = os.cpu_count() or 1
# Variance floor (RGB units: a std of 1e-4, 1/40 of an 8-bit level) that keeps MKL's
# inverse square root finite for a flat or rank-deficient (e.g. grey) source. Smaller
# floors give T huge entries along the missing directions, whose float32 products then
# cancel badly when mapping that source's own colours.
_MKL_EPS = 1e-8
# Lab std below which a source channel counts as flat: it is then shifted, not scaled.
_FLAT_LAB_STD = 1e-3


# ----------------------------------------------------------------------------- helpers


def _check_pixels(pixels, name: str, allow_empty: bool = False) -> np.ndarray:
    """Return ``pixels`` as a float32 ``(N, 3)`` array (no copy when it already is one)."""
    arr = np.asarray(pixels)
    if arr.ndim != 2 or arr.shape[1] != 3:
        raise ValueError(f"{name} pixels must be an (N, 3) array, got shape {arr.shape}")
    if arr.shape[0] == 0 and not allow_empty:
        raise HistocolorError(f"the {name} image has no pixels")
    arr = arr.astype(np.float32, copy=False)
    # One float64 sum is non-finite exactly when some value is (finite float32 values
    # cannot overflow it) and is several times cheaper than np.isfinite(arr).all().
    if not np.isfinite(arr.sum(dtype=np.float64)):
        raise ValueError(f"{name} pixels contain NaN or infinite values")
    return arr


def _subsample(pixels: np.ndarray, limit: int, seed: int = 0) -> np.ndarray:
    """At most ``limit`` pixels, drawn reproducibly by stratified random sampling.

    One pixel is drawn at random from each of ``limit`` equal runs of the array: unlike a
    fixed stride this cannot alias with the image's rows, and the indices come out sorted,
    which keeps the gather cache-friendly.
    """
    n = len(pixels)
    if n <= limit:
        return pixels
    jitter = np.random.default_rng(seed).random(limit)
    index = ((np.arange(limit) + jitter) * (n / limit)).astype(np.intp)
    return pixels[np.minimum(index, n - 1)]


def _quantiles(values: np.ndarray, levels: int = _QUANTILE_LEVELS) -> np.ndarray:
    """Quantiles of each row of ``values`` (k, n) at ``levels`` evenly spaced probabilities.

    Probabilities run from 0 to 1 (the minimum and the maximum are included) and order
    statistics are interpolated linearly, as in ``np.quantile``. The order statistics come
    from counting instead of sorting (O(n), ~8x faster on 300k values): values fall into
    2^16 cells between the row's extremes and each cell stands for the mean of its values.
    So the result is exact up to 2^-16 of the range, and many equal values (a point mass)
    give quantiles exactly equal to that value, which ``_merge_ties`` later collapses.
    Returns float64 (k, levels).
    """
    n = values.shape[-1]
    rank = np.linspace(0.0, n - 1, levels)
    below = np.floor(rank)
    frac = rank - below
    out = np.empty((len(values), levels))
    for row, v in zip(out, values):
        lo, hi = v.min(), v.max()
        scale = np.float32((_QUANTILE_CELLS - 1) / max(float(hi) - float(lo), 1e-12))
        cell = ((v - lo) * scale).astype(np.intp)
        counts = np.bincount(cell, minlength=_QUANTILE_CELLS)
        means = np.bincount(cell, weights=v, minlength=_QUANTILE_CELLS) / np.maximum(counts, 1)
        ends = np.cumsum(counts)  # ends[c]: how many values lie in cells 0..c
        first = means[np.searchsorted(ends, below, side="right")]
        second = means[np.searchsorted(ends, np.minimum(below + 1, n - 1), side="right")]
        row[:] = first * (1.0 - frac) + second * frac
    return out


def _merge_ties(xp: np.ndarray, fp: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Make ``xp`` strictly increasing for ``np.interp``.

    Runs of equal source quantiles (a plateau: many pixels sharing one value, e.g. clipped
    blacks) collapse to one node whose target is the mean of the run's reference quantiles,
    i.e. the mean of the reference mass those pixels are matched to.
    """
    unique, run = np.unique(xp, return_inverse=True)
    counts = np.bincount(run)
    return unique, np.bincount(run, weights=fp) / counts


class _Table1D:
    """A monotone piecewise-linear 1-D map tabulated on a uniform grid over [lo, hi].

    Evaluating on a uniform grid is an index computation instead of ``np.interp``'s binary
    search (about 10x faster on millions of values). Beyond [lo, hi] the map is constant.
    """

    def __init__(self, xp: np.ndarray, fp: np.ndarray, lo: float, hi: float, size: int):
        hi = max(hi, lo + 1e-6)  # a flat source still gets a valid (constant) table
        grid = np.linspace(lo, hi, size)
        values = np.interp(grid, *_merge_ties(xp, fp))
        self.lo = np.float32(lo)
        self.inv_step = np.float32((size - 1) / (hi - lo))
        self.last = np.float32(size - 1)
        self.values = values.astype(np.float32)
        # Slope of each cell; the last node gets 0 so that t == hi needs no special case.
        self.slopes = np.append(np.diff(values), 0.0).astype(np.float32)

    def apply_(self, t: np.ndarray) -> np.ndarray:
        """Map the float32 1-D array ``t`` in place (it is used as scratch) and return it."""
        t -= self.lo
        t *= self.inv_step
        np.clip(t, 0, self.last, out=t)
        cell = np.floor(t)
        t -= cell  # now the fraction within the cell
        index = cell.astype(np.intp)
        t *= self.slopes.take(index)
        t += self.values.take(index)
        return t


class _Mapping(ColorMap):
    """Shared call path: validate, map block by block, clip to [0, 1]."""

    def __call__(self, pixels: np.ndarray) -> np.ndarray:
        x = _check_pixels(pixels, "input", allow_empty=True)
        out = np.empty(x.shape, np.float32)

        def map_block(start: int) -> None:
            out[start : start + _BLOCK] = self._map_block(x[start : start + _BLOCK])

        # Fixed-size blocks bound temporaries and keep them in cache; every operation is
        # per pixel, so the result does not depend on the block boundaries. numpy releases
        # the GIL in its array loops, so threads spread the blocks over the CPU cores.
        starts = range(0, len(x), _BLOCK)
        if len(starts) > 1 and _THREADS > 1:
            with ThreadPoolExecutor(min(_THREADS, len(starts))) as pool:
                list(pool.map(map_block, starts))
        else:
            for start in starts:
                map_block(start)
        np.clip(out, 0.0, 1.0, out=out)
        return out

    def _map_block(self, x: np.ndarray) -> np.ndarray:
        raise NotImplementedError


# ----------------------------------------------------------------------------- Reinhard


class ReinhardMapping(_Mapping):
    """``lab -> scale * lab + offset`` per CIELab channel (attributes are float64 (3,))."""

    def __init__(self, scale: np.ndarray, offset: np.ndarray):
        self.scale = scale
        self.offset = offset
        self._scale = scale.astype(np.float32)
        self._offset = offset.astype(np.float32)

    def _map_block(self, x):
        lab = rgb_to_lab(x)
        lab *= self._scale
        lab += self._offset
        return lab_to_rgb(lab, clip=True)


def fit_reinhard(source: np.ndarray, reference: np.ndarray) -> ReinhardMapping:
    """Reinhard et al. 2001: match each CIELab channel's mean and standard deviation."""
    source = _check_pixels(source, "source")
    reference = _check_pixels(reference, "reference")
    stats = []
    for pixels in (source, reference):
        lab = rgb_to_lab(_subsample(pixels, _MAX_FIT_SAMPLES))
        stats.append((lab.mean(axis=0, dtype=np.float64), lab.std(axis=0, dtype=np.float64)))
    (mu_s, std_s), (mu_r, std_r) = stats
    # A flat source channel carries no spread to rescale: shift it only, so that colours the
    # source never had (e.g. LUT nodes) are not blown up by a huge gain.
    scale = np.where(std_s > _FLAT_LAB_STD, std_r / np.maximum(std_s, _FLAT_LAB_STD), 1.0)
    return ReinhardMapping(scale, mu_r - scale * mu_s)


# ----------------------------------------------------------------------------- MKL


def _mean_cov(pixels: np.ndarray, chunk: int = 1 << 16) -> tuple[np.ndarray, np.ndarray]:
    """Mean and (population, 1/N) covariance of (N, 3) pixels, accumulated in float64.

    Sums of x and x x^T over chunks are BLAS products, far faster than ``np.cov`` on the
    whole array (the chunks stay in cache); shifting by a rough mean first avoids
    cancellation in E[xx^T] - mu mu^T.
    """
    shift = _subsample(pixels, 1024).mean(axis=0, dtype=np.float64)
    ones = np.ones(chunk)
    total = np.zeros(3)
    second = np.zeros((3, 3))
    for start in range(0, len(pixels), chunk):
        block = pixels[start : start + chunk].astype(np.float64)
        block -= shift
        total += ones[: len(block)] @ block
        second += block.T @ block
    mean = total / len(pixels)
    cov = second / len(pixels) - np.outer(mean, mean)
    return mean + shift, (cov + cov.T) / 2


def _sqrt_psd(matrix: np.ndarray, floor: float) -> tuple[np.ndarray, np.ndarray]:
    """Symmetric square root and inverse square root, eigenvalues clamped at ``floor``."""
    eigval, eigvec = np.linalg.eigh(matrix)
    root = np.sqrt(np.maximum(eigval, floor))
    inv_root = np.divide(1.0, root, out=np.zeros_like(root), where=root > 0)
    return (eigvec * root) @ eigvec.T, (eigvec * inv_root) @ eigvec.T


class LinearMapping(_Mapping):
    """``x -> matrix @ x + offset`` in RGB (``matrix`` (3, 3), ``offset`` (3,), float64)."""

    def __init__(self, matrix: np.ndarray, offset: np.ndarray):
        self.matrix = matrix
        self.offset = offset
        self._matrix_t = matrix.T.astype(np.float32)
        self._offset = offset.astype(np.float32)

    def _map_block(self, x):
        y = x @ self._matrix_t
        y += self._offset
        return y


def fit_mkl(source: np.ndarray, reference: np.ndarray) -> LinearMapping:
    """Pitié & Kokaram 2007: the linear Monge-Kantorovitch colour mapping.

    Of all linear maps taking N(mu_s, Cs) onto N(mu_r, Cr), ``x -> T (x - mu_s) + mu_r``
    with ``T = Cs^-1/2 (Cs^1/2 Cr Cs^1/2)^1/2 Cs^-1/2`` moves colours the least (in mean
    squared RGB distance). T is symmetric positive (semi-)definite and T Cs T = Cr.
    """
    source = _check_pixels(source, "source")
    reference = _check_pixels(reference, "reference")
    mu_s, cov_s = _mean_cov(source)
    mu_r, cov_r = _mean_cov(reference)
    # Clamping Cs's eigenvalues regularises a flat or rank-deficient source (grey image).
    root_s, inv_root_s = _sqrt_psd(cov_s, _MKL_EPS)
    middle, _ = _sqrt_psd(root_s @ cov_r @ root_s, 0.0)
    transform = inv_root_s @ middle @ inv_root_s
    transform = (transform + transform.T) / 2
    return LinearMapping(transform, mu_r - transform @ mu_s)


# ----------------------------------------------------------------------------- histmatch


class ChannelMapping(_Mapping):
    """Independent monotone 1-D maps of R, G and B (``tables``: three ``_Table1D``)."""

    def __init__(self, tables: list[_Table1D]):
        self.tables = tables

    def _map_block(self, x):
        channels = np.array(x.T, order="C")  # always a copy: apply_ uses it as scratch
        for table, channel in zip(self.tables, channels):
            table.apply_(channel)
        return channels.T


def fit_histmatch(source: np.ndarray, reference: np.ndarray) -> ChannelMapping:
    """Per-channel histogram matching in RGB: source quantiles -> reference quantiles."""
    source = _check_pixels(source, "source")
    reference = _check_pixels(reference, "reference")
    source_q = _quantiles(_subsample(source, _MAX_FIT_SAMPLES).T)
    reference_q = _quantiles(_subsample(reference, _MAX_FIT_SAMPLES).T)
    tables = [_Table1D(s, r, 0.0, 1.0, _CHANNEL_GRID) for s, r in zip(source_q, reference_q)]
    return ChannelMapping(tables)


# ----------------------------------------------------------------------------- IDT


def _random_rotation(rng: np.random.Generator) -> np.ndarray:
    """An orthonormal 3x3 matrix drawn uniformly (Haar) from O(3).

    QR of a Gaussian matrix; fixing the signs so that R's diagonal is positive makes Q
    unique and its distribution uniform. (A reflection is as good as a rotation here.)
    """
    q, r = np.linalg.qr(rng.standard_normal((3, 3)))
    return q * np.sign(np.diag(r))


def _change_of_axes(rotation: np.ndarray, previous: np.ndarray) -> np.ndarray:
    """R_k R_{k-1}^T as float32: from the previous step's coordinates to this step's."""
    return (rotation @ previous.T).astype(np.float32)


class IDTMapping(_Mapping):
    """The recorded IDT iterations, replayable on any colours.

    Iteration k moves x to ``x + R_k^T (f_k(R_k x) - R_k x)``, with ``f_k`` the three 1-D
    maps along the rows of the rotation ``R_k``. Because R_k is orthonormal, the result
    satisfies ``R_k x_new = f_k(R_k x)``: the state can stay in rotated coordinates, and one
    step is ``q <- f_k(R_k R_{k-1}^T q)`` -- one 3x3 product and three table look-ups.

    Attributes:
        rotations: (iterations, 3, 3) float64, the R_k.
        tables: per iteration, the three ``_Table1D`` maps f_k.
        sliced_distances: per iteration, the RMS quantile gap between the (moved) source
            samples and the reference along R_k's axes *before* the step: a sliced
            Wasserstein-2 estimate on fresh random directions, which falls as IDT converges.
    """

    def __init__(self, rotations: np.ndarray, tables: list[list[_Table1D]], sliced_distances: list[float]):
        self.rotations = rotations
        self.tables = tables
        self.sliced_distances = sliced_distances
        # Change of coordinates before each step (with R_0 = I) and, at the end, back to RGB.
        previous = [np.eye(3), *rotations[:-1]]
        self._steps = [_change_of_axes(r, p) for r, p in zip(rotations, previous)]
        self._to_rgb = (rotations[-1] if len(rotations) else np.eye(3)).astype(np.float32)

    def _map_block(self, x):
        q = np.ascontiguousarray(x.T)
        for step, tables in zip(self._steps, self.tables):
            q = step @ q
            for table, row in zip(tables, q):
                table.apply_(row)
        return q.T @ self._to_rgb  # (R_K^T q)^T


def fit_idt(source: np.ndarray, reference: np.ndarray, *, iterations: int = 20, seed: int = 0) -> IDTMapping:
    """Pitié, Kokaram & Dahyot 2005: iterative N-dimensional distribution transfer in RGB.

    Each iteration draws a random rotation, matches the source samples' three 1-D marginals
    along its axes to the reference's, and records the rotation and 1-D maps so the whole
    sequence can be replayed on any colours. Only the final output is clipped to [0, 1].
    """
    source = _check_pixels(source, "source")
    reference = _check_pixels(reference, "reference")
    if iterations < 0:
        raise ValueError(f"iterations must be >= 0, got {iterations}")
    rng = np.random.default_rng(seed)
    # Same sampling for both, so that reference == source gives the identity exactly.
    moved = np.ascontiguousarray(_subsample(source, _MAX_IDT_SAMPLES, seed).T)  # (3, n)
    target = _subsample(reference, _MAX_IDT_SAMPLES, seed).T  # (3, m)

    rotations, all_tables, distances = [], [], []
    previous = np.eye(3)
    for _ in range(iterations):
        rotation = _random_rotation(rng)
        # Same float32 operation as IDTMapping's replay, so replay reproduces these samples.
        moved = _change_of_axes(rotation, previous) @ moved
        source_q = _quantiles(moved)
        reference_q = _quantiles(rotation.astype(np.float32) @ target)
        distances.append(float(np.sqrt(np.mean((source_q - reference_q) ** 2))))
        tables = [_Table1D(s, r, s[0], s[-1], _PROJECTION_GRID) for s, r in zip(source_q, reference_q)]
        for table, row in zip(tables, moved):
            table.apply_(row)
        rotations.append(rotation)
        all_tables.append(tables)
        previous = rotation
    return IDTMapping(np.array(rotations).reshape(-1, 3, 3), all_tables, distances)


# ----------------------------------------------------------------------------- hm-mkl-hm


def fit_hm_mkl_hm(source: np.ndarray, reference: np.ndarray) -> ComposedMap:
    """Histogram matching, then MKL, then histogram matching, each fitted on the previous result.

    Each step is fitted on (a sample of) the source as the steps before it map it, so the
    composed map, like its parts, depends on the colour alone.
    """
    source = _subsample(_check_pixels(source, "source"), _MAX_FIT_SAMPLES)
    reference = _subsample(_check_pixels(reference, "reference"), _MAX_FIT_SAMPLES)
    steps = []
    moved = source
    for fit in (fit_histmatch, fit_mkl, fit_histmatch):
        steps.append(fit(moved, reference))
        moved = steps[-1](moved)
    return ComposedMap(steps)


CLASSICAL_METHODS: dict[str, Callable[..., ColorMap]] = {
    "reinhard": fit_reinhard,
    "mkl": fit_mkl,
    "histmatch": fit_histmatch,
    "idt": fit_idt,
    "hm-mkl-hm": fit_hm_mkl_hm,
}
