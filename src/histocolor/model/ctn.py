"""CTN, the colour transfer network: a U-Net over the source, steered by histogram features."""

from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import nn

from histocolor.model.config import AnalogyConfig
from histocolor.model.cross_attention import CrossAttention, ReferenceTokens


class CTNOutput(NamedTuple):
    output: torch.Tensor  # (B, 3, H, W), the final result
    intermediate: list[torch.Tensor]  # coarse to fine, one per lower decoder level (deep supervision)
    aligned: torch.Tensor | None = None  # the aligned source the head recoloured (Lab), if any
    careful: torch.Tensor | None = None  # with a relevance gate: the careful alignment alone (Lab)
    blend: torch.Tensor | None = None  # with a relevance gate: its blend (B, K, 3), the whole image last


class RegionCondition(NamedTuple):
    """A per-pixel condition kept factored: K feature vectors and where each one applies.

    The condition at a pixel is ``sum_k weights[k] * features[k]`` (the weights sum to 1).
    FiLM is affine, so its parameters are computed per region (K vectors) and only then
    spread over the pixels: far cheaper than a full ``(B, C, H, W)`` feature map.
    """

    features: torch.Tensor  # (B, K, C)
    weights: torch.Tensor  # (B, K, H, W)


class FiLM(nn.Module):
    """Per-channel scale and bias predicted from the condition (features of both histograms).

    The paper tiles the features and concatenates them at every decoder level; FiLM is the
    same information at a fraction of the cost. The condition is either one vector per
    image ``(B, C)`` or a :class:`RegionCondition` (region-wise features).
    """

    def __init__(self, condition_size: int, channels: int):
        super().__init__()
        self.linear = nn.Linear(condition_size, 2 * channels)

    def forward(self, features: torch.Tensor, condition: torch.Tensor) -> torch.Tensor:
        if isinstance(condition, RegionCondition):
            weights = F.interpolate(condition.weights, size=features.shape[-2:], mode="bilinear", align_corners=False)
            params = torch.einsum("bkhw,bko->bohw", weights, self.linear(condition.features))
        else:
            params = self.linear(condition)[:, :, None, None]
        scale, bias = params.chunk(2, dim=1)
        return features * (1.0 + scale) + bias


def _convolutions(in_channels: int, out_channels: int, stride: int = 1) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(in_channels, out_channels, 3, stride=stride, padding=1),
        nn.LeakyReLU(0.2),
        nn.Conv2d(out_channels, out_channels, 3, padding=1),
        nn.LeakyReLU(0.2),
    )


class ColorTransferNet(nn.Module):
    """U-Net on normalised Lab that predicts a residual on the source at every decoder scale.

    The residual heads start at zero, so an untrained network returns its input: training
    starts from "change nothing", the right answer for identical pairs.
    """

    def __init__(self, config: AnalogyConfig):
        super().__init__()
        self.depth = config.ctn_depth
        widths = [config.ctn_width * 2**level for level in range(config.ctn_depth + 1)]
        condition_size = 2 * config.feature_size
        self.stem = _convolutions(6 if config.ctn_sees_source else 3, widths[0])
        self.down = nn.ModuleList(_convolutions(widths[i - 1], widths[i], stride=2) for i in range(1, len(widths)))
        self.bottleneck_film = FiLM(condition_size, widths[-1])
        # Cross-attention to the reference's tokens (None: the paper's CTN, FiLM only).
        width, heads = config.transformer.width, config.transformer.heads
        self.bottleneck_attention = CrossAttention(widths[-1], width, heads) if config.attention != "none" else None
        self.decoder_attention = CrossAttention(widths[-2], width, heads, window=config.attention_window) \
            if config.attention == "bottleneck+decoder" else None
        # Decoder modules are listed coarse to fine.
        levels = range(config.ctn_depth - 1, -1, -1)
        self.up = nn.ModuleList(_convolutions(widths[i + 1] + widths[i], widths[i]) for i in levels)
        self.films = nn.ModuleList(FiLM(condition_size, widths[i]) for i in levels)
        self.heads = nn.ModuleList(nn.Conv2d(widths[i], 3, 3, padding=1) for i in levels)
        for head in self.heads:
            nn.init.zeros_(head.weight)
            nn.init.zeros_(head.bias)

    def forward(self, source: torch.Tensor, condition: torch.Tensor, original: torch.Tensor | None = None,
                reference: ReferenceTokens | None = None) -> CTNOutput:
        """Recolour ``source`` ``(B, 3, H, W)`` (normalised Lab, any H and W).

        ``condition`` is ``(B, C)`` (one feature pair per image) or a :class:`RegionCondition`
        (see :meth:`HistogramAnalogy.condition`). ``original`` ``(B, 3, H, W)``: the source
        before its alignment, read next to it where the config has ``ctn_sees_source``.
        ``reference``: the tokens the cross-attention reads, with as many condition channels
        as the condition has (regions and the global one; see model/cross_attention.py).
        """
        if (original is not None) != (self.stem[0].in_channels == 6):
            raise ValueError("give the unaligned source exactly when the config has ctn_sees_source")
        if (reference is not None) != (self.bottleneck_attention is not None):
            raise ValueError("give reference tokens exactly when the config has attention")
        height, width = source.shape[-2:]
        multiple = 2**self.depth
        padding = (0, -width % multiple, 0, -height % multiple)
        padded = F.pad(source, padding, mode="replicate")
        if isinstance(condition, RegionCondition):
            if condition.weights.shape[-2:] != source.shape[-2:]:
                raise ValueError("region weights must have the source's height and width")
            # Padded like the source, so that every decoder level sees them aligned.
            condition = RegionCondition(condition.features, F.pad(condition.weights, padding, mode="replicate"))
        stem_input = padded if original is None else torch.cat([padded, F.pad(original, padding, mode="replicate")], 1)
        skips = [self.stem(stem_input)]
        for down in self.down:
            skips.append(down(skips[-1]))
        features = self.bottleneck_film(skips[-1], condition)
        if reference is not None:
            # Each location's condition channels: its regions' weights and the global remainder.
            channels = condition.weights if isinstance(condition, RegionCondition) else padded.new_ones(
                len(padded), 1, *padded.shape[-2:])
            features = self.bottleneck_attention(features, reference, channels)
        outputs = []
        for index, (up, film, head) in enumerate(zip(self.up, self.films, self.heads)):
            skip = skips[self.depth - 1 - index]
            upsampled = F.interpolate(features, size=skip.shape[-2:], mode="bilinear", align_corners=False)
            features = film(up(torch.cat([upsampled, skip], dim=1)), condition)
            if index == 0 and self.decoder_attention is not None:
                features = self.decoder_attention(features, reference, channels)
            factor = padded.shape[-1] // skip.shape[-1]
            base = F.avg_pool2d(padded, factor) if factor > 1 else padded
            scale_height, scale_width = -(-height // factor), -(-width // factor)
            outputs.append((base + head(features))[..., :scale_height, :scale_width])
        return CTNOutput(outputs[-1], outputs[:-1])
