"""The LUT head: a per-image 3D colour LUT predicted from the two histograms.

Beyond the paper (image-adaptive 3D LUTs): K learned basis LUTs hold Lab offsets indexed
by the source's RGB; from HEN(source), HEN(reference) and a tiny encoder of a 64x64 copy
of the source, the head predicts how to mix them. The result is one smooth colour map per
image: cheap to train on CPU, free of resolution, exportable as a .cube LUT.
"""

import torch
import torch.nn.functional as F
from torch import nn

from histocolor.color import lab_to_rgb, normalize_lab
from histocolor.model.config import AnalogyConfig
from histocolor.model.cross_attention import CrossAttention, ReferenceTokens

_THUMBNAIL = 64


def lookup(luts: torch.Tensor, rgb: torch.Tensor) -> torch.Tensor:
    """Trilinear lookup of per-image LUTs ``(B, C, S, S, S)`` (indexed [r, g, b]) at ``rgb`` ``(B, 3, H, W)``."""
    # grid_sample's last coordinate indexes the volume's first axis: pass (b, g, r).
    grid = (rgb.clamp(0.0, 1.0).flip(1) * 2.0 - 1.0).permute(0, 2, 3, 1).unsqueeze(1)
    return F.grid_sample(luts, grid, mode="bilinear", padding_mode="border", align_corners=True)[:, :, 0]


class LUTHead(nn.Module):
    """Predicts ``source + LUT(source)`` in normalised Lab; starts as the identity."""

    def __init__(self, config: AnalogyConfig):
        super().__init__()
        size = config.lut_size
        # Zero bases with a normally initialised mixer: the head starts as the identity, and
        # the bases get full-sized gradients at once (small factors on both sides stall).
        self.bases = nn.Parameter(torch.zeros(config.lut_bases, 3, size, size, size))
        self.thumbnail_encoder = nn.Sequential(
            nn.Conv2d(3, 16, 3, stride=2, padding=1),
            nn.LeakyReLU(0.2),
            nn.Conv2d(16, 32, 3, stride=2, padding=1),
            nn.LeakyReLU(0.2),
            nn.Conv2d(32, 32, 3, stride=2, padding=1),
            nn.LeakyReLU(0.2),
            nn.AdaptiveAvgPool2d(1),
            nn.Flatten(),
        )
        # With attention, the source's thumbnail feature attends to the reference's tokens
        # before it steers the mixing weights: the result stays one colour map.
        self.attention = CrossAttention(32, config.transformer.width, config.transformer.heads) \
            if config.attention != "none" else None
        self.mixer = nn.Sequential(
            nn.Linear(2 * config.feature_size + 32, 64), nn.LeakyReLU(0.2), nn.Linear(64, config.lut_bases)
        )

    def luts(self, source_lab: torch.Tensor, condition: torch.Tensor,
             reference: ReferenceTokens | None = None) -> torch.Tensor:
        """Per-image LUTs of normalised-Lab offsets, ``(B, 3, S, S, S)``.

        ``reference``: the tokens the attention reads (exactly when the config has attention).
        """
        if not isinstance(condition, torch.Tensor) or condition.ndim != 2:
            raise ValueError("the LUT head takes one feature pair per image (no region maps)")
        if (reference is not None) != (self.attention is not None):
            raise ValueError("give reference tokens exactly when the config has attention")
        thumbnail = F.adaptive_avg_pool2d(normalize_lab(source_lab), _THUMBNAIL)
        feature = self.thumbnail_encoder(thumbnail)
        if reference is not None:
            feature = self.attention(feature[:, :, None, None], reference, feature.new_ones(len(feature), 1, 1, 1))
            feature = feature[:, :, 0, 0]
        weights = self.mixer(torch.cat([condition, feature], dim=1))
        return torch.einsum("bk,kcxyz->bcxyz", weights, self.bases)

    def forward(self, source_lab: torch.Tensor, condition: torch.Tensor,
                reference: ReferenceTokens | None = None) -> torch.Tensor:
        """The result in normalised Lab, ``(B, 3, H, W)``."""
        offsets = lookup(self.luts(source_lab, condition, reference), lab_to_rgb(source_lab))
        return normalize_lab(source_lab) + offsets
