"""Alignment: the classical starting point the CTN recolours, globally and region by region.

A network trained to take a grade moves only part of the way towards an unrelated
reference on its own (docs/BENCHMARKS.md). So before the CTN runs, the source is moved onto
the reference by a classical, differentiable colour map, and the CTN predicts only what that
map cannot express (natural tones, tone-dependent tints, local contrast) as a residual. The
model starts where the classical methods end.

Five strategies, chosen once from :class:`~histocolor.model.config.AlignmentConfig`:

* :class:`MomentAlignment` moves each channel's Lab mean and spread (Reinhard);
* :class:`QuantileAlignment` matches each Lab channel's whole distribution (quantile
  matching), with the curve's slope bounded so that flat areas keep their texture and
  edges keep their contrast;
* :class:`LinearAlignment` is MKL in sRGB (every colour moved by one linear map);
* :class:`ColourAlignment` moves colour (MKL, then per-channel quantiles, in sRGB) and
  lightness (a slope-bounded L curve) separately;
* :class:`SlicedAlignment` goes on from :class:`ColourAlignment` with a few rounds of
  slope-bounded sliced matching in Lab (iterative distribution transfer, bounded), which
  takes colours that depend on lightness (toning), and keeps the bounded L curve's lightness:
  by measurement the strongest start (docs/BENCHMARKS.md, "Alignments").

All of them work on regions: ``(B, R, H, W)`` weights say which pixels each region's statistics
come from, and a mixing ``(B, R, H, W)`` says how much of each pixel follows each region's
map. The global transfer is the one-region case (every pixel, alpha-weighted).
"""

import math

import torch
import torch.nn.functional as F

from histocolor.color import lab_to_rgb, rgb_to_lab

# Bounds of the per-channel spread ratio: a near-flat source region (a clear sky) would
# otherwise have its noise blown up into texture, which the structure score punishes.
MIN_SPREAD_RATIO, MAX_SPREAD_RATIO = 0.25, 2.5
# Lab std under which a region's channel counts as flat (shifted, never scaled).
_FLAT_STD = 0.5
# Quantile curves: source steps (Lab units) narrower than this take slope 1.
_FLAT_STEP = 1e-3


def weighted_moments(lab: torch.Tensor, weights: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-region Lab mean and std: ``lab`` ``(B, 3, H, W)``, ``weights`` ``(B, R, H, W)`` -> ``(B, R, 3)`` each."""
    total = weights.flatten(2).sum(-1).clamp(min=1e-6)[..., None]
    pixels = lab.flatten(2)  # (B, 3, N)
    flat = weights.flatten(2)  # (B, R, N)
    mean = torch.einsum("brn,bcn->brc", flat, pixels) / total
    square = torch.einsum("brn,bcn->brc", flat, pixels * pixels) / total
    return mean, (square - mean * mean).clamp(min=0.0).sqrt()


def region_affine(source_lab, reference_lab, source_regions, reference_regions):
    """Per region, the Lab map ``x -> ratio * x + offset`` that moves the source region's mean
    and std onto the reference region's: ``ratio`` and ``offset``, ``(B, R, 3)`` each."""
    source_mean, source_std = weighted_moments(source_lab, source_regions)
    reference_mean, reference_std = weighted_moments(reference_lab, reference_regions)
    ratio = (reference_std / source_std.clamp(min=1e-6)).clamp(MIN_SPREAD_RATIO, MAX_SPREAD_RATIO)
    ratio = torch.where(source_std < _FLAT_STD, torch.ones_like(ratio), ratio)
    return ratio, reference_mean - ratio * source_mean


def weighted_quantiles(values: torch.Tensor, weights: torch.Tensor, levels: torch.Tensor) -> torch.Tensor:
    """Weighted quantiles of each channel, per region: ``values`` ``(B, C, N)`` (or one set per
    region, ``(B, R, C, N)``), ``weights`` ``(B, R, N)``, ``levels`` ``(K,)`` in [0, 1] -> ``(B, R, C, K)``.

    Each pixel stands for the middle of its weight's share of the cumulative distribution
    (numpy's "hazen" quantiles for equal weights); between those points the quantile is
    interpolated linearly. Pixels of zero weight take no part. A region with no weight gets
    its channel's largest value everywhere (callers give it no mixing weight).

    Example:
        >>> values = torch.tensor([[[0.0, 1.0, 2.0, 3.0]]])
        >>> weighted_quantiles(values, torch.ones(1, 1, 4), torch.tensor([0.5]))
        tensor([[[[1.5000]]]])
    """
    regions = weights.shape[1]
    if values.ndim == 3:
        values = values[:, None]
    batch, _, channels, count = values.shape
    shape = (batch, regions, channels, count)
    values = values.expand(shape)
    weights = weights[:, :, None, :].expand(shape)
    # Pixels outside the region sort after every pixel inside it (at the channel's maximum).
    ceiling = values.amax(dim=-1, keepdim=True)
    ordered, order = torch.where(weights > 0, values, ceiling).sort(dim=-1, stable=True)
    ordered_weights = torch.gather(weights, 3, order)
    cumulative = ordered_weights.cumsum(-1)
    centres = ((cumulative - 0.5 * ordered_weights) / cumulative[..., -1:].clamp(min=1e-12)).contiguous()
    inside = (weights > 0).sum(-1, keepdim=True)  # pixels in the region: the first ``inside`` sorted ones
    wanted = levels.to(values).expand(batch, regions, channels, -1).contiguous()
    last = (inside - 1).clamp(min=0)
    upper = torch.minimum(torch.searchsorted(centres, wanted).clamp(min=1), last)
    lower = (upper - 1).clamp(min=0)
    low_value, high_value = torch.gather(ordered, 3, lower), torch.gather(ordered, 3, upper)
    low_centre, high_centre = torch.gather(centres, 3, lower), torch.gather(centres, 3, upper)
    fraction = ((wanted - low_centre) / (high_centre - low_centre).clamp(min=1e-12)).clamp(0.0, 1.0)
    return low_value + fraction * (high_value - low_value)


def piecewise_linear(x: torch.Tensor, knots: torch.Tensor, values: torch.Tensor) -> torch.Tensor:
    """The curves through ``(knots, values)`` ``(..., K)`` (knots increasing) at ``x`` ``(..., N)``.

    Beyond the first and last knot the curve goes on with slope 1 (a colour outside the
    range the curve was fitted on is shifted like its nearest neighbour, never clipped).

    Example:
        >>> piecewise_linear(torch.tensor([[-1.0, 0.5, 3.0]]), torch.tensor([[0.0, 1.0]]), torch.tensor([[0.0, 2.0]]))
        tensor([[-1.,  1.,  4.]])
    """
    count = knots.shape[-1]
    upper = torch.searchsorted(knots.contiguous(), x.contiguous()).clamp(1, count - 1)
    x0, x1 = torch.gather(knots, -1, upper - 1), torch.gather(knots, -1, upper)
    y0, y1 = torch.gather(values, -1, upper - 1), torch.gather(values, -1, upper)
    fraction = ((x - x0) / (x1 - x0).clamp(min=1e-12)).clamp(0.0, 1.0)
    inside = y0 + fraction * (y1 - y0)
    below = values[..., :1] + (x - knots[..., :1])
    above = values[..., -1:] + (x - knots[..., -1:])
    return torch.where(x < knots[..., :1], below, torch.where(x > knots[..., -1:], above, inside))


def bounded_curves(source, reference, source_weights, reference_weights, levels: int, low, high):
    """Per region and channel, the quantile-matching curve with its slope kept in ``[low, high]``.

    ``source`` ``(B, C, N)`` or ``(B, R, C, N)``, ``reference`` ``(B, C, M)``, weights ``(B, R, N)``
    and ``(B, R, M)``, bounds ``(C,)``. The curve takes each source quantile to the reference's;
    where the slope leaves the bounds it is clamped, and the whole curve is shifted to keep the
    matched curve's mean. Returns knots and values ``(B, R, C, levels)``.
    """
    # Levels just inside (0, 1): the extremes of a sample are its noisiest quantiles.
    probabilities = torch.linspace(0.5 / levels, 1.0 - 0.5 / levels, levels)
    knots = weighted_quantiles(source, source_weights, probabilities)
    matched = weighted_quantiles(reference, reference_weights, probabilities)
    steps = knots.diff(dim=-1)
    low, high = (torch.as_tensor(bound).to(knots).view(-1, 1) for bound in (low, high))
    slopes = (matched.diff(dim=-1) / steps.clamp(min=_FLAT_STEP)).clamp(low, high)
    slopes = torch.where(steps < _FLAT_STEP, torch.ones_like(slopes), slopes)
    values = torch.cat([torch.zeros_like(knots[..., :1]), (slopes * steps).cumsum(-1)], dim=-1)
    values = values + (matched.mean(-1, keepdim=True) - values.mean(-1, keepdim=True))
    # Ties (a point mass) would give equal knots: spread them by a negligible amount.
    ramp = torch.arange(levels, dtype=knots.dtype, device=knots.device) * 1e-6
    return knots + ramp, values


class MomentAlignment:
    """Reinhard per region: each Lab channel's mean and spread (ratio bounded) moved onto the reference's."""

    def maps(self, source_lab, reference_lab, source_regions, reference_regions, colours=None):
        """Each region's map applied to every source pixel (or to ``colours`` ``(B, 3, h, w)``):
        ``(B, R, 3, H, W)``."""
        ratio, offset = region_affine(source_lab, reference_lab, source_regions, reference_regions)
        colours = source_lab if colours is None else colours
        return colours[:, None] * ratio[..., None, None] + offset[..., None, None]


class QuantileAlignment:
    """Quantile matching of each Lab channel per region, the curve's slope kept in bounds.

    The matched curve takes each source quantile to the reference's. Its slope is where it
    changes contrast: bounding it (``lightness_slopes`` for L, ``chroma_slopes`` for a and b)
    keeps edges and texture (the structure score reads L only, so L is bounded tighter),
    and the bounded curve is shifted to keep the matched curve's mean.
    """

    def __init__(self, levels: int = 64, lightness_slopes=(0.7, 1.4), chroma_slopes=(0.5, 2.0)):
        self.levels = levels
        self.low = torch.tensor([lightness_slopes[0], chroma_slopes[0], chroma_slopes[0]])
        self.high = torch.tensor([lightness_slopes[1], chroma_slopes[1], chroma_slopes[1]])

    def curves(self, source_lab, reference_lab, source_regions, reference_regions):
        """Knots and values ``(B, R, 3, K)`` of each region's channel curves."""
        return bounded_curves(source_lab.flatten(2), reference_lab.flatten(2), source_regions.flatten(2),
                              reference_regions.flatten(2), self.levels, self.low, self.high)

    def maps(self, source_lab, reference_lab, source_regions, reference_regions, colours=None):
        """Each region's map applied to every source pixel (or to ``colours`` ``(B, 3, h, w)``):
        ``(B, R, 3, H, W)``."""
        knots, values = self.curves(source_lab, reference_lab, source_regions, reference_regions)
        batch, regions = knots.shape[:2]
        colours = source_lab if colours is None else colours
        pixels = colours.flatten(2)[:, None].expand(batch, regions, -1, -1)
        return piecewise_linear(pixels, knots, values).view(batch, regions, *colours.shape[1:])


def align_regions(
    source_lab: torch.Tensor,
    reference_lab: torch.Tensor,
    source_regions: torch.Tensor,
    reference_regions: torch.Tensor,
    mixing: torch.Tensor,
    method=None,
) -> torch.Tensor:
    """The source with each region moved onto its reference region's colours by ``method``
    (:class:`MomentAlignment` by default).

    ``source_regions`` ``(B, R, H, W)`` and ``reference_regions`` ``(B, R, h, w)`` weigh the
    pixels of each region's statistics (alpha included); ``mixing`` ``(B, R, H, W)`` says how
    much of each pixel follows each region's map (zero for a region missing from either
    image; where the weights sum below one, the pixel keeps its own colour).

    Example:
        >>> source, reference = torch.rand(1, 3, 8, 8) * 50, torch.rand(1, 3, 8, 8) * 50 + 20
        >>> everything = torch.ones(1, 1, 8, 8)
        >>> align_regions(source, reference, everything, everything, everything).shape
        torch.Size([1, 3, 8, 8])
    """
    moved = (method or MomentAlignment()).maps(source_lab, reference_lab, source_regions, reference_regions)
    return mix_regions(source_lab, moved, mixing)


def mix_regions(source_lab: torch.Tensor, moved: torch.Tensor, mixing: torch.Tensor) -> torch.Tensor:
    """The source ``(B, 3, H, W)`` with each pixel moved by its regions' maps ``moved``
    ``(B, R, 3, H, W)``, weighted by ``mixing`` ``(B, R, H, W)`` (a pixel whose weights sum below
    one keeps the rest of its own colour)."""
    return clamp_lab(source_lab + torch.einsum("brhw,brchw->bchw", mixing, moved - source_lab[:, None]))


def clamp_lab(lab: torch.Tensor) -> torch.Tensor:
    """``(B, 3, ...)`` Lab kept inside the ranges colours occupy (a shifted curve may overshoot them)."""
    return torch.stack([lab[:, 0].clamp(0.0, 100.0), lab[:, 1].clamp(-128.0, 128.0), lab[:, 2].clamp(-128.0, 128.0)],
                       dim=1)


# Variance floor of the MKL fit in sRGB units (a std of 0.003, under an 8-bit level): keeps
# the inverse square root finite for a flat or grey region.
_MKL_EPS = 1e-5


def _weighted_gaussian(rgb: torch.Tensor, weights: torch.Tensor):
    """Per-region mean ``(B, R, 3)`` and covariance ``(B, R, 3, 3)`` of ``rgb`` ``(B, 3, N)``."""
    total = weights.sum(-1).clamp(min=1e-6)[..., None]
    mean = torch.einsum("brn,bcn->brc", weights, rgb) / total
    second = torch.einsum("brn,bcn,bdn->brcd", weights, rgb, rgb) / total[..., None]
    covariance = second - mean[..., :, None] * mean[..., None, :]
    return mean, covariance + _MKL_EPS * torch.eye(3, dtype=rgb.dtype, device=rgb.device)


def _sqrt_and_inverse_sqrt(matrix: torch.Tensor):
    values, vectors = torch.linalg.eigh(matrix)
    # Only against round-off: the covariances already carry their floor (and the middle
    # matrix's eigenvalues are products of two covariances', far below that floor).
    values = values.clamp(min=1e-12)
    root = vectors @ torch.diag_embed(values.sqrt()) @ vectors.transpose(-1, -2)
    inverse = vectors @ torch.diag_embed(values.rsqrt()) @ vectors.transpose(-1, -2)
    return root, inverse


def weighted_mkl(source_rgb: torch.Tensor, reference_rgb: torch.Tensor, source_weights, reference_weights):
    """Per region, the linear Monge-Kantorovich map (Pitié & Kokaram 2007) between the Gaussians
    fitted to the source and reference colours: ``x -> matrix @ x + offset``, ``(B, R, 3, 3)`` and
    ``(B, R, 3)``. Inputs ``(B, 3, N)``, ``(B, 3, M)``, weights ``(B, R, N)``, ``(B, R, M)``."""
    source_mean, source_cov = _weighted_gaussian(source_rgb, source_weights)
    reference_mean, reference_cov = _weighted_gaussian(reference_rgb, reference_weights)
    root, inverse_root = _sqrt_and_inverse_sqrt(source_cov)
    middle, _ = _sqrt_and_inverse_sqrt(root @ reference_cov @ root)
    matrix = inverse_root @ middle @ inverse_root
    return matrix, reference_mean - torch.einsum("brcd,brd->brc", matrix, source_mean)


def apply_affine(matrix: torch.Tensor, offset: torch.Tensor, rgb: torch.Tensor) -> torch.Tensor:
    """Each region's map of :func:`weighted_mkl` applied to ``rgb`` ``(B, 3, N)``: ``(B, R, 3, N)``."""
    return torch.einsum("brcd,bdn->brcn", matrix, rgb) + offset[..., None]


class LinearAlignment:
    """MKL per region: the linear Monge-Kantorovich map between the Gaussians of the source's and
    the reference's sRGB colours (:func:`weighted_mkl`), clipped to sRGB, in Lab.

    A map of another kind than the quantile curves: it moves all colours together and keeps
    their correlations, and its errors are partly independent of a quantile map's.
    """

    def maps(self, source_lab, reference_lab, source_regions, reference_regions, colours=None):
        """Each region's map applied to every source pixel (or to ``colours`` ``(B, 3, h, w)``):
        ``(B, R, 3, H, W)``."""
        source_rgb, reference_rgb = (lab_to_rgb(lab).flatten(2) for lab in (source_lab, reference_lab))
        matrix, offset = weighted_mkl(source_rgb, reference_rgb, source_regions.flatten(2), reference_regions.flatten(2))
        colours = source_lab if colours is None else colours
        batch, regions = offset.shape[:2]
        moved = apply_affine(matrix, offset, lab_to_rgb(colours).flatten(2))
        lab = rgb_to_lab(moved.clamp(0.0, 1.0).reshape(batch * regions, 3, -1, 1))
        return lab.view(batch, regions, 3, *colours.shape[-2:])


class ColourAlignment:
    """Colour and lightness moved separately, each the way that suits it.

    Colour: the MKL map in sRGB (it moves the colours together, keeping their correlations),
    then per-channel sRGB quantile matching for the shape of each distribution (slopes in
    ``colour_slopes``); the result's a and b are kept. Lightness: the source's L through the
    slope-bounded L quantile curve (``lightness_slopes``), so that contrast, and with it every
    edge, changes only within bounds.
    """

    def __init__(self, levels: int = 64, lightness_slopes=(0.7, 1.4), colour_slopes=(0.5, 2.0)):
        self.levels = levels
        self.lightness_slopes = lightness_slopes
        self.colour_slopes = colour_slopes

    def fit(self, source_lab, reference_lab, source_regions, reference_regions):
        """Each region's fitted map: the MKL matrix and offset, the sRGB curves and the L curve."""
        source_weights, reference_weights = source_regions.flatten(2), reference_regions.flatten(2)
        source_rgb, reference_rgb = (lab_to_rgb(lab).flatten(2) for lab in (source_lab, reference_lab))
        matrix, offset = weighted_mkl(source_rgb, reference_rgb, source_weights, reference_weights)
        moved_source = apply_affine(matrix, offset, source_rgb)
        colour_curves = bounded_curves(moved_source, reference_rgb, source_weights, reference_weights, self.levels,
                                       self.colour_slopes[0], self.colour_slopes[1])
        lightness_curves = bounded_curves(source_lab.flatten(2)[:, :1], reference_lab.flatten(2)[:, :1],
                                          source_weights, reference_weights, self.levels, self.lightness_slopes[0],
                                          self.lightness_slopes[1])
        return matrix, offset, colour_curves, lightness_curves

    @staticmethod
    def apply(fitted, colours: torch.Tensor) -> torch.Tensor:
        """The maps of :meth:`fit` applied to ``colours`` ``(B, 3, h, w)``: ``(B, R, 3, h, w)``."""
        matrix, offset, colour_curves, lightness_curves = fitted
        batch, regions = offset.shape[:2]
        moved = apply_affine(matrix, offset, lab_to_rgb(colours).flatten(2))
        rgb = piecewise_linear(moved, *colour_curves).clamp(0.0, 1.0)
        chroma = rgb_to_lab(rgb.reshape(batch * regions, 3, -1, 1)).view(batch, regions, 3, -1)[:, :, 1:]
        pixels = colours.flatten(2)[:, None, :1].expand(batch, regions, 1, -1)
        lightness = piecewise_linear(pixels, *lightness_curves)
        return torch.cat([lightness, chroma], dim=2).view(batch, regions, 3, *colours.shape[-2:])

    def maps(self, source_lab, reference_lab, source_regions, reference_regions, colours=None):
        """Each region's map applied to every source pixel (or to ``colours`` ``(B, 3, h, w)``):
        ``(B, R, 3, H, W)``."""
        fitted = self.fit(source_lab, reference_lab, source_regions, reference_regions)
        return self.apply(fitted, source_lab if colours is None else colours)


def fixed_bases(count: int, seed: int = 0) -> torch.Tensor:
    """``count`` orthonormal bases ``(count, 3, 3)`` (each row a unit direction), the same on every call.

    Example:
        >>> bases = fixed_bases(2)
        >>> torch.allclose(bases[0] @ bases[0].T, torch.eye(3), atol=1e-6)
        True
    """
    generator = torch.Generator().manual_seed(seed)
    return torch.linalg.qr(torch.randn(count, 3, 3, generator=generator)).Q.transpose(-1, -2)


def _project(basis: torch.Tensor, colours: torch.Tensor) -> torch.Tensor:
    """``colours`` ``(B, R, 3, N)`` projected on the rows of ``basis`` ``(3, 3)``: ``(B, R, 3, N)``."""
    return torch.einsum("kc,brcn->brkn", basis, colours)


class SlicedAlignment(ColourAlignment):
    """:class:`ColourAlignment`, then ``iterations`` rounds of slope-bounded sliced matching in Lab.

    Each round projects the colours on three fixed orthogonal directions of Lab, matches each
    projection's distribution to the reference's with a slope-bounded quantile curve
    (``colour_slopes``) and moves the colours along the directions by the change (Pitié's
    iterative distribution transfer, with the curves bounded). Directions that mix L with a
    and b take colours that depend on lightness (a toning: teal shadows, warm highlights),
    which per-channel maps cannot. The result keeps the bounded L curve's lightness, so
    edges and texture change only as much as :class:`ColourAlignment` lets them. The curves
    are fitted on a regular sample of about ``samples`` pixels of each image and applied to
    every colour.
    """

    def __init__(self, levels: int = 64, lightness_slopes=(0.7, 1.4), colour_slopes=(0.5, 2.0),
                 iterations: int = 16, samples: int = 16384):
        super().__init__(levels, lightness_slopes, colour_slopes)
        self.bases = fixed_bases(iterations)
        self.samples = samples

    def maps(self, source_lab, reference_lab, source_regions, reference_regions, colours=None):
        """Each region's map applied to every source pixel (or to ``colours`` ``(B, 3, h, w)``):
        ``(B, R, 3, H, W)``."""
        colour_map = self.fit(source_lab, reference_lab, source_regions, reference_regions)
        start = self.apply(colour_map, source_lab if colours is None else colours)
        # The curves are fitted on a regular sample of both images (quantiles need no more),
        # then applied to every colour.
        source_step, reference_step = (_sample_step(image, self.samples) for image in (source_lab, reference_lab))
        fitted = self.apply(colour_map, source_lab[..., ::source_step, ::source_step]).flatten(3)
        sample_weights = _pooled(source_regions, source_step).flatten(2)
        reference = reference_lab[..., ::reference_step, ::reference_step].flatten(2)[:, None]
        reference_weights = _pooled(reference_regions, reference_step).flatten(2)
        moved = start.flatten(3)
        for basis in self.bases.to(source_lab):
            knots, values = bounded_curves(_project(basis, fitted), _project(basis, reference)[:, 0], sample_weights,
                                           reference_weights, self.levels, *self.colour_slopes)
            fitted, moved = (_slide(basis, colours, knots, values) for colours in (fitted, moved))
        lightness = start.flatten(3)[:, :, :1]
        return torch.cat([lightness, moved[:, :, 1:]], dim=2).view(start.shape)


def _slide(basis: torch.Tensor, colours: torch.Tensor, knots: torch.Tensor, values: torch.Tensor) -> torch.Tensor:
    """``colours`` ``(B, R, 3, N)`` moved along each direction of ``basis`` by its projection's curve."""
    projected = _project(basis, colours)
    return colours + torch.einsum("kc,brkn->brcn", basis, piecewise_linear(projected, knots, values) - projected)


def _pooled(weights: torch.Tensor, step: int) -> torch.Tensor:
    """Region weights ``(B, R, H, W)`` averaged over each ``step`` x ``step`` block: the weights of
    the pixels ``[::step, ::step]`` sampled. A region thinner than the stride keeps a share of
    the nearest samples instead of vanishing from the fit."""
    return weights if step == 1 else F.avg_pool2d(weights, step, step, ceil_mode=True)


def _sample_step(image: torch.Tensor, samples: int) -> int:
    """The stride per axis that leaves roughly ``samples`` pixels of ``image`` ``(B, C, H, W)`` (more for
    a long, thin image)."""
    pixels = image.shape[-1] * image.shape[-2]
    return max(1, math.ceil(math.sqrt(pixels / samples)))
