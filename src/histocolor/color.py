"""sRGB <-> CIELab (D65) conversions on torch tensors, differentiable and batched.

The torch twin of :mod:`histocolor.colorspace` (numpy): the same constants (the sRGB standard,
IEC 61966-2-1, and CIE 15's Lab), sRGB values in [0, 1], Lab with L in [0, 100] and a, b roughly
in [-128, 128], tensors shaped ``(*, 3, H, W)``, and a normalised Lab scaling for networks. It
agrees with kornia's conversions to 2e-4 Lab units (tests/test_color.py) without importing kornia,
which costs a tenth of a second at the start of every network command.
"""

import torch

from histocolor.colorspace import _DELTA, _RGB_TO_XYZN_T, _XYZN_TO_RGB_T

# Network-friendly scaling of Lab: L/50 - 1 and a/110, b/110 land in about [-1, 1].
_LAB_SCALE = (50.0, 110.0, 110.0)
_LAB_SHIFT = (50.0, 0.0, 0.0)
# CIE Lab's f(t): a cube root above DELTA^3, a line below it (as Python floats, for any dtype).
_F_SLOPE = 1.0 / (3.0 * _DELTA**2)
_F_OFFSET = 4.0 / 29.0


def _mix_channels(image: torch.Tensor, matrix_t) -> torch.Tensor:
    """``(*, 3, H, W)`` with each pixel's 3 values multiplied by a 3x3 matrix (given transposed)."""
    matrix = torch.as_tensor(matrix_t.T, dtype=image.dtype, device=image.device)
    return torch.einsum("ij,...jhw->...ihw", matrix, image)


def rgb_to_lab(rgb: torch.Tensor) -> torch.Tensor:
    """Convert sRGB in [0, 1] to CIELab (D65, 2° observer).

    Args:
        rgb: ``(*, 3, H, W)`` sRGB values in [0, 1].

    Returns:
        ``(*, 3, H, W)`` Lab: L in [0, 100], a and b roughly in [-128, 128].

    Example:
        >>> rgb_to_lab(torch.ones(1, 3, 1, 1)).flatten().round(decimals=2)
        tensor([100.,  -0.,   0.])
    """
    curved = ((rgb.clamp_min(0.04045) + 0.055) / 1.055).pow(2.4)  # clamped: no NaN gradient below
    linear = torch.where(rgb > 0.04045, curved, rgb / 12.92)
    xyz = _mix_channels(linear, _RGB_TO_XYZN_T)  # X/Xn, Y/Yn, Z/Zn
    f = torch.where(xyz > _DELTA**3, xyz.clamp_min(_DELTA**3).pow(1.0 / 3.0), xyz * _F_SLOPE + _F_OFFSET)
    fx, fy, fz = f.unbind(-3)
    return torch.stack([116.0 * fy - 16.0, 500.0 * (fx - fy), 200.0 * (fy - fz)], dim=-3)


def lab_to_rgb(lab: torch.Tensor, clip: bool = True) -> torch.Tensor:
    """Convert CIELab (D65) to sRGB in [0, 1] (clipped to the gamut unless ``clip=False``).

    Args:
        lab: ``(*, 3, H, W)`` Lab values.
        clip: clamp the result to [0, 1].

    Returns:
        ``(*, 3, H, W)`` sRGB values.

    Example:
        >>> lab_to_rgb(torch.tensor([100.0, 0.0, 0.0]).view(1, 3, 1, 1)).flatten().round(decimals=3)
        tensor([1., 1., 1.])
    """
    lightness, a, b = lab.unbind(-3)
    fy = (lightness + 16.0) / 116.0
    f = torch.stack([fy + a / 500.0, fy, (fy - b / 200.0).clamp_min(0.0)], dim=-3)  # Z cannot be negative
    xyz = torch.where(f > _DELTA, f * f * f, (f - _F_OFFSET) / _F_SLOPE)
    linear = _mix_channels(xyz, _XYZN_TO_RGB_T)
    curved = 1.055 * linear.clamp_min(0.0031308).pow(1.0 / 2.4) - 0.055
    rgb = torch.where(linear > 0.0031308, curved, linear * 12.92)
    return rgb.clamp(0.0, 1.0) if clip else rgb


def _channel_constant(values, like: torch.Tensor) -> torch.Tensor:
    return torch.tensor(values, dtype=like.dtype, device=like.device).view(3, 1, 1)


def normalize_lab(lab: torch.Tensor) -> torch.Tensor:
    """Scale Lab ``(*, 3, H, W)`` to about [-1, 1] per channel (the networks' input space)."""
    return (lab - _channel_constant(_LAB_SHIFT, lab)) / _channel_constant(_LAB_SCALE, lab)


def denormalize_lab(normalized: torch.Tensor) -> torch.Tensor:
    """Inverse of :func:`normalize_lab`."""
    return normalized * _channel_constant(_LAB_SCALE, normalized) + _channel_constant(_LAB_SHIFT, normalized)
