"""Image quality measures used by the benchmarks (numpy in, float out)."""

import numpy as np
from skimage.color import rgb2lab
from skimage.filters import sobel
from scipy.ndimage import gaussian_filter
from skimage.metrics import structural_similarity

from histocolor.dtypes import full_scale


def _unit(image: np.ndarray) -> np.ndarray:
    image = np.asarray(image)[..., :3]
    return image.astype(np.float64) / full_scale(image.dtype)


def psnr(result: np.ndarray, truth: np.ndarray) -> float:
    """Peak signal-to-noise ratio in dB of two RGB images (values scaled to [0, 1])."""
    error = np.mean((_unit(result) - _unit(truth)) ** 2)
    return float("inf") if error == 0 else float(10 * np.log10(1.0 / error))


def gradient_ssim(result: np.ndarray, source: np.ndarray) -> float:
    """SSIM between the gradient magnitudes of L (CIELab): 1 when the result keeps every edge.

    Colour changes leave it near 1; blur, halos and lost texture pull it down.
    """
    gradients = [sobel(rgb2lab(_unit(image))[..., 0]) for image in (result, source)]
    data_range = max(float(gradients[1].max()), 1e-6)
    return float(structural_similarity(gradients[0], gradients[1], data_range=data_range))


STRUCTURE_SIGMA = 1.5  # the Gaussian window of skimage's structural_similarity(gaussian_weights=True)
STRUCTURE_TRUNCATE = 3.5  # its truncation: a window of radius 5 (11 x 11)


def structure_score(result: np.ndarray, source: np.ndarray) -> float:
    """The SSIM structure term alone between the gradient magnitudes of L (CIELab).

    ``s = (σ_xy + C3) / (σ_x σ_y + C3)`` with ``C3 = C2 / 2``, ``C2 = (0.03 · data_range)²``
    and ``data_range`` the source gradient's maximum (as :func:`gradient_ssim`): the local
    correlation of the two gradient fields. Unlike :func:`gradient_ssim` it ignores the
    gradients' mean and spread, so a global contrast change (an S-curve) keeps it near 1,
    while blur, noise and halos, which move edges or add new ones, pull it down.

    Local statistics come from a Gaussian window (σ = 1.5, truncated at 3.5 σ, as
    ``structural_similarity(gaussian_weights=True)``), with population (not sample)
    covariances, as in Wang et al. The mean skips the border of the window's radius (5 px),
    as scikit-image does, so every pixel averaged has its whole window inside the image;
    an axis of 10 px or fewer is averaged whole. Both images must have the same size.
    """
    if np.shape(result)[:2] != np.shape(source)[:2]:
        raise ValueError(f"structure_score needs images of one size, not {np.shape(result)[:2]} and {np.shape(source)[:2]}")
    x, y = (sobel(_lab(image)[..., 0]) for image in (result, source))
    c3 = (0.03 * max(float(y.max()), 1e-6)) ** 2 / 2

    def window(values):
        return gaussian_filter(values, sigma=STRUCTURE_SIGMA, truncate=STRUCTURE_TRUNCATE)

    mean_x, mean_y = window(x), window(y)
    variance_x = np.maximum(window(x * x) - mean_x**2, 0.0)
    variance_y = np.maximum(window(y * y) - mean_y**2, 0.0)
    covariance = window(x * y) - mean_x * mean_y
    structure = (covariance + c3) / (np.sqrt(variance_x * variance_y) + c3)
    radius = int(STRUCTURE_TRUNCATE * STRUCTURE_SIGMA + 0.5)
    crop = tuple(slice(radius, -radius) if side > 2 * radius else slice(None) for side in structure.shape)
    return float(np.mean(structure[crop]))


def _lab(image: np.ndarray) -> np.ndarray:
    return rgb2lab(_unit(image))


def ciede2000(result: np.ndarray, truth: np.ndarray) -> float:
    """Mean CIEDE2000 colour difference between two RGB images of the same size."""
    from skimage.color import deltaE_ciede2000

    return float(np.mean(deltaE_ciede2000(_lab(result), _lab(truth))))


def sliced_wasserstein(
    first: np.ndarray,
    second: np.ndarray,
    first_mask: np.ndarray | None = None,
    second_mask: np.ndarray | None = None,
    projections: int = 64,
    levels: int = 256,
    seed: int = 0,
    max_samples: int = 65536,
) -> float:
    """Sliced Wasserstein-1 distance between two images' Lab pixel distributions (Lab units).

    The mean, over fixed random directions in Lab, of the mean absolute gap between the
    two projected distributions' quantiles. Sizes may differ; masks pick the pixels.
    """
    generator = np.random.default_rng(seed)
    samples = []
    for image, mask in ((first, first_mask), (second, second_mask)):
        lab = _lab(image).reshape(-1, 3)
        lab = lab if mask is None else lab[np.asarray(mask).reshape(-1).astype(bool)]
        if len(lab) > max_samples:  # quantiles of a fixed random subset: as exact, far cheaper
            lab = lab[np.sort(generator.choice(len(lab), max_samples, replace=False))]
        samples.append(lab)
    if min(len(s) for s in samples) == 0:
        raise ValueError("sliced_wasserstein needs at least one pixel on each side")
    directions = generator.standard_normal((projections, 3))
    directions /= np.linalg.norm(directions, axis=1, keepdims=True)
    probabilities = (np.arange(levels) + 0.5) / levels
    quantiles = [np.quantile(s @ directions.T, probabilities, axis=0) for s in samples]
    return float(np.mean(np.abs(quantiles[0] - quantiles[1])))


def region_sliced_wasserstein(
    result: np.ndarray,
    reference: np.ndarray,
    result_labels: np.ndarray,
    reference_labels: np.ndarray,
    min_fraction: float = 0.01,
) -> float | None:
    """SWD between corresponding regions (same label), averaged with the result's region sizes.

    Regions under ``min_fraction`` of either image are skipped; None when no label is shared.
    """
    total, weighted = 0, 0.0
    for label in np.intersect1d(np.unique(result_labels), np.unique(reference_labels)):
        ours, theirs = result_labels == label, reference_labels == label
        if ours.mean() < min_fraction or theirs.mean() < min_fraction:
            continue
        count = int(ours.sum())
        weighted += count * sliced_wasserstein(result, reference, ours, theirs)
        total += count
    return weighted / total if total else None


L_RANGE = (0.0, 100.0)
AB_RANGE = (-100.0, 100.0)


def lab_histograms(image: np.ndarray, l_bins: int = 50, ab_bins: int = 50, max_pixels: int = 1 << 18):
    """Normalised histograms of an RGB image in Lab: L ``(l_bins,)`` and (a, b) ``(ab_bins, ab_bins)``.

    Large images are read on a regular grid of about ``max_pixels`` pixels. Each histogram sums
    to 1; a and b outside ``AB_RANGE`` land in the edge bins.
    """
    height, width = image.shape[:2]
    step = max(1, int(np.ceil(np.sqrt(height * width / max_pixels))))
    lab = _lab(image[::step, ::step]).reshape(-1, 3)
    lightness, _ = np.histogram(np.clip(lab[:, 0], *L_RANGE), bins=l_bins, range=L_RANGE)
    ab = np.clip(lab[:, 1:], *AB_RANGE)
    chroma, _, _ = np.histogram2d(ab[:, 0], ab[:, 1], bins=ab_bins, range=(AB_RANGE, AB_RANGE))
    return lightness / lightness.sum(), chroma / chroma.sum()
