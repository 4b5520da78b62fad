"""Training losses: L1 in Lab (final and every decoder scale) and a colour-histogram loss."""

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from histocolor.color import normalize_lab
from histocolor.histogram import ab_histogram, l_histogram
from histocolor.model import CTNOutput

# Soft histograms for the loss: coarser than the HEN's, one bin-width Gaussian kernel.
_LOSS_AB_BINS = 32
_LOSS_L_BINS = 16


@dataclass(frozen=True)
class LossWeights:
    l1: float = 1.0
    deep_supervision: float = 0.5
    histogram: float = 0.5


def histogram_distance(output_lab: torch.Tensor, target_lab: torch.Tensor, stride: int = 2) -> torch.Tensor:
    """Mean L1 distance between soft (a, b) and L histograms (each summing to 1), per batch.

    Every ``stride``-th pixel per axis is enough to estimate a histogram, at a fraction
    of the cost (the soft memberships dominate a training step otherwise).
    """
    output_lab, target_lab = output_lab[..., ::stride, ::stride], target_lab[..., ::stride, ::stride]
    distance = 0.0
    for histogram, bins in ((ab_histogram, _LOSS_AB_BINS), (l_histogram, _LOSS_L_BINS)):
        ours = histogram(output_lab, bins, kernel="gaussian", bandwidth=1.0)
        theirs = histogram(target_lab, bins, kernel="gaussian", bandwidth=1.0)
        distance = distance + (ours - theirs).abs().flatten(1).sum(1).mean()
    return distance


def transfer_loss(result: CTNOutput, target_lab: torch.Tensor, weights: LossWeights = LossWeights()):
    """The weighted total and its parts (detached floats), all from normalised Lab."""
    target = normalize_lab(target_lab)
    l1 = (normalize_lab(result.output) - target).abs().mean()
    deep = torch.zeros((), device=target.device)
    for scale in result.intermediate:
        deep = deep + (normalize_lab(scale) - F.adaptive_avg_pool2d(target, scale.shape[-2:])).abs().mean()
    if result.intermediate:
        deep = deep / len(result.intermediate)
    histogram = histogram_distance(result.output, target_lab) if weights.histogram else torch.zeros(())
    total = weights.l1 * l1 + weights.deep_supervision * deep + weights.histogram * histogram
    parts = {"loss": total.item(), "l1": l1.item(), "deep": float(deep.detach()), "histogram": float(histogram.detach())}
    return total, parts
