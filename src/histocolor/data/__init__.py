"""Training data: photo folders graded with random retouch styles, and MIT-Adobe FiveK."""

from histocolor.data.photos import PhotoFolderDataset, Triplet
from histocolor.data.retouch import RetouchStyle, apply_style, random_style

__all__ = ["PhotoFolderDataset", "RetouchStyle", "Triplet", "apply_style", "random_style"]
