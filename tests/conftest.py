import os
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
