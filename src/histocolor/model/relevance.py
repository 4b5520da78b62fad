"""The relevance gate: how far the network follows the reference, per image, region and channel.

A retoucher who is shown the same scene graded (the paper's case: the reference's histogram is
the target's) copies its exposure, contrast and colour faithfully; shown an unrelated photo,
they take its look and keep their own photo intact. The alignment (model/alignment.py) is
therefore fitted twice: *careful*, with slope bounds that keep edges and contrast, and
*faithful*, with wide bounds (close to full histogram matching). The gate reads both images'
histogram features (per region too) and a content feature of a small copy of each, and
predicts a blend ``(B, K, 3)`` in [0, 1] between the two maps (0 careful, 1 faithful) for each
of K regions (the last one: the whole image) and each Lab channel.
"""

import math

import torch
import torch.nn.functional as F
from torch import nn

from histocolor.model.config import AnalogyConfig


class ContentEncoder(nn.Module):
    """A pooled feature of what an image shows, not of its grade: ``(B, 3, H, W)`` Lab -> ``(B, 2 * width)``.

    It reads L only, standardised per image (an exposure or contrast change moves it little),
    on a ``size`` x ``size`` copy, and averages the features of the image and its mirror (a
    mirrored view of the same scene gives the same feature).

    Example:
        >>> encoder = ContentEncoder(64, 8)
        >>> lab = torch.rand(2, 3, 40, 50) * 100
        >>> torch.allclose(encoder(lab), encoder(lab.flip(-1)), atol=1e-5)
        True
    """

    def __init__(self, size: int, width: int):
        super().__init__()
        self.size = size
        self.layers = nn.Sequential(
            nn.Conv2d(1, width, 3, stride=2, padding=1), nn.LeakyReLU(0.2),
            nn.Conv2d(width, 2 * width, 3, stride=2, padding=1), nn.LeakyReLU(0.2),
            nn.Conv2d(2 * width, 2 * width, 3, stride=2, padding=1), nn.LeakyReLU(0.2),
        )

    def forward(self, lab: torch.Tensor) -> torch.Tensor:
        lightness = F.interpolate(lab[:, :1], size=(self.size, self.size), mode="area")
        mean = lightness.mean(dim=(-2, -1), keepdim=True)
        spread = lightness.std(dim=(-2, -1), keepdim=True).clamp(min=1.0)
        standard = (lightness - mean) / spread
        both = torch.cat([standard, standard.flip(-1)])
        pooled = self.layers(both).mean(dim=(-2, -1))
        return 0.5 * (pooled[: len(lab)] + pooled[len(lab) :])


class RelevanceGate(nn.Module):
    """The blend ``(B, K, 3)`` between the careful and the faithful alignment (see the module)."""

    def __init__(self, config: AnalogyConfig):
        super().__init__()
        settings = config.relevance
        self.content = ContentEncoder(settings.content_size, settings.content_width)
        content = 2 * settings.content_width
        self.mlp = nn.Sequential(
            nn.Linear(2 * config.feature_size + 4 * content, settings.hidden), nn.LeakyReLU(0.2),
            nn.Linear(settings.hidden, 3),
        )
        # The last layer starts at zero: an untrained gate gives ``start`` everywhere, and a model
        # grown with a gate starts from one fixed blend of its two alignments.
        nn.init.zeros_(self.mlp[-1].weight)
        nn.init.constant_(self.mlp[-1].bias, math.log(settings.start / (1.0 - settings.start)))

    def forward(self, source_features: torch.Tensor, reference_features: torch.Tensor, source_lab: torch.Tensor,
                reference_lab: torch.Tensor) -> torch.Tensor:
        """``source_features`` and ``reference_features`` ``(B, K, F)`` (histogram features per region,
        the whole image last), ``source_lab`` ``(B, 3, H, W)``, ``reference_lab`` ``(B, 3, h, w)`` ->
        ``(B, K, 3)`` in [0, 1]."""
        mine, theirs = self.content(source_lab), self.content(reference_lab)
        content = torch.cat([mine, theirs, mine * theirs, (mine - theirs).abs()], dim=1)
        content = content[:, None].expand(-1, source_features.shape[1], -1)
        return torch.sigmoid(self.mlp(torch.cat([source_features, reference_features, content], dim=-1)))
