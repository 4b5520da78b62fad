"""Histogram analogy: HEN encodes both images' colour histograms, CTN recolours the source."""

import torch
from torch import nn

from histocolor.color import denormalize_lab, lab_to_rgb, normalize_lab, rgb_to_lab
from histocolor.histogram import hen_input
from histocolor.model.alignment import clamp_lab, mix_regions
from histocolor.model.config import AnalogyConfig
from histocolor.model.cross_attention import ReferencePatchEncoder, ReferenceTokens, concatenate, token_channels
from histocolor.model.ctn import ColorTransferNet, CTNOutput, RegionCondition
from histocolor.model.hen import HistogramEncoder, HistogramTokens
from histocolor.model.histogram_transformer import HistogramTransformer
from histocolor.model.lut_head import LUTHead, lookup
from histocolor.model.relevance import RelevanceGate


def _weighted(regions: torch.Tensor, weights: torch.Tensor | None) -> torch.Tensor:
    return regions if weights is None else regions * weights.unsqueeze(1)


def _whole_images(source_lab, reference_lab, source_weights, reference_weights):
    """One region covering each whole image (alpha-weighted): ``(B, 1, H, W)``, ``(B, 1, h, w)``."""
    batch = source_lab.shape[0]
    return (_weighted(source_lab.new_ones(batch, 1, *source_lab.shape[-2:]), source_weights),
            _weighted(reference_lab.new_ones(batch, 1, *reference_lab.shape[-2:]), reference_weights))


def _histogram_tokens(global_tokens, region_tokens, regions: int) -> ReferenceTokens | None:
    """The reference's histogram tokens with their condition channels (regions, then global).

    ``global_tokens`` ``(B, T, D)`` (or None: the encoder has no tokens) belong to the global
    channel; ``region_tokens`` ``(B * regions, T, D)`` to their region's.
    """
    if global_tokens is None:
        return None
    batch, count = global_tokens.shape[:2]
    one_hot = torch.eye(regions + 1, dtype=global_tokens.dtype, device=global_tokens.device)
    tokens = global_tokens
    channels = one_hot[-1].expand(batch, count, -1)
    if regions:
        tokens = torch.cat([region_tokens.reshape(batch, regions * count, -1), global_tokens], 1)
        per_region = one_hot[:regions].repeat_interleave(count, 0).expand(batch, -1, -1)
        channels = torch.cat([per_region, channels], 1)
    return ReferenceTokens(tokens, channels)


# The histogram encoder for each ``config.encoder``: both map the HEN input stack to
# ``(B, feature_size)``, so everything behind them is the same.
ENCODERS = {"conv": HistogramEncoder, "transformer": HistogramTransformer}


class HistogramAnalogy(nn.Module):
    """The whole network: ``forward(source_lab, reference_lab) -> CTNOutput`` in Lab units."""

    def __init__(self, config: AnalogyConfig | None = None):
        super().__init__()
        self.config = config or AnalogyConfig()
        # Named ``hen`` whichever encoder it is, so weights keep their names.
        self.hen = ENCODERS[self.config.encoder](self.config)
        # The alignment strategy (None: the head recolours the source itself).
        self.aligner = self.config.alignment.build()
        if self.config.head == "lut":
            self.lut_head = LUTHead(self.config)
        else:
            self.ctn = ColorTransferNet(self.config)
        # The relevance gate and the faithful alignment it blends in (None: the alignment alone).
        self.relevance = RelevanceGate(self.config) if self.config.relevance is not None else None
        self.faithful_aligner = (self.config.relevance.faithful(self.config.alignment).build()
                                 if self.config.relevance is not None else None)
        if self.config.attention != "none":
            width = self.config.transformer.width
            self.reference_encoder = ReferencePatchEncoder(width)
            if self.config.encoder == "transformer":  # the reference's histogram tokens join its image tokens
                self.histogram_projection = torch.nn.Linear(width, width)

    def encode(self, lab: torch.Tensor, weights: torch.Tensor | None = None) -> torch.Tensor:
        """Histogram feature ``(B, feature_size)`` of Lab images ``(B, 3, H, W)``, optionally weighted."""
        return self._encoded(lab, weights).features

    def _encoded(self, lab, weights=None) -> HistogramTokens:
        return self.hen.encode(hen_input(lab, self.config.l_bins, self.config.ab_bins, weights))

    def condition(
        self,
        source_lab,
        reference_lab,
        source_regions=None,
        reference_regions=None,
        source_weights=None,
        reference_weights=None,
        aligned_lab=None,
    ):
        """The CTN's condition: both features per image, or a :class:`RegionCondition` with regions.

        ``source_weights`` ``(B, H, W)`` and ``reference_weights`` ``(B, h, w)`` (e.g. alpha)
        weight every pixel in every histogram; None counts all pixels fully.

        With regions, ``source_regions`` ``(B, R, H, W)`` and ``reference_regions``
        ``(B, R, h, w)`` hold soft weights of R corresponding regions (region r of the source
        matches region r of the reference). Each source pixel gets its regions' features,
        mixed by its weights; whatever weight is missing, or belongs to a region absent from
        either image, goes to the global features. The source's region histograms are taken
        from ``aligned_lab`` when given (the aligned source the CTN will recolour), and so is the
        global one when the alignment covers the whole image (``alignment.everywhere``).
        """
        return self._condition(source_lab, reference_lab, source_regions, reference_regions, source_weights,
                               reference_weights, aligned_lab)[0]

    def _condition(self, source_lab, reference_lab, source_regions, reference_regions, source_weights,
                   reference_weights, aligned_lab):
        """:meth:`condition`, and the reference's histogram tokens for attention (None without)."""
        everywhere = aligned_lab is not None and self.config.alignment.everywhere
        reference_global = self._encoded(reference_lab, reference_weights)
        global_condition = torch.cat(
            [self.encode(aligned_lab if everywhere else source_lab, source_weights), reference_global.features], dim=1
        )
        if source_regions is None and reference_regions is None:
            return global_condition, _histogram_tokens(reference_global.tokens, None, 0)
        mixing = self._region_mixing(source_regions, reference_regions, source_weights, reference_weights)
        batch, regions = source_regions.shape[:2]
        region_source = source_lab if aligned_lab is None else aligned_lab
        source_features = self.encode(
            region_source.repeat_interleave(regions, 0), _weighted(source_regions, source_weights).flatten(0, 1)
        )
        reference_encoded = self._encoded(
            reference_lab.repeat_interleave(regions, 0), _weighted(reference_regions, reference_weights).flatten(0, 1)
        )
        region_condition = torch.cat([source_features, reference_encoded.features], dim=1).view(batch, regions, -1)
        remainder = (1.0 - mixing.sum(dim=1, keepdim=True)).clamp(min=0.0)
        condition = RegionCondition(
            torch.cat([region_condition, global_condition[:, None]], dim=1), torch.cat([mixing, remainder], dim=1)
        )
        return condition, _histogram_tokens(reference_global.tokens, reference_encoded.tokens, regions)

    def reference_tokens(self, reference_lab, reference_regions=None, reference_weights=None,
                         histogram_tokens: ReferenceTokens | None = None) -> ReferenceTokens | None:
        """What the cross-attention attends to (None without attention): the reference image's
        tokens, then its histogram tokens (transformer encoder), each with its condition channels."""
        if self.config.attention == "none":
            return None
        image = ReferenceTokens(
            self.reference_encoder(normalize_lab(reference_lab)),
            token_channels(reference_regions, reference_weights, len(reference_lab), reference_lab),
        )
        if histogram_tokens is None:
            return image
        projected = ReferenceTokens(self.histogram_projection(histogram_tokens.tokens), histogram_tokens.channels)
        return concatenate(image, projected)

    @staticmethod
    def _region_mixing(source_regions, reference_regions, source_weights, reference_weights) -> torch.Tensor:
        """The source region weights ``(B, R, H, W)``, zeroed for regions missing from either image."""
        if source_regions is None or reference_regions is None:
            raise ValueError("give regions for both the source and the reference, or for neither")
        batch, regions = source_regions.shape[:2]
        if reference_regions.shape[:2] != (batch, regions):
            raise ValueError("source and reference must have the same number of regions")
        mine = _weighted(source_regions, source_weights).flatten(2).sum(-1)
        theirs = _weighted(reference_regions, reference_weights).flatten(2).sum(-1)
        present = (mine > 0) & (theirs > 0)
        return source_regions * present[:, :, None, None].to(source_regions.dtype)

    def align(self, source_lab, reference_lab, source_regions=None, reference_regions=None, source_weights=None,
              reference_weights=None) -> torch.Tensor | None:
        """The source moved onto the reference by the alignment (see model/alignment.py), or None
        where the model aligns nothing (no alignment; no regions and ``alignment.everywhere`` off).

        Globally it is the one-region case: every pixel (alpha-weighted) in one region. By
        regions each paired region follows its own map and, with ``alignment.everywhere``,
        what no region covers follows the global map. With a relevance gate each region's map
        is its blend of the careful and the faithful alignment (:meth:`alignments`).
        """
        return self.alignments(source_lab, reference_lab, source_regions, reference_regions, source_weights,
                               reference_weights)[0]

    def alignments(self, source_lab, reference_lab, source_regions=None, reference_regions=None, source_weights=None,
                   reference_weights=None):
        """``(aligned, careful, blend)``: :meth:`align`'s result and, with a relevance gate, the
        careful alignment alone and the gate's blend ``(B, K, 3)`` (regions, the whole image last);
        None for what the model does not compute."""
        if self.aligner is None or (source_regions is None and not self.config.alignment.everywhere):
            return None, None, None
        # Statistics and matrix square roots need full precision: never under bf16 autocast.
        with torch.autocast(source_lab.device.type, enabled=False):
            return self._align(*(None if t is None else t.float() for t in (
                source_lab, reference_lab, source_regions, reference_regions, source_weights, reference_weights)))

    def _align(self, source_lab, reference_lab, source_regions, reference_regions, source_weights,
               reference_weights):
        batch = source_lab.shape[0]
        if source_regions is None:
            owned = theirs = mixing = None
        else:
            mixing = self._region_mixing(source_regions, reference_regions, source_weights, reference_weights)
            owned, theirs = self._statistics_weights(source_regions, reference_regions, source_weights, reference_weights)
        if self.config.alignment.everywhere:
            everything, all_theirs = _whole_images(source_lab, reference_lab, source_weights, reference_weights)
            rest = source_lab.new_ones(batch, 1, *source_lab.shape[-2:])
            if mixing is not None:
                rest = (rest - mixing.sum(dim=1, keepdim=True)).clamp(min=0.0)
            owned = everything if owned is None else torch.cat([owned, everything], dim=1)
            theirs = all_theirs if theirs is None else torch.cat([theirs, all_theirs], dim=1)
            mixing = rest if mixing is None else torch.cat([mixing, rest], dim=1)
        moved = self.aligner.maps(source_lab, reference_lab, owned, theirs)
        if self.relevance is None:
            return mix_regions(source_lab, moved, mixing), None, None
        regions = owned.shape[1]
        features = [
            self.encode(lab.repeat_interleave(regions, 0), weights.flatten(0, 1)).view(batch, regions, -1)
            for lab, weights in ((source_lab, owned), (reference_lab, theirs))
        ]
        blend = self.relevance(*features, source_lab, reference_lab)
        faithful = self.faithful_aligner.maps(source_lab, reference_lab, owned, theirs)
        blended = moved + blend[..., None, None] * (faithful - moved)
        return mix_regions(source_lab, blended, mixing), mix_regions(source_lab, moved, mixing), blend

    def _align_colours(self, source_lab, reference_lab, colours, source_weights, reference_weights):
        """``colours`` ``(B, 3, h, w)`` moved by the global alignment fitted on the two images."""
        everything, all_theirs = _whole_images(source_lab, reference_lab, source_weights, reference_weights)
        with torch.autocast(source_lab.device.type, enabled=False):
            moved = self.aligner.maps(source_lab.float(), reference_lab.float(), everything.float(), all_theirs.float(),
                                      colours.float())
        return clamp_lab(moved[:, 0])

    @staticmethod
    def _statistics_weights(source_regions, reference_regions, source_weights, reference_weights):
        # Statistics from the pixels each region owns (feathered weights would mix in its neighbours').
        owned = (source_regions >= 0.5).to(source_regions.dtype)
        owned = torch.where(owned.flatten(2).sum(-1)[..., None, None] > 0, owned, source_regions)
        return _weighted(owned, source_weights), _weighted(reference_regions, reference_weights)

    def forward(
        self,
        source_lab,
        reference_lab,
        source_regions=None,
        reference_regions=None,
        *,
        source_weights=None,
        reference_weights=None,
    ) -> CTNOutput:
        """Recolour ``source_lab`` ``(B, 3, H, W)`` after ``reference_lab`` ``(B, 3, h, w)``.

        Regions and weights are described in :meth:`condition`. With an alignment
        (``config.alignment``) the head recolours the source moved onto the reference by a
        classical map (:meth:`align`). Returns the result and the coarser decoder outputs,
        all in Lab units.
        """
        aligned, careful, blend = self.alignments(
            source_lab, reference_lab, source_regions, reference_regions, source_weights, reference_weights
        )
        condition, histogram_tokens = self._condition(
            source_lab, reference_lab, source_regions, reference_regions, source_weights, reference_weights, aligned
        )
        reference = self.reference_tokens(reference_lab, reference_regions, reference_weights, histogram_tokens)
        if self.config.head == "lut":
            return CTNOutput(
                denormalize_lab(self.lut_head(source_lab if aligned is None else aligned, condition, reference)), [],
                aligned,
            )
        original = normalize_lab(source_lab) if self.config.ctn_sees_source else None
        result = self.ctn(normalize_lab(source_lab if aligned is None else aligned), condition, original, reference)
        return CTNOutput(denormalize_lab(result.output), [denormalize_lab(t) for t in result.intermediate], aligned,
                         careful, blend)

    def color_lut(self, source_lab, reference_lab, size: int, source_weights=None, reference_weights=None):
        """LUT head only: the sRGB -> sRGB LUTs ``(B, size, size, size, 3)`` it applies, tabulated.

        Exact at the grid points, so the full-resolution step needs no fitting.
        """
        if self.config.head != "lut":
            raise ValueError("only the LUT head predicts a LUT; fit one to the CTN's output instead")
        aligned = self.align(source_lab, reference_lab, source_weights=source_weights,
                             reference_weights=reference_weights)
        condition, histogram_tokens = self._condition(
            source_lab, reference_lab, None, None, source_weights, reference_weights, aligned
        )
        reference = self.reference_tokens(reference_lab, None, reference_weights, histogram_tokens)
        offsets = self.lut_head.luts(source_lab if aligned is None else aligned, condition, reference)
        axis = torch.linspace(0.0, 1.0, size, dtype=source_lab.dtype, device=source_lab.device)
        nodes = torch.stack(torch.meshgrid(axis, axis, axis, indexing="ij"), dim=0).reshape(1, 3, size, size * size)
        nodes = nodes.expand(len(offsets), -1, -1, -1)
        node_lab = rgb_to_lab(nodes)
        if aligned is not None:  # the head's LUT is indexed by the aligned colours: compose the two maps
            node_lab = self._align_colours(source_lab, reference_lab, node_lab, source_weights, reference_weights)
            nodes = lab_to_rgb(node_lab).clamp(0.0, 1.0)
        moved = denormalize_lab(normalize_lab(node_lab) + lookup(offsets, nodes))
        rgb = lab_to_rgb(moved).clamp(0.0, 1.0)
        return rgb.reshape(len(offsets), 3, size, size, size).permute(0, 2, 3, 4, 1)

    def save_pretrained(self, directory) -> None:
        from histocolor.model.io import save_pretrained

        save_pretrained(self, directory)

    @classmethod
    def from_pretrained(cls, directory, device="cpu") -> "HistogramAnalogy":
        from histocolor.model.io import from_pretrained

        return from_pretrained(directory, device)
