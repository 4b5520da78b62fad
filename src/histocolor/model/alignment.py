"""Alignment: the classical starting point the CTN recolours, globally and region by region.

A network trained to take a grade moves only part of the way towards an unrelated
reference on its own (docs/BENCHMARKS.md). So before the CTN runs, the source is moved onto
the reference by a classical, differentiable colour map, and the CTN predicts only what that
map cannot express (natural tones, tone-dependent tints, local contrast) as a residual. The
model starts where the classical methods end.

Two strategies, chosen once from :class:`~histocolor.model.config.AlignmentConfig`:

* :class:`MomentAlignment` moves each channel's Lab mean and spread (Reinhard);
* :class:`QuantileAlignment` matches each Lab channel's whole distribution (quantile
  matching), with the curve's slope bounded so that flat areas keep their texture and
  edges keep their contrast.

Both work on regions: ``(B, R, H, W)`` weights say which pixels each region's statistics
come from, and a mixing ``(B, R, H, W)`` says how much of each pixel follows each region's
map. The global transfer is the one-region case (every pixel, alpha-weighted).
"""

import torch

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
    """Weighted quantiles of each channel, per region: ``values`` ``(B, C, N)``, ``weights``
    ``(B, R, N)``, ``levels`` ``(K,)`` in [0, 1] -> ``(B, R, C, K)``.

    Each pixel stands for the middle of its weight's share of the cumulative distribution
    (numpy's "hazen" quantiles for equal weights); between those points the quantile is
    interpolated linearly. Pixels of zero weight take no part. A region with no weight gets
    its channel's largest value everywhere (callers give it no mixing weight).

    Example:
        >>> values = torch.tensor([[[0.0, 1.0, 2.0, 3.0]]])
        >>> weighted_quantiles(values, torch.ones(1, 1, 4), torch.tensor([0.5]))
        tensor([[[[1.5000]]]])
    """
    batch, channels, count = values.shape
    regions = weights.shape[1]
    shape = (batch, regions, channels, count)
    weights = weights[:, :, None, :].expand(shape)
    # Pixels outside the region sort after every pixel inside it (at the channel's maximum).
    ceiling = values.amax(dim=-1, keepdim=True)[:, None].expand(batch, regions, channels, 1)
    ordered, order = torch.where(weights > 0, values[:, None].expand(shape), ceiling).sort(dim=-1, stable=True)
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

    def __init__(self, levels: int = 64, lightness_slopes=(0.6, 1.6), chroma_slopes=(0.2, 5.0)):
        self.levels = levels
        self.low = torch.tensor([lightness_slopes[0], chroma_slopes[0], chroma_slopes[0]])
        self.high = torch.tensor([lightness_slopes[1], chroma_slopes[1], chroma_slopes[1]])

    def curves(self, source_lab, reference_lab, source_regions, reference_regions):
        """Knots and values ``(B, R, 3, K)`` of each region's channel curves."""
        # Levels just inside (0, 1): the extremes of a sample are its noisiest quantiles.
        levels = torch.linspace(0.5 / self.levels, 1.0 - 0.5 / self.levels, self.levels)
        knots = weighted_quantiles(source_lab.flatten(2), source_regions.flatten(2), levels)
        matched = weighted_quantiles(reference_lab.flatten(2), reference_regions.flatten(2), levels)
        steps = knots.diff(dim=-1)
        low, high = (bound.to(source_lab).view(3, 1) for bound in (self.low, self.high))
        slopes = (matched.diff(dim=-1) / steps.clamp(min=_FLAT_STEP)).clamp(low, high)
        slopes = torch.where(steps < _FLAT_STEP, torch.ones_like(slopes), slopes)
        values = torch.cat([torch.zeros_like(knots[..., :1]), (slopes * steps).cumsum(-1)], dim=-1)
        values = values + (matched.mean(-1, keepdim=True) - values.mean(-1, keepdim=True))
        # Ties (a point mass) would give equal knots: spread them by a negligible amount.
        ramp = torch.arange(self.levels, dtype=knots.dtype, device=knots.device) * 1e-6
        return knots + ramp, values

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
    return source_lab + torch.einsum("brhw,brchw->bchw", mixing, moved - source_lab[:, None])
