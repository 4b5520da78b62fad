"""Random photographic retouch styles: the colour grades training pairs are made of.

A style is a global colour function (it depends on a pixel's colour only), so the same
style applied to two photos gives them "the same look": the reference and the target of
a training triplet. Styles combine the paper's augmentation (shift the average hue and
saturation) with the usual grading tools: exposure, white balance, per-channel tone
curves, contrast, saturation, split toning and faded blacks.
"""

import math
from dataclasses import dataclass

import numpy as np
import torch
from kornia.enhance import adjust_hue, adjust_saturation

# Rec. 709 luma weights, for luminance-dependent tools (split toning, contrast).
_LUMA = (0.2126, 0.7152, 0.0722)


@dataclass(frozen=True)
class RetouchStyle:
    """Parameters of one grade; the neutral values change nothing."""

    exposure: float = 1.0  # overall gain
    white_balance: tuple[float, float, float] = (1.0, 1.0, 1.0)  # per-channel gains
    gamma: tuple[float, float, float] = (1.0, 1.0, 1.0)  # per-channel tone curves
    contrast: float = 0.0  # S-curve strength, negative flattens
    saturation: float = 1.0
    hue_shift: float = 0.0  # radians
    shadow_tint: tuple[float, float, float] = (0.0, 0.0, 0.0)  # added in the shadows
    highlight_tint: tuple[float, float, float] = (0.0, 0.0, 0.0)  # added in the highlights
    fade: float = 0.0  # lifts the blacks

    def is_neutral(self) -> bool:
        return self == RetouchStyle()


# Ranges of the training styles. Evaluation sets draw from other ranges (see evaluate).
TRAINING_RANGES = {
    "exposure": (0.75, 1.3),
    "white_balance": (0.85, 1.15),
    "gamma": (0.8, 1.25),
    "contrast": (-0.3, 0.4),
    "saturation": (0.5, 1.5),
    "hue_shift": (-0.35, 0.35),
    "tint": (0.0, 0.06),
    "fade": (0.0, 0.08),
}

# Strong looks (night, sunset, bleach, heavy toning): the grades designers take from
# references. Training draws some target styles from here so that the network learns to
# transfer a strong look fully, not only to nudge.
STRONG_RANGES = {
    "exposure": (0.3, 1.8),
    "white_balance": (0.55, 1.8),
    "gamma": (0.5, 1.8),
    "contrast": (-0.5, 0.8),
    "saturation": (0.2, 2.5),
    "hue_shift": (-0.35, 0.35),
    "tint": (0.05, 0.25),
    "fade": (0.0, 0.2),
}


def _log_uniform(rng: np.random.Generator, low: float, high: float, size=None):
    return np.exp(rng.uniform(math.log(low), math.log(high), size))


def _tint(rng: np.random.Generator, strength_range) -> tuple[float, float, float]:
    """A colour of random hue and small strength, zero-mean over channels (tints, not brightens)."""
    direction = rng.normal(size=3)
    direction -= direction.mean()
    direction /= max(np.linalg.norm(direction), 1e-6)
    return tuple(float(v) for v in direction * rng.uniform(*strength_range))


def random_style(rng: np.random.Generator, ranges: dict = TRAINING_RANGES, tools: float = 0.6) -> RetouchStyle:
    """Draw a style: each tool is used with probability ``tools``, at a random strength."""

    def use() -> bool:
        return rng.random() < tools

    values = {}
    if use():
        values["exposure"] = float(_log_uniform(rng, *ranges["exposure"]))
    if use():
        gains = _log_uniform(rng, *ranges["white_balance"], size=3)
        values["white_balance"] = tuple(float(g) for g in gains / np.exp(np.log(gains).mean()))
    if use():
        values["gamma"] = tuple(float(g) for g in _log_uniform(rng, *ranges["gamma"], size=3))
    if use():
        values["contrast"] = float(rng.uniform(*ranges["contrast"]))
    if use():
        values["saturation"] = float(_log_uniform(rng, *ranges["saturation"]))
    if use():
        values["hue_shift"] = float(rng.uniform(*ranges["hue_shift"]))
    if use():
        values["shadow_tint"] = _tint(rng, ranges["tint"])
        values["highlight_tint"] = _tint(rng, ranges["tint"])
    if use():
        values["fade"] = float(rng.uniform(*ranges["fade"]))
    return RetouchStyle(**values)


def _channels(values, like: torch.Tensor) -> torch.Tensor:
    return torch.tensor(values, dtype=like.dtype, device=like.device).view(3, 1, 1)


def apply_style(rgb: torch.Tensor, style: RetouchStyle) -> torch.Tensor:
    """Grade ``rgb`` ``(*, 3, H, W)`` in [0, 1] with ``style``; the result stays in [0, 1]."""
    out = rgb * style.exposure * _channels(style.white_balance, rgb)
    out = out.clamp(0.0, 1.0) ** _channels(style.gamma, rgb)
    if style.contrast:
        # A smoothstep blend: positive strength steepens the mid-tones, negative flattens them.
        smooth = out * out * (3.0 - 2.0 * out)
        out = out + style.contrast * (smooth - out)
    if style.saturation != 1.0:
        out = adjust_saturation(out.clamp(0.0, 1.0), style.saturation)
    if style.hue_shift:
        out = adjust_hue(out.clamp(0.0, 1.0), style.hue_shift)
    if any(style.shadow_tint) or any(style.highlight_tint):
        luma = (out * _channels(_LUMA, out)).sum(dim=-3, keepdim=True).clamp(0.0, 1.0)
        out = out + (1.0 - luma) * _channels(style.shadow_tint, out) + luma * _channels(style.highlight_tint, out)
    if style.fade:
        out = style.fade + (1.0 - style.fade) * out
    return out.clamp(0.0, 1.0)
