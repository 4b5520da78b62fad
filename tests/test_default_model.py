"""The shipped default model: present, small, used by default, and well behaved."""

import numpy as np
import pytest
from PIL import Image

from histocolor.cli import main
from histocolor.metrics import ciede2000
from histocolor.model import HistogramAnalogy
from histocolor.transfer import DEFAULT_WEIGHTS, ColorTransfer

from conftest import SAMPLES


def test_weights_are_shipped_small_and_documented():
    files = {path.name: path.stat().st_size for path in DEFAULT_WEIGHTS.iterdir()}
    assert {"config.json", "model.safetensors", "MODEL_CARD.md"} <= set(files)
    assert sum(files.values()) <= 20 * 1024 * 1024
    model = HistogramAnalogy.from_pretrained(DEFAULT_WEIGHTS)
    assert model.config.head == "ctn"


def test_the_command_uses_the_shipped_network_by_default(tmp_path, sample_pair):
    output = tmp_path / "result.png"
    assert main(["transfer", str(SAMPLES / "source.jpg"), str(SAMPLES / "reference.jpg"), "-o", str(output)]) == 0
    result = np.asarray(Image.open(output))
    source, reference = sample_pair
    expected = ColorTransfer("analogy", weights=DEFAULT_WEIGHTS)(source, reference).image
    assert np.array_equal(result, expected)
    # The network changes the photo, and not the way MKL does.
    assert np.abs(result.astype(int) - source).mean() > 1.0
    assert np.abs(result.astype(int) - ColorTransfer("mkl")(source, reference).image).mean() > 1.0


@pytest.mark.parametrize("which", [0, 1])
def test_reference_equal_to_source_leaves_it_alone(sample_pair, which):
    photo = sample_pair[which]
    result = ColorTransfer("analogy")(photo, photo).image
    assert ciede2000(result, photo) < 0.5
