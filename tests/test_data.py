import numpy as np
import pytest
import torch

from histocolor.training.data.photos import PhotoFolderDataset, collate
from histocolor.errors import HistocolorError


def test_items_are_deterministic_and_shaped(photo_folder):
    dataset = PhotoFolderDataset([photo_folder], crop=32, seed=3)
    again = PhotoFolderDataset([photo_folder], crop=32, seed=3)
    first, second = dataset[11], again[11]
    for name in ("source", "reference", "target"):
        assert getattr(first, name).shape == (3, 32, 32)
        assert torch.equal(getattr(first, name), getattr(second, name))
        assert 0 <= getattr(first, name).min() and getattr(first, name).max() <= 1
    assert not torch.equal(dataset[12].source, first.source)
    assert not torch.equal(PhotoFolderDataset([photo_folder], crop=32, seed=4)[11].source, first.source)


def test_pair_kinds(photo_folder):
    identical = PhotoFolderDataset([photo_folder], crop=24, identical_rate=1.0, same_grade_rate=0.0)
    item = identical[0]
    assert torch.equal(item.reference, item.source) and torch.equal(item.target, item.source)
    same_grade = PhotoFolderDataset(
        [photo_folder], crop=24, identical_rate=0.0, same_grade_rate=1.0, same_photo_rate=0.0
    )
    item = same_grade[0]
    assert torch.equal(item.target, item.source) and not torch.equal(item.reference, item.source)
    graded = PhotoFolderDataset([photo_folder], crop=24, identical_rate=0.0, same_grade_rate=0.0)
    changed = sum(float((graded[i].target - graded[i].source).abs().mean()) > 0.01 for i in range(20))
    assert changed >= 15


def test_rates_are_respected(photo_folder):
    dataset = PhotoFolderDataset([photo_folder], crop=16, identical_rate=0.3, same_grade_rate=0.0)
    identical = sum(torch.equal(dataset[i].reference, dataset[i].source) for i in range(200))
    assert 40 <= identical <= 80


def test_collate_stacks_a_batch(photo_folder):
    dataset = PhotoFolderDataset([photo_folder], crop=16)
    batch = collate([dataset[i] for i in range(3)])
    assert batch.source.shape == batch.reference.shape == batch.target.shape == (3, 3, 16, 16)


def test_bad_folders(tmp_path, photo_folder):
    with pytest.raises(HistocolorError, match="does not exist"):
        PhotoFolderDataset([tmp_path / "nope"])
    with pytest.raises(HistocolorError, match="at least two"):
        PhotoFolderDataset([tmp_path])


def test_natural_sources_are_left_ungraded(tmp_path):
    from PIL import Image

    colours = [(120, 90, 60), (30, 200, 100)]
    for index, colour in enumerate(colours):
        Image.fromarray(np.full((40, 50, 3), colour, np.uint8)).save(tmp_path / f"flat{index}.png")
    expected = [torch.tensor(c, dtype=torch.float32) / 255.0 for c in colours]

    def ungraded(item) -> bool:
        pixel = item.source[:, 0, 0]
        return any(torch.allclose(pixel, colour, atol=1e-6) for colour in expected)

    natural = PhotoFolderDataset([tmp_path], crop=8, natural_source_rate=1.0, identical_rate=0.0, same_grade_rate=0.0)
    assert all(ungraded(natural[i]) for i in range(30))
    assert any(not torch.equal(natural[i].target, natural[i].source) for i in range(30))
    graded = PhotoFolderDataset([tmp_path], crop=8, natural_source_rate=0.0)
    assert sum(ungraded(graded[i]) for i in range(30)) < 10


def test_strong_styles_change_more(photo_folder):
    def mean_change(rate: float) -> float:
        dataset = PhotoFolderDataset(
            [photo_folder], crop=16, identical_rate=0.0, same_grade_rate=0.0, strong_style_rate=rate
        )
        return float(np.mean([(dataset[i].target - dataset[i].source).abs().mean() for i in range(60)]))

    assert mean_change(1.0) > 1.3 * mean_change(0.0)


def test_region_triplets_grade_each_region_its_own_way(photo_folder):
    from histocolor.training.data.photos import REGION_CHANNELS

    dataset = PhotoFolderDataset([photo_folder], crop=64, identical_rate=0, same_grade_rate=0, region_rate=1.0, seed=5)
    differing = 0
    for index in range(12):
        item = dataset[index]
        assert item.source_regions.shape == item.reference_regions.shape == (REGION_CHANNELS, 64, 64)
        assert torch.allclose(item.source_regions.sum(0), torch.ones(64, 64), atol=1e-4)  # feathered, sums to 1
        assert set(item.reference_regions.unique().tolist()) <= {0.0, 1.0}  # hard: only histograms use them
        used = [k for k in range(REGION_CHANNELS) if (item.source_regions[k] > 0.99).sum() > 20]
        if len(used) < 2:
            continue
        # Inside each region the target is the source under that region's grade: the mean
        # change differs from region to region.
        changes = [
            (item.target - item.source)[:, item.source_regions[k] > 0.99].mean(1) for k in used
        ]
        differing += max(float((a - b).abs().max()) for a in changes for b in changes) > 0.02
    assert differing >= 6
    batch = collate([dataset[0], PhotoFolderDataset([photo_folder], crop=64, seed=5)[0]])
    assert batch.source_regions.shape == (2, REGION_CHANNELS, 64, 64) and batch.source_regions[1].abs().sum() == 0


def test_unpaired_region_triplets_pair_another_photos_regions_by_tone(photo_folder):
    from histocolor.color import rgb_to_lab
    from histocolor.training.data.photos import REGION_CHANNELS

    dataset = PhotoFolderDataset([photo_folder], crop=64, identical_rate=0, same_grade_rate=0, region_rate=1.0,
                                 unpaired_region_rate=1.0, seed=2)
    darker = 0
    for index in range(10):
        item = dataset[index]
        assert not item.paired and torch.equal(item.target, item.source)  # no target: a placeholder
        assert item.reference_regions.shape == (REGION_CHANNELS, 64, 64)
        lightness = rgb_to_lab(item.reference[None])[0, 0]
        means = [float(lightness[item.reference_regions[k] > 0.5].mean()) for k in range(REGION_CHANNELS)
                 if (item.reference_regions[k] > 0.5).sum() > 50]
        darker += means == sorted(means)  # region 0 the darkest, the last the brightest (before the grade)
    assert darker >= 6
    batch = collate([dataset[0], PhotoFolderDataset([photo_folder], crop=64, seed=5)[0]])
    assert batch.paired.tolist() == [False, True]


def test_paper_regime_references_are_other_views_of_the_target(photo_folder):
    """same_photo_rate 1: the reference is another crop (mirrored or not) of the same graded photo."""
    dataset = PhotoFolderDataset([photo_folder], crop=32, seed=1, identical_rate=0.0, same_grade_rate=0.0,
                                 same_photo_rate=1.0, reference_flip_rate=1.0)
    # A rate that never mirrors but still draws its number: every other draw is the same.
    plain = PhotoFolderDataset([photo_folder], crop=32, seed=1, identical_rate=0.0, same_grade_rate=0.0,
                               same_photo_rate=1.0, reference_flip_rate=1e-12)
    for index in range(4):
        item, unflipped = dataset[index], plain[index]
        assert item.paired and not torch.equal(item.reference, item.target)
        # Same draws except the mirror: the flipped reference is the plain one mirrored.
        assert torch.equal(item.reference, unflipped.reference.flip(-1))
        # A view of the target's photo under the target's grade: far closer in colour than the source.
        gap = (item.reference.mean((1, 2)) - item.target.mean((1, 2))).abs().sum()
        assert gap < 0.1 + (item.source.mean((1, 2)) - item.target.mean((1, 2))).abs().sum()


def test_unpaired_triplets_take_another_photo_and_have_no_target(photo_folder):
    dataset = PhotoFolderDataset([photo_folder], crop=32, seed=2, identical_rate=0.0, same_grade_rate=0.0,
                                 same_photo_rate=1.0, unpaired_rate=1.0)
    items = [dataset[index] for index in range(6)]
    assert all(not item.paired and torch.equal(item.target, item.source) for item in items)
    batch = collate(items)
    assert batch.paired.dtype == torch.bool and not batch.paired.any()
    # The reference comes from another photo: never a crop of the source's own (graded) photo.
    related = PhotoFolderDataset([photo_folder], crop=32, seed=2, identical_rate=0.0, same_grade_rate=0.0,
                                 same_photo_rate=1.0)
    assert all(not torch.equal(item.reference, twin.reference) for item, twin in zip(items, map(related.__getitem__, range(6))))


def test_view_references_are_crops_of_the_target_itself(photo_folder):
    """view_rate 1: the same-photo reference is a sub-square of the source's own crop, graded as the target."""
    dataset = PhotoFolderDataset([photo_folder], crop=32, seed=3, identical_rate=0.0, same_grade_rate=0.0,
                                 same_photo_rate=1.0, view_rate=1.0, realistic_style_rate=1.0,
                                 flat_source_rate=1.0)
    plain = PhotoFolderDataset([photo_folder], crop=32, seed=3, identical_rate=0.0, same_grade_rate=0.0,
                               same_photo_rate=1.0, realistic_style_rate=1.0, flat_source_rate=1.0)
    closer = 0
    for index in range(8):
        item, other = dataset[index], plain[index]
        assert item.paired
        gap = (item.reference.mean((1, 2)) - item.target.mean((1, 2))).abs().sum()
        closer += bool(gap < (other.reference.mean((1, 2)) - other.target.mean((1, 2))).abs().sum() + 1e-6)
    assert closer >= 6

