"""sRGB <-> CIELab (D65, 2° observer) on numpy arrays, for the paths that need no torch.

The same conventions as :mod:`histocolor.color` (its torch twin, which the networks use):
sRGB in [0, 1], L in [0, 100], a and b roughly in [-128, 128]. Arrays are channels-last,
``(..., 3)`` (pixels ``(N, 3)`` or images ``(H, W, 3)``), float32 in and out. The constants
are those of the sRGB standard (IEC 61966-2-1) and of CIE 15 (the Lab definition).
"""

import numpy as np

__all__ = ["lab_to_rgb", "linear_to_srgb", "rgb_to_lab", "srgb_to_linear"]

# Linear sRGB -> CIE XYZ (D65), rows X, Y, Z; and its inverse.
_RGB_TO_XYZ = np.array([
    [0.412453, 0.357580, 0.180423],
    [0.212671, 0.715160, 0.072169],
    [0.019334, 0.119193, 0.950227],
])
_XYZ_TO_RGB = np.linalg.inv(_RGB_TO_XYZ)
_WHITE = np.array([0.95047, 1.0, 1.08883])  # D65, 2° observer
# Both matrices with the white point folded in, float32, transposed for ``pixels @ M``.
_RGB_TO_XYZN_T = (_RGB_TO_XYZ / _WHITE[:, None]).T.astype(np.float32)
_XYZN_TO_RGB_T = (_XYZ_TO_RGB * _WHITE[None, :]).T.astype(np.float32)
# CIE Lab's f(t): a cube root above (6/29)^3, a line below it.
_DELTA = 6.0 / 29.0
_F_SLOPE = np.float32(1.0 / (3.0 * _DELTA**2))
_F_OFFSET = np.float32(4.0 / 29.0)


def srgb_to_linear(rgb: np.ndarray) -> np.ndarray:
    """Undo the sRGB transfer curve (values in [0, 1]); float32 of the same shape.

    Example:
        >>> srgb_to_linear(np.array([0.0, 0.5, 1.0], np.float32)).round(4)
        array([0.    , 0.214 , 1.    ], dtype=float32)
    """
    rgb = np.asarray(rgb, dtype=np.float32)
    curved = np.power((np.maximum(rgb, 0.04045) + np.float32(0.055)) / np.float32(1.055), np.float32(2.4))
    return np.where(rgb > 0.04045, curved, rgb / np.float32(12.92))


def linear_to_srgb(linear: np.ndarray) -> np.ndarray:
    """Apply the sRGB transfer curve to linear values; float32 of the same shape.

    Example:
        >>> linear_to_srgb(np.array([0.0, 0.214, 1.0], np.float32)).round(3)
        array([0. , 0.5, 1. ], dtype=float32)
    """
    linear = np.asarray(linear, dtype=np.float32)
    curved = np.float32(1.055) * np.power(np.maximum(linear, 0.0031308), np.float32(1.0 / 2.4)) - np.float32(0.055)
    return np.where(linear > 0.0031308, curved, linear * np.float32(12.92))


def rgb_to_lab(rgb: np.ndarray) -> np.ndarray:
    """sRGB ``(..., 3)`` in [0, 1] -> CIELab ``(..., 3)`` float32.

    Example:
        >>> rgb_to_lab(np.array([[1.0, 1.0, 1.0], [0.0, 0.0, 0.0]], np.float32)).round(2)
        array([[100.,   0.,   0.],
               [  0.,   0.,   0.]], dtype=float32)
    """
    xyz = srgb_to_linear(rgb) @ _RGB_TO_XYZN_T  # X/Xn, Y/Yn, Z/Zn
    f = np.where(xyz > _DELTA**3, np.cbrt(xyz), xyz * _F_SLOPE + _F_OFFSET)
    fx, fy, fz = f[..., 0], f[..., 1], f[..., 2]
    return np.stack([116.0 * fy - 16.0, 500.0 * (fx - fy), 200.0 * (fy - fz)], axis=-1).astype(np.float32)


def lab_to_rgb(lab: np.ndarray, clip: bool = True) -> np.ndarray:
    """CIELab ``(..., 3)`` -> sRGB ``(..., 3)`` float32, clipped to [0, 1] unless ``clip=False``.

    Example:
        >>> lab_to_rgb(np.array([[100.0, 0.0, 0.0]], np.float32)).round(3)
        array([[1., 1., 1.]], dtype=float32)
    """
    lab = np.asarray(lab, dtype=np.float32)
    fy = (lab[..., 0] + np.float32(16.0)) / np.float32(116.0)
    fx = fy + lab[..., 1] / np.float32(500.0)
    fz = np.maximum(fy - lab[..., 2] / np.float32(200.0), 0.0)  # Z cannot be negative
    f = np.stack([fx, fy, fz], axis=-1)
    xyz = np.where(f > _DELTA, f * f * f, (f - _F_OFFSET) / _F_SLOPE)
    rgb = linear_to_srgb(xyz @ _XYZN_TO_RGB_T)
    return np.clip(rgb, 0.0, 1.0) if clip else rgb
