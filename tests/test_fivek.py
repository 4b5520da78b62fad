import numpy as np
import pytest
import torch
from PIL import Image

from histocolor.training.data.fivek import FiveKDataset, MixedDataset
from histocolor.training.data.photos import PhotoFolderDataset
from histocolor.errors import HistocolorError

EXPERT_GAINS = {"input": 1.0, "expertA": 1.3, "expertB": 0.8, "expertC": 1.1}


@pytest.fixture(scope="module")
def fivek_tree(tmp_path_factory):
    """A tiny FiveK layout: four photos, each in the original and three 'expert' renders."""
    root = tmp_path_factory.mktemp("fivek")
    generator = np.random.default_rng(2)
    photos = {f"a{n:04d}": generator.random((40, 56, 3)) * 0.7 for n in range(4)}
    for folder, gain in EXPERT_GAINS.items():
        (root / folder).mkdir()
        for stem, pixels in photos.items():
            extension = ".png" if folder != "expertC" else ".tif"
            Image.fromarray((np.clip(pixels * gain, 0, 1) * 255).astype(np.uint8)).save(
                root / folder / f"{stem}{extension}"
            )
    (root / "expertA" / "only-here.png").write_bytes((root / "expertA" / "a0000.png").read_bytes())
    return root


def test_pairs_are_two_versions_of_one_photo(fivek_tree):
    dataset = FiveKDataset(fivek_tree, crop=24, seed=1, same_photo_rate=0.0)
    assert len(dataset.stems) == 4  # only stems present in every version folder
    for index in range(10):
        item = dataset[index]
        assert item.source.shape == item.target.shape == item.reference.shape == (3, 24, 24)
        # Same crop of the same photo: source and target differ by a global gain only.
        ratio = (item.target + 1e-3) / (item.source + 1e-3)
        assert float(ratio.std()) < 0.25
    again = FiveKDataset(fivek_tree, crop=24, seed=1, same_photo_rate=0.0)
    assert torch.equal(dataset[3].reference, again[3].reference)


def test_bad_trees_are_refused(tmp_path):
    (tmp_path / "input").mkdir()
    with pytest.raises(HistocolorError, match="not a FiveK tree"):
        FiveKDataset(tmp_path)


def test_mixed_datasets_alternate(fivek_tree, photo_folder):
    photos = PhotoFolderDataset([photo_folder], crop=24, length=10)
    experts = FiveKDataset(fivek_tree, crop=24, length=10)
    mixed = MixedDataset([photos, experts])
    assert len(mixed) == 20
    assert torch.equal(mixed[0].source, photos[0].source) and torch.equal(mixed[3].source, experts[1].source)


@pytest.mark.train
def test_training_on_fivek_alone(tmp_path, fivek_tree):
    from histocolor.model import from_pretrained
    from histocolor.training.train import TrainConfig, train

    model = {"hen_widths": [4, 4, 4, 4], "feature_size": 8, "head": "lut", "lut_bases": 2, "lut_size": 5}
    config = TrainConfig(model=model, steps=2, batch_size=2, crop=24, checkpoint_every=1)
    out = train(config, [], tmp_path / "run", fivek=fivek_tree, progress_bar=False)
    assert from_pretrained(out).config.head == "lut"
