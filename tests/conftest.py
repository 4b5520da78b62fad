import functools
import os
import runpy
from pathlib import Path

import numpy as np
import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]
SAMPLES = ROOT / "resources" / "samples"
SHARED = Path(os.environ.get("HISTOCOLOR_SHARED", ROOT.parent / "shared"))
PHOTOS = SHARED / "data" / "photos"
DPST = SHARED / "data" / "dpst-dev"

torch.set_num_threads(min(2, torch.get_num_threads()))


def random_lab(batch, height, width, seed=0):
    """Uniformly random Lab images ``(batch, 3, height, width)`` (L in [0, 100], a and b in [-60, 60])."""
    generator = torch.Generator().manual_seed(seed)
    lab = torch.rand(batch, 3, height, width, generator=generator)
    return lab * torch.tensor([100.0, 120.0, 120.0]).view(3, 1, 1) - torch.tensor([0.0, 60.0, 60.0]).view(3, 1, 1)


def randomise_heads(model):
    """Small random residual heads, so an untrained CTN changes its input."""
    torch.manual_seed(1)
    for head in model.ctn.heads:
        torch.nn.init.normal_(head.weight, std=0.05)


def parameters_without_gradient(model, result) -> list[str]:
    """Back-propagates a loss on every output of ``result`` (a CTNOutput of ``model``); the names
    of the parameters it did not reach."""
    loss = sum((t - t.detach() - 1).square().mean() for t in [result.output, *result.intermediate])
    loss.backward()
    return [name for name, p in model.named_parameters() if p.grad is None or not p.grad.abs().sum() > 0]


@functools.cache
def benchmark_module() -> dict:
    """The namespace of ``benchmarks/benchmark.py`` (developer tools, not installed)."""
    return runpy.run_path(str(ROOT / "benchmarks" / "benchmark.py"))


def require(path: Path) -> Path:
    """Skip (with the reason) when the shared development data is not next to the project."""
    if not path.exists():
        pytest.skip(f"needs {path} (the shared development data), absent here")
    return path


@pytest.fixture
def rng():
    return np.random.default_rng(1234)


@pytest.fixture(scope="session")
def sample_pair():
    from histocolor.imageio import read_image

    return read_image(SAMPLES / "source.jpg").rgb, read_image(SAMPLES / "reference.jpg").rgb


@pytest.fixture(scope="session")
def tiny_weights(tmp_path_factory):
    """A small random network with non-zero residual heads, saved as a weights directory."""
    from histocolor.model import AnalogyConfig, HistogramAnalogy

    torch.manual_seed(0)
    model = HistogramAnalogy(AnalogyConfig(hen_widths=(8, 8, 8, 8), feature_size=16, ctn_width=8, ctn_depth=2))
    for head in model.ctn.heads:
        torch.nn.init.normal_(head.weight, std=0.02)
    directory = tmp_path_factory.mktemp("weights")
    model.save_pretrained(directory)
    return directory


@pytest.fixture(scope="session")
def photo_folder(tmp_path_factory):
    """Six small synthetic 'photos' (smooth colour fields with texture) as JPEG files."""
    from PIL import Image

    folder = tmp_path_factory.mktemp("photos")
    generator = np.random.default_rng(7)
    y, x = np.mgrid[0:60, 0:80] / 80.0
    for index in range(6):
        base = generator.random((3, 1, 1))
        field = base + 0.4 * np.sin(6 * x * generator.random() + y * 4 * generator.random())
        noise = 0.05 * generator.standard_normal((3, 60, 80))
        rgb = np.clip((field + noise).transpose(1, 2, 0), 0, 1)
        Image.fromarray((rgb * 255).astype(np.uint8)).save(folder / f"photo{index}.jpg", quality=95)
    return folder


def _uint8(rgb: torch.Tensor) -> np.ndarray:
    return (rgb.permute(1, 2, 0).numpy() * 255.0).round().astype(np.uint8)


@pytest.fixture(scope="session")
def held_out_views(sample_pair):
    """The paper's situation on the two sample photos (both held out of training), with a truth:
    ``(source, reference, truth)`` uint8 triples, six per photo. truth = a grade of the photo from
    the evaluation family (not the training one); reference = another view of the truth (a crop,
    mirrored half the time, resized)."""
    from histocolor.training.data.graded import EvaluationStyle, another_view

    views = []
    for photo in sample_pair:
        pixels = torch.from_numpy(photo).permute(2, 0, 1).float() / 255.0
        rng = np.random.default_rng(3)
        for _ in range(6):
            truth = EvaluationStyle(rng)(pixels)
            views.append((photo, _uint8(another_view(truth, rng)), _uint8(truth)))
    return views


@pytest.fixture(scope="session")
def held_out_region_views(sample_pair):
    """Region-wise views with a truth: each photo cut into its three ``slic`` regions, each region
    graded apart (evaluation family, feathered seams); the reference is a mirrored crop of the
    truth, its labels cropped alike. ``(source, source_labels, reference, reference_labels, truth)``,
    four per photo."""
    from histocolor.training.data.graded import EvaluationStyle
    from histocolor.regions import region_weights
    from histocolor.segment.slic import SlicSegmenter

    views = []
    for photo in sample_pair:
        labels, _ = SlicSegmenter(regions=3).regions_of(photo)
        pixels = torch.from_numpy(photo).permute(2, 0, 1).float() / 255.0
        count = int(labels.max()) + 1
        weights = torch.from_numpy(region_weights(labels, [[k] for k in range(count)], photo.shape[:2], 0.01))
        rng = np.random.default_rng(7)
        height, width = labels.shape
        for _ in range(4):
            grades = [EvaluationStyle(rng)(pixels) for _ in range(count)]
            truth = _uint8(sum(w[None] * g for w, g in zip(weights, grades)) / weights.sum(0, keepdim=True).clamp_min(1e-6))
            crop_height, crop_width = int(height * rng.uniform(0.5, 1.0)), int(width * rng.uniform(0.5, 1.0))
            top, left = int(rng.integers(0, height - crop_height + 1)), int(rng.integers(0, width - crop_width + 1))
            box = (slice(top, top + crop_height), slice(left, left + crop_width))
            reference = np.ascontiguousarray(truth[box][:, ::-1])
            views.append((photo, labels, reference, np.ascontiguousarray(labels[box][:, ::-1]), truth))
    return views


@pytest.fixture(scope="session")
def alignment_alone(tmp_path_factory):
    """Weights of the shipped model without its learned part: its settings in a fresh network,
    whose residual heads start at zero, so it returns its alignment. The trained CTN must beat it."""
    from histocolor.model import HistogramAnalogy, from_pretrained
    from histocolor.model.io import DEFAULT_WEIGHTS

    folder = tmp_path_factory.mktemp("alignment-alone")
    HistogramAnalogy(from_pretrained(DEFAULT_WEIGHTS).config).save_pretrained(folder)
    return folder
