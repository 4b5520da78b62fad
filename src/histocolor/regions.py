"""Label maps of semantic regions: integer PNGs or colour-coded masks, which region of the
source corresponds to which of the reference, and the feathered weights of regions.

Colour-coded masks are labelled by their dominant colours, the two masks of a pair together,
so that one colour has one label in both (:func:`colour_labels`); antialiased or noisy seams
(thousands of distinct colours in the deep-photo-styletransfer masks) join the nearest region.
"""

import warnings
from dataclasses import dataclass

import numpy as np

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
# Colour-coded masks: colours closer than this (RGB distance) are one region.
_SNAP_DISTANCE = 24.0
_DOMINANT_SHARE = 0.005  # a colour with this share of an image's pixels is a region of its own
_PALETTE_SHARE = 0.9  # a mask with this share of its pixels near the DPST palette is drawn in it
_MAX_MINOR_COLOURS = 256  # without a dominant colour, more colours than this are not a label map
_COLOUR_BLOCK = 8192  # distinct colours per block of distance computations
_MIN_COLOUR_SHARE = 0.001  # a region counts as present in an image from this share of its pixels
_LOSSY_FORMATS = ("JPEG", "MPO", "WEBP")


def load_label_map(path) -> np.ndarray:
    """``(H, W)`` int32 labels from an integer (L, I, P, F) or colour-coded (RGB) mask.

    See :func:`read_mask` and :func:`label_maps` (two masks of a pair are best loaded together,
    with :func:`load_label_maps`, so that a colour gets the same label in both).
    """
    return label_maps(read_mask(path))[0]


def load_label_maps(*paths) -> list[np.ndarray]:
    """The label maps of several masks, colour-coded ones labelled consistently across all of them."""
    return label_maps(*(read_mask(path) for path in paths))


def read_mask(path) -> np.ndarray:
    """A mask file's pixels: ``(H, W)`` integer labels, or ``(H, W, 3)`` uint8 colours (colour-coded).

    Masks pass the same pixel limit as images. A lossy (JPEG) mask is read with a warning: its
    seams hold colours no region has. A multi-frame file uses its first frame, with a warning.
    """
    from histocolor.imageio import open_image

    try:
        with open_image(path) as image:
            image.load()
            if getattr(image, "n_frames", 1) > 1:
                warnings.warn(f"mask '{path}' has {image.n_frames} frames: using the first", stacklevel=2)
            if image.format in _LOSSY_FORMATS:
                warnings.warn(f"mask '{path}' is {image.format}, a lossy format: labels at its seams may be "
                              "wrong (save masks as PNG)", stacklevel=2)
            mode = image.mode
            if mode in ("L", "I", "I;16", "P", "1", "F"):
                array = np.asarray(image)
            elif mode in ("LA", "La"):
                array = np.asarray(image.convert("L"))
            else:  # RGB, RGBA, CMYK, YCbCr, ...: colour-coded
                array = np.asarray(image.convert("RGB"))
    except HistocolorError as error:  # too large, or not an image
        raise HistocolorError(f"cannot read mask {str(error).removeprefix('cannot read ')}") from None
    except (OSError, ValueError, SyntaxError) as error:
        raise HistocolorError(f"cannot read mask '{path}': {error}") from None
    if array.ndim == 2 and array.dtype.kind == "f":
        if not (np.all(np.isfinite(array)) and np.all(array == np.round(array))):
            raise HistocolorError(f"mask '{path}' holds values that are not whole numbers (NaN or fractions)")
    return array


def label_maps(*masks) -> list[np.ndarray]:
    """``(H, W)`` int32 label maps of masks from :func:`read_mask`: integer masks as they are,
    colour-coded ones through :func:`colour_labels`, together."""
    coloured = [index for index, mask in enumerate(masks) if mask.ndim == 3]
    labelled = dict(zip(coloured, colour_labels(*(masks[index] for index in coloured)))) if coloured else {}
    return [labelled[index] if index in labelled else masks[index].astype(np.int32) for index in range(len(masks))]


def colour_labels(*images: np.ndarray) -> list[np.ndarray]:
    """Labels of colour-coded ``(H, W, 3)`` masks, consistent across all of them.

    The dominant colours (each at least 0.5 % of an image's pixels) are the regions; dominant
    colours closer than a snap distance (24 in RGB) are one region, and every other colour
    (antialiased or compressed seams, noise) joins the nearest region present in its own image.
    A region whose colour is within the snap distance of the deep-photo-styletransfer palette
    gets that colour's index (0-8: blue, green, black, white, red, yellow, grey, light blue,
    purple); the others get 9, 10, ... in order of their largest share. In a mask drawn in the
    palette (90 % of its pixels near it) the other colours are seams, never regions. The same
    colour thus gets the same label in every mask given together.

    Example:
        >>> blue_red = np.zeros((2, 4, 3), np.uint8); blue_red[:, :2, 2] = 255; blue_red[:, 2:, 0] = 255
        >>> colour_labels(blue_red)[0]
        array([[0, 0, 4, 4],
               [0, 0, 4, 4]], dtype=int32)
    """
    tables = []
    for rgb in images:  # the distinct colours of each image and their shares
        codes = rgb[..., :3].astype(np.uint32)
        codes = (codes[..., 0] << 16) | (codes[..., 1] << 8) | codes[..., 2]
        colours, inverse, counts = np.unique(codes.ravel(), return_inverse=True, return_counts=True)
        values = np.stack([(colours >> 16) & 255, (colours >> 8) & 255, colours & 255], axis=1).astype(np.float32)
        shares = counts / counts.sum()
        near = np.linalg.norm(values[:, None] - DPST_PALETTE[None], axis=-1).min(axis=1) < _SNAP_DISTANCE
        # A mask drawn in the palette (nearly all its pixels near it): its other colours are seams.
        tables.append((values, inverse, shares, near if shares[near].sum() >= _PALETTE_SHARE else None))
    # Regions: the dominant colours of all images, greedily merged, the largest share first.
    candidates = sorted(
        ((share, tuple(value)) for values, _, shares, palette in tables
         for index, (value, share) in enumerate(zip(values, shares))
         if share >= _DOMINANT_SHARE and (palette is None or palette[index])),
        reverse=True,
    )
    centres: list[np.ndarray] = []
    for _, value in candidates:
        if not centres or np.linalg.norm(np.array(centres) - value, axis=1).min() >= _SNAP_DISTANCE:
            centres.append(np.array(value, np.float32))
    if not centres:  # no colour is dominant: a few colours are each their own region; many are not a mask
        distinct = sorted(((share, tuple(value)) for values, _, shares, _ in tables
                           for value, share in zip(values, shares)), reverse=True)
        if len(distinct) > _MAX_MINOR_COLOURS:
            raise HistocolorError(f"a colour-coded mask has {len(distinct)} colours and none covers "
                                  f"{_DOMINANT_SHARE:.1%} of it: it is not a label map")
        centres = [np.array(value, np.float32) for _, value in distinct]
    centres = np.array(centres)
    palette_distance = np.linalg.norm(centres[:, None] - DPST_PALETTE[None], axis=-1)
    near_palette = palette_distance.min(axis=1) < _SNAP_DISTANCE
    ids = np.where(near_palette, palette_distance.argmin(axis=1), 0)
    ids[~near_palette] = len(DPST_PALETTE) + np.arange((~near_palette).sum())
    results = []
    for (values, inverse, shares, palette), rgb in zip(tables, images):
        # Regions present in this image (its colours within the snap distance, 0.1 % of its pixels at least).
        present = np.zeros(len(centres))
        for start in range(0, len(values), _COLOUR_BLOCK):  # blocks bound the (colours x regions) distances
            block = np.linalg.norm(values[start : start + _COLOUR_BLOCK, None] - centres[None], axis=-1)
            present += ((block < _SNAP_DISTANCE) * shares[start : start + _COLOUR_BLOCK, None]).sum(axis=0)
        present = present >= _MIN_COLOUR_SHARE
        if palette is not None:
            present &= near_palette
        present = present if present.any() else np.ones(len(centres), bool)
        nearest = np.concatenate([
            np.where(present[None], np.linalg.norm(values[start : start + _COLOUR_BLOCK, None] - centres[None], axis=-1),
                     np.inf).argmin(axis=1)
            for start in range(0, len(values), _COLOUR_BLOCK)
        ])
        results.append(ids[nearest][inverse].reshape(rgb.shape[:2]).astype(np.int32))
    return results


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
    # A region map naming labels an image does not have is a typo, not a request for the global transfer.
    missing_targets = sorted({t for targets in mapping.values() for t in targets} - set(reference_share))
    if missing_targets:
        raise HistocolorError(f"the region map names reference label(s) {_preview(np.array(missing_targets))} that "
                              f"the reference labels do not have (they have {_preview(reference_values)})")
    missing_sources = sorted(set(mapping) - set(source_share) - {0})
    if missing_sources:
        raise HistocolorError(f"the region map names source label(s) {_preview(np.array(missing_sources))} that "
                              f"the source labels do not have (they have {_preview(source_values)})")
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


def _area_sums(cumulative: np.ndarray, size_in: int, size_out: int) -> np.ndarray:
    """Means over the output cells along axis 0, from a cumulative sum with a leading zero row."""
    index = np.arange(size_out)
    start = (index * size_in) // size_out
    end = -((-(index + 1) * size_in) // size_out)  # ceil
    return (cumulative[end] - cumulative[start]) / (end - start)[:, None]


def area_resize(mask: np.ndarray, shape) -> np.ndarray:
    """An ``(H, W)`` mask or plane resized to ``shape`` by area averaging, float32.

    Each output pixel is the mean of the input cells its span covers, rounded outward to whole
    cells (as torch's ``interpolate(..., mode="area")``): a thin region keeps its share.

    Example:
        >>> area_resize(np.array([[1, 0, 0, 0]], bool), (1, 2))
        array([[0.5, 0. ]], dtype=float32)
    """
    plane = np.asarray(mask, dtype=np.float64)
    if plane.shape == tuple(shape):
        return plane.astype(np.float32)
    rows = np.concatenate([np.zeros((1, plane.shape[1])), np.cumsum(plane, axis=0)])
    plane = _area_sums(rows, plane.shape[0], shape[0])  # (h, W)
    columns = np.concatenate([np.zeros((1, plane.shape[0])), np.cumsum(plane.T, axis=0)])
    return _area_sums(columns, plane.shape[1], shape[1]).T.astype(np.float32)


def region_weights(labels: np.ndarray, groups: list[list[int]], shape, feather: float = 0.0) -> np.ndarray:
    """``(R, h, w)`` float32 weights of the label groups at size ``shape``.

    Each weight is the share of the group's pixels in the area a small pixel covers, so thin
    regions keep their weight. With ``feather`` > 0 each weight is also blurred (sigma =
    feather x the diagonal) so that seams blend; the weights of all groups plus the rest of
    the image still sum to 1 everywhere.
    """
    height, width = shape
    weights = (np.stack([area_resize(np.isin(labels, group), shape) for group in groups]) if groups
               else np.zeros((0, *shape), np.float32))
    if feather > 0 and groups:
        from scipy.ndimage import gaussian_filter  # a quarter of a second to import: only when feathering

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
    given = [read_mask(mask) if isinstance(mask, (str, bytes)) or hasattr(mask, "__fspath__") else np.asarray(mask)
             for mask in (source_labels, reference_labels)]
    labels = [check_labels(mask, shape, role) for mask, shape, role in
              zip(label_maps(*given), (source_shape, reference_shape), ("source", "reference"))]
    if region_map is not None:  # API users may give {1: 0} or JSON's {"1": [0]}
        region_map = parse_region_map({str(k): v for k, v in region_map.items()})
    return Regions(*labels, match_regions(*labels, region_map), feather)
