"""Region alignment: the starting point the CTN recolours when it transfers region by region.

Paired regions show the same kind of thing, so the user asks for the reference region's
whole look, however far it is from the source's. A network trained to take a grade moves
only part of the way there on its own (docs/BENCHMARKS.md). So before the CTN runs, each
source region is moved onto its reference region's Lab mean and spread (a differentiable
Reinhard step, per region, mixed by the soft region weights); the CTN then sees how far
the aligned region still is from the reference and predicts what moments cannot express
(shape of the distribution, tone-dependent tints), as a residual.
"""

import torch

# Bounds of the per-channel spread ratio: a near-flat source region (a clear sky) would
# otherwise have its noise blown up into texture, which the structure score punishes.
MIN_SPREAD_RATIO, MAX_SPREAD_RATIO = 0.25, 2.5
# Lab std under which a region's channel counts as flat (shifted, never scaled).
_FLAT_STD = 0.5


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


def align_regions(
    source_lab: torch.Tensor,
    reference_lab: torch.Tensor,
    source_regions: torch.Tensor,
    reference_regions: torch.Tensor,
    mixing: torch.Tensor,
) -> torch.Tensor:
    """The source with each region moved onto its reference region's Lab mean and std.

    ``source_regions`` ``(B, R, H, W)`` and ``reference_regions`` ``(B, R, h, w)`` weigh the
    pixels of each region's moments (alpha included); ``mixing`` ``(B, R, H, W)`` says how
    much of each pixel follows each region's move (zero for a region missing from either
    image; where the weights sum below one, the pixel keeps its own colour).
    """
    ratio, offset = region_affine(source_lab, reference_lab, source_regions, reference_regions)
    # Mixing the affine parameters mixes the results: sum_k m_k (r_k x + o_k) + (1 - sum_k m_k) x.
    pixel_ratio = torch.einsum("brhw,brc->bchw", mixing, ratio - 1.0) + 1.0
    pixel_offset = torch.einsum("brhw,brc->bchw", mixing, offset)
    return source_lab * pixel_ratio + pixel_offset
