"""Colour histograms of Lab images: L (1-D) and (a, b) (2-D), weighted, hard or soft.

Hard histograms (each pixel counts in one bin) are the HEN's input; soft ones spread
each pixel over nearby bins with a kernel, so they are differentiable and serve as
losses. Per-pixel weights restrict a histogram to a mask or a soft region; every
histogram is normalised to sum 1 (an all-zero weight map gives an all-zero histogram).
"""

from typing import Literal

import torch

L_RANGE = (0.0, 100.0)
AB_RANGE = (-128.0, 128.0)
DEFAULT_L_BINS = 8
DEFAULT_AB_BINS = 64
MAX_L_BINS = 64

Kernel = Literal["hard", "gaussian", "triangular"]


def _flatten(lab: torch.Tensor, weights: torch.Tensor | None):
    """``(B, 3, H, W)`` Lab and ``(B, H, W)`` / ``(B, 1, H, W)`` weights -> ``(B, N, 3)``, ``(B, N)``."""
    if lab.ndim != 4 or lab.shape[1] != 3:
        raise ValueError(f"expected Lab images shaped (B, 3, H, W), got {tuple(lab.shape)}")
    batch = lab.shape[0]
    values = lab.flatten(2).transpose(1, 2)
    if weights is None:
        return values, torch.ones(values.shape[:2], dtype=lab.dtype, device=lab.device)
    weights = weights.reshape(batch, -1).to(lab.dtype)
    if weights.shape[1] != values.shape[1]:
        raise ValueError(f"weights cover {weights.shape[1]} pixels, the image has {values.shape[1]}")
    return values, weights


def _memberships(values: torch.Tensor, bins: int, value_range, kernel: Kernel, bandwidth: float):
    """How much each value belongs to each bin: ``(..., N) -> (..., N, bins)``, rows summing to 1.

    ``bandwidth`` is in bin widths: the Gaussian's sigma, or the triangle's half width.
    """
    if kernel == "hard":
        return torch.nn.functional.one_hot(_hard_index(values, bins, value_range), bins).to(values.dtype)
    low, high = value_range
    width = (high - low) / bins
    centers = low + width * (torch.arange(bins, dtype=values.dtype, device=values.device) + 0.5)
    if kernel == "gaussian":
        # Unclamped: far values still fall to the edge bin after normalisation, and keep a
        # gradient there (a loss can still move deep shadows and highlights).
        squared = ((values.unsqueeze(-1) - centers) / (bandwidth * width)).square()
        # Subtracting the row's smallest squared distance keeps exp() from underflowing to 0
        # everywhere when the bandwidth is tiny; it cancels in the normalisation.
        membership = torch.exp(-0.5 * (squared - squared.min(dim=-1, keepdim=True).values))
    elif kernel == "triangular":
        # Clamped into the centres' span: beyond the edge centres every triangle would be 0.
        distance = (values.clamp(centers[0], centers[-1]).unsqueeze(-1) - centers) / (bandwidth * width)
        membership = (1.0 - distance.abs()).clamp(min=0.0)
    else:
        raise ValueError(f"unknown kernel {kernel!r}: use 'hard', 'gaussian' or 'triangular'")
    return membership / membership.sum(dim=-1, keepdim=True).clamp(min=1e-12)


def _normalise(histogram: torch.Tensor, total_weight: torch.Tensor) -> torch.Tensor:
    shape = (-1,) + (1,) * (histogram.ndim - 1)
    return histogram / total_weight.clamp(min=1e-12).view(shape)


def l_histogram(
    lab: torch.Tensor,
    bins: int = DEFAULT_L_BINS,
    weights: torch.Tensor | None = None,
    kernel: Kernel = "hard",
    bandwidth: float = 0.5,
) -> torch.Tensor:
    """Histogram of L over [0, 100].

    Args:
        lab: ``(B, 3, H, W)`` Lab images.
        bins: number of L bins (1 to 64).
        weights: optional ``(B, H, W)`` non-negative per-pixel weights.
        kernel: ``"hard"``, or ``"gaussian"`` / ``"triangular"`` for a differentiable histogram.
        bandwidth: kernel size in bin widths (soft kernels only).

    Returns:
        ``(B, bins)``, each row summing to 1 (0 where all weights are 0).
    """
    if not 1 <= bins <= MAX_L_BINS:
        raise ValueError(f"L bins must be between 1 and {MAX_L_BINS}, got {bins}")
    values, pixel_weights = _flatten(lab, weights)
    membership = _memberships(values[..., 0], bins, L_RANGE, kernel, bandwidth)
    histogram = torch.einsum("bn,bnk->bk", pixel_weights, membership)
    return _normalise(histogram, pixel_weights.sum(dim=1))


def ab_histogram(
    lab: torch.Tensor,
    bins: int = DEFAULT_AB_BINS,
    weights: torch.Tensor | None = None,
    kernel: Kernel = "hard",
    bandwidth: float = 0.5,
) -> torch.Tensor:
    """Joint histogram of (a, b) over [-128, 128]^2.

    Args: as :func:`l_histogram`.

    Returns:
        ``(B, bins, bins)`` indexed ``[a_bin, b_bin]``, each summing to 1.
    """
    values, pixel_weights = _flatten(lab, weights)
    total = pixel_weights.sum(dim=1)
    if kernel == "hard":
        # One joint index per pixel and a scatter: no (N, bins) membership matrices needed.
        a_index = _hard_index(values[..., 1], bins, AB_RANGE)
        b_index = _hard_index(values[..., 2], bins, AB_RANGE)
        histogram = torch.zeros(values.shape[0], bins * bins, dtype=lab.dtype, device=lab.device)
        histogram.scatter_add_(1, a_index * bins + b_index, pixel_weights)
        return _normalise(histogram.view(-1, bins, bins), total)
    a_membership = _memberships(values[..., 1], bins, AB_RANGE, kernel, bandwidth)
    b_membership = _memberships(values[..., 2], bins, AB_RANGE, kernel, bandwidth)
    # Separable kernel: the 2-D histogram is (w * A)^T B, one batched matrix product.
    histogram = torch.bmm((a_membership * pixel_weights.unsqueeze(-1)).transpose(1, 2), b_membership)
    return _normalise(histogram, total)


def _hard_index(values: torch.Tensor, bins: int, value_range) -> torch.Tensor:
    low, high = value_range
    return ((values - low) / ((high - low) / bins)).floor().clamp(0, bins - 1).long()


def hen_input(
    lab: torch.Tensor,
    l_bins: int = DEFAULT_L_BINS,
    ab_bins: int = DEFAULT_AB_BINS,
    weights: torch.Tensor | None = None,
    kernel: Kernel = "hard",
    bandwidth: float = 0.5,
) -> torch.Tensor:
    """The histogram encoder's input: ab histogram stacked with the L histogram tiled.

    Returns:
        ``(B, l_bins + 1, ab_bins, ab_bins)``: channel 0 is the (a, b) histogram, channel
        ``1 + k`` is the constant plane holding the k-th L bin.
    """
    ab = ab_histogram(lab, ab_bins, weights, kernel, bandwidth)
    lightness = l_histogram(lab, l_bins, weights, kernel, bandwidth)
    tiled = lightness[:, :, None, None].expand(-1, -1, ab_bins, ab_bins)
    return torch.cat([ab.unsqueeze(1), tiled], dim=1)
