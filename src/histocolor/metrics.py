"""Image quality measures used by the benchmarks (numpy in, float out)."""

import numpy as np
from skimage.color import rgb2lab
from skimage.filters import sobel
from skimage.metrics import structural_similarity


def _unit(image: np.ndarray) -> np.ndarray:
    image = np.asarray(image)[..., :3]
    if np.issubdtype(image.dtype, np.integer):
        return image.astype(np.float64) / np.iinfo(image.dtype).max
    return image.astype(np.float64)


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
