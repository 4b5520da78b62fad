import numpy as np
import torch

from histocolor.data.graded import EvaluationStyle, build_graded_set
from histocolor.evaluate import load_set
from histocolor.imageio import read_image


def test_graded_set_is_reproducible_and_graded(photo_folder, tmp_path):
    photos = sorted(photo_folder.iterdir())[:3]
    first = build_graded_set(photos, tmp_path / "a", styles_per_photo=2, seed=4)
    again = build_graded_set(photos, tmp_path / "b", styles_per_photo=2, seed=4)
    pairs = load_set(first)
    assert len(pairs) == 6 and all(p.truth is not None for p in pairs)
    for pair, twin in zip(pairs, load_set(again)):
        truth, source = read_image(pair.truth).rgb, read_image(pair.source).rgb
        assert truth.shape == source.shape and np.abs(truth.astype(int) - source).mean() > 2
        assert np.array_equal(truth, read_image(twin.truth).rgb)
        # The swapped reference shows the same photo as the reference, under another grade.
        reference, swapped = read_image(pair.reference).rgb, read_image(pair.swapped_reference).rgb
        assert swapped.shape == reference.shape and np.abs(swapped.astype(int) - reference).mean() > 2
        assert np.array_equal(swapped, read_image(twin.swapped_reference).rgb)


def test_evaluation_styles_are_global_colour_maps():
    style = EvaluationStyle(np.random.default_rng(1))
    image = torch.rand(3, 8, 8, generator=torch.Generator().manual_seed(0))
    permutation = torch.randperm(64, generator=torch.Generator().manual_seed(2))
    shuffled = image.flatten(1)[:, permutation].view(3, 8, 8)
    assert torch.allclose(style(shuffled).flatten(1), style(image).flatten(1)[:, permutation], atol=1e-5)
