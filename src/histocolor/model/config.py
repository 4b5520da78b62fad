"""One configuration for the histogram-analogy network, from a CPU toy to the paper's size."""

from dataclasses import asdict, dataclass, fields, replace

from histocolor.histogram import DEFAULT_AB_BINS, DEFAULT_L_BINS, MAX_L_BINS


HEADS = ("ctn", "lut")
# Documented maxima of the model's sizes (see AnalogyConfig's checks).
MAX_AB_BINS = 256
MAX_WIDTH = 1024
MAX_CTN_WIDTH = 256
MAX_CTN_DEPTH = 6
MAX_LUT_BASES = 64
MAX_LUT_SIZE = 65
MAX_TRANSFORMER_DEPTH = 24
ENCODERS = ("conv", "transformer")
ATTENTION = ("none", "bottleneck", "bottleneck+decoder")
ALIGNMENT_METHODS = ("none", "moments", "linear", "quantiles", "colour", "sliced")


def _require_integer(name: str, value) -> None:
    # JSON hands over 8.0 or "8" as easily as 8; torch would fail later, less clearly.
    if not isinstance(value, int) or isinstance(value, bool):
        raise ValueError(f"{name} must be an integer, got {value!r}")


def _require_bounds(name: str, value) -> tuple[float, float]:
    if not isinstance(value, (list, tuple)) or len(value) != 2:
        raise ValueError(f"{name} must be a pair [low, high], got {value!r}")
    low, high = (float(v) for v in value)
    if not 0 < low <= 1 <= high:
        raise ValueError(f"{name} must satisfy 0 < low <= 1 <= high, got {value!r}")
    return low, high


@dataclass(frozen=True)
class AlignmentConfig:
    """The classical map the network (either head) starts from (see model/alignment.py).

    Attributes:
        method: ``"none"`` (the head recolours the source itself), ``"moments"`` (Reinhard:
            each Lab channel's mean and spread), ``"linear"`` (MKL in sRGB), ``"quantiles"`` (each Lab channel's whole
            distribution, with the curve's slope bounded), ``"colour"`` (MKL and per-channel
            quantiles in sRGB for colour, a slope-bounded L curve for lightness) or ``"sliced"``
            (``"colour"``, then rounds of slope-bounded sliced matching in Lab for colour).
        everywhere: align the global transfer too (the one-region case) and, by regions,
            what no region covers; False aligns paired regions only.
        levels: quantiles per channel the curves of ``quantiles``, ``colour`` and ``sliced`` pass through.
        lightness_slopes: bounds of the L curve's slope (contrast change) for ``quantiles``.
        chroma_slopes: the same for the a and b curves (``quantiles``), the sRGB curves
            (``colour``) and the sliced curves (``sliced``).
        iterations: rounds of sliced matching (``sliced``; three directions each).
        samples: pixels per image (about) the sliced curves are fitted on (``sliced``); fewer
            train faster, more fit closer.
    """

    method: str = "moments"
    everywhere: bool = False
    levels: int = 64
    lightness_slopes: tuple[float, float] = (0.7, 1.4)
    chroma_slopes: tuple[float, float] = (0.5, 2.0)
    iterations: int = 16
    samples: int = 16384

    def __post_init__(self):
        if self.method not in ALIGNMENT_METHODS:
            raise ValueError(f"alignment method must be one of {', '.join(ALIGNMENT_METHODS)}, got {self.method!r}")
        if not isinstance(self.everywhere, bool):
            raise ValueError(f"alignment everywhere must be true or false, got {self.everywhere!r}")
        _require_integer("alignment levels", self.levels)
        if self.levels < 2:
            raise ValueError(f"alignment levels must be at least 2, got {self.levels}")
        _require_integer("alignment iterations", self.iterations)
        if not 1 <= self.iterations <= 64:
            raise ValueError(f"alignment iterations must be in 1..64, got {self.iterations}")
        _require_integer("alignment samples", self.samples)
        if not 256 <= self.samples <= 1 << 20:
            raise ValueError(f"alignment samples must be in 256..{1 << 20}, got {self.samples}")
        object.__setattr__(self, "lightness_slopes", _require_bounds("lightness_slopes", self.lightness_slopes))
        object.__setattr__(self, "chroma_slopes", _require_bounds("chroma_slopes", self.chroma_slopes))

    def build(self):
        """The alignment strategy object, or None for ``"none"``."""
        from histocolor.model.alignment import (ColourAlignment, LinearAlignment, MomentAlignment, QuantileAlignment,
                                                SlicedAlignment)

        if self.method == "moments":
            return MomentAlignment()
        if self.method == "linear":
            return LinearAlignment()
        if self.method == "quantiles":
            return QuantileAlignment(self.levels, self.lightness_slopes, self.chroma_slopes)
        if self.method == "colour":
            return ColourAlignment(self.levels, self.lightness_slopes, self.chroma_slopes)
        if self.method == "sliced":
            return SlicedAlignment(self.levels, self.lightness_slopes, self.chroma_slopes, self.iterations,
                                   self.samples)
        return None


@dataclass(frozen=True)
class RelevanceConfig:
    """The relevance gate (see model/relevance.py): how far the network follows the reference.

    The alignment is computed twice, once with the alignment's slope bounds (careful: edges and
    contrast change little) and once with these wide ones (faithful: close to full histogram
    matching). A small network reads both images' histograms (per region too) and a pooled
    content feature of a small copy of each, and blends the two per image, region and Lab
    channel: where the reference shows the same scene its histogram is the target's and the
    faithful map is right; where it is unrelated the careful one is.

    Attributes:
        method: the faithful alignment's method (``"linear"``, ``"quantiles"``, ``"colour"`` or ``"sliced"``;
            ``"linear"``, MKL, has no slopes to widen).
            ``"sliced"`` with wide bounds came closest to the truths of same-scene training
            triplets (L1 2.73 against 3.00 for ``"colour"`` and 2.87 for the careful map).
        lightness_slopes: bounds of the faithful alignment's L curve slope.
        chroma_slopes: bounds of the faithful alignment's colour curves' slopes.
        content_size: side of the small copies the content feature is read from.
        content_width: channels of the content encoder's first convolution (twice that after).
        hidden: width of the gate's hidden layer.
        start: the blend an untrained gate gives (0 careful, 1 faithful); its last layer starts at zero.
    """

    method: str = "sliced"
    lightness_slopes: tuple[float, float] = (0.2, 5.0)
    chroma_slopes: tuple[float, float] = (0.2, 5.0)
    content_size: int = 64
    content_width: int = 16
    hidden: int = 64
    start: float = 0.25

    def __post_init__(self):
        if self.method not in ("linear", "quantiles", "colour", "sliced"):
            raise ValueError(f"relevance method must be one of linear, quantiles, colour, sliced, got {self.method!r}")
        object.__setattr__(self, "lightness_slopes", _require_bounds("relevance lightness_slopes", self.lightness_slopes))
        object.__setattr__(self, "chroma_slopes", _require_bounds("relevance chroma_slopes", self.chroma_slopes))
        for name, low, high in (("content_size", 16, 256), ("content_width", 1, MAX_WIDTH), ("hidden", 1, MAX_WIDTH)):
            _require_integer(f"relevance {name}", getattr(self, name))
            if not low <= getattr(self, name) <= high:
                raise ValueError(f"relevance {name} must be in {low}..{high}, got {getattr(self, name)}")
        if self.content_size % 8:
            raise ValueError(f"relevance content_size must be a multiple of 8, got {self.content_size}")
        if isinstance(self.start, bool) or not isinstance(self.start, (int, float)) or not 0.0 < self.start < 1.0:
            raise ValueError(f"relevance start must be a number strictly between 0 and 1, got {self.start!r}")

    def faithful(self, alignment: "AlignmentConfig") -> "AlignmentConfig":
        """The faithful alignment: ``alignment`` with this gate's wide slope bounds."""
        return replace(alignment, method=self.method, lightness_slopes=self.lightness_slopes,
                       chroma_slopes=self.chroma_slopes)


@dataclass(frozen=True)
class TransformerConfig:
    """Sizes of the histogram transformer encoder (see model/histogram_transformer.py).

    Attributes:
        patch_size: side of the square (a, b)-histogram patches, one token each
            (``ab_bins`` must be a multiple of it; 64 bins and 8 give 64 tokens).
        depth: pre-norm encoder layers.
        width: token size (the model dimension).
        heads: attention heads per layer (must divide ``width``).
        mlp_ratio: feed-forward width of each layer as a multiple of ``width``.
    """

    patch_size: int = 8
    depth: int = 4
    width: int = 64
    heads: int = 4
    mlp_ratio: int = 2

    def __post_init__(self):
        for name in ("patch_size", "depth", "width", "heads", "mlp_ratio"):
            _require_integer(f"transformer {name}", getattr(self, name))
            if getattr(self, name) < 1:
                raise ValueError(f"transformer {name} must be positive, got {getattr(self, name)}")
        if self.width % self.heads:
            raise ValueError(f"transformer width ({self.width}) must be divisible by its heads ({self.heads})")


@dataclass(frozen=True)
class AnalogyConfig:
    """Shapes of HEN and CTN. Saved as ``config.json`` next to the weights.

    Attributes:
        l_bins: bins of the L histogram (the paper's text says 64, its released model 8).
        ab_bins: bins per axis of the (a, b) histogram.
        encoder: the histogram encoder: ``"conv"`` (the paper's HEN, stride-2 convolutions) or
            ``"transformer"`` (tokens of histogram patches and L bins, pooled by a CLS token).
        hen_widths: channels of the HEN's stride-2 convolutions, one entry per halving (conv).
        transformer: sizes of the transformer encoder (:class:`TransformerConfig`; a dict in JSON);
            its ``width`` and ``heads`` also size the cross-attention.
        attention: source-to-reference cross-attention (model/cross_attention.py): ``"none"``,
            ``"bottleneck"`` (the CTN's bottleneck attends to the reference's tokens; for the
            LUT head: the basis-LUT weights do) or ``"bottleneck+decoder"`` (also the CTN's
            coarsest decoder level, in windows). Reference tokens: a downsized reference image,
            plus the histogram tokens with the transformer encoder. Its output projections
            start at zero: switched on for a fine-tune, the model starts as it was.
        attention_window: window side of the decoder-level attention (pixels of that level).
        feature_size: length of the histogram encoder's feature vector (either encoder).
        ctn_width: channels of the CTN's first U-Net level (doubled at each level below).
        ctn_depth: number of U-Net down-sampling steps.
        head: ``"ctn"`` (the paper's pixel U-Net) or ``"lut"`` (a per-image 3D LUT).
        lut_bases: basis LUTs the LUT head mixes.
        lut_size: grid points per axis of the LUT head's LUTs.
        alignment: the classical map the head recolours from (:class:`AlignmentConfig`; a dict
            in JSON). The LUT head's LUT is then indexed by the aligned colours.
        ctn_sees_source: the CTN reads the source as it was next to the aligned source (six
            input channels), so it can tell where the alignment went astray (CTN head with an
            alignment only). Its extra weights start at zero: switched on for a fine-tune, the
            model starts as it was (:func:`~histocolor.model.io.grow_state`).
        relevance: the relevance gate (:class:`RelevanceConfig`; a dict in JSON, or null for
            none): the network blends a careful and a faithful alignment, per image, region
            and channel, by how relevant the reference is (CTN head with an alignment only).
    """

    l_bins: int = DEFAULT_L_BINS
    ab_bins: int = DEFAULT_AB_BINS
    encoder: str = "conv"
    hen_widths: tuple[int, ...] = (16, 32, 64, 64)
    transformer: TransformerConfig = TransformerConfig()
    attention: str = "none"
    attention_window: int = 8
    feature_size: int = 64
    ctn_width: int = 16
    ctn_depth: int = 3
    head: str = "ctn"
    lut_bases: int = 8
    lut_size: int = 17
    alignment: AlignmentConfig = AlignmentConfig()
    ctn_sees_source: bool = False
    relevance: RelevanceConfig | None = None

    def __post_init__(self):
        if not isinstance(self.hen_widths, (list, tuple)):
            raise ValueError(f"hen_widths must be a list of integers, got {self.hen_widths!r}")
        object.__setattr__(self, "hen_widths", tuple(self.hen_widths))
        if self.encoder not in ENCODERS:
            raise ValueError(f"encoder must be one of {', '.join(ENCODERS)}, got {self.encoder!r}")
        if isinstance(self.transformer, dict):
            object.__setattr__(self, "transformer", _nested_from_dict(TransformerConfig, "transformer", self.transformer))
        if not isinstance(self.transformer, TransformerConfig):
            raise ValueError(f"transformer must be an object of transformer settings, got {self.transformer!r}")
        if self.attention not in ATTENTION:
            raise ValueError(f"attention must be one of {', '.join(ATTENTION)}, got {self.attention!r}")
        _require_integer("attention_window", self.attention_window)
        if self.attention_window < 1:
            raise ValueError(f"attention_window must be positive, got {self.attention_window}")
        if self.head == "lut" and self.attention == "bottleneck+decoder":
            raise ValueError("the LUT head has no decoder: use attention none or bottleneck")
        if self.head not in HEADS:
            raise ValueError(f"head must be one of {', '.join(HEADS)}, got {self.head!r}")
        for name in ("l_bins", "ab_bins", "feature_size", "ctn_width", "ctn_depth", "lut_bases", "lut_size"):
            _require_integer(name, getattr(self, name))
        if isinstance(self.alignment, dict):
            object.__setattr__(self, "alignment", _nested_from_dict(AlignmentConfig, "alignment", self.alignment))
        if not isinstance(self.alignment, AlignmentConfig):
            raise ValueError(f"alignment must be an object of alignment settings, got {self.alignment!r}")
        for width in self.hen_widths:
            _require_integer("hen_widths entry", width)
        if not isinstance(self.ctn_sees_source, bool):
            raise ValueError(f"ctn_sees_source must be true or false, got {self.ctn_sees_source!r}")
        if self.ctn_sees_source and (self.head != "ctn" or self.alignment.method == "none"):
            raise ValueError("ctn_sees_source needs the CTN head and an alignment (without one the CTN already sees the source)")
        if isinstance(self.relevance, dict):
            object.__setattr__(self, "relevance", _nested_from_dict(RelevanceConfig, "relevance", self.relevance))
        if self.relevance is not None:
            if not isinstance(self.relevance, RelevanceConfig):
                raise ValueError(f"relevance must be an object of relevance settings or null, got {self.relevance!r}")
            if self.head != "ctn" or self.alignment.method == "none":
                raise ValueError("relevance needs the CTN head and an alignment (the gate blends two of them)")
            if not self.alignment.everywhere:
                raise ValueError("relevance needs alignment everywhere (the gate blends the global map too)")
        if not 1 <= self.l_bins <= MAX_L_BINS:
            raise ValueError(f"l_bins must be in 1..{MAX_L_BINS}, got {self.l_bins}")
        if not self.hen_widths:
            raise ValueError("hen_widths must list at least one width")
        if self.encoder == "conv" and self.ab_bins % (2 ** len(self.hen_widths)):
            raise ValueError(f"ab_bins ({self.ab_bins}) must be divisible by 2^{len(self.hen_widths)}")
        if self.encoder == "transformer" and self.ab_bins % self.transformer.patch_size:
            raise ValueError(
                f"ab_bins ({self.ab_bins}) must be divisible by the transformer patch_size ({self.transformer.patch_size})"
            )
        if (
            min(self.feature_size, self.ctn_width, self.ctn_depth, self.lut_bases, *self.hen_widths) < 1
            or self.lut_size < 2
        ):
            raise ValueError("widths, depth and feature size must be positive")
        # Upper bounds, checked before anything is built: a hostile or mistyped config.json must
        # not allocate gigabytes (ctn_width 100000 would ask for 360 GB). Each is far above any
        # model histocolor trains (listed in the README, "Command line").
        for name, value, limit in (
            ("ab_bins", self.ab_bins, MAX_AB_BINS), ("feature_size", self.feature_size, MAX_WIDTH),
            ("ctn_width", self.ctn_width, MAX_CTN_WIDTH), ("ctn_depth", self.ctn_depth, MAX_CTN_DEPTH),
            ("lut_bases", self.lut_bases, MAX_LUT_BASES), ("lut_size", self.lut_size, MAX_LUT_SIZE),
            ("hen_widths", max(self.hen_widths), MAX_WIDTH), ("hen_widths (count)", len(self.hen_widths), 8),
            ("transformer width", self.transformer.width, MAX_WIDTH),
            ("transformer depth", self.transformer.depth, MAX_TRANSFORMER_DEPTH),
            ("transformer mlp_ratio", self.transformer.mlp_ratio, 8),
        ):
            if value > limit:
                raise ValueError(f"{name} must be at most {limit}, got {value}")

    @classmethod
    def paper(cls) -> "AnalogyConfig":
        """Widths of the paper's networks (64-channel U-Net, four levels): for GPUs."""
        return cls(hen_widths=(64, 128, 256, 512), feature_size=64, ctn_width=64, ctn_depth=4)

    def to_dict(self) -> dict:
        data = asdict(self)
        data["hen_widths"] = list(self.hen_widths)
        for name in ("lightness_slopes", "chroma_slopes"):
            data["alignment"][name] = list(data["alignment"][name])
            if data["relevance"] is not None:
                data["relevance"][name] = list(data["relevance"][name])
        if data["relevance"] is None:  # older readers know no such key: leave it out when unused
            del data["relevance"]
        return data

    @classmethod
    def from_dict(cls, data: dict) -> "AnalogyConfig":
        known = {f.name for f in fields(cls)}
        data = dict(data)
        if "align_regions" in data:  # weights saved before the alignment had settings
            legacy = data.pop("align_regions")
            if not isinstance(legacy, bool):
                raise ValueError(f"align_regions must be true or false, got {legacy!r}")
            data.setdefault("alignment", {"method": "moments" if legacy else "none"})
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(f"unknown config keys {unknown}")
        return cls(**data)


def _nested_from_dict(kind, name: str, data: dict):
    """A nested settings dataclass (``alignment``, ``transformer``) from its JSON object."""
    known = {f.name for f in fields(kind)}
    unknown = sorted(set(data) - known)
    if unknown:
        raise ValueError(f"unknown {name} keys {unknown}")
    return kind(**data)
