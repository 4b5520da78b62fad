"""histocolor.dtypes: the full scale of each image dtype and the one float -> integer rounding."""

import numpy as np
import pytest

from histocolor.dtypes import full_scale, to_uint


def test_full_scale_is_the_integer_maximum_or_one():
    assert [full_scale(t) for t in (np.uint8, np.uint16, np.int16, np.float32, np.float64, bool)] == [
        255.0, 65535.0, 32767.0, 1.0, 1.0, 1.0]
    assert full_scale(np.dtype("uint8")) == 255.0 and isinstance(full_scale(np.uint8), float)


def test_to_uint_clips_rounds_and_handles_nan():
    values = np.array([[-0.5, 0.0, 0.5, 1.0, 1.5, np.nan]])
    np.testing.assert_array_equal(to_uint(values, np.uint8), [[0, 0, 128, 255, 255, 0]])
    out16 = to_uint(values, np.uint16)
    assert out16.dtype == np.uint16
    np.testing.assert_array_equal(out16, [[0, 0, 32768, 65535, 65535, 0]])


def test_to_uint_rounds_to_nearest_and_keeps_shape():
    values = np.array([1.4, 1.6, 254.4]) / 255
    np.testing.assert_array_equal(to_uint(values, "uint8"), [1, 2, 254])
    assert to_uint(np.zeros((2, 3, 4, 5), np.float32), np.uint8).shape == (2, 3, 4, 5)


def test_to_uint_rejects_other_dtypes():
    with pytest.raises(ValueError):
        to_uint(np.zeros(3), np.float32)


def test_to_uint_rounds_ties_to_even_in_the_values_precision():
    """The rounding transfer results always had (np.rint of the product in the values' dtype)."""
    rng = np.random.default_rng(0)
    for dtype in (np.uint8, np.uint16):
        for floats in (np.float32, np.float64):
            values = rng.uniform(-0.1, 1.1, 100_000).astype(floats)
            old = np.clip(np.rint(values * float(np.iinfo(dtype).max)), 0, np.iinfo(dtype).max).astype(dtype)
            out = to_uint(values, dtype)
            assert out.dtype == dtype
            np.testing.assert_array_equal(out, old)
