"""sRGB <-> CIELab (D65) conversions on torch tensors, differentiable and batched.

kornia does the colour science; this module only fixes the conventions the rest of
histocolor relies on: sRGB values in [0, 1], Lab with L in [0, 100] and a, b roughly
in [-128, 128], tensors shaped ``(*, 3, H, W)``, and a normalised Lab scaling for networks.
"""

import torch
from kornia.color import lab_to_rgb as _kornia_lab_to_rgb
from kornia.color import rgb_to_lab as _kornia_rgb_to_lab

# Network-friendly scaling of Lab: L/50 - 1 and a/110, b/110 land in about [-1, 1].
_LAB_SCALE = (50.0, 110.0, 110.0)
_LAB_SHIFT = (50.0, 0.0, 0.0)


def rgb_to_lab(rgb: torch.Tensor) -> torch.Tensor:
    """Convert sRGB in [0, 1] to CIELab (D65, 2° observer).

    Args:
        rgb: ``(*, 3, H, W)`` sRGB values in [0, 1].

    Returns:
        ``(*, 3, H, W)`` Lab: L in [0, 100], a and b roughly in [-128, 128].
    """
    return _kornia_rgb_to_lab(rgb)


def lab_to_rgb(lab: torch.Tensor, clip: bool = True) -> torch.Tensor:
    """Convert CIELab (D65) to sRGB in [0, 1] (clipped to the gamut unless ``clip=False``).

    Args:
        lab: ``(*, 3, H, W)`` Lab values.
        clip: clamp the result to [0, 1].

    Returns:
        ``(*, 3, H, W)`` sRGB values.
    """
    return _kornia_lab_to_rgb(lab, clip=clip)


def _channel_constant(values, like: torch.Tensor) -> torch.Tensor:
    return torch.tensor(values, dtype=like.dtype, device=like.device).view(3, 1, 1)


def normalize_lab(lab: torch.Tensor) -> torch.Tensor:
    """Scale Lab ``(*, 3, H, W)`` to about [-1, 1] per channel (the networks' input space)."""
    return (lab - _channel_constant(_LAB_SHIFT, lab)) / _channel_constant(_LAB_SCALE, lab)


def denormalize_lab(normalized: torch.Tensor) -> torch.Tensor:
    """Inverse of :func:`normalize_lab`."""
    return normalized * _channel_constant(_LAB_SCALE, normalized) + _channel_constant(_LAB_SHIFT, normalized)
