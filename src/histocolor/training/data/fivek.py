"""MIT-Adobe FiveK as the paper uses it: two versions of one photo, and a reference.

The root holds the originals (``input/`` or ``raw/``) and the five expert renders
(``expertA/`` .. ``expertE/``), one file per photo with the same stem in each folder. A
training triplet takes version v1 of photo P as the source and version v2 of P as the
target; the reference is version v2 of another photo, or of another crop of P.
"""

from pathlib import Path

import numpy as np
import torch

from histocolor.training.data.photos import PHOTO_EXTENSIONS, Triplet, crop_patch, load_photo, random_square_box
from histocolor.errors import HistocolorError

VERSION_FOLDERS = ("input", "raw", "expertA", "expertB", "expertC", "expertD", "expertE")


def _index(folder: Path) -> dict[str, Path]:
    return {p.stem: p for p in sorted(folder.iterdir()) if p.suffix.lower() in PHOTO_EXTENSIONS}


class FiveKDataset(torch.utils.data.Dataset):
    """Deterministic FiveK triplets (item ``i`` depends on ``seed`` and ``i`` only).

    Photos are read when an item needs them (FiveK is too large to hold in memory) and
    shrunk so their long side is at most ``max_side``; source and target share one crop.
    """

    def __init__(
        self,
        root,
        crop: int = 128,
        length: int = 100_000,
        seed: int = 0,
        same_photo_rate: float = 0.2,
        max_side: int = 384,
    ):
        root = Path(root)
        folders = [root / name for name in VERSION_FOLDERS if (root / name).is_dir()]
        if len(folders) < 2:
            raise HistocolorError(
                f"'{root}' is not a FiveK tree: it needs at least two of {', '.join(VERSION_FOLDERS)}"
            )
        indexes = [_index(folder) for folder in folders]
        self.stems = sorted(set.intersection(*(set(index) for index in indexes)))
        if len(self.stems) < 2:
            raise HistocolorError(f"'{root}' has fewer than two photos present in every version folder")
        self.versions = [[index[stem] for index in indexes] for stem in self.stems]
        self.crop, self.length, self.seed = crop, length, seed
        self.same_photo_rate, self.max_side = same_photo_rate, max_side

    def __len__(self) -> int:
        return self.length

    def __getitem__(self, index: int) -> Triplet:
        rng = np.random.default_rng([self.seed, index])
        photo = int(rng.integers(len(self.stems)))
        first, second = rng.choice(len(self.versions[photo]), size=2, replace=False)
        source_image = load_photo(self.versions[photo][first], self.max_side)
        target_image = load_photo(self.versions[photo][second], self.max_side)
        if source_image.shape != target_image.shape:
            raise HistocolorError(
                f"versions of '{self.stems[photo]}' differ in size: {source_image.shape} vs {target_image.shape}"
            )
        box = random_square_box(source_image.shape[-2:], rng)
        if rng.random() < self.same_photo_rate:
            reference_image = target_image
        else:
            other = int((photo + rng.integers(1, len(self.stems))) % len(self.stems))
            reference_image = load_photo(self.versions[other][second], self.max_side)
        reference_box = random_square_box(reference_image.shape[-2:], rng)
        return Triplet(
            crop_patch(source_image, box, self.crop),
            crop_patch(reference_image, reference_box, self.crop),
            crop_patch(target_image, box, self.crop),
        )


class MixedDataset(torch.utils.data.Dataset):
    """Items taken in turn from several datasets (item i from dataset i mod n)."""

    def __init__(self, datasets):
        self.datasets = list(datasets)

    def __len__(self) -> int:
        return min(len(d) for d in self.datasets) * len(self.datasets)

    def __getitem__(self, index: int) -> Triplet:
        return self.datasets[index % len(self.datasets)][index // len(self.datasets)]
