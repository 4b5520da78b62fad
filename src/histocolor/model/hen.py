"""HEN, the histogram encoding network: a histogram stack -> one feature vector."""

from typing import NamedTuple

import torch
from torch import nn

from histocolor.model.config import AnalogyConfig


class HistogramTokens(NamedTuple):
    """What a histogram encoder gives: the feature, and its token sequence where it has one."""

    features: torch.Tensor  # (B, feature_size): what the CTN's FiLM layers and the LUT head read
    tokens: torch.Tensor | None  # (B, T, width) for attention from elsewhere; None for the conv HEN


class HistogramEncoder(nn.Module):
    """Stride-2 convolutions over the ``(l_bins + 1, ab_bins, ab_bins)`` histogram stack.

    The last map is flattened rather than pooled: where mass sits in the (a, b) plane is
    exactly what the feature must describe.
    """

    def __init__(self, config: AnalogyConfig):
        super().__init__()
        layers = []
        channels = config.l_bins + 1
        for width in config.hen_widths:
            layers += [nn.Conv2d(channels, width, 4, stride=2, padding=1), nn.LeakyReLU(0.2)]
            channels = width
        self.convolutions = nn.Sequential(*layers)
        side = config.ab_bins // 2 ** len(config.hen_widths)
        self.project = nn.Linear(channels * side * side, config.feature_size)
        # He initialisation for leaky ReLUs keeps the signal's scale through the stack
        # (PyTorch's default shrinks it about threefold per layer, flattening the features).
        for layer in self.convolutions:
            if isinstance(layer, nn.Conv2d):
                nn.init.kaiming_normal_(layer.weight, a=0.2, nonlinearity="leaky_relu")
                nn.init.zeros_(layer.bias)
        nn.init.kaiming_normal_(self.project.weight, nonlinearity="linear")
        nn.init.zeros_(self.project.bias)
        # Scaled so a uniform histogram reads 1 in every channel: unscaled, a 4096-bin
        # histogram is ~1e-3 everywhere and the features hardly differ between images.
        scale = torch.full((config.l_bins + 1, 1, 1), float(config.l_bins))
        scale[0] = float(config.ab_bins**2)
        self.register_buffer("input_scale", scale, persistent=False)

    def encode(self, histograms: torch.Tensor) -> HistogramTokens:
        """The feature (:meth:`forward`); the conv HEN has no token sequence."""
        return HistogramTokens(self(histograms), None)

    def forward(self, histograms: torch.Tensor) -> torch.Tensor:
        """``(B, l_bins + 1, ab_bins, ab_bins)`` histograms summing to 1 -> ``(B, feature_size)``."""
        # Square roots (the Hellinger embedding) lift rare colours out of the noise floor;
        # the offset keeps the gradient finite at empty bins.
        encoded = self.convolutions(torch.sqrt(histograms * self.input_scale + 1e-6))
        return self.project(encoded.flatten(1))
