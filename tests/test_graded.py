import numpy as np
import torch

from histocolor.training.data.graded import EvaluationStyle, another_view, build_graded_set, build_view_set
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


def test_view_set_references_are_views_of_the_truth(tmp_path):
    from PIL import Image

    # Flat photos: any view of a graded flat photo has the graded photo's colour exactly.
    photos = []
    for index, colour in enumerate([(200, 120, 60), (40, 90, 160)]):
        photos.append(tmp_path / f"flat{index}.png")
        Image.fromarray(np.full((48, 64, 3), colour, np.uint8)).save(photos[-1])
    csv_path = build_view_set(photos, tmp_path / "views", styles_per_photo=2, seed=5)
    pairs = load_set(csv_path)
    assert len(pairs) == 4
    for pair in pairs:
        source, truth = read_image(pair.source).rgb, read_image(pair.truth).rgb
        reference, swapped = read_image(pair.reference).rgb, read_image(pair.swapped_reference).rgb
        assert truth.shape == source.shape and reference.shape[0] <= truth.shape[0]
        truth_colour = truth.reshape(-1, 3).mean(0)
        assert np.abs(reference.reshape(-1, 3).mean(0) - truth_colour).max() < 1.0
        assert np.abs(swapped.reshape(-1, 3).mean(0) - truth_colour).max() > 2.0
    again = load_set(build_view_set(photos, tmp_path / "again", 2, seed=5))
    assert all(np.array_equal(read_image(a.reference).rgb, read_image(b.reference).rgb) for a, b in zip(again, pairs))


def test_another_view_is_a_crop_mirrored_or_not():
    image = torch.rand(3, 40, 60, generator=torch.Generator().manual_seed(1))
    rng = np.random.default_rng(0)
    for _ in range(5):
        view = another_view(image, rng)
        assert 8 <= view.shape[1] <= 40 and 8 <= view.shape[2] <= 60
        assert 0.0 <= float(view.min()) and float(view.max()) <= 1.0
