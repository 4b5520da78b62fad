"""Colour maps and looks: every method yields one, and one step applies it (issue 14)."""

import numpy as np
import pytest

from histocolor.classical import CLASSICAL_METHODS
from histocolor.colormap import BlendedMap, Look, LutMap, from_unit, to_unit
from histocolor.lut import identity_lut
from histocolor.engine import METHODS, ColorTransfer

from conftest import DPST, require


def _graded_lut(size=9):
    lut = identity_lut(size)
    lut[..., 0] = lut[..., 0] ** 0.7
    lut[..., 2] = 0.2 + 0.6 * lut[..., 2]
    return lut


def test_lut_map_blend_equals_the_blend_of_its_colours(rng):
    colour_map = LutMap(_graded_lut())
    pixels = rng.random((500, 3), dtype=np.float32)
    direct = colour_map.blended(0.3)(pixels)
    assert isinstance(colour_map.blended(0.3), LutMap)  # still one LUT: exportable and fast to apply
    assert np.allclose(direct, BlendedMap(colour_map, 0.3)(pixels), atol=1e-6)
    assert colour_map.blended(1.0) is colour_map
    assert np.allclose(colour_map.blended(0.0)(pixels), pixels, atol=1e-6)


@pytest.mark.parametrize("dtype", [np.uint8, np.uint16, np.float32])
def test_apply_matches_the_map_on_every_pixel(rng, dtype):
    image = from_unit(rng.random((37, 23, 3), dtype=np.float32), dtype)
    for colour_map in (LutMap(_graded_lut()), CLASSICAL_METHODS["mkl"](to_unit(image), rng.random((99, 3)))):
        applied = colour_map.apply(image)
        assert applied.dtype == image.dtype and applied.shape == image.shape
        expected = from_unit(colour_map(to_unit(image)), dtype).reshape(image.shape)
        assert np.abs(applied.astype(float) - expected.astype(float)).max() <= (1 if dtype != np.float32 else 1e-6)


def test_to_lut_tabulates_the_map(rng):
    mapping = CLASSICAL_METHODS["reinhard"](rng.random((500, 3)), rng.random((400, 3)) * 0.5)
    lut = mapping.to_lut(5)
    nodes = identity_lut(5).reshape(-1, 3)
    assert np.allclose(lut.reshape(-1, 3), mapping(nodes), atol=1e-6)
    assert LutMap(lut).to_lut(5) is lut
    assert LutMap(lut).to_lut(9).shape == (9, 9, 9, 3)


def test_a_look_blends_its_region_maps_with_the_weights(rng):
    image = rng.integers(0, 256, (40, 60, 3), dtype=np.uint8)
    dark, light = LutMap(identity_lut(5) * 0.5), LutMap(0.5 + identity_lut(5) * 0.5)
    weights = np.zeros((2, 40, 60), np.float32)
    weights[0, :, :30], weights[1, :, 30:] = 1.0, 1.0
    out = Look([dark, light], weights, [[1]], np.zeros((40, 60), np.int32)).apply(image)
    assert np.abs(out[:, :29].astype(int) - dark.apply(image)[:, :29]).max() <= 1
    assert np.abs(out[:, 31:].astype(int) - light.apply(image)[:, 31:]).max() <= 1
    assert np.array_equal(Look([dark]).apply(image), dark.apply(image))  # global: the one map
    # A part without a map (no pixel of it) is skipped; a map whose weight is 0 everywhere too.
    assert np.array_equal(Look([None, dark], np.stack([weights[0] * 0, weights[0] + 1])).apply(image),
                          dark.apply(image))


@pytest.mark.parametrize("method", METHODS)
def test_every_method_yields_a_look_that_makes_its_result(sample_pair, tiny_weights, method):
    source, reference = sample_pair
    engine = ColorTransfer(method, weights=tiny_weights, max_side=96)
    result = engine(source, reference, strength=0.7)
    assert result.look.is_global and len(result.look.maps) == 1
    assert np.array_equal(result.look.apply(source), result.image)
    assert np.array_equal(engine.fit(source, reference).blended(0.7).apply(source), result.image)
    assert result.lut.shape == (17, 17, 17, 3)


@pytest.mark.parametrize("method", ["analogy", "mkl"])
def test_by_regions_the_look_holds_one_map_per_region_and_the_rest(tiny_weights, method):
    from histocolor.imageio import read_image
    from histocolor.regions import load_label_map

    data = require(DPST)
    source, reference = (read_image(data / folder / f"{name}9.png").rgb for folder, name in
                         (("input", "in"), ("style", "tar")))
    masks = [data / "segmentation" / f"{name}9.png" for name in ("in", "tar")]
    engine = ColorTransfer(method, weights=tiny_weights, max_side=96)
    result = engine(source, reference, source_labels=masks[0], reference_labels=masks[1])
    look = result.look
    assert not look.is_global and result.lut is None
    assert len(look.maps) == len(look.labels) + 1 == len(look.weights)
    assert np.array_equal(look.label_map, load_label_map(masks[0]))
    assert np.array_equal(look.apply(source), result.image)


def test_resize_bilinear_matches_torch_interpolate(rng):
    """The weights' enlargement in Look.apply (numpy) against torch's bilinear, pixel centres aligned."""
    import torch
    import torch.nn.functional as F

    from histocolor.colormap import resize_bilinear

    for small, large in [((37, 50), (480, 640)), ((1, 1), (5, 7)), ((64, 48), (100, 3000)), ((9, 9), (9, 9))]:
        plane = rng.random(small).astype(np.float32)
        theirs = F.interpolate(torch.from_numpy(plane)[None, None], size=large, mode="bilinear",
                               align_corners=False)[0, 0].numpy()
        ours = resize_bilinear(plane, large)
        assert ours.shape == large and ours.dtype == np.float32
        assert np.abs(ours - theirs).max() < 1e-5
