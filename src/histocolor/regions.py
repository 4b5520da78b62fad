"""Label maps of semantic regions: integer PNGs or colour-coded masks, which region of the
source corresponds to which of the reference, and the feathered weights of regions.

Colour-coded masks from the deep-photo-styletransfer benchmark use nine colours but are
antialiased (thousands of distinct colours at the seams), so they are snapped to that
palette; other colour-coded masks get one label per distinct colour.
"""

from dataclasses import dataclass

import numpy as np
from PIL import Image

from histocolor.errors import HistocolorError, NoCommonRegion

# blue, green, black, white, red, yellow, grey, light blue, purple
DPST_PALETTE = np.array(
    [
        [0, 0, 255],
        [0, 255, 0],
        [0, 0, 0],
        [255, 255, 255],
        [255, 0, 0],
        [255, 255, 0],
        [128, 128, 128],
        [0, 255, 255],
        [255, 0, 255],
    ],
    dtype=np.float32,
)
# A mask whose pixels are this close to the palette, nearly all of them, is a DPST mask.
_SNAP_DISTANCE = 24.0
_SNAP_SHARE = 0.9
_MIN_COLOUR_SHARE = 0.001  # a palette colour counts as used from this share of pixels


def load_label_map(path) -> np.ndarray:
    """``(H, W)`` int32 labels from an integer (L, I, P) or colour-coded (RGB) PNG mask."""
    try:
        with Image.open(path) as image:
            image.load()
            mode = image.mode
            if mode in ("L", "I", "I;16", "P", "1", "F"):
                array = np.asarray(image)
            elif mode in ("LA", "La"):
                array = np.asarray(image.convert("L"))
            else:  # RGB, RGBA, CMYK, YCbCr, ...: colour-coded
                array = np.asarray(image.convert("RGB"))
    except (OSError, ValueError) as error:
        raise HistocolorError(f"cannot read mask '{path}': {error}") from None
    if array.ndim == 2:
        return array.astype(np.int32)
    return colour_labels(array)


def colour_labels(rgb: np.ndarray) -> np.ndarray:
    """Labels of a colour-coded ``(H, W, 3)`` mask (DPST palette snapped, else one per colour)."""
    # Work on the distinct colours (a few thousand at most), not on every pixel.
    codes = rgb[..., :3].astype(np.uint32)
    codes = (codes[..., 0] << 16) | (codes[..., 1] << 8) | codes[..., 2]
    colours, inverse, counts = np.unique(codes.ravel(), return_inverse=True, return_counts=True)
    pixels = np.stack([(colours >> 16) & 255, (colours >> 8) & 255, colours & 255], axis=1).astype(np.float32)
    distances = np.linalg.norm(pixels[:, None, :] - DPST_PALETTE[None], axis=-1)
    close = distances < _SNAP_DISTANCE
    share = counts / counts.sum()
    if share[close.any(axis=1)].sum() >= _SNAP_SHARE:
        # Seam pixels are blends of their two sides: snap them among the colours the mask
        # really uses, or a blue-red seam would become a sliver of grey or purple.
        used = (close * share[:, None]).sum(axis=0) >= _MIN_COLOUR_SHARE
        nearest = np.where(used[None], distances, np.inf).argmin(axis=1)
        return nearest[inverse].reshape(rgb.shape[:2]).astype(np.int32)
    return inverse.reshape(rgb.shape[:2]).astype(np.int32)


# A region under this share of either image is too small to have a histogram of its own:
# its pixels follow the global transfer.
MIN_REGION_FRACTION = 0.01
# Feathering of the region weights: Gaussian sigma as a share of the image diagonal.
DEFAULT_FEATHER = 0.01


def load_region_map(path) -> dict[int, list[int]]:
    """A JSON object mapping source labels to reference labels: ``{"3": 5, "7": [7, 8]}``."""
    import json

    try:
        data = json.loads(open(path, encoding="utf-8").read())
    except (OSError, ValueError) as error:
        raise HistocolorError(f"cannot read region map '{path}': {error}") from None
    return parse_region_map(data, str(path))


def parse_region_map(data, where: str = "region map") -> dict[int, list[int]]:
    if not isinstance(data, dict):
        raise HistocolorError(f"{where}: expected a JSON object of source label -> reference label(s)")
    mapping = {}
    for key, value in data.items():
        targets = value if isinstance(value, list) else [value]
        try:
            mapping[int(key)] = [int(target) for target in targets]
        except (TypeError, ValueError):
            raise HistocolorError(f"{where}: labels must be integers, got {key!r}: {value!r}") from None
    return mapping


# A mask of its image's shape at another scale (e.g. 700x393 for 700x394, as some published
# masks are) is resized; past this difference in aspect ratio it is refused.
_ASPECT_TOLERANCE = 0.02


def check_labels(labels, image_shape, role: str) -> np.ndarray:
    """``labels`` as ``(H, W)`` int32 at the image's size, failing clearly when it does not fit."""
    labels = np.asarray(labels)
    if labels.ndim == 3 and labels.shape[-1] in (3, 4):
        labels = colour_labels(labels[..., :3])
    if labels.ndim != 2:
        raise HistocolorError(f"the {role} mask must be a 2-D label map, got shape {labels.shape}")
    if labels.size and (not np.all(np.isfinite(labels)) or labels.min() < np.iinfo(np.int32).min
                        or labels.max() > np.iinfo(np.int32).max):
        raise HistocolorError(f"the {role} mask holds labels that are not 32-bit integers")
    height, width = image_shape[:2]
    if labels.shape == (height, width):
        return labels.astype(np.int32, copy=False)
    aspect, image_aspect = labels.shape[1] / labels.shape[0], width / height
    if abs(aspect - image_aspect) > _ASPECT_TOLERANCE * image_aspect:
        raise HistocolorError(
            f"the {role} mask is {labels.shape[1]}x{labels.shape[0]} but its image is "
            f"{width}x{height}: masks must match their image's size"
        )
    rows = np.minimum((np.arange(height) + 0.5) * labels.shape[0] / height, labels.shape[0] - 1).astype(int)
    columns = np.minimum((np.arange(width) + 0.5) * labels.shape[1] / width, labels.shape[1] - 1).astype(int)
    return labels[rows[:, None], columns[None, :]].astype(np.int32)


def match_regions(
    source_labels: np.ndarray,
    reference_labels: np.ndarray,
    mapping: dict[int, list[int]] | None = None,
    min_fraction: float = MIN_REGION_FRACTION,
) -> list[tuple[list[int], list[int]]]:
    """Corresponding regions as (source labels, reference labels) pairs.

    By default a label corresponds to the same label in the other image; ``mapping`` (source
    label -> reference labels) replaces that for the labels it names. Regions under
    ``min_fraction`` of either image are left out (their pixels follow the global transfer).
    Fails when no region is left: a region-wise transfer would then be a global one.
    """
    source_values, source_counts = np.unique(source_labels, return_counts=True)
    reference_values, reference_counts = np.unique(reference_labels, return_counts=True)
    source_share = dict(zip(source_values.tolist(), (source_counts / source_labels.size).tolist()))
    reference_share = dict(zip(reference_values.tolist(), (reference_counts / reference_labels.size).tolist()))
    mapping = mapping or {}
    pairs = []
    for label in source_values.tolist():
        targets = [t for t in mapping.get(label, [label]) if t in reference_share]
        if source_share[label] >= min_fraction and sum(reference_share[t] for t in targets) >= min_fraction:
            pairs.append(([label], targets))
    if not pairs:
        raise NoCommonRegion(
            "the source and reference masks have no region in common "
            f"(source labels {_preview(source_values)}, reference labels {_preview(reference_values)}, "
            f"each at least {min_fraction:.0%} of its image): give matching labels or a region map"
        )
    return pairs


def _preview(values: np.ndarray, limit: int = 8) -> str:
    shown = ", ".join(str(v) for v in values[:limit].tolist())
    return shown + (", ..." if len(values) > limit else "")


def region_weights(labels: np.ndarray, groups: list[list[int]], shape, feather: float = 0.0) -> np.ndarray:
    """``(R, h, w)`` float32 weights of the label groups at size ``shape``.

    Each weight is the share of the group's pixels in the area a small pixel covers, so thin
    regions keep their weight. With ``feather`` > 0 each weight is also blurred (sigma =
    feather x the diagonal) so that seams blend; the weights of all groups plus the rest of
    the image still sum to 1 everywhere.
    """
    import torch
    import torch.nn.functional as F
    from scipy.ndimage import gaussian_filter

    def area(mask: np.ndarray) -> np.ndarray:
        if mask.shape == tuple(shape):
            return mask.astype(np.float32)
        tensor = torch.from_numpy(mask.astype(np.float32))[None, None]
        return F.interpolate(tensor, size=tuple(shape), mode="area")[0, 0].numpy()

    height, width = shape
    weights = np.stack([area(np.isin(labels, group)) for group in groups]) if groups else np.zeros((0, *shape), np.float32)
    if feather > 0 and groups:
        sigma = feather * float(np.hypot(height, width))
        weights = np.stack([gaussian_filter(w, sigma, mode="nearest") for w in weights])
    return weights


@dataclass
class Regions:
    """Checked label maps of both images and their corresponding regions.

    Without masks, the whole image is the one part: no pairs, no label maps, and
    :meth:`source_weights` gives the rest of the image, everywhere (:meth:`whole_image`).
    """

    source_labels: np.ndarray | None
    reference_labels: np.ndarray | None
    pairs: list[tuple[list[int], list[int]]]
    feather: float = DEFAULT_FEATHER

    @classmethod
    def whole_image(cls) -> "Regions":
        return cls(None, None, [])

    def source_weights(self, shape, feather: bool = True) -> np.ndarray:
        """``(R + 1, h, w)``: one weight per matched region, then the rest (global)."""
        matched = region_weights(
            self.source_labels, [p[0] for p in self.pairs], shape, self.feather if feather else 0.0
        )
        return np.concatenate([matched, np.clip(1.0 - matched.sum(0, keepdims=True), 0.0, 1.0)])

    def reference_weights(self, shape) -> np.ndarray:
        """``(R, h, w)`` hard weights of the reference regions (they only feed histograms)."""
        return region_weights(self.reference_labels, [p[1] for p in self.pairs], shape)


def prepare_regions(source_labels, reference_labels, source_shape, reference_shape, region_map=None,
                    feather: float = DEFAULT_FEATHER) -> Regions:
    """Label maps (arrays or mask paths) checked against their images and matched (the whole image without masks)."""
    if source_labels is None and reference_labels is None:
        return Regions.whole_image()
    if source_labels is None or reference_labels is None:
        raise HistocolorError("region-wise transfer needs masks for both the source and the reference")
    if not feather >= 0:
        raise HistocolorError(f"the feather must be zero or positive, got {feather}")
    labels = [
        check_labels(load_label_map(given) if isinstance(given, (str, bytes)) or hasattr(given, "__fspath__")
                     else given, shape, role)
        for given, shape, role in ((source_labels, source_shape, "source"), (reference_labels, reference_shape, "reference"))
    ]
    if region_map is not None:  # API users may give {1: 0} or JSON's {"1": [0]}
        region_map = parse_region_map({str(k): v for k, v in region_map.items()})
    return Regions(*labels, match_regions(*labels, region_map), feather)
