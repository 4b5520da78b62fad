"""Held-out graded evaluation sets, with a ground truth.

Three kinds:

* ``other`` (:func:`build_graded_set`): reference = style(other photo), truth = style(source);
  weak relevance, the grade only.
* ``view`` (:func:`build_view_set`): the paper's situation, strong relevance. The source is
  the photo under one grade (or none), the reference another view (crop, mirror, scale) of
  the photo under a second grade, and the truth is the whole photo under that second grade.

* ``realistic`` (:func:`build_realistic_set`): the paper's situation with truths that change
  tones as expert renders do. The source is the photo or a raw-like render of it (darker,
  flatter, duller), the truth the photo under a realistic grade (exposure of up to two stops,
  shadows and highlights, strong curves, clarity, vibrance, white balance), the reference
  another view of the truth. Its truths keep a gradient SSIM to their sources spread over
  about 0.6-0.99, as real expert renders do (docs/BENCHMARKS.md).

Each pair also gets a *swapped* reference (the same reference photo or view under another
style of the family), for the reference check: a model that uses the reference must do worse
with it.

The styles here are built with other tools than the training styles (a channel mixer,
per-channel tone curves through random control points, Lab toning and chroma scaling), so
a model cannot score by having memorised its own training grades.
"""

from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from histocolor.color import lab_to_rgb, rgb_to_lab
from histocolor.dtypes import to_uint
from histocolor.training.data.photos import load_photo
from histocolor.training.data.retouch import apply_style, random_flat_style, random_realistic_style
from histocolor.imageio import write_image


class EvaluationStyle:
    """A random grade of the evaluation family; call it on ``(3, H, W)`` RGB in [0, 1]."""

    def __init__(self, rng: np.random.Generator):
        mixer = np.eye(3) + rng.normal(0.0, 0.08, (3, 3))
        self.mixer = torch.tensor(mixer / mixer.sum(axis=1, keepdims=True), dtype=torch.float32)
        # Monotone tone curves through (0, 0), two random inner points and (1, 1).
        self.curves = []
        for _ in range(3):
            inner = np.sort(rng.uniform(0.15, 0.85, 2))
            lifted = np.clip(inner + rng.normal(0.0, 0.08, 2), 0.02, 0.98)
            self.curves.append((np.r_[0.0, inner, 1.0], np.r_[0.0, np.sort(lifted), 1.0]))
        self.chroma = float(np.exp(rng.uniform(np.log(0.6), np.log(1.5))))
        self.toning = rng.normal(0.0, 6.0, (2, 2))  # (a, b) offsets in the shadows and highlights

    def __call__(self, rgb: torch.Tensor) -> torch.Tensor:
        mixed = torch.einsum("ij,jhw->ihw", self.mixer, rgb).clamp(0.0, 1.0)
        curved = torch.stack(
            [torch.from_numpy(np.interp(c.numpy(), *curve).astype(np.float32)) for c, curve in zip(mixed, self.curves)]
        )
        lab = rgb_to_lab(curved.unsqueeze(0))[0]
        weight = (lab[0:1] / 100.0).clamp(0.0, 1.0)
        shadows, highlights = (torch.tensor(t, dtype=torch.float32).view(2, 1, 1) for t in self.toning)
        lab[1:] = lab[1:] * self.chroma + (1 - weight) * shadows + weight * highlights
        return lab_to_rgb(lab.unsqueeze(0))[0].clamp(0.0, 1.0)


def _to_uint8(rgb: torch.Tensor) -> np.ndarray:
    return to_uint(rgb.permute(1, 2, 0).numpy(), np.uint8)


def build_graded_set(photos, out, styles_per_photo: int = 2, seed: int = 0, max_side: int = 512) -> Path:
    """Write ``graded.csv`` (source,reference,truth,swapped_reference) and its images into ``out``.

    Returns the CSV's path.
    """
    photos = [Path(p) for p in photos]
    if len(photos) < 2:
        raise ValueError("a graded set needs at least two photos")
    out = Path(out)
    rng = np.random.default_rng(seed)
    swap_rng = np.random.default_rng([seed, 1])  # its own stream: the pairs do not depend on it
    images = [load_photo(path, max_side).float() / 255.0 for path in photos]
    lines = ["source,reference,truth,swapped_reference"]
    for index, source in enumerate(images):
        for variant in range(styles_per_photo):
            style = EvaluationStyle(rng)
            other = images[(index + 1 + int(rng.integers(len(images) - 1))) % len(images)]
            stem = f"{photos[index].stem}-{variant}"
            write_image(out / f"{stem}-source.png", _to_uint8(source))
            write_image(out / f"{stem}-reference.png", _to_uint8(style(other)))
            write_image(out / f"{stem}-truth.png", _to_uint8(style(source)))
            write_image(out / f"{stem}-swapped.png", _to_uint8(EvaluationStyle(swap_rng)(other)))
            lines.append(f"{stem}-source.png,{stem}-reference.png,{stem}-truth.png,{stem}-swapped.png")
    (out / "graded.csv").write_text("\n".join(lines) + "\n")
    return out / "graded.csv"


def another_view(rgb: torch.Tensor, rng: np.random.Generator, crop=(0.5, 1.0), mirror: float = 0.5) -> torch.Tensor:
    """Another view of ``(3, H, W)``: a crop of ``crop`` (shares, 50-100 %) of each side, mirrored
    with probability ``mirror``, shown at 60-100 % of the crop's size."""
    height, width = rgb.shape[-2:]
    crop_height, crop_width = (max(8, int(side * rng.uniform(*crop))) for side in (height, width))
    top, left = int(rng.integers(0, height - crop_height + 1)), int(rng.integers(0, width - crop_width + 1))
    view = rgb[:, top : top + crop_height, left : left + crop_width]
    if rng.random() < mirror:
        view = view.flip(-1)
    scale = rng.uniform(0.6, 1.0)
    size = (max(8, round(crop_height * scale)), max(8, round(crop_width * scale)))
    return F.interpolate(view[None], size=size, mode="bilinear", antialias=True, align_corners=False)[0].clamp(0, 1)


def _write_view_set(photos, out, name: str, variants: int, rng: np.random.Generator, max_side: int, grades,
                    crop=(0.5, 1.0), mirror: float = 0.5) -> Path:
    """Write ``name.csv`` (source,reference,truth,swapped_reference) and its images into ``out``:
    per photo and variant, ``grades(photo)`` gives ``(source, truth, swapped)``; the reference
    and the swapped reference are other views (:func:`another_view`) of the truth and of swapped."""
    photos = [Path(p) for p in photos]
    if not photos:
        raise ValueError(f"a {name} set needs at least one photo")
    out = Path(out)
    lines = ["source,reference,truth,swapped_reference"]
    for path in photos:
        photo = load_photo(path, max_side).float() / 255.0
        for variant in range(variants):
            source, truth, swapped = grades(photo)
            stem = f"{path.stem}-{variant}"
            write_image(out / f"{stem}-source.png", _to_uint8(source))
            write_image(out / f"{stem}-reference.png", _to_uint8(another_view(truth, rng, crop, mirror)))
            write_image(out / f"{stem}-truth.png", _to_uint8(truth))
            write_image(out / f"{stem}-swapped.png", _to_uint8(another_view(swapped, rng, crop, mirror)))
            lines.append(f"{stem}-source.png,{stem}-reference.png,{stem}-truth.png,{stem}-swapped.png")
    (out / f"{name}.csv").write_text("\n".join(lines) + "\n")
    return out / f"{name}.csv"


def build_view_set(photos, out, styles_per_photo: int = 3, seed: int = 0, max_side: int = 512,
                   natural_source_rate: float = 0.5) -> Path:
    """Write ``views.csv`` (source,reference,truth,swapped_reference) and its images into ``out``.

    Per photo and variant: source = s1(photo), with s1 no grade for ``natural_source_rate`` of
    them; reference = a view of s2(photo); truth = s2(photo); swapped = a view of s3(photo).
    s1, s2 and s3 are drawn from the evaluation family. Returns the CSV's path.
    """
    rng = np.random.default_rng([seed, 2])

    def grades(photo):
        natural = rng.random() < natural_source_rate
        source_style, style, swapped_style = (EvaluationStyle(rng) for _ in range(3))
        return photo if natural else source_style(photo), style(photo), swapped_style(photo)

    return _write_view_set(photos, out, "views", styles_per_photo, rng, max_side, grades)


# The real expert pairs' references: the render mirrored and cropped to about 80 % of each side.
_REAL_CROP = (0.7, 0.9)


def build_realistic_set(photos, out, styles_per_photo: int = 6, seed: int = 0, max_side: int = 512,
                        flat_source_rate: float = 0.9) -> Path:
    """Write ``realistic.csv`` (source,reference,truth,swapped_reference) and its images into ``out``.

    Per photo and variant: source = the photo, or for ``flat_source_rate`` of them a raw-like
    render of it; truth = the photo under a realistic grade; reference = another view of the
    truth (mirrored, 70-90 % of each side: the protocol of the real expert pairs this set stands
    in for, docs/BENCHMARKS.md); swapped = such a view of the photo under another realistic
    grade. Returns the CSV's path.
    """
    rng = np.random.default_rng([seed, 3])

    def grades(photo):
        source = apply_style(photo, random_flat_style(rng)) if rng.random() < flat_source_rate else photo
        truth = apply_style(photo, random_realistic_style(rng, photo=photo))
        return source, truth, apply_style(photo, random_realistic_style(rng, photo=photo))

    return _write_view_set(photos, out, "realistic", styles_per_photo, rng, max_side, grades, _REAL_CROP, 1.0)
