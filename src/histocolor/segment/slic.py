"""``slic``: regions without a trained model, matched across the two images.

Each image is cut into SLIC superpixels in Lab, and the superpixels are grouped by k-means
on their mean lightness and position into a few regions (sky-like bright tops, dark
grounds, ...). The regions of the reference are then matched one-to-one to the source's by
relative lightness and position (Hungarian assignment), and renumbered so that equal labels
correspond.
"""

import numpy as np
from scipy.optimize import linear_sum_assignment
from scipy.cluster.vq import kmeans2
from skimage.color import rgb2lab
from skimage.segmentation import slic

from histocolor.segment.base import Segmenter, as_uint8, resize_labels

WORKING_SIDE = 384  # segmentation runs at this size; labels are resized back


class SlicSegmenter(Segmenter):
    name = "slic"

    def __init__(self, regions: int = 4, superpixels: int = 200, seed: int = 0):
        self.regions = regions
        self.superpixels = superpixels
        self.seed = seed

    def regions_of(self, image: np.ndarray):
        """Labels at full size and, per region, (mean lightness 0-1, centre y, centre x in 0-1)."""
        rgb = as_uint8(image)
        height, width = rgb.shape[:2]
        step = max(1, int(np.ceil(max(height, width) / WORKING_SIDE)))
        small = rgb[::step, ::step]
        lab = rgb2lab(small)
        superpixels = slic(lab, n_segments=self.superpixels, compactness=10, start_label=0, convert2lab=False,
                           channel_axis=-1)
        ys, xs = np.mgrid[0 : small.shape[0], 0 : small.shape[1]]
        count = superpixels.max() + 1
        sizes = np.bincount(superpixels.ravel(), minlength=count).astype(np.float64)
        features = np.stack(
            [
                np.bincount(superpixels.ravel(), weights=values.ravel(), minlength=count) / np.maximum(sizes, 1)
                for values in (lab[..., 0] / 100.0, ys / small.shape[0], xs / small.shape[1])
            ],
            axis=1,
        )
        # Lightness counts most: regions of similar tone and place, not of similar hue.
        scaled = features * np.array([2.0, 1.0, 0.5])
        clusters = min(self.regions, int((sizes > 0).sum()))
        _, assignment = kmeans2(scaled[sizes > 0], clusters, minit="++", seed=self.seed)
        region_of = np.zeros(count, np.int32)
        region_of[sizes > 0] = assignment
        labels = region_of[superpixels]
        summary = np.zeros((clusters, 3))
        for region in range(clusters):
            members = (region_of == region) & (sizes > 0)
            weights = sizes[members]
            summary[region] = (features[members] * weights[:, None]).sum(0) / max(weights.sum(), 1)
        return resize_labels(labels, (height, width)), summary

    def segment(self, image):
        labels, summary = self.regions_of(image)
        return labels, {region: _describe(values) for region, values in enumerate(summary)}

    def segment_pair(self, source, reference):
        source_labels, source_summary = self.regions_of(source)
        reference_labels, reference_summary = self.regions_of(reference)
        # Match by relative lightness (the brightest region to the brightest, whatever the
        # exposure) and by place; regions of one tone are told apart by place alone.
        source_tone, reference_tone = _relative(source_summary[:, 0]), _relative(reference_summary[:, 0])
        cost = np.abs(source_tone[:, None] - reference_tone[None]) + np.linalg.norm(
            source_summary[:, None, 1:] - reference_summary[None, :, 1:], axis=-1
        )
        rows, columns = linear_sum_assignment(cost)
        # Unmatched reference regions get labels of their own, past the source's.
        renumber = np.arange(len(reference_summary), dtype=np.int32) + len(source_summary)
        renumber[columns] = rows
        names = {region: _describe(values) for region, values in enumerate(source_summary)}
        return source_labels, renumber[reference_labels], names


def _relative(lightness: np.ndarray) -> np.ndarray:
    span = lightness.max() - lightness.min()
    return (lightness - lightness.min()) / span if span > 0.05 else np.zeros_like(lightness)


def _describe(values) -> str:
    lightness, row, column = values
    tone = "bright" if lightness > 0.66 else "dark" if lightness < 0.33 else "mid"
    vertical = "top" if row < 0.4 else "bottom" if row > 0.6 else "middle"
    horizontal = "left" if column < 0.4 else "right" if column > 0.6 else "centre"
    return f"{tone} {vertical} {horizontal}"
