"""Label maps of semantic regions: integer PNGs or colour-coded masks.

Colour-coded masks from the deep-photo-styletransfer benchmark use nine colours but are
antialiased (thousands of distinct colours at the seams), so they are snapped to that
palette; other colour-coded masks get one label per distinct colour.
"""

import numpy as np
from PIL import Image

from histocolor.errors import HistocolorError

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
            array = np.asarray(image.convert("RGB") if mode in ("RGB", "RGBA", "CMYK") else image)
    except (OSError, ValueError) as error:
        raise HistocolorError(f"cannot read mask '{path}': {error}") from None
    if array.ndim == 2:
        return array.astype(np.int32)
    return colour_labels(array)


def colour_labels(rgb: np.ndarray) -> np.ndarray:
    """Labels of a colour-coded ``(H, W, 3)`` mask (DPST palette snapped, else one per colour)."""
    pixels = rgb.reshape(-1, 3).astype(np.float32)
    distances = np.linalg.norm(pixels[:, None, :] - DPST_PALETTE[None], axis=-1)
    close = distances < _SNAP_DISTANCE
    if close.any(axis=1).mean() >= _SNAP_SHARE:
        # Seam pixels are blends of their two sides: snap them among the colours the mask
        # really uses, or a blue-red seam would become a sliver of grey or purple.
        used = close.mean(axis=0) >= _MIN_COLOUR_SHARE
        nearest = np.where(used[None], distances, np.inf).argmin(axis=1)
        return nearest.reshape(rgb.shape[:2]).astype(np.int32)
    _, labels = np.unique(rgb.reshape(-1, 3), axis=0, return_inverse=True)
    return labels.reshape(rgb.shape[:2]).astype(np.int32)
