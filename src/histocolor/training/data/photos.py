"""Training triplets (source, reference, target) from any folder of photos.

source = s1(A), reference = s2(B), target = s2(A): the network must take the grade s2 from
B's colours and give it to A, whatever B shows. B is another photo, or another crop of A.
Two kinds of pairs teach it when to do nothing: identical pairs (reference = source =
target) and same-grade pairs (reference = s1(B), so target = source). Natural sources
(s1 = no grade) match how the tool is used: an ungraded photo recoloured after a graded one.
"""

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from histocolor.training.data.retouch import (
    STRONG_RANGES,
    RetouchStyle,
    apply_style,
    random_flat_style,
    random_realistic_style,
    random_style,
)
from histocolor.dtypes import to_uint
from histocolor.errors import HistocolorError
from histocolor.imageio import read_image
from histocolor.regions import DEFAULT_FEATHER, region_weights

PHOTO_EXTENSIONS = (".jpg", ".jpeg", ".png", ".tif", ".tiff", ".webp", ".bmp")


# Region-wise triplets have up to this many regions; fewer are padded with empty ones.
REGION_CHANNELS = 3


@dataclass
class Triplet:
    """Float RGB tensors ``(3, H, W)`` in [0, 1], and for region-wise triplets the region
    weights ``(REGION_CHANNELS, H, W)`` of the source (feathered) and of the reference.
    In a batch, ``paired`` is a ``(B,)`` bool tensor."""

    source: torch.Tensor
    reference: torch.Tensor
    target: torch.Tensor
    source_regions: torch.Tensor | None = None
    reference_regions: torch.Tensor | None = None
    paired: bool = True  # False: the target is unknown (a placeholder); only region losses apply


def crop_labels(labels: np.ndarray, box, size: int) -> np.ndarray:
    """The ``box`` of a label map, resampled (nearest) to ``size`` x ``size``."""
    side, top, left = box
    positions = ((np.arange(size) + 0.5) * side / size).astype(int)
    return labels[top + positions[:, None], left + positions[None, :]]


def list_photos(folders) -> list[Path]:
    """Image files directly inside the given folders, sorted (the order fixes the seeds)."""
    paths = []
    for folder in folders:
        folder = Path(folder)
        if not folder.is_dir():
            raise HistocolorError(f"photo folder '{folder}' does not exist")
        paths += sorted(p for p in folder.iterdir() if p.suffix.lower() in PHOTO_EXTENSIONS)
    return paths


def load_photo(path: Path, max_side: int) -> torch.Tensor:
    """A photo as uint8 ``(3, h, w)``, shrunk (antialiased) so its long side is at most ``max_side``."""
    return photo_tensor(read_image(path).rgb, max_side)


def photo_tensor(rgb: np.ndarray, max_side: int) -> torch.Tensor:
    """An ``(H, W, 3)`` uint8, uint16 or float [0, 1] array as uint8 ``(3, h, w)``, long side at most ``max_side``."""
    if rgb.dtype.kind == "f":
        rgb = to_uint(rgb, np.uint8)
    elif rgb.dtype != np.uint8:
        rgb = (rgb // 257).astype(np.uint8)
    tensor = torch.from_numpy(np.ascontiguousarray(rgb)).permute(2, 0, 1).unsqueeze(0)
    scale = max_side / max(rgb.shape[:2])
    if scale < 1.0:
        size = (max(1, round(rgb.shape[0] * scale)), max(1, round(rgb.shape[1] * scale)))
        tensor = F.interpolate(tensor, size=size, mode="bilinear", antialias=True, align_corners=False)
    return tensor[0].contiguous()


def random_square_box(shape, rng: np.random.Generator) -> tuple[int, int, int]:
    """(side, top, left) of a square at a random scale (30-100 % of the short side) and place."""
    height, width = shape
    side = max(1, int(min(height, width) * rng.uniform(0.3, 1.0)))
    return side, int(rng.integers(0, height - side + 1)), int(rng.integers(0, width - side + 1))


def _view_box(box, rng: np.random.Generator) -> tuple[int, int, int]:
    """A square of 60-100 % of ``box``'s side inside it, at a random place: another view of it."""
    side, top, left = box
    inner = max(1, int(side * rng.uniform(0.6, 1.0)))
    return inner, top + int(rng.integers(0, side - inner + 1)), left + int(rng.integers(0, side - inner + 1))


def crop_patch(image: torch.Tensor, box, size: int) -> torch.Tensor:
    """The ``box`` of a uint8 ``(3, h, w)`` image, resized to ``size`` x ``size``, float in [0, 1]."""
    side, top, left = box
    patch = image[:, top : top + side, left : left + side].unsqueeze(0).float() / 255.0
    resized = F.interpolate(patch, size=(size, size), mode="bilinear", antialias=True, align_corners=False)
    return resized[0].clamp(0.0, 1.0)


class PhotoFolderDataset(torch.utils.data.Dataset):
    """Deterministic triplets: item ``i`` depends only on ``seed`` and ``i``.

    Args:
        folders: folders of photos (or a list of photo paths).
        crop: side of the square crops.
        length: number of items an epoch has (items are drawn, not stored).
        seed: base seed.
        identical_rate: share of identical pairs.
        same_grade_rate: share of pairs whose reference has the source's grade (target = source).
        same_photo_rate: share of pairs whose reference is another crop of the source photo.
        natural_source_rate: share of sources left ungraded (s1 = no grade).
        strong_style_rate: share of target grades (s2) drawn from the strong looks.
        reference_flip_rate: share of the global paired references mirrored left to right
            (with the random crop and scale, the paper's "another view" of the target).
        unpaired_rate: share of the global graded triplets whose reference is another photo
            (graded like a target, or left natural as often as ``natural_source_rate``) with
            no target (``paired`` False): the unrelated references users bring, trained
            with a colour-distribution loss to the reference.
        region_rate: share of region-wise triplets: the reference is another crop of the
            source's photo, both cut into the same regions (the photo's ``slic`` regions, so a
            region is the same stuff in both), each region with its own grade. The target
            follows the grades region by region (feathered at the seams, as at inference).
            Region by region the content matches, so the right answer is the reference
            region's whole look: what a user who pairs regions asks for.
        unpaired_region_rate: share of the region-wise triplets whose reference is another
            photo (graded), its regions paired with the source's by tone (darkest with
            darkest): as with a user's masks, paired regions show different things. There
            is no target (``paired`` False); the region losses ask for each reference
            region's colour distribution.
        realistic_style_rate: share of target grades (s2) drawn from the realistic grades
            (:func:`~histocolor.training.data.retouch.random_realistic_style`: exposure of up to two
            stops, shadows and highlights, strong tone curves, clarity, vibrance, white
            balance), which change tones as much as expert renders do.
        view_rate: share of the same-photo global references that are a view of the target
            itself (a crop of 60-100 % of the source crop's side, then mirrored as
            ``reference_flip_rate`` says) rather than any crop of the photo: the paper's case,
            where the reference's histogram is the target's, as in the evaluation sets.
        flat_source_rate: share of the sources made a raw-like render (darker, flatter, duller:
            :func:`~histocolor.training.data.retouch.random_flat_style`), as expert pairs' sources are.
        max_side: photos are kept in memory at most this large.
        photos: photo paths, instead of ``folders``.
        images: ``(H, W, 3)`` arrays used as photos too (e.g. the layers open in napari).
    """

    def __init__(
        self,
        folders,
        crop: int = 128,
        length: int = 100_000,
        seed: int = 0,
        identical_rate: float = 0.17,
        same_grade_rate: float = 0.15,
        same_photo_rate: float = 0.2,
        natural_source_rate: float = 0.0,
        strong_style_rate: float = 0.0,
        region_rate: float = 0.0,
        unpaired_region_rate: float = 0.0,
        reference_flip_rate: float = 0.0,
        unpaired_rate: float = 0.0,
        realistic_style_rate: float = 0.0,
        flat_source_rate: float = 0.0,
        view_rate: float = 0.0,
        max_side: int = 384,
        photos: list[Path] | None = None,
        images: list[np.ndarray] = (),
    ):
        paths = photos if photos is not None else list_photos(folders or [])
        if len(paths) + len(images) < 2:
            raise HistocolorError("training needs at least two photos")
        self.paths = paths
        self.images = [load_photo(path, max_side) for path in paths] + [photo_tensor(rgb, max_side) for rgb in images]
        self.crop = crop
        self.length = length
        self.seed = seed
        self.identical_rate = identical_rate
        self.same_grade_rate = same_grade_rate
        self.same_photo_rate = same_photo_rate
        self.natural_source_rate = natural_source_rate
        self.strong_style_rate = strong_style_rate
        self.region_rate = region_rate
        self.unpaired_region_rate = unpaired_region_rate
        self.reference_flip_rate = reference_flip_rate
        self.unpaired_rate = unpaired_rate
        self.realistic_style_rate = realistic_style_rate
        self.flat_source_rate = flat_source_rate
        self.view_rate = view_rate
        self.labels = [_photo_regions(image) for image in self.images] if region_rate else None

    def __len__(self) -> int:
        return self.length

    def _random_crop(self, image: torch.Tensor, rng: np.random.Generator) -> torch.Tensor:
        return crop_patch(image, random_square_box(image.shape[-2:], rng), self.crop)

    def __getitem__(self, index: int) -> Triplet:
        rng = np.random.default_rng([self.seed, index])
        first = int(rng.integers(len(self.images)))
        source_box = random_square_box(self.images[first].shape[-2:], rng)
        source_patch = crop_patch(self.images[first], source_box, self.crop)
        if rng.random() < self.same_photo_rate:
            other = first
        else:
            other = int((first + rng.integers(1, len(self.images))) % len(self.images))
        reference_patch = self._random_crop(self.images[other], rng)
        # Drawn only when used, so a rate of 0 keeps the item sequences of older runs.
        if other == first and self.view_rate and rng.random() < self.view_rate:
            reference_patch = crop_patch(self.images[first], _view_box(source_box, rng), self.crop)
        if self.reference_flip_rate and rng.random() < self.reference_flip_rate:
            reference_patch = reference_patch.flip(-1)
        source_style = random_style(rng)
        # Drawn only when used, so a rate of 0 keeps the item sequences of older runs.
        if self.natural_source_rate and rng.random() < self.natural_source_rate:
            source_style = RetouchStyle()
        if self.flat_source_rate and rng.random() < self.flat_source_rate:
            source_style = random_flat_style(rng)
        source = apply_style(source_patch, source_style)
        kind = rng.random()
        if kind < self.identical_rate:
            return Triplet(source, source.clone(), source.clone())
        if kind < self.identical_rate + self.same_grade_rate:
            return Triplet(source, apply_style(reference_patch, source_style), source.clone())
        if self.region_rate and rng.random() < self.region_rate:
            if self.unpaired_region_rate and rng.random() < self.unpaired_region_rate:
                return self._unpaired_region_triplet(source, first, source_box, rng)
            return self._region_triplet(source, first, source_box, source_patch, rng)
        target_style = self._target_style(rng, source_patch)
        if self.unpaired_rate and rng.random() < self.unpaired_rate:
            return self._unpaired_triplet(source, first, target_style, rng)
        return Triplet(source, apply_style(reference_patch, target_style), apply_style(source_patch, target_style))

    def _unpaired_triplet(self, source, photo: int, style: RetouchStyle, rng) -> Triplet:
        other = int((photo + rng.integers(1, len(self.images))) % len(self.images))
        if self.natural_source_rate and rng.random() < self.natural_source_rate:
            style = RetouchStyle()
        reference = apply_style(self._random_crop(self.images[other], rng), style)
        return Triplet(source, reference, source.clone(), paired=False)

    def _target_style(self, rng: np.random.Generator, photo: torch.Tensor | None = None):
        """A target grade; ``photo`` (the crop it grades) sets a realistic grade's exposure."""
        # Drawn only when used, so a rate of 0 keeps the item sequences of older runs.
        if self.realistic_style_rate and rng.random() < self.realistic_style_rate:
            return random_realistic_style(rng, photo=photo)
        strong = self.strong_style_rate and rng.random() < self.strong_style_rate
        return random_style(rng, STRONG_RANGES) if strong else random_style(rng)

    def _region_triplet(self, source, photo: int, source_box, source_patch, rng) -> Triplet:
        image = self.images[photo]
        reference_box = random_square_box(image.shape[-2:], rng)
        reference_patch = crop_patch(image, reference_box, self.crop)
        source_weights = self._crop_regions(photo, source_box, DEFAULT_FEATHER)
        reference_weights = self._crop_regions(photo, reference_box)
        styles = [self._target_style(rng, source_patch) for _ in range(REGION_CHANNELS)]
        reference = sum(reference_weights[k] * apply_style(reference_patch, style) for k, style in enumerate(styles))
        target = sum(source_weights[k] * apply_style(source_patch, style) for k, style in enumerate(styles))
        return Triplet(source, reference, target, source_weights, reference_weights)

    def _unpaired_region_triplet(self, source, photo: int, source_box, rng) -> Triplet:
        other = int((photo + rng.integers(1, len(self.images))) % len(self.images))
        reference_box = random_square_box(self.images[other].shape[-2:], rng)
        patch = crop_patch(self.images[other], reference_box, self.crop)
        reference = apply_style(patch, self._target_style(rng, patch))
        return Triplet(source, reference, source.clone(), self._crop_regions(photo, source_box, DEFAULT_FEATHER),
                       self._crop_regions(other, reference_box), paired=False)

    def _crop_regions(self, photo: int, box, feather: float = 0.0) -> torch.Tensor:
        """Weights ``(REGION_CHANNELS, crop, crop)`` of the photo's regions inside the crop ``box``."""
        labels = crop_labels(self.labels[photo], box, self.crop)
        groups = [[k] for k in range(REGION_CHANNELS)]
        return torch.from_numpy(region_weights(labels, groups, (self.crop, self.crop), feather))


def _photo_regions(image: torch.Tensor) -> np.ndarray:
    """The ``slic`` regions (tone and place) of a uint8 ``(3, h, w)`` photo, at its size,
    numbered from the darkest to the brightest (so that regions of two photos pair by tone)."""
    from histocolor.segment.slic import SlicSegmenter

    labels, summary = SlicSegmenter(regions=REGION_CHANNELS).regions_of(image.permute(1, 2, 0).numpy())
    rank = np.empty(len(summary), np.int32)
    rank[np.argsort(summary[:, 0], kind="stable")] = np.arange(len(summary), dtype=np.int32)
    return rank[labels]


def collate(triplets: list[Triplet]) -> Triplet:
    """A batch; when any triplet has regions, the others get empty ones (= the global transfer)."""
    images = [torch.stack([getattr(t, name) for t in triplets]) for name in ("source", "reference", "target")]
    paired = torch.tensor([t.paired for t in triplets])
    if all(t.source_regions is None for t in triplets):
        return Triplet(*images, paired=paired)
    empty = torch.zeros((REGION_CHANNELS, *triplets[0].source.shape[-2:]))
    regions = [
        torch.stack([empty if getattr(t, name) is None else getattr(t, name) for t in triplets])
        for name in ("source_regions", "reference_regions")
    ]
    return Triplet(*images, *regions, paired=paired)
