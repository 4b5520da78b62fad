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

    def apply(self, rgb: torch.Tensor) -> torch.Tensor:
        """Grade ``rgb`` ``(*, 3, H, W)`` in [0, 1]; the result stays in [0, 1]."""
        return _apply_retouch(rgb, self)


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


def apply_style(rgb: torch.Tensor, style) -> torch.Tensor:
    """Grade ``rgb`` ``(*, 3, H, W)`` in [0, 1] with ``style`` (a :class:`RetouchStyle` or
    :class:`RealisticStyle`); the result stays in [0, 1]."""
    return style.apply(rgb)


def _apply_retouch(rgb: torch.Tensor, style: RetouchStyle) -> torch.Tensor:
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


# ------------------------------------------------------------------------ realistic grades
#
# What expert renders of raw photos do (MIT-Adobe FiveK's retouchers, measured on held-out
# pairs: docs/BENCHMARKS.md): exposure pushes of one or two stops, lifted shadows and pulled
# highlights, strong tone curves, local contrast, vibrance and white balance. They change tones
# far more than the grades above: an expert render keeps a gradient SSIM of about 0.84 to its
# source (0.68-0.98), where the grades above keep 0.97. These tools work in linear light, as a
# raw converter does, and two of them are local (shadows/highlights and clarity read a blurred
# luminance), so that a network trained on them must follow tones, not only colours.

# Ranges of the realistic grades (each tool used with its probability, see random_realistic_style).
REALISTIC_RANGES = {
    "stops": (-1.0, 1.0),  # exposure in stops (2^stops in linear light), on top of the photo's own need
    "key": (0.35, 0.55),  # the median display luminance the exposure aims at, when the photo is known
    "temperature": (0.75, 1.33),  # red / blue gain ratio in linear light
    "tint": (0.9, 1.1),  # green gain
    "shadows": (-0.3, 1.0),  # lift (+) or crush (-) of the shadows
    "highlights": (-1.0, 0.4),  # pull (-) or push (+) of the highlights
    "curve": (-0.5, 0.8),  # S-curve strength; negative is the inverse (flat, matte)
    "clarity": (-0.2, 0.4),  # local contrast
    "vibrance": (-0.4, 0.8),
    "saturation": (0.85, 1.15),
}
# Blurred luminances for the local tools, their Gaussians' sigma as a share of the short side:
# wide for shadows and highlights (a tone curve that adapts to the neighbourhood, no halos),
# narrow for clarity (local contrast, the detail around edges).
_TONE_SIGMA = 0.15
_CLARITY_SIGMA = 0.03
_HIGHLIGHT_KNEE = 0.8  # linear values above it roll off softly instead of clipping


@dataclass(frozen=True)
class RealisticStyle:
    """A raw-converter style grade; the neutral values change nothing.

    Example:
        >>> image = torch.rand(3, 16, 16)
        >>> bool(torch.allclose(apply_style(image, RealisticStyle()), image, atol=1e-5))
        True
    """

    stops: float = 0.0
    temperature: float = 1.0
    tint: float = 1.0
    shadows: float = 0.0
    highlights: float = 0.0
    curve: float = 0.0
    pivot: float = 0.45  # where the tone curve crosses the identity (display-referred)
    clarity: float = 0.0
    vibrance: float = 0.0
    saturation: float = 1.0
    toning: RetouchStyle = RetouchStyle()  # a colour grade on top (split toning, hue, fade)

    def apply(self, rgb: torch.Tensor) -> torch.Tensor:
        """Grade ``rgb`` ``(3, H, W)`` (or ``(B, 3, H, W)``) in [0, 1]; the result stays in [0, 1]."""
        linear = srgb_to_linear(rgb.clamp(0.0, 1.0))
        gains = torch.tensor([self.temperature ** 0.5, self.tint, self.temperature ** -0.5], dtype=rgb.dtype,
                             device=rgb.device).view(3, 1, 1)
        gains = (2.0 ** self.stops) * gains / _luma_of_gains(gains)
        linear = linear * gains
        # The largest value a white can reach: the shoulder rolls [knee, peak] into [knee, 1].
        peak = float(gains.max()) * 2.0 ** (2.0 * max(self.shadows, 0.0) + 1.6 * max(self.highlights, 0.0))
        if self.shadows or self.highlights:
            local = _blurred(_luma(linear).clamp(0.0, 1.0) ** (1 / 2.2), _TONE_SIGMA)
            shadow_mask = (1.0 - local / 0.5).clamp(0.0, 1.0) ** 2
            highlight_mask = ((local - 0.5) / 0.5).clamp(0.0, 1.0) ** 2
            # Shadows: a gain of up to 4x (two stops) where the neighbourhood is dark;
            # highlights: a gain of down to 1/3 where it is bright.
            linear = linear * (2.0 ** (2.0 * self.shadows * shadow_mask)) * (2.0 ** (1.6 * self.highlights * highlight_mask))
        linear = _soft_shoulder(linear, peak)
        out = linear_to_srgb(linear)
        if self.curve:
            out = _tone_curve(out, self.curve, self.pivot)
        if self.clarity:
            luma = _luma(out)
            detail = luma - _blurred(luma, _CLARITY_SIGMA)
            midtones = 4.0 * luma * (1.0 - luma)  # clarity leaves black and white alone
            out = out + self.clarity * detail * midtones
        out = out.clamp(0.0, 1.0)
        if self.vibrance or self.saturation != 1.0:
            out = _vibrance(out, self.vibrance, self.saturation)
        if not self.toning.is_neutral():
            out = self.toning.apply(out)
        return out.clamp(0.0, 1.0)


def srgb_to_linear(rgb: torch.Tensor) -> torch.Tensor:
    """sRGB-encoded values in [0, 1] to linear light (IEC 61966-2-1)."""
    return torch.where(rgb <= 0.04045, rgb / 12.92, ((rgb + 0.055) / 1.055) ** 2.4)


def linear_to_srgb(linear: torch.Tensor) -> torch.Tensor:
    """Linear light in [0, 1] to sRGB-encoded values."""
    linear = linear.clamp(0.0, 1.0)
    return torch.where(linear <= 0.0031308, linear * 12.92, 1.055 * linear.clamp(min=1e-8) ** (1 / 2.4) - 0.055)


def _luma(rgb: torch.Tensor) -> torch.Tensor:
    return (rgb * _channels(_LUMA, rgb)).sum(dim=-3, keepdim=True)


def _luma_of_gains(gains: torch.Tensor) -> torch.Tensor:
    # White balance changes the colour, not the brightness: the gains keep luma 1.
    return (gains.view(3) * torch.tensor(_LUMA, dtype=gains.dtype, device=gains.device)).sum()


def _soft_shoulder(linear: torch.Tensor, peak: float) -> torch.Tensor:
    """Values above the knee roll off so that ``peak`` lands on 1 (a raw converter's highlight
    compression): ``y = knee + d / (1 + c d)`` with ``d = x - knee``, slope 1 at the knee, and
    the identity when ``peak`` is 1 (nothing was pushed)."""
    knee = _HIGHLIGHT_KNEE
    if peak <= 1.0:
        return linear
    c = (peak - 1.0) / ((1.0 - knee) * (peak - knee))
    over = (linear - knee).clamp(min=0.0)
    return torch.where(linear < knee, linear, knee + over / (1.0 + c * over))


def _blurred(image: torch.Tensor, share: float) -> torch.Tensor:
    """A Gaussian blur of ``image`` ``(*, C, H, W)`` with sigma ``share`` of its short side."""
    from kornia.filters import gaussian_blur2d

    sigma = max(0.5, share * min(image.shape[-2:]))
    radius = min(int(3 * sigma), (min(image.shape[-2:]) - 1) // 2)
    size = 2 * max(radius, 1) + 1
    batched = image if image.ndim == 4 else image.unsqueeze(0)
    blurred = gaussian_blur2d(batched, (size, size), (sigma, sigma), border_type="reflect")
    return blurred if image.ndim == 4 else blurred[0]


def _tone_curve(rgb: torch.Tensor, strength: float, pivot: float) -> torch.Tensor:
    """An S-curve (``strength`` > 0) or its inverse (< 0) through 0, ``pivot`` and 1, per channel.

    The S-curve is a logistic through the pivot, rescaled to keep 0 and 1; its slope at the
    pivot grows to about 3x at strength 1. The inverse is the S-curve's inverse function.
    """
    steepness = 1.0 + 9.0 * abs(strength)

    def logistic(x):
        return torch.sigmoid(steepness * (x - pivot))

    low, high = logistic(torch.tensor(0.0)), logistic(torch.tensor(1.0))
    if strength > 0:
        return (logistic(rgb) - low) / (high - low)
    # Inverse: x = (sigmoid(k (y - p)) - low) / (high - low)  =>  y = p + logit(low + x (high - low)) / k.
    inside = (low + rgb.clamp(0.0, 1.0) * (high - low)).clamp(1e-6, 1 - 1e-6)
    return pivot + torch.log(inside / (1.0 - inside)) / steepness


def _vibrance(rgb: torch.Tensor, vibrance: float, saturation: float) -> torch.Tensor:
    """Saturation scaled by ``saturation`` everywhere and by ``1 + vibrance`` most where it is low."""
    luma = _luma(rgb)
    chroma = rgb.amax(dim=-3, keepdim=True) - rgb.amin(dim=-3, keepdim=True)
    factor = saturation * (1.0 + vibrance * (1.0 - chroma).clamp(0.0, 1.0) ** 2)
    return (luma + (rgb - luma) * factor).clamp(0.0, 1.0)


# A raw converter's neutral render, before the retoucher: darker, flatter and duller than the
# finished photo (FiveK's sources next to their expert renders). Sources of realistic triplets.
# Their chroma differs little: with duller sources (saturation 0.65-0.95) a linear map (MKL)
# beat histogram matching on the synthetic set, where on real expert pairs it loses by 2.4 dB.
FLAT_RANGES = {"stops": (-1.0, -0.2), "curve": (-0.4, -0.1), "saturation": (0.85, 1.0), "vibrance": (-0.15, 0.0)}


def random_flat_style(rng: np.random.Generator, ranges: dict = FLAT_RANGES) -> RealisticStyle:
    """An unfinished, raw-like render (each tool at a random strength of ``ranges``)."""
    return RealisticStyle(**{name: float(rng.uniform(*bounds)) for name, bounds in ranges.items()},
                          pivot=float(rng.uniform(0.3, 0.6)))


def random_realistic_style(rng: np.random.Generator, ranges: dict = REALISTIC_RANGES, tools: float = 0.75,
                           toning: float = 0.3, photo: torch.Tensor | None = None) -> RealisticStyle:
    """Draw a realistic grade: exposure most of the time, each other tool with probability ``tools``,
    and with probability ``toning`` a colour grade of :func:`random_style` on top.

    Given the ``photo`` ``(3, H, W)`` it will grade, the exposure does what a retoucher's does:
    it moves the photo's median luminance towards a key drawn from ``ranges["key"]`` (a dark
    photo is pushed, a bright one pulled), plus a random part; at most two stops either way.
    The style itself stays a function of colour and neighbourhood: the same on every view.
    """

    def draw(name, use=tools):
        return float(rng.uniform(*ranges[name])) if rng.random() < use else None

    values = {}
    for name, use in (("stops", 0.8), ("shadows", tools), ("highlights", tools), ("curve", tools),
                      ("clarity", tools * 0.7), ("vibrance", tools * 0.7)):
        value = draw(name, use)
        if value is not None:
            values[name] = value
    if photo is not None and "stops" in values:
        median = float(_luma(srgb_to_linear(photo.clamp(0.0, 1.0))).median().clamp(min=1e-4))
        key = float(srgb_to_linear(torch.tensor(rng.uniform(*ranges["key"]))))
        values["stops"] = float(np.clip(0.7 * math.log2(key / median) + values["stops"], -2.0, 1.6))
    if rng.random() < tools:
        values["temperature"] = float(_log_uniform(rng, *ranges["temperature"]))
        values["tint"] = float(_log_uniform(rng, *ranges["tint"]))
    if rng.random() < tools * 0.5:
        values["saturation"] = float(_log_uniform(rng, *ranges["saturation"]))
    if "curve" in values:
        values["pivot"] = float(rng.uniform(0.3, 0.6))
    if rng.random() < toning:
        values["toning"] = random_style(rng, TRAINING_RANGES, tools=0.3)
    return RealisticStyle(**values)
