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


def _png_header_only(path, width, height):
    """A PNG whose header claims ``width`` x ``height`` (a decompression bomb's signature)."""
    import struct
    import zlib

    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(b"\0" * 16))
                     + chunk(b"IEND", b""))


def test_masks_pass_the_image_limits_and_refuse_non_integer_values(tmp_path):
    _png_header_only(tmp_path / "bomb.png", 50000, 50000)
    with pytest.raises(HistocolorError, match="cannot read mask .*more than"):
        load_label_map(tmp_path / "bomb.png")
    values = np.zeros((4, 4), np.float32)
    values[1, 1] = np.nan
    Image.fromarray(values).save(tmp_path / "nan.tiff")
    with pytest.raises(HistocolorError, match="not whole numbers"):
        load_label_map(tmp_path / "nan.tiff")
    Image.fromarray(np.full((4, 4), 2.0, np.float32)).save(tmp_path / "whole.tiff")
    assert (load_label_map(tmp_path / "whole.tiff") == 2).all()


def test_lossy_masks_are_read_with_a_warning(tmp_path):
    rgb = np.zeros((32, 32, 3), np.uint8)
    rgb[:, 16:] = 255
    Image.fromarray(rgb).save(tmp_path / "mask.jpg", quality=70)
    with pytest.warns(UserWarning, match="lossy"):
        labels = load_label_map(tmp_path / "mask.jpg")
    assert set(np.unique(labels).tolist()) == {2, 3}  # black and white, the JPEG noise snapped


def test_a_colour_gets_the_same_label_in_both_masks_even_when_one_is_noisy(rng):
    """The held-out pair that failed with "no region in common": both masks black and white, one
    clean, the other antialiased and noisy; and two masks in colours outside the palette."""
    from histocolor.regions import colour_labels

    clean = np.zeros((60, 80, 3), np.uint8)
    clean[:, 40:] = 255
    noisy = clean.copy()
    noisy[:, 38:42] = rng.integers(60, 200, (60, 4, 3))  # a wide antialiased seam of many colours
    speckle = rng.random((60, 80)) < 0.2
    noisy[speckle] = np.clip(noisy[speckle].astype(int) + rng.integers(-40, 40, (int(speckle.sum()), 3)), 0, 255)
    first, second = colour_labels(clean, noisy)
    assert set(np.unique(first).tolist()) == set(np.unique(second).tolist()) == {2, 3}
    assert (second[:, :36] == 2).mean() > 0.99 and (second[:, 44:] == 3).mean() > 0.99
    a = np.zeros((10, 10, 3), np.uint8)
    a[:, :7], a[:, 7:] = (10, 200, 30), (200, 100, 50)
    b = np.zeros((10, 10, 3), np.uint8)
    b[:, :2], b[:, 2:] = (10, 200, 30), (200, 100, 50)  # the same colours, in other shares
    first, second = colour_labels(a, b)
    assert first[0, 0] == second[0, 0] and first[0, 9] == second[0, 9] and first[0, 0] != first[0, 9]
    assert min(first.min(), second.min()) >= 9  # outside the palette: 9, 10, ...


def test_a_photo_given_as_a_colour_mask_is_refused_not_exhausting_memory(rng):
    from histocolor.regions import colour_labels

    photo_like = rng.integers(0, 256, (64, 64, 3), dtype=np.uint8)  # 4096 colours, none dominant
    with pytest.raises(HistocolorError, match="not a label map"):
        colour_labels(photo_like)


def test_area_resize_matches_torch_area_interpolation(rng):
    """Region weights at the working size (numpy) against torch's area mode, up and down."""
    import torch
    import torch.nn.functional as F

    from histocolor.regions import area_resize

    for large, small in [((480, 640), (37, 50)), ((7, 5), (1, 1)), ((3000, 100), (64, 48)), ((4, 4), (9, 9))]:
        mask = rng.random(large) > 0.7
        theirs = F.interpolate(torch.from_numpy(mask.astype(np.float32))[None, None], size=small, mode="area")
        ours = area_resize(mask, small)
        assert ours.shape == small and np.abs(ours - theirs[0, 0].numpy()).max() < 1e-6
