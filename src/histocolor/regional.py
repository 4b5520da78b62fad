"""Region-wise transfer: each region of the source takes the colours of its reference region.

The network sees per-region histograms (each source pixel is steered by its own region's
features, feathered at the seams). At full resolution the change stays spatially varying:
one colour mapping per region (a LUT fitted to the network's change inside that region, away
from its feathered seams, or a classical mapping fitted on that region's pixels), blended with
the feathered region weights; what no region covers follows the global mapping. ``ColorTransfer`` calls this
when it is given masks.
"""

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from histocolor.errors import HistocolorError
from histocolor.regions import (
    DEFAULT_FEATHER, check_labels, load_label_map, match_regions, parse_region_map, region_weights,
)

# A region with fewer working-size pixels than this borrows the global LUT (too few to fit).
MIN_FIT_PIXELS = 64


@dataclass
class Regions:
    """Checked label maps of both images and their corresponding regions."""

    source_labels: np.ndarray
    reference_labels: np.ndarray
    pairs: list[tuple[list[int], list[int]]]
    feather: float = DEFAULT_FEATHER

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
                    feather: float = DEFAULT_FEATHER) -> Regions | None:
    """Label maps (arrays or mask paths) checked against their images and matched; None without masks."""
    if source_labels is None and reference_labels is None:
        return None
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


def fit_region_luts(seen, became, hard_weights, fit) -> list[np.ndarray]:
    """One LUT per weight channel, fitted on the working-size pixels that channel owns.

    ``seen``/``became`` are ``(N, 3)``; ``hard_weights`` ``(R + 1, N)``; ``fit(seen, became)``
    fits a LUT. A channel with too few pixels gets the LUT fitted on all pixels.
    """
    fallback = None
    luts = []
    for weights in hard_weights:
        owned = weights > 0.5
        if not owned.any():  # a channel without pixels (e.g. no remainder) is never applied
            luts.append(None)
        elif owned.sum() >= MIN_FIT_PIXELS:
            luts.append(fit(seen[owned], became[owned]))
        else:
            if fallback is None:
                fallback = fit(seen, became)
            luts.append(fallback)
    return luts


def blend_regions(rgb: np.ndarray, appliers, weights: np.ndarray, from_unit) -> np.ndarray:
    """``sum_r weight_r(x) * applier_r(rgb)(x)``: weights ``(R + 1, h, w)`` resized to the image.

    ``appliers`` map the whole image to a recoloured one of the same dtype; ``from_unit``
    turns the float [0, 1] blend back into the image's dtype.
    """
    height, width = rgb.shape[:2]
    scale = float(np.iinfo(rgb.dtype).max) if rgb.dtype.kind in "ui" else 1.0
    total = np.zeros((height, width, 3), dtype=np.float32)
    for apply, small in zip(appliers, weights):
        if apply is None or small.max() <= 0:
            continue
        full = F.interpolate(torch.from_numpy(small)[None, None], size=(height, width), mode="bilinear",
                             align_corners=False)[0, 0].numpy()
        total += full[..., None] * (apply(rgb).astype(np.float32) / np.float32(scale))
    return from_unit(total, rgb.dtype)
