"""Training losses: L1 in Lab (final and every decoder scale), a colour-histogram loss, a
sliced Wasserstein loss to the reference (globally, and between corresponding regions), and
for items without a target an anchor to the aligned source, an edge-keeping term and a
contrast-invariant structure term."""

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from histocolor.color import normalize_lab
from histocolor.histogram import ab_histogram, l_histogram

# Soft histograms for the loss: coarser than the HEN's, one bin-width Gaussian kernel.
_LOSS_AB_BINS = 32
_LOSS_L_BINS = 16
# Region SWD loss: pixels drawn per region and random directions per batch; the global loss
# has one region per image, so it affords more pixels (less sampling noise).
_SWD_SAMPLES = 256
_GLOBAL_SWD_SAMPLES = 1024
_SWD_PROJECTIONS = 16
# A region with fewer pixels than this (at the crop size) adds nothing to the SWD loss.
_SWD_MIN_PIXELS = 16


@dataclass(frozen=True)
class LossWeights:
    l1: float = 1.0
    deep_supervision: float = 0.5
    histogram: float = 0.5
    region_swd: float = 0.0
    anchor: float = 0.0
    swd: float = 0.0
    gradient: float = 0.0
    structure: float = 0.0
    alignment: float = 0.0


def lightness_gradient_gap(output_lab: torch.Tensor, anchor_lab: torch.Tensor) -> torch.Tensor:
    """Mean absolute gap between the horizontal and vertical L differences (normalised Lab)
    of two images ``(B, 3, H, W)``, ``(B,)``: zero when the output keeps the anchor's edges."""
    output, anchor = normalize_lab(output_lab)[:, :1], normalize_lab(anchor_lab)[:, :1]
    gap = output.new_zeros(output.shape[0])
    for dim in (-1, -2):
        if output.shape[dim] > 1:  # a one-pixel-wide image has no differences along that axis
            gap = gap + (output.diff(dim=dim) - anchor.diff(dim=dim)).abs().flatten(1).mean(1)
    return gap


# Local window of the structure term (pixels per side) and its stabiliser, in units of the
# normalised L gradient's scale (a gradient of 0.01 is under one L unit per pixel).
_STRUCTURE_WINDOW = 7
_STRUCTURE_C = 1e-4


def _lightness_gradient(lab: torch.Tensor) -> torch.Tensor:
    """Magnitude of the L gradient (central differences, normalised Lab) ``(B, 1, H, W)``."""
    lightness = F.pad(normalize_lab(lab)[:, :1], (1, 1, 1, 1), mode="replicate")
    horizontal = 0.5 * (lightness[..., 1:-1, 2:] - lightness[..., 1:-1, :-2])
    vertical = 0.5 * (lightness[..., 2:, 1:-1] - lightness[..., :-2, 1:-1])
    return (horizontal.square() + vertical.square() + 1e-12).sqrt()


def structure_similarity(output_lab: torch.Tensor, anchor_lab: torch.Tensor) -> torch.Tensor:
    """The SSIM structure term between the L gradient magnitudes of two images ``(B, 3, H, W)``,
    averaged per image ``(B,)``: the local correlation of their edges, 1 when they agree.

    A contrast change scales the gradients and leaves it near 1 (what a retoucher's curve asks
    for); halos, banding, blur and amplified noise pull it down (the differentiable companion
    of :func:`histocolor.metrics.structure_score`).
    """
    ours, theirs = _lightness_gradient(output_lab), _lightness_gradient(anchor_lab)
    window = min(_STRUCTURE_WINDOW, *ours.shape[-2:])

    def local_mean(x):
        return F.avg_pool2d(x, window, stride=1)

    mean_ours, mean_theirs = local_mean(ours), local_mean(theirs)
    spread_ours = (local_mean(ours * ours) - mean_ours.square()).clamp(min=0.0)
    spread_theirs = (local_mean(theirs * theirs) - mean_theirs.square()).clamp(min=0.0)
    covariance = local_mean(ours * theirs) - mean_ours * mean_theirs
    structure = (covariance + _STRUCTURE_C) / ((spread_ours * spread_theirs + 1e-12).sqrt() + _STRUCTURE_C)
    return structure.flatten(1).mean(1)


def histogram_distance(output_lab: torch.Tensor, target_lab: torch.Tensor, stride: int = 2) -> torch.Tensor:
    """L1 distance between soft (a, b) and L histograms (each summing to 1), ``(B,)``.

    Every ``stride``-th pixel per axis is enough to estimate a histogram, at a fraction
    of the cost (the soft memberships dominate a training step otherwise).
    """
    output_lab, target_lab = output_lab[..., ::stride, ::stride], target_lab[..., ::stride, ::stride]
    distance = 0.0
    for histogram, bins in ((ab_histogram, _LOSS_AB_BINS), (l_histogram, _LOSS_L_BINS)):
        ours = histogram(output_lab, bins, kernel="gaussian", bandwidth=1.0)
        theirs = histogram(target_lab, bins, kernel="gaussian", bandwidth=1.0)
        distance = distance + (ours - theirs).abs().flatten(1).sum(1)
    return distance


def region_sliced_wasserstein(output_lab, reference_lab, source_regions, reference_regions, generator=None,
                              samples: int = _SWD_SAMPLES):
    """Mean sliced Wasserstein-1 distance (normalised Lab) between each source region of the
    output and its reference region, over the regions present in both; a zero tensor if none.

    Regions are the pixels whose weight is at least one half; each gives a fixed-size random
    sample of pixels, projected on random directions and compared quantile by quantile.
    """
    device = output_lab.device
    output = normalize_lab(output_lab).flatten(2)
    reference = normalize_lab(reference_lab).flatten(2)
    directions = torch.randn(_SWD_PROJECTIONS, 3, generator=generator).to(device)
    directions = directions / directions.norm(dim=1, keepdim=True)
    distances = []
    for item in range(output.shape[0]):
        for region in range(source_regions.shape[1]):
            mine = torch.nonzero(source_regions[item, region].flatten() >= 0.5)[:, 0]
            theirs = torch.nonzero(reference_regions[item, region].flatten() >= 0.5)[:, 0]
            if len(mine) < _SWD_MIN_PIXELS or len(theirs) < _SWD_MIN_PIXELS:
                continue
            picks = [
                pixels[torch.randint(len(pixels), (samples,), generator=generator).to(device)]
                for pixels in (mine, theirs)
            ]
            ours = (directions @ output[item][:, picks[0]]).sort(dim=1).values
            target = (directions @ reference[item][:, picks[1]]).sort(dim=1).values
            distances.append((ours - target).abs().mean())
    return torch.stack(distances).mean() if distances else output_lab.new_zeros(())


def _masked_mean(values: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
    """Mean of per-item ``values`` ``(B,)`` over the items ``mask`` keeps (all when None)."""
    if mask is None:
        return values.mean()
    kept = mask.to(values.dtype)
    return (values * kept).sum() / kept.sum().clamp(min=1.0)


def transfer_loss(
    result,
    target_lab: torch.Tensor,
    weights: LossWeights = LossWeights(),
    *,
    paired: torch.Tensor | None = None,
    regions=None,
    aligned_lab: torch.Tensor | None = None,
    reference_lab: torch.Tensor | None = None,
    source_lab: torch.Tensor | None = None,
    generator=None,
):
    """The weighted total and its parts (detached floats), all from normalised Lab.

    ``paired`` ``(B,)`` marks the items that have a target (None: all); the others only
    count in the region terms. ``regions`` is ``(reference_lab, source_regions,
    reference_regions)`` for region-wise batches: it adds the region SWD loss, and with
    ``aligned_lab`` (the aligned source) an anchor that keeps target-less items near it.
    ``reference_lab`` adds the global SWD loss to the reference (all items); the gradient
    term keeps the L edges of target-less items those of ``aligned_lab`` (else ``source_lab``);
    the structure term keeps their edges' structure that of ``source_lab`` (contrast may change).
    The alignment term asks the alignment the network computed (``result.aligned``: with a
    relevance gate, its blend of the careful and the faithful map) for the target of paired
    items: the gate's direct lesson in how far to follow a reference that shows the same scene.
    """
    target = normalize_lab(target_lab)
    output = normalize_lab(result.output)
    l1 = _masked_mean((output - target).abs().flatten(1).mean(1), paired)
    deep = torch.zeros((), device=target.device)
    for scale in result.intermediate:
        gap = (normalize_lab(scale) - F.adaptive_avg_pool2d(target, scale.shape[-2:])).abs().flatten(1).mean(1)
        deep = deep + _masked_mean(gap, paired)
    if result.intermediate:
        deep = deep / len(result.intermediate)
    histogram = (
        _masked_mean(histogram_distance(result.output, target_lab), paired) if weights.histogram else torch.zeros(())
    )
    total = weights.l1 * l1 + weights.deep_supervision * deep + weights.histogram * histogram
    parts = {"l1": l1.item(), "deep": float(deep.detach()), "histogram": float(histogram.detach())}
    if regions is not None and weights.region_swd:
        region_swd = region_sliced_wasserstein(result.output, *regions, generator=generator)
        total = total + weights.region_swd * region_swd
        parts["region_swd"] = float(region_swd.detach())
    if reference_lab is not None and weights.swd:
        everything = output.new_ones(output.shape[0], 1, *output.shape[-2:])
        everywhere = reference_lab.new_ones(reference_lab.shape[0], 1, *reference_lab.shape[-2:])
        swd = region_sliced_wasserstein(result.output, reference_lab, everything, everywhere, generator=generator,
                                        samples=_GLOBAL_SWD_SAMPLES)
        total = total + weights.swd * swd
        parts["swd"] = float(swd.detach())
    anchor_image = aligned_lab if aligned_lab is not None else source_lab
    if anchor_image is not None and paired is not None and weights.gradient:
        gradient = _masked_mean(lightness_gradient_gap(result.output, anchor_image), ~paired.bool())
        total = total + weights.gradient * gradient
        parts["gradient"] = float(gradient.detach())
    if source_lab is not None and paired is not None and weights.structure:
        structure = _masked_mean(1.0 - structure_similarity(result.output, source_lab), ~paired.bool())
        total = total + weights.structure * structure
        parts["structure"] = float(structure.detach())
    if aligned_lab is not None and paired is not None and weights.anchor:
        unpaired = ~paired.bool()
        anchor = _masked_mean((output - normalize_lab(aligned_lab)).abs().flatten(1).mean(1), unpaired)
        total = total + weights.anchor * anchor
        parts["anchor"] = float(anchor.detach())
    if result.aligned is not None and weights.alignment:
        alignment = _masked_mean((normalize_lab(result.aligned) - target).abs().flatten(1).mean(1), paired)
        total = total + weights.alignment * alignment
        parts["alignment"] = float(alignment.detach())
    parts["loss"] = total.item()
    return total, parts
