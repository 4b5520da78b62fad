"""The shipped default model: present, small, used by default, and it takes the reference's colours.

A model that returns the source (or moves colours the wrong way) fails here: the checks
measure direction and size of the change against the reference and, on a held-out pair
with a known truth, against doing nothing.
"""

import numpy as np
import pytest
from PIL import Image

from histocolor.cli import main
from histocolor.metrics import ciede2000, gradient_ssim, psnr, sliced_wasserstein
from histocolor.model import HistogramAnalogy
from histocolor.model.io import DEFAULT_WEIGHTS
from histocolor.engine import ColorTransfer

from conftest import SAMPLES


@pytest.fixture(scope="module")
def network():
    return ColorTransfer("analogy", weights=DEFAULT_WEIGHTS)


@pytest.fixture(scope="module")
def network_alone():
    """The network itself: the held-out views share pixels with their sources, which the default
    would match (tests/test_shared_pixels.py); here the network is under test."""
    return ColorTransfer("analogy", weights=DEFAULT_WEIGHTS, match="off")


def test_weights_are_shipped_small_and_documented():
    files = {path.name: path.stat().st_size for path in DEFAULT_WEIGHTS.iterdir()}
    assert {"config.json", "model.safetensors", "MODEL_CARD.md"} <= set(files)
    assert sum(files.values()) <= 20 * 1024 * 1024
    HistogramAnalogy.from_pretrained(DEFAULT_WEIGHTS)


@pytest.mark.slow
def test_the_command_uses_the_shipped_network_by_default(tmp_path, sample_pair, network):
    output = tmp_path / "result.png"
    assert main(["transfer", str(SAMPLES / "source.jpg"), str(SAMPLES / "reference.jpg"), "-o", str(output)]) == 0
    source, reference = sample_pair
    assert np.array_equal(np.asarray(Image.open(output)), network(source, reference).image)


@pytest.mark.slow
def test_the_sample_pair_takes_the_references_colours_and_keeps_its_structure(sample_pair, network):
    source, reference = sample_pair
    result = network(source, reference).image
    # Issue 11's bar for the demo pair: at most 30 % of the source's colour distance, edges kept.
    assert sliced_wasserstein(result, reference) <= 0.3 * sliced_wasserstein(source, reference)
    assert gradient_ssim(result, source) >= 0.85


@pytest.mark.parametrize("which", [0, 1])
def test_reference_equal_to_source_leaves_it_alone(sample_pair, which, network):
    photo = sample_pair[which]
    assert ciede2000(network(photo, photo).image, photo) < 0.5


@pytest.fixture(scope="module")
def held_out_results(held_out_views, network_alone):
    """The shipped network's results on the held-out views (computed once for the tests below)."""
    return [network_alone(source, reference).image for source, reference, _ in held_out_views]


@pytest.mark.slow
def test_a_held_out_photo_takes_the_grade_of_another_view_of_itself(held_out_views, held_out_results):
    """The paper's situation on photos kept out of training: the truth is known."""
    ours = np.mean([psnr(result, truth) for result, (_, _, truth) in zip(held_out_results, held_out_views)])
    nothing = np.mean([psnr(source, truth) for source, _, truth in held_out_views])
    assert ours > nothing + 3.0


@pytest.mark.slow
def test_the_learned_part_beats_its_alignment_on_held_out_views(held_out_views, held_out_results, alignment_alone):
    """The CTN must add to the alignment it starts from, not only keep it: with its residual
    heads at zero (the alignment alone) the same views come out further from the truth."""
    aligned = ColorTransfer("analogy", weights=alignment_alone, match="off")
    ours = np.mean([ciede2000(result, truth) for result, (_, _, truth) in zip(held_out_results, held_out_views)])
    alone = np.mean([ciede2000(aligned(source, reference).image, truth) for source, reference, truth in held_out_views])
    assert ours < 0.995 * alone


@pytest.mark.slow
def test_a_different_reference_gives_a_clearly_different_result(sample_pair, network):
    source, reference = sample_pair
    warm = np.clip(reference.astype(np.float32) * np.array([1.4, 1.0, 0.6]), 0, 255).astype(np.uint8)
    first, second = network(source, reference).image, network(source, warm).image
    assert ciede2000(first, second) > 5.0
