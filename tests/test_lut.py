import numpy as np
import pytest

from histocolor.lut import apply_lut, blend_luts, fit_lut, identity_lut, interpolate, lut_from_mapping


def _grading(pixels):
    """A smooth non-linear colour change: per-channel gamma then a channel mix."""
    graded = pixels ** np.array([0.8, 1.0, 1.25], np.float32)
    mix = np.array([[0.9, 0.1, 0.0], [0.05, 0.9, 0.05], [0.0, 0.2, 0.8]], np.float32)
    return np.clip(graded @ mix.T, 0, 1)


def test_identity_lut_changes_nothing(rng):
    image = rng.integers(0, 256, (40, 30, 3), dtype=np.uint8)
    assert np.array_equal(apply_lut(image, identity_lut(17)), image)
    image16 = rng.integers(0, 65536, (10, 12, 3), dtype=np.uint16)
    assert np.abs(apply_lut(image16, identity_lut(33)).astype(int) - image16).max() <= 1


def test_trilinear_interpolation_reproduces_affine_maps_exactly(rng):
    matrix = np.array([[0.8, 0.1, 0.0], [0.0, 0.7, 0.2], [0.1, 0.0, 0.6]], np.float32)
    lut = lut_from_mapping(lambda x: x @ matrix.T + 0.05, 9)
    pixels = rng.random((1000, 3), dtype=np.float32)
    assert np.abs(interpolate(lut, pixels) - (pixels @ matrix.T + 0.05)).max() < 1e-5


@pytest.mark.parametrize("size", [17, 33])
def test_fit_recovers_a_global_grading(rng, size):
    source = rng.random((20000, 3), dtype=np.float32)
    lut = fit_lut(source, _grading(source), size)
    test_pixels = rng.random((5000, 3), dtype=np.float32)
    assert np.abs(interpolate(lut, test_pixels) - _grading(test_pixels)).mean() < 1.0 / 255


def test_fit_fills_unseen_colours_smoothly(rng):
    # Only dark colours are seen; they all get brighter by 0.1. Unseen bright colours
    # should move the same way (the change is continued), not stay put or jump.
    source = rng.random((5000, 3), dtype=np.float32) * 0.4
    lut = fit_lut(source, source + 0.1, 17)
    bright = np.array([[0.6, 0.6, 0.6]], np.float32)
    assert np.abs(interpolate(lut, bright) - 0.7).max() < 0.03
    assert np.all(np.isfinite(lut)) and lut.min() >= 0 and lut.max() <= 1


def test_uint8_fast_path_matches_direct_interpolation(rng):
    image = rng.integers(0, 256, (64, 48, 3), dtype=np.uint8)
    lut = lut_from_mapping(_grading, 17)
    expected = np.rint(interpolate(lut, image.reshape(-1, 3) / 255.0) * 255).reshape(image.shape)
    assert np.abs(apply_lut(image, lut).astype(int) - expected).max() <= 1


@pytest.mark.parametrize("shape", [(1, 1, 3), (7, 5, 3), (301, 257, 3)])  # the last: several chunks per thread
def test_each_distinct_colour_is_mapped_once_and_every_pixel_gets_its_own(rng, shape):
    from histocolor.lut import map_distinct_colours

    image = rng.integers(0, 256, shape, dtype=np.uint8)
    image[-1, -1] = (255, 254, 253)  # the last pixel (read apart) with a colour of its own
    calls = []

    def mapping(colours):
        calls.append(len(colours))
        return colours[:, ::-1] ** 0.5  # channels swapped: a wrong gather cannot pass

    out = map_distinct_colours(image, mapping)
    assert calls == [len(np.unique(image.reshape(-1, 3), axis=0))]
    expected = np.rint((image[..., ::-1] / np.float32(255.0)) ** 0.5 * 255)
    assert out.dtype == np.uint8 and np.array_equal(out, expected.astype(np.uint8))
    assert np.array_equal(map_distinct_colours(np.asfortranarray(image), mapping), out)  # any memory layout


def test_float_and_uint16_images_keep_their_dtype(rng):
    lut = lut_from_mapping(_grading, 17)
    image = rng.random((8, 9, 3), dtype=np.float32)
    out = apply_lut(image, lut, chunk_pixels=20)
    assert out.dtype == np.float32 and np.abs(out - _grading(image.reshape(-1, 3)).reshape(image.shape)).max() < 0.01
    image16 = (image * 65535).astype(np.uint16)
    expected16 = np.rint(interpolate(lut, image16.reshape(-1, 3) / 65535.0) * 65535).reshape(image.shape)
    out16 = apply_lut(image16, lut, chunk_pixels=20)
    assert out16.dtype == np.uint16 and np.abs(out16.astype(float) - expected16).max() <= 1


def test_out_of_range_floats_are_clamped_not_faded():
    out = apply_lut(np.array([[[1.2, -0.1, 0.5]]], np.float32), identity_lut(5))
    assert np.allclose(out, [[[1.0, 0.0, 0.5]]], atol=1e-6)


def test_blend_toward_identity():
    lut = lut_from_mapping(_grading, 9)
    assert np.allclose(blend_luts(lut, 0.0), identity_lut(9))
    assert np.allclose(blend_luts(lut, 1.0), lut)
    assert np.allclose(blend_luts(lut, 0.5), (lut + identity_lut(9)) / 2, atol=1e-6)


def test_bad_inputs():
    with pytest.raises(ValueError):
        apply_lut(np.zeros((4, 4), np.uint8), identity_lut(5))
    with pytest.raises(ValueError):
        fit_lut(np.zeros((0, 3)), np.zeros((0, 3)))


def test_the_banded_normal_equations_equal_scipys_sparse_matrices(rng):
    """The LUT fit's matrix (numpy diagonals, no scipy at start-up) against the same matrix built with scipy.sparse."""
    import scipy.sparse as sparse

    from histocolor.lut import _cells, _corner_offsets, _corner_weights, _grid_laplacian, _normal_matrix

    size = 5
    base, fraction = _cells(rng.random((2000, 3)).astype(np.float32), size)
    weights = _corner_weights(fraction)
    matrix = _normal_matrix(base, weights, size)
    for shift, values in _grid_laplacian(size).items():
        matrix.add(shift, values, 0.5)
    # The reference: W (one row per pixel, its 8 corner weights) as a sparse matrix, and the
    # grid Laplacian as Kronecker sums of the path Laplacian.
    design = sparse.csr_matrix((weights.T.ravel(), ((np.arange(len(base))[:, None]).repeat(8, 1).ravel(),
                                (base[:, None] + _corner_offsets(size)[None]).ravel())), shape=(len(base), size**3))
    difference = sparse.diags([-np.ones(size - 1), np.ones(size - 1)], [0, 1], shape=(size - 1, size))
    path, eye = difference.T @ difference, sparse.identity(size)
    laplacian = sparse.kron(sparse.kron(path, eye), eye) + sparse.kron(sparse.kron(eye, path), eye) + \
        sparse.kron(sparse.kron(eye, eye), path)
    expected = (design.T @ design + 0.5 * laplacian).toarray()
    x = rng.standard_normal((size**3, 3))
    assert np.allclose(matrix @ x, expected @ x, rtol=1e-5, atol=1e-4)  # float32 weight products
    assert np.allclose(matrix.diagonal(), np.diag(expected), rtol=1e-5)
