"""The interface every segmenter follows, and helpers they share.

torch is imported by the helpers of the torch models only: ``slic`` runs on numpy alone.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from histocolor.dtypes import to_uint
from histocolor.errors import HistocolorError

if TYPE_CHECKING:
    import torch

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


class Segmenter:
    """``segment(image)`` -> ``(labels (H, W) int32, {label: class name})``.

    ``image`` is ``(H, W, 3)`` uint8, uint16 or float in [0, 1]. Semantic segmenters give
    class labels, so the same label in two images is the same kind of thing and
    ``segment_pair`` simply segments both; segmenters without classes override it.
    """

    name = "segmenter"

    def segment(self, image: np.ndarray) -> tuple[np.ndarray, dict[int, str]]:
        raise NotImplementedError

    def segment_pair(self, source: np.ndarray, reference: np.ndarray):
        """``(source labels, reference labels, class names)``; equal labels correspond."""
        source_labels, names = self.segment(source)
        reference_labels, reference_names = self.segment(reference)
        return source_labels, reference_labels, {**names, **reference_names}


def as_uint8(image: np.ndarray) -> np.ndarray:
    """``(H, W, 3)`` uint8 from uint8, uint16 or float [0, 1] (alpha and gray handled by the caller)."""
    image = np.asarray(image)
    if image.ndim != 3 or image.shape[-1] < 3:
        raise HistocolorError(f"segmenters take (H, W, 3) images, got shape {image.shape}")
    image = image[..., :3]
    if image.dtype == np.uint8:
        return image
    if image.dtype == np.uint16:
        return (image // 257).astype(np.uint8)
    return to_uint(np.asarray(image, np.float32), np.uint8)


def models_home() -> Path:
    """Where model files are looked up: ``$HISTOCOLOR_HOME/models`` (default ``~/.cache/histocolor/models``)."""
    return Path(os.environ.get("HISTOCOLOR_HOME", Path.home() / ".cache" / "histocolor")).expanduser() / "models"


def read_class_names(path: Path) -> dict[int, str]:
    """``N<tab>name`` lines (ADE20K) or one name per line until a blank line (VOC); ``{}`` without a file."""
    if not path.is_file():
        return {}
    names = {}
    for index, line in enumerate(path.read_text(encoding="utf-8").splitlines()):
        if not line.strip():
            break
        numbered = re.match(r"^(\d+)\s+(.+)$", line.strip())
        label, name = (int(numbered.group(1)), numbered.group(2)) if numbered else (index, line.strip())
        names[label] = name.strip()
    return names


def present_names(labels: np.ndarray, class_names: dict[int, str]) -> dict[int, str]:
    """``{label: class name}`` for the labels present in ``labels`` (the number itself when unnamed)."""
    return {label: class_names.get(label, str(label)) for label in np.unique(labels).tolist()}


def scaled_size(size, scale: float, multiple: int = 1) -> tuple[int, int]:
    """``(H, W)`` times ``scale``, each side rounded to a multiple of ``multiple`` (at least one multiple)."""
    return tuple(max(multiple, round(side * scale / multiple) * multiple) for side in size)


def imagenet_input(rgb: np.ndarray, size) -> torch.Tensor:
    """``(H, W, 3)`` uint8 -> ``(1, 3, *size)`` float32: resized (bilinear, antialiased), /255, ImageNet mean/std."""
    import torch
    import torch.nn.functional as F

    tensor = torch.from_numpy(np.ascontiguousarray(rgb)).permute(2, 0, 1)[None].float() / 255.0
    tensor = F.interpolate(tensor, size=tuple(size), mode="bilinear", antialias=True, align_corners=False)
    mean, std = (torch.tensor(values)[None, :, None, None] for values in (IMAGENET_MEAN, IMAGENET_STD))
    return (tensor - mean) / std


# Past this many score values (classes x pixels), the argmax is taken at a smaller size and
# the labels resized: 151 ADE20K scores at 12 megapixels would need 7 GB.
_MAX_SCORE_VALUES = 1 << 27


def upsample_scores(scores: torch.Tensor, size) -> np.ndarray:
    """Class scores ``(1, C, h, w)`` -> labels ``(H, W)`` int32 (argmax after bilinear resizing)."""
    import torch
    import torch.nn.functional as F

    height, width = size
    classes = scores.shape[1]
    shrink = min(1.0, (_MAX_SCORE_VALUES / (classes * height * width)) ** 0.5)
    working = (max(1, round(height * shrink)), max(1, round(width * shrink)))
    resized = F.interpolate(scores.float(), size=working, mode="bilinear", align_corners=False)
    labels = resized[0].argmax(0).to(torch.int32).cpu().numpy()
    return labels if working == (height, width) else resize_labels(labels, size)


def resize_labels(labels: np.ndarray, size) -> np.ndarray:
    """Nearest-neighbour resize of a label map to ``size`` (H, W), int32: each output pixel takes
    the label under its centre.

    Example:
        >>> resize_labels(np.array([[1, 2]]), (1, 4))
        array([[1, 1, 2, 2]], dtype=int32)
    """
    labels = np.asarray(labels, dtype=np.int32)
    rows, columns = (
        np.minimum(((np.arange(out) + 0.5) * (size_in / out)).astype(np.intp), size_in - 1)
        for size_in, out in zip(labels.shape, size)
    )
    return labels[rows[:, None], columns[None, :]]


def write_labels(path, labels: np.ndarray, overwrite: bool = True) -> None:
    """An integer label map as PNG, or TIFF for a .tif/.tiff name (8-bit when the labels allow, else
    16-bit), written atomically (without ``overwrite``, never over a file that exists)."""
    from PIL import Image

    from histocolor.atomic import atomic_write

    if labels.min() < 0 or labels.max() > 65535:
        raise HistocolorError(f"labels must be in 0..65535 to be written as PNG, got {labels.min()}..{labels.max()}")
    image = Image.fromarray(labels.astype(np.uint8 if labels.max() < 256 else np.uint16))
    kind = "TIFF" if str(path).lower().endswith((".tif", ".tiff")) else "PNG"
    with atomic_write(path, suffix=f".{kind.lower()}", replace=overwrite) as stream:
        image.save(stream, format=kind)
