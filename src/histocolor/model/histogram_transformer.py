"""A histogram transformer: the HEN's input as tokens -> one feature vector (and the tokens).

A drop-in alternative to the convolutional HEN (``encoder: "transformer"`` in the model
config). It reads the same ``(B, l_bins + 1, ab_bins, ab_bins)`` stack (channel 0 the (a, b)
histogram, channels 1.. the L histogram tiled over the plane; see
:func:`histocolor.histogram.hen_input`) and returns the same ``(B, feature_size)`` feature,
so the CTN and the LUT head do not change.

Tokens, each ``width`` long:
    * one per non-overlapping ``patch_size x patch_size`` patch of the (a, b) histogram,
      linearly embedded, plus a learned 2-D position (an a-axis and a b-axis embedding,
      summed): ``(ab_bins / patch_size)^2`` tokens, 64 at the defaults;
    * one per L bin: the bin's value embedded (one shared linear map) plus the bin's own
      learned position: ``l_bins`` tokens;
    * a learned CLS token first, whose output, projected, is the feature.

A pre-norm transformer encoder (``depth`` layers of ``heads``-head self-attention) runs over
the ``1 + (ab_bins / patch_size)^2 + l_bins`` tokens. :meth:`HistogramTransformer.encode`
also returns the histogram tokens after the encoder, for attention from elsewhere.

Example::

    >>> import torch
    >>> from histocolor.histogram import hen_input
    >>> from histocolor.model.config import AnalogyConfig
    >>> config = AnalogyConfig(encoder="transformer")
    >>> encoder = HistogramTransformer(config)
    >>> histograms = hen_input(torch.rand(2, 3, 32, 32) * 100, config.l_bins, config.ab_bins)
    >>> encoder(histograms).shape
    torch.Size([2, 64])
    >>> encoded = encoder.encode(histograms)
    >>> encoded.tokens.shape  # 64 (a, b) patches, then 8 L bins
    torch.Size([2, 72, 64])
"""

import torch
from torch import nn

from histocolor.model.config import AnalogyConfig
from histocolor.model.hen import HistogramTokens


class HistogramTransformer(nn.Module):
    """Pre-norm transformer over (a, b)-histogram patches and L-histogram bins, CLS-pooled."""

    def __init__(self, config: AnalogyConfig):
        super().__init__()
        settings = config.transformer
        width, patch = settings.width, settings.patch_size
        self.l_bins, self.ab_bins, self.patch_size = config.l_bins, config.ab_bins, patch
        grid = config.ab_bins // patch
        # A strided convolution is a linear embedding of each non-overlapping patch.
        self.patch_embedding = nn.Conv2d(1, width, patch, stride=patch)
        # Position in the (a, b) plane as two learned axes, summed: a patch's hue angle and
        # chroma come from both coordinates, and neighbouring rows share their column's vector.
        self.a_position = nn.Parameter(torch.zeros(grid, width))
        self.b_position = nn.Parameter(torch.zeros(grid, width))
        self.lightness_embedding = nn.Linear(1, width)
        self.lightness_position = nn.Parameter(torch.zeros(config.l_bins, width))
        self.cls_token = nn.Parameter(torch.zeros(1, 1, width))
        self.layers = nn.ModuleList(
            nn.TransformerEncoderLayer(
                width,
                settings.heads,
                dim_feedforward=settings.mlp_ratio * width,
                dropout=0.0,
                activation="gelu",
                batch_first=True,
                norm_first=True,
            )
            for _ in range(settings.depth)
        )
        self.norm = nn.LayerNorm(width)  # pre-norm layers leave their output unnormalised
        self.project = nn.Linear(width, config.feature_size)
        for parameter in (self.a_position, self.b_position, self.lightness_position, self.cls_token):
            nn.init.normal_(parameter, std=0.02)
        # Unit-scale features like the HEN's, for the FiLM layers behind either encoder.
        nn.init.kaiming_normal_(self.project.weight, nonlinearity="linear")
        nn.init.zeros_(self.project.bias)
        # The HEN's input scaling: a uniform histogram reads 1 in every bin.
        self.ab_scale = float(config.ab_bins**2)
        self.l_scale = float(config.l_bins)

    def encode(self, histograms: torch.Tensor) -> HistogramTokens:
        """``(B, l_bins + 1, ab_bins, ab_bins)`` histograms summing to 1 -> :class:`HistogramTokens`.

        Its tokens: ``(B, (ab_bins / patch_size)^2 + l_bins, width)``, the (a, b) patches
        row-major, then the L bins.
        """
        expected = (self.l_bins + 1, self.ab_bins, self.ab_bins)
        if histograms.ndim != 4 or tuple(histograms.shape[1:]) != expected:
            raise ValueError(f"expected histograms of shape (B, {', '.join(map(str, expected))}), "
                             f"got {tuple(histograms.shape)}")
        # Square roots (the Hellinger embedding) as in the HEN: rare colours stand out of the
        # noise floor; the offset keeps the gradient finite at empty bins.
        ab = torch.sqrt(histograms[:, :1] * self.ab_scale + 1e-6)
        lightness = torch.sqrt(histograms[:, 1:, 0, 0] * self.l_scale + 1e-6)  # each L plane is constant
        patches = self.patch_embedding(ab)  # (B, width, grid, grid): rows index a, columns b
        patches = patches + (self.a_position[:, None, :] + self.b_position[None, :, :]).permute(2, 0, 1)
        patches = patches.flatten(2).transpose(1, 2)  # (B, grid * grid, width), row-major
        bins = self.lightness_embedding(lightness.unsqueeze(-1)) + self.lightness_position
        cls = self.cls_token.expand(len(histograms), -1, -1)
        tokens = torch.cat([cls, patches, bins], dim=1)
        for layer in self.layers:
            tokens = layer(tokens)
        tokens = self.norm(tokens)
        return HistogramTokens(self.project(tokens[:, 0]), tokens[:, 1:])

    def forward(self, histograms: torch.Tensor) -> torch.Tensor:
        """``(B, l_bins + 1, ab_bins, ab_bins)`` histograms summing to 1 -> ``(B, feature_size)``."""
        return self.encode(histograms).features
