import numpy as np
import pytest
from PIL import Image

from histocolor.errors import HistocolorError
from histocolor.regions import DPST_PALETTE, load_label_map

from conftest import DPST, require


def test_integer_masks_keep_their_labels(tmp_path):
    labels = np.arange(12, dtype=np.uint8).reshape(3, 4) % 3
    Image.fromarray(labels).save(tmp_path / "mask.png")
    assert np.array_equal(load_label_map(tmp_path / "mask.png"), labels)


def test_antialiased_palette_masks_snap_to_nine_labels(tmp_path):
    rgb = np.zeros((10, 50, 3), np.uint8)
    rgb[:, :25] = DPST_PALETTE[0]  # blue
    rgb[:, 25:] = DPST_PALETTE[4]  # red
    rgb[:, 24:26] = (120, 0, 140)  # an antialiased seam, then snapped to one side or the other
    Image.fromarray(rgb).save(tmp_path / "mask.png")
    labels = load_label_map(tmp_path / "mask.png")
    assert set(np.unique(labels[:, :24]).tolist()) == {0} and set(np.unique(labels[:, 26:]).tolist()) == {4}
    assert len(np.unique(labels)) == 2


def test_other_colour_masks_get_one_label_per_colour(tmp_path):
    rgb = np.zeros((4, 6, 3), np.uint8)
    rgb[:, :2], rgb[:, 2:4], rgb[:, 4:] = (10, 20, 30), (200, 100, 50), (90, 90, 10)
    Image.fromarray(rgb).save(tmp_path / "mask.png")
    labels = load_label_map(tmp_path / "mask.png")
    assert len(np.unique(labels)) == 3 and len(np.unique(labels[:, :2])) == 1


def test_real_dpst_masks_have_few_labels():
    path = require(DPST) / "segmentation" / "in1.png"
    labels = load_label_map(path)
    # in1's mask is drawn in three palette colours, green, black and white (17 %, 50 % and 31 % of its
    # pixels; the rest are antialiased seams): exactly their palette indices, each where it is drawn.
    assert set(np.unique(labels).tolist()) == {1, 2, 3}
    rgb = np.asarray(Image.open(path).convert("RGB"))
    for index in (1, 2, 3):
        drawn = (rgb == DPST_PALETTE[index]).all(-1)
        assert drawn.mean() > 0.15 and (labels[drawn] == index).all()


def test_unreadable_masks(tmp_path):
    (tmp_path / "mask.png").write_text("no")
    with pytest.raises(HistocolorError, match="cannot read mask"):
        load_label_map(tmp_path / "mask.png")


def test_grey_masks_with_alpha_read_as_labels(tmp_path):
    labels = np.arange(12, dtype=np.uint8).reshape(3, 4) % 3
    Image.fromarray(labels).convert("LA").save(tmp_path / "la.png")
    assert np.array_equal(load_label_map(tmp_path / "la.png"), labels)
