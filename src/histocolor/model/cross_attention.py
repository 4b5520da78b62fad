"""Source-to-reference cross-attention: source features pick the reference colours they take.

Beyond the paper, which only tells the CTN *which* colours the reference has (a histogram
feature, the same at every pixel), attention lets each source location choose among the
reference's colours: a soft semantic correspondence, learned without masks.

Reference tokens (:class:`ReferenceTokens`), each ``width`` long:
    * tokens of a downsized reference *image*: :class:`ReferencePatchEncoder` reads a 64x64
      copy of the reference (normalised Lab) with three stride-2 convolutions, one token per
      8x8-pixel patch (64 tokens);
    * with the transformer encoder, also the reference's *histogram* tokens
      (:class:`~histocolor.model.histogram_transformer.HistogramTransformer`), projected.

Each token also says how much it belongs to each of the condition's K channels (the R paired
regions, then the global remainder; K = 1 without regions): an image token by the reference
regions (and alpha) over its patch, a histogram token by the region whose histogram it
encodes. Each query (a source location) has its own K weights, the CTN's region mixing; the
attention logits get ``log(sum_k query_k * token_k)``, so a query in region r attends to
region r's tokens only, and the global part to the whole reference. Without regions the
bias is 0 (or the reference's alpha): one path for both cases.

Every block is pre-norm and residual with a zero-initialised output projection: a network
grown with attention computes exactly what it did without it.

Example::

    >>> import torch
    >>> attention = CrossAttention(channels=32, width=64, heads=4)
    >>> features = torch.randn(2, 32, 8, 8)
    >>> reference = ReferenceTokens(torch.randn(2, 64, 64), torch.ones(2, 64, 1))
    >>> attention(features, reference, torch.ones(2, 1, 8, 8)).shape
    torch.Size([2, 32, 8, 8])
"""

from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import nn

THUMBNAIL = 64  # side of the reference copy the patch encoder reads
PATCH = 8  # pixels per image token, per side: (64 / 8)^2 = 64 tokens
_FLOOR = 1e-6  # the smallest compatibility: log(1e-6) ~ -14 masks a token in practice


class ReferenceTokens(NamedTuple):
    tokens: torch.Tensor  # (B, N, width)
    channels: torch.Tensor  # (B, N, K): how much each token belongs to each condition channel


def concatenate(*parts: ReferenceTokens) -> ReferenceTokens:
    """Token sets side by side (same B and K)."""
    return ReferenceTokens(torch.cat([p.tokens for p in parts], 1), torch.cat([p.channels for p in parts], 1))


def token_channels(regions: torch.Tensor | None, weights: torch.Tensor | None, batch: int, like: torch.Tensor,
                   side: int = THUMBNAIL // PATCH) -> torch.Tensor:
    """``(B, side * side, K)`` channel weights of the image tokens, from the reference regions.

    ``regions`` ``(B, R, h, w)`` (or None: no regions, K = 1) and ``weights`` ``(B, h, w)``
    (alpha, or None) are averaged over each token's patch; the last channel, the global one,
    is every token (alpha-weighted).
    """
    alpha = like.new_ones(batch, 1, side, side) if weights is None else \
        F.adaptive_avg_pool2d(weights[:, None].to(like.dtype), side)
    channels = alpha if regions is None else torch.cat([F.adaptive_avg_pool2d(regions.to(like.dtype), side) * alpha,
                                                        alpha], dim=1)
    return channels.flatten(2).transpose(1, 2)


class ReferencePatchEncoder(nn.Module):
    """A 64x64 copy of the reference (normalised Lab) -> 64 tokens, one per 8x8 patch."""

    def __init__(self, width: int):
        super().__init__()
        self.layers = nn.Sequential(
            nn.Conv2d(3, 32, 3, stride=2, padding=1),
            nn.LeakyReLU(0.2),
            nn.Conv2d(32, width, 3, stride=2, padding=1),
            nn.LeakyReLU(0.2),
            nn.Conv2d(width, width, 3, stride=2, padding=1),
        )

    def forward(self, reference: torch.Tensor) -> torch.Tensor:
        """``(B, 3, h, w)`` normalised Lab, any size -> ``(B, 64, width)``."""
        thumbnail = F.adaptive_avg_pool2d(reference, THUMBNAIL)
        return self.layers(thumbnail).flatten(2).transpose(1, 2)


class CrossAttention(nn.Module):
    """Pre-norm multi-head attention from feature-map queries to reference tokens, residual.

    With ``window`` (a Swin-style decoder block), the map is cut into ``window x window``
    windows and each query attends to its own window's features as well as to the
    reference tokens: local context next to the reference's colours, at a cost linear in
    the number of pixels.
    """

    def __init__(self, channels: int, width: int, heads: int, window: int | None = None):
        super().__init__()
        self.heads, self.window = heads, window
        self.query_norm = nn.LayerNorm(channels)  # per location, over channels
        self.token_norm = nn.LayerNorm(width)
        self.query = nn.Linear(channels, width)
        self.key_value = nn.Linear(width, 2 * width)
        self.local_key_value = nn.Linear(channels, 2 * width) if window else None
        self.out = nn.Linear(width, channels)
        nn.init.zeros_(self.out.weight)
        nn.init.zeros_(self.out.bias)

    def _split(self, tokens: torch.Tensor) -> torch.Tensor:  # (B, N, width) -> (B, heads, N, width / heads)
        return tokens.unflatten(-1, (self.heads, -1)).transpose(1, 2)

    def _attend(self, queries, keys, values, compatibility) -> torch.Tensor:
        """Multi-head attention of ``(B, Q, C)`` queries over ``(B, N, width)`` keys and values,
        each logit plus ``log(compatibility)`` ``(B, Q, N)``; the output projected back to C."""
        queries = self._split(self.query(queries))
        bias = compatibility.clamp(min=_FLOOR).log().to(queries.dtype)[:, None]  # mixed precision: the query's
        attended = F.scaled_dot_product_attention(queries, self._split(keys), self._split(values), attn_mask=bias)
        return self.out(attended.transpose(1, 2).flatten(2))

    def forward(self, features: torch.Tensor, reference: ReferenceTokens, query_channels: torch.Tensor) -> torch.Tensor:
        """``features`` ``(B, C, H, W)`` plus what they take from ``reference``.

        ``query_channels`` ``(B, K, H', W')``: each location's weights over the condition
        channels (resized to ``H x W`` here).
        """
        batch, channels, height, width = features.shape
        if query_channels.shape[-2:] != (height, width):
            query_channels = F.interpolate(query_channels, size=(height, width), mode="area")
        normed = self.query_norm(features.movedim(1, -1)).movedim(-1, 1)
        if self.window:
            return features + self._windowed(normed, reference, query_channels)
        queries = normed.flatten(2).transpose(1, 2)  # (B, HW, C)
        bias = torch.einsum("bkq,bnk->bqn", query_channels.flatten(2), reference.channels)
        keys, values = self.key_value(self.token_norm(reference.tokens)).chunk(2, -1)
        return features + self._attend(queries, keys, values, bias).transpose(1, 2).reshape_as(features)

    def _windowed(self, normed, reference: ReferenceTokens, query_channels) -> torch.Tensor:
        batch, channels, height, width = normed.shape
        size = self.window
        padding = (0, -width % size, 0, -height % size)
        normed = F.pad(normed, padding, mode="replicate")
        query_channels = F.pad(query_channels, padding, mode="replicate")
        rows, columns = normed.shape[-2] // size, normed.shape[-1] // size

        def windows(x):  # (B, C, H, W) -> (B * windows, size * size, C)
            x = x.unflatten(2, (rows, size)).unflatten(4, (columns, size))  # B, C, rows, s, columns, s
            return x.permute(0, 2, 4, 3, 5, 1).reshape(batch * rows * columns, size * size, x.shape[1])

        queries = windows(normed)
        count = rows * columns
        local_keys, local_values = self.local_key_value(queries).chunk(2, -1)
        keys, values = self.key_value(self.token_norm(reference.tokens)).chunk(2, -1)
        keys = torch.cat([local_keys, keys.repeat_interleave(count, 0)], 1)
        values = torch.cat([local_values, values.repeat_interleave(count, 0)], 1)
        bias = torch.einsum("wqk,wnk->wqn", windows(query_channels), reference.channels.repeat_interleave(count, 0))
        # Local keys are the source's own features: always open.
        bias = torch.cat([bias.new_ones(bias.shape[0], size * size, size * size), bias], -1)
        out = self._attend(queries, keys, values, bias)  # (B * windows, s * s, C)
        out = out.view(batch, rows, columns, size, size, channels).permute(0, 5, 1, 3, 2, 4)
        return out.reshape(batch, channels, rows * size, columns * size)[..., :height, :width]
