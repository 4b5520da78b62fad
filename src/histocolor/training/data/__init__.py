"""Training data: photo folders graded with random retouch styles, and MIT-Adobe FiveK; and the
graded evaluation sets (:mod:`~histocolor.training.data.graded`) the benchmarks and tests build."""

from histocolor.training.data.photos import PhotoFolderDataset, Triplet
from histocolor.training.data.retouch import RetouchStyle, apply_style, random_style

__all__ = ["PhotoFolderDataset", "RetouchStyle", "Triplet", "apply_style", "random_style"]
