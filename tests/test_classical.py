"""Classical colour transfers as global colour mappings, on synthetic data with known answers."""

import itertools

import numpy as np
import pytest
from skimage.color import rgb2lab

from histocolor.classical import CLASSICAL_METHODS, fit_histmatch, fit_hm_mkl_hm, fit_idt, fit_mkl, fit_reinhard
from histocolor.errors import HistocolorError

METHODS = sorted(CLASSICAL_METHODS)


def _photo_like(n, seed, tint):
    """Smooth colour ramps plus noise, clipped to [0, 1]: a stand-in for photo pixels."""
    rng = np.random.default_rng(seed)
    t = rng.random((n, 1))
    pixels = 0.15 + 0.7 * t * np.asarray(tint) + 0.1 * np.sin(7 * t) + rng.normal(0, 0.05, (n, 3))
    return np.clip(pixels, 0, 1).astype(np.float32)


def _blobs(n, centers, weights, sigma, seed):
    """A mixture of isotropic Gaussian blobs in RGB (a non-Gaussian 3-D distribution)."""
    rng = np.random.default_rng(seed)
    which = rng.choice(len(centers), size=n, p=weights)
    pixels = np.asarray(centers)[which] + rng.normal(0, sigma, (n, 3))
    return np.clip(pixels, 0, 1).astype(np.float32)


def _sliced_w2(a, b, directions=64, seed=123):
    """Sliced Wasserstein-2 distance estimated on fixed random directions (independent of IDT)."""
    axes = np.random.default_rng(seed).normal(size=(directions, 3))
    axes /= np.linalg.norm(axes, axis=1, keepdims=True)
    levels = np.linspace(0, 1, 513)
    qa = np.quantile(a.astype(np.float64) @ axes.T, levels, axis=0)
    qb = np.quantile(b.astype(np.float64) @ axes.T, levels, axis=0)
    return float(np.sqrt(np.mean((qa - qb) ** 2)))


@pytest.fixture(scope="module")
def pair():
    return _photo_like(60_000, 1, (1.0, 0.6, 0.2)), _photo_like(50_000, 2, (0.3, 0.7, 1.0))


# ----------------------------------------------------------------------------- all methods


@pytest.mark.parametrize("name", METHODS)
def test_mapping_contract(name, pair):
    source, reference = pair
    mapping = CLASSICAL_METHODS[name](source, reference)
    out = mapping(source)
    assert out.shape == source.shape and out.dtype == np.float32
    assert out.min() >= 0.0 and out.max() <= 1.0
    # It actually transfers: the output's mean moves most of the way to the reference's.
    gap_before = np.abs(source.mean(0) - reference.mean(0)).max()
    assert np.abs(out.mean(0) - reference.mean(0)).max() < 0.25 * gap_before

    # Deterministic: fitting and mapping again gives identical results.
    np.testing.assert_array_equal(CLASSICAL_METHODS[name](source, reference)(source), out)
    np.testing.assert_array_equal(mapping(source), out)

    # A function of colour alone: chunks (of sizes that cut the internal blocks anywhere)
    # and reordered pixels map exactly like the whole image.
    chunked = np.concatenate([mapping(c) for c in np.array_split(source, [1, 7_777, 40_001])])
    np.testing.assert_allclose(chunked, out, atol=1e-6)
    order = np.random.default_rng(0).permutation(len(source))
    np.testing.assert_allclose(mapping(source[order]), out[order], atol=1e-6)

    # Evaluable on any colours, e.g. the nodes of a 3D LUT lattice; float64 input accepted.
    axis = np.linspace(0, 1, 17)
    lattice = np.stack(np.meshgrid(axis, axis, axis, indexing="ij"), -1).reshape(-1, 3)
    lut = mapping(lattice)
    assert lut.shape == lattice.shape and lut.dtype == np.float32
    assert np.isfinite(lut).all() and lut.min() >= 0.0 and lut.max() <= 1.0
    assert mapping(np.empty((0, 3), np.float32)).shape == (0, 3)


@pytest.mark.parametrize("name", METHODS)
def test_identity_when_reference_is_source(name, pair):
    source, _ = pair
    out = CLASSICAL_METHODS[name](source, source)(source)
    np.testing.assert_allclose(out, source, atol=1e-4)


@pytest.mark.parametrize("name", METHODS)
def test_flat_source_is_handled(name, pair):
    """A single-colour source (zero variance) must not divide by zero."""
    _, reference = pair
    flat = np.full((1000, 3), 0.3, np.float32)
    mapping = CLASSICAL_METHODS[name](flat, reference)
    out = mapping(flat)
    assert np.isfinite(out).all()
    assert np.ptp(out, axis=0).max() < 1e-6  # one colour in, one colour out
    assert np.isfinite(mapping(reference)).all()


@pytest.mark.parametrize("name", METHODS)
def test_input_validation(name, pair):
    source, reference = pair
    fit = CLASSICAL_METHODS[name]
    for bad in (source[:, :2], source.reshape(-1), source.reshape(-1, 3, 1), np.zeros((5, 4))):
        with pytest.raises(ValueError):
            fit(bad, reference)
        with pytest.raises(ValueError):
            fit(source, bad)
    empty = np.empty((0, 3), np.float32)
    with pytest.raises(HistocolorError, match="source image has no pixels"):
        fit(empty, reference)
    with pytest.raises(HistocolorError, match="reference image has no pixels"):
        fit(source, empty)
    for value in (np.nan, np.inf):
        broken = source.copy()
        broken[123, 1] = value
        with pytest.raises(ValueError, match="NaN or infinite"):
            fit(broken, reference)
        with pytest.raises(ValueError, match="NaN or infinite"):
            fit(source, broken)
    mapping = fit(source[:2000], reference[:2000])
    with pytest.raises(ValueError):
        mapping(source[:, :2])


# ----------------------------------------------------------------------------- MKL


def _gaussian(n, mean, cov, seed):
    return np.random.default_rng(seed).multivariate_normal(mean, cov, size=n).astype(np.float32)


def _cov(x):
    return np.cov(x.astype(np.float64), rowvar=False, bias=True)


def test_mkl_maps_gaussian_onto_gaussian():
    a = np.array([[0.05, 0.01, 0.0], [0.02, 0.04, 0.01], [-0.01, 0.0, 0.03]])
    b = np.array([[0.03, -0.02, 0.01], [0.0, 0.05, 0.0], [0.02, 0.01, 0.04]])
    source = _gaussian(200_000, [0.45, 0.5, 0.55], a @ a.T, seed=1)
    reference = _gaussian(150_000, [0.6, 0.45, 0.4], b @ b.T, seed=2)
    mapping = fit_mkl(source, reference)
    out = mapping(source)
    assert 0.0 < out.min() and out.max() < 1.0  # so clipping did not touch the statistics
    np.testing.assert_allclose(out.mean(0), reference.mean(0), atol=1e-5)
    np.testing.assert_allclose(_cov(out), _cov(reference), rtol=1e-4, atol=1e-8)

    # T is the Monge-Kantorovitch solution: symmetric positive definite with T Cs T = Cr.
    t = mapping.matrix
    np.testing.assert_allclose(t, t.T, atol=1e-12)
    assert np.linalg.eigvalsh(t).min() > 0.1
    np.testing.assert_allclose(t @ _cov(source) @ t, _cov(reference), rtol=1e-8, atol=1e-12)
    mean_s, mean_r = source.mean(0, dtype=np.float64), reference.mean(0, dtype=np.float64)
    np.testing.assert_allclose(mapping.offset, mean_r - t @ mean_s, atol=1e-9)


def test_mkl_equal_covariances_give_a_pure_translation():
    a = np.array([[0.05, 0.01, 0.0], [0.02, 0.04, 0.01], [-0.01, 0.0, 0.03]])
    source = _gaussian(100_000, [0.45, 0.5, 0.55], a @ a.T, seed=3)
    shift = np.float32([0.1, -0.05, 0.02])
    mapping = fit_mkl(source, source + shift)
    np.testing.assert_allclose(mapping.matrix, np.eye(3), atol=1e-6)
    np.testing.assert_allclose(mapping.offset, shift, atol=1e-6)
    np.testing.assert_allclose(mapping(source), np.clip(source + shift, 0, 1), atol=1e-5)


def test_mkl_statistics_are_accurate_with_a_large_offset():
    """Chunked float64 accumulation: a tiny spread around a bright mean is resolved."""
    rng = np.random.default_rng(4)
    source = (0.9 + 1e-3 * rng.standard_normal((300_000, 3))).astype(np.float32)
    reference = (0.5 + 2e-3 * rng.standard_normal((300_000, 3))).astype(np.float32)
    out = fit_mkl(source, reference)(source)
    np.testing.assert_allclose(_cov(out), _cov(reference), rtol=1e-3, atol=1e-10)


def test_mkl_grey_source_maps_onto_a_line(pair):
    """A grey source has a rank-1 covariance: regularised, its colours map onto a line."""
    _, reference = pair
    grey = np.repeat(np.random.default_rng(5).random((50_000, 1), dtype=np.float32), 3, axis=1)
    grey = 0.3 + 0.4 * grey
    out = fit_mkl(grey, reference)(grey).astype(np.float64)
    assert np.isfinite(out).all()
    singular = np.linalg.svd(out - out.mean(0), compute_uv=False)
    assert singular[1] < 1e-3 * singular[0]
    np.testing.assert_allclose(out.mean(0), reference.mean(0), atol=1e-3)


# ----------------------------------------------------------------------------- Reinhard


def test_reinhard_matches_lab_mean_and_std():
    rng = np.random.default_rng(5)
    source = (0.35 + 0.25 * rng.random((40_000, 3)) * [1.0, 0.8, 0.6]).astype(np.float32)
    reference = (0.4 + 0.2 * rng.random((30_000, 3)) * [0.5, 1.0, 0.9]).astype(np.float32)
    out = fit_reinhard(source, reference)(source)
    assert 0.01 < out.min() and out.max() < 0.99  # in gamut: clipping did not bite
    # Checked with scikit-image's Lab, independent of the kornia conversion used inside.
    lab_out, lab_ref = rgb2lab(out.astype(np.float64)), rgb2lab(reference.astype(np.float64))
    np.testing.assert_allclose(lab_out.mean(0), lab_ref.mean(0), atol=0.02)
    np.testing.assert_allclose(lab_out.std(0), lab_ref.std(0), rtol=2e-3)
    assert np.abs(rgb2lab(source.astype(np.float64)).mean(0) - lab_ref.mean(0)).max() > 1.0


def test_reinhard_flat_channel_is_shifted_not_scaled(pair):
    _, reference = pair
    mapping = fit_reinhard(np.full((100, 3), 0.3, np.float32), reference)
    np.testing.assert_array_equal(mapping.scale, 1.0)


# ----------------------------------------------------------------------------- histmatch


def test_histmatch_reproduces_reference_marginals():
    rng = np.random.default_rng(6)
    source = (rng.random((300_000, 3)) ** [2.0, 1.0, 0.5]).astype(np.float32)
    reference = rng.beta([2.0, 5.0, 0.7], [5.0, 2.0, 0.7], size=(200_000, 3)).astype(np.float32)
    out = fit_histmatch(source, reference)(source)
    levels = np.linspace(0, 1, 101)
    error = np.abs(np.quantile(out, levels, axis=0) - np.quantile(reference, levels, axis=0))
    assert error.max() < 0.01
    assert np.abs(np.quantile(source, levels, axis=0) - np.quantile(reference, levels, axis=0)).max() > 0.1


def test_histmatch_is_monotone_per_channel(pair):
    source, reference = pair
    mapping = fit_histmatch(source, reference)
    ramp = np.repeat(np.linspace(0, 1, 5001, dtype=np.float32)[:, None], 3, axis=1)
    out = mapping(ramp)
    assert (np.diff(out, axis=0) >= 0).all()
    assert (out[-1] - out[0] > 0.3).all()  # and not trivially constant


def test_histmatch_handles_ties():
    rng = np.random.default_rng(7)
    # 8-bit values, half of the pixels exactly black.
    source = (rng.integers(0, 256, (100_000, 3)) / 255).astype(np.float32)
    source[:50_000] = 0.0
    reference = rng.random((80_000, 3)).astype(np.float32)
    out = fit_histmatch(source, reference)(source)
    assert np.isfinite(out).all()
    # The black half all maps to one colour: the mean of the reference's lower half (0.25).
    np.testing.assert_allclose(out[:50_000].min(0), out[:50_000].max(0))
    np.testing.assert_allclose(out[0], 0.25, atol=0.01)
    # The other half spreads over the reference's upper half.
    assert (out[50_000:] >= out[0]).all()
    np.testing.assert_allclose(np.median(out[50_000:], axis=0), 0.75, atol=0.02)

    # Ties in both images (8-bit reference too) stay finite and monotone.
    reference8 = (rng.integers(0, 256, (80_000, 3)) / 255).astype(np.float32)
    mapping = fit_histmatch(source, reference8)
    ramp = np.repeat(np.linspace(0, 1, 256, dtype=np.float32)[:, None], 3, axis=1)
    assert np.isfinite(mapping(ramp)).all() and (np.diff(mapping(ramp), axis=0) >= 0).all()


# ----------------------------------------------------------------------------- IDT


@pytest.fixture(scope="module")
def blob_pair():
    source = _blobs(
        60_000, [[0.2, 0.3, 0.6], [0.7, 0.5, 0.2], [0.5, 0.8, 0.4]], [0.5, 0.3, 0.2], 0.05, seed=8
    )
    reference = _blobs(
        50_000,
        [[0.8, 0.2, 0.3], [0.3, 0.7, 0.7], [0.6, 0.6, 0.2], [0.25, 0.25, 0.25]],
        [0.2, 0.3, 0.3, 0.2],
        0.04,
        seed=9,
    )
    return source, reference


@pytest.mark.slow
def test_idt_converges(blob_pair):
    source, reference = blob_pair
    distances = [
        _sliced_w2(fit_idt(source, reference, iterations=k)(source), reference) for k in (0, 1, 5, 20)
    ]
    assert distances[0] > 0.1
    assert all(later < earlier for earlier, later in itertools.pairwise(distances))
    assert distances[-1] < 0.08 * distances[0]
    # The fit's own estimate (on fresh directions before each step) falls as well.
    recorded = fit_idt(source, reference).sliced_distances
    assert len(recorded) == 20 and recorded[-1] < 0.1 * recorded[0]


def test_idt_replay_matches_the_iteration(blob_pair):
    source, reference = blob_pair
    mapping = fit_idt(source, reference, iterations=8)
    out = mapping(source)

    # The literal update x <- x + R^T (f(R x) - R x), replayed from the recorded steps.
    x = source.astype(np.float64)
    for rotation, tables in zip(mapping.rotations, mapping.tables):
        projected = x @ rotation.T
        matched = np.stack([t.apply_(p.astype(np.float32)) for t, p in zip(tables, projected.T)], 1)
        x = x + (matched - projected) @ rotation
    # float32 vs float64 rounding, amplified where a 1-D map is steep, on very few pixels.
    error = np.abs(out - np.clip(x, 0, 1))
    assert np.quantile(error, 0.999) < 1e-4 and error.max() < 5e-3

    # Replaying on the fitting samples reproduces what the fit produced: along the last
    # step's axes, their marginals are the reference's (the last 1-D matching is exact).
    levels = np.linspace(0.01, 0.99, 99)
    last = mapping.rotations[-1]
    error = np.quantile(out @ last.T, levels, axis=0) - np.quantile(reference @ last.T, levels, axis=0)
    assert np.abs(error).max() < 2e-3


def test_idt_seed_changes_the_rotations(blob_pair):
    source, reference = blob_pair
    a = fit_idt(source, reference, iterations=3, seed=0)
    b = fit_idt(source, reference, iterations=3, seed=1)
    assert not np.allclose(a.rotations, b.rotations)
    for rotation in a.rotations:
        np.testing.assert_allclose(rotation @ rotation.T, np.eye(3), atol=1e-12)
    with pytest.raises(ValueError):
        fit_idt(source, reference, iterations=-1)


# ----------------------------------------------------------------------------- hm-mkl-hm


def test_hm_mkl_hm_is_the_three_fits_chained(blob_pair):
    source, reference = blob_pair
    first = fit_histmatch(source, reference)
    middle = fit_mkl(first(source), reference)
    last = fit_histmatch(middle(first(source)), reference)
    by_hand = last(middle(first(source)))
    np.testing.assert_allclose(fit_hm_mkl_hm(source, reference)(source), by_hand, atol=1e-6)


def test_hm_mkl_hm_reaches_correlations_that_histmatch_cannot(blob_pair):
    """Per-channel curves match the marginals only; the MKL step in the middle also moves the
    joint distribution, and the last matching restores the marginals."""
    source, reference = blob_pair
    chained = fit_hm_mkl_hm(source, reference)(source)
    assert _sliced_w2(chained, reference) < 0.8 * _sliced_w2(fit_histmatch(source, reference)(source), reference)
    for channel in range(3):  # the marginals stay those of the reference
        gap = np.abs(np.quantile(chained[:, channel], [0.1, 0.5, 0.9]) - np.quantile(reference[:, channel], [0.1, 0.5, 0.9]))
        assert gap.max() < 0.02
