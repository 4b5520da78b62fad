import torch

from histocolor.model import AnalogyConfig, HistogramAnalogy
import numpy as np
import pytest

from histocolor.color import lab_to_rgb, rgb_to_lab

from histocolor.model.alignment import (
    MAX_SPREAD_RATIO, QuantileAlignment, align_regions, piecewise_linear, weighted_moments, weighted_quantiles,
)

SMALL = AnalogyConfig(hen_widths=(8, 8, 8, 8), feature_size=16, ctn_width=8, ctn_depth=2)


def _image(mean, std, shape=(1, 3, 24, 24), seed=0):
    noise = torch.randn(shape, generator=torch.Generator().manual_seed(seed))
    return torch.tensor(mean).view(1, 3, 1, 1) + torch.tensor(std).view(1, 3, 1, 1) * noise


def _halves(height=24, width=24):
    """Two regions: the top half and the bottom half."""
    regions = torch.zeros(1, 2, height, width)
    regions[:, 0, : height // 2] = 1.0
    regions[:, 1, height // 2 :] = 1.0
    return regions


def test_each_region_takes_its_reference_regions_mean_and_spread():
    source = torch.cat([_image([30, 5, -10], [4, 3, 3])[..., :12, :], _image([70, -5, 20], [5, 2, 4])[..., 12:, :]], 2)
    reference = torch.cat([_image([60, 20, 10], [6, 4, 2], seed=1)[..., :12, :],
                           _image([40, 0, -30], [3, 3, 6], seed=2)[..., 12:, :]], 2)
    regions = _halves()
    aligned = align_regions(source, reference, regions, regions, regions)
    ours, _ = weighted_moments(aligned, regions)
    theirs, _ = weighted_moments(reference, regions)
    assert torch.allclose(ours, theirs, atol=1e-3)
    ours_std, theirs_std = weighted_moments(aligned, regions)[1], weighted_moments(reference, regions)[1]
    assert torch.allclose(ours_std, theirs_std, rtol=1e-3)


def test_pixels_outside_every_region_keep_their_colour():
    source, reference = _image([50, 0, 0], [10, 5, 5]), _image([20, 30, 30], [5, 5, 5], seed=1)
    regions = _halves()
    mixing = regions.clone()
    mixing[:, 1] = 0.0  # the bottom region is missing from the other image
    aligned = align_regions(source, reference, regions, regions, mixing)
    assert torch.equal(aligned[..., 12:, :], source[..., 12:, :])
    assert (aligned[..., :12, :] - source[..., :12, :]).abs().mean() > 5


def test_a_flat_region_is_shifted_and_spreads_are_bounded():
    flat = torch.full((1, 3, 24, 24), 40.0)
    flat[:, 0] += 0.01 * torch.randn(24, 24)
    reference = _image([60, 10, -10], [20, 20, 20], seed=3)
    everything = torch.ones(1, 1, 24, 24)
    aligned = align_regions(flat, reference, everything, everything, everything)
    mean, std = weighted_moments(aligned, everything)
    assert torch.allclose(mean, weighted_moments(reference, everything)[0], atol=1e-3)
    assert std.max() < 0.1  # noise is not blown up into texture
    narrow = _image([50, 0, 0], [1, 1, 1])
    spread = weighted_moments(align_regions(narrow, reference, everything, everything, everything), everything)[1]
    assert torch.allclose(spread, MAX_SPREAD_RATIO * weighted_moments(narrow, everything)[1], rtol=1e-3)


def test_the_untrained_network_returns_the_aligned_source_by_regions():
    source, reference = _image([30, 5, -10], [8, 6, 6]), _image([60, 20, 10], [6, 4, 2], seed=1)
    regions = _halves()
    model = HistogramAnalogy(SMALL).eval()
    with torch.no_grad():
        output = model(source, reference, regions, regions).output
        expected = model.align(source, reference, regions, regions)
    assert torch.allclose(output, expected, atol=1e-3)
    assert (output - source).abs().mean() > 5
    plain = HistogramAnalogy(AnalogyConfig.from_dict({**SMALL.to_dict(), "alignment": {"method": "none"}})).eval()
    with torch.no_grad():
        assert torch.allclose(plain(source, reference, regions, regions).output, source, atol=1e-3)


def test_weighted_quantiles_match_numpy_for_equal_weights_and_repeat_for_integer_weights():
    values = torch.randn(2, 3, 101, generator=torch.Generator().manual_seed(4), dtype=torch.float64)
    levels = torch.linspace(0.05, 0.95, 7, dtype=torch.float64)
    ours = weighted_quantiles(values, torch.ones(2, 1, 101, dtype=torch.float64), levels)[:, 0]
    # Midpoint plotting positions: numpy's "hazen" method.
    theirs = np.quantile(values.numpy(), levels.numpy(), axis=-1, method="hazen").transpose(1, 2, 0)
    np.testing.assert_allclose(ours.numpy(), theirs, atol=1e-9)
    # A weight of 0 counts like no pixel; scaling every weight changes nothing.
    kept = torch.rand(101, generator=torch.Generator().manual_seed(5)) < 0.6
    weighted = weighted_quantiles(values[:1, :1], 3.0 * kept.view(1, 1, -1).double(), levels)[0, 0, 0]
    subset = values[0, 0][kept].numpy()
    np.testing.assert_allclose(weighted.numpy(), np.quantile(subset, levels.numpy(), method="hazen"), atol=1e-9)


def test_piecewise_linear_interpolates_inside_and_shifts_outside():
    knots, values = torch.tensor([[0.0, 1.0, 3.0]]), torch.tensor([[10.0, 12.0, 13.0]])
    x = torch.tensor([[-2.0, 0.5, 2.0, 5.0]])
    assert torch.allclose(piecewise_linear(x, knots, values), torch.tensor([[8.0, 11.0, 12.5, 15.0]]))


def test_quantile_alignment_takes_the_reference_distribution_within_its_slope_bounds():
    generator = torch.Generator().manual_seed(6)
    source = torch.stack([40 + 10 * torch.rand(64, 64, generator=generator),
                          torch.randn(64, 64, generator=generator) * 5,
                          torch.randn(64, 64, generator=generator) * 5])[None]
    # The reference: a skewed L distribution (not reachable by moments alone), shifted chroma.
    reference = torch.stack([30 + 12 * torch.rand(64, 64, generator=generator) ** 2,
                             20 + torch.randn(64, 64, generator=generator) * 8,
                             -10 + torch.randn(64, 64, generator=generator) * 4])[None]
    everything = torch.ones(1, 1, 64, 64)
    unbounded = QuantileAlignment(levels=64, lightness_slopes=(1e-3, 1e3), chroma_slopes=(1e-3, 1e3))
    aligned = align_regions(source, reference, everything, everything, everything, unbounded)
    levels = np.linspace(0.1, 0.9, 9)
    for channel in range(3):
        ours = np.quantile(aligned[0, channel].numpy(), levels)
        theirs = np.quantile(reference[0, channel].numpy(), levels)
        np.testing.assert_allclose(ours, theirs, atol=0.6)
    # Bounded: no part of the L curve is steeper than the bound, and the order of colours is kept.
    bounded = QuantileAlignment(levels=64, lightness_slopes=(0.8, 1.25), chroma_slopes=(0.2, 5.0))
    knots, values = bounded.curves(source, reference, everything, everything)
    slopes = values[0, 0, 0].diff() / knots[0, 0, 0].diff()
    assert slopes.min() >= 0.8 - 1e-3 and slopes.max() <= 1.25 + 1e-3
    lightness = align_regions(source, reference, everything, everything, everything, bounded)[0, 0].flatten()
    order = source[0, 0].flatten().argsort()
    assert (lightness[order].diff() >= -1e-4).all()


@pytest.mark.parametrize("method", ["moments", "linear", "quantiles", "colour", "sliced"])
def test_aligning_a_source_to_itself_changes_nothing(method):
    source = rgb_to_lab(torch.rand(1, 3, 32, 32, generator=torch.Generator().manual_seed(8)))
    everything = torch.ones(1, 1, 32, 32)
    config = AnalogyConfig.from_dict({**SMALL.to_dict(), "alignment": {"method": method}})
    aligned = align_regions(source, source, everything, everything, everything, config.alignment.build())
    assert (aligned - source).abs().max() < (0.05 if method in ("linear", "colour", "sliced") else 1e-3)


def test_colour_alignment_starts_with_the_classical_mkl_and_takes_the_reference_distribution():
    from histocolor.classical import fit_mkl
    from histocolor.model.alignment import ColourAlignment, weighted_mkl

    generator = torch.Generator().manual_seed(9)
    source = torch.rand(1, 3, 40, 40, generator=generator) * torch.tensor([0.9, 0.5, 0.3]).view(1, 3, 1, 1)
    reference = torch.rand(1, 3, 30, 30, generator=generator) ** 2 * 0.8 + 0.1
    flat_source, flat_reference = source.flatten(2), reference.flatten(2)
    matrix, offset = weighted_mkl(flat_source.double(), flat_reference.double(), torch.ones(1, 1, 1600).double(),
                                  torch.ones(1, 1, 900).double())
    ours = (matrix[0, 0] @ flat_source[0].double() + offset[0, 0, :, None]).T.numpy()
    theirs = fit_mkl(flat_source[0].T.numpy(), flat_reference[0].T.numpy())(flat_source[0].T.numpy())
    inside = (ours > 0.02).all(1) & (ours < 0.98).all(1)  # the classical map clips to [0, 1]
    np.testing.assert_allclose(ours[inside], theirs[inside], atol=2e-3)
    free = ColourAlignment(64, lightness_slopes=(1e-3, 1e3), colour_slopes=(1e-3, 1e3))
    everything, all_theirs = torch.ones(1, 1, 40, 40), torch.ones(1, 1, 30, 30)
    source_lab, reference_lab = rgb_to_lab(source), rgb_to_lab(reference)
    aligned = align_regions(source_lab, reference_lab, everything, all_theirs, everything, free)
    levels = np.linspace(0.1, 0.9, 9)
    # L follows its own curve: with free slopes it takes the reference's L distribution...
    np.testing.assert_allclose(np.quantile(aligned[0, 0].numpy(), levels),
                               np.quantile(reference_lab[0, 0].numpy(), levels), atol=0.6)

    # ...and the colour comes far closer to the reference's (a, b) than the source's was.
    def chroma_gap(lab):
        return (lab[0, 1:].flatten(1).mean(1) - reference_lab[0, 1:].flatten(1).mean(1)).abs().sum()

    assert chroma_gap(aligned) < 0.2 * chroma_gap(source_lab)


def test_the_untrained_network_returns_the_globally_aligned_source_everywhere():
    source, reference = _image([30, 5, -10], [8, 6, 6]), _image([60, 20, 10], [6, 4, 2], seed=1)
    config = AnalogyConfig.from_dict({**SMALL.to_dict(), "alignment": {"method": "quantiles", "everywhere": True}})
    model = HistogramAnalogy(config).eval()
    everything = torch.ones(1, 1, 24, 24)
    with torch.no_grad():
        output = model(source, reference).output
        expected = align_regions(source, reference, everything, everything, everything, model.aligner)
        assert torch.allclose(output, expected, atol=1e-3)
        assert (output - source).abs().mean() > 10
        # By regions, what no region covers follows the global map (not the source's own colour).
        regions = _halves()
        regions[:, 1] = 0.0
        by_regions = model(source, reference, regions, _halves()).output
        assert torch.allclose(by_regions[..., 12:, :], expected[..., 12:, :], atol=1e-3)


def test_weights_saved_with_the_old_region_switch_still_load():
    assert AnalogyConfig.from_dict({"align_regions": True}).alignment.method == "moments"
    assert AnalogyConfig.from_dict({"align_regions": False}).alignment.method == "none"
    with pytest.raises(ValueError, match="alignment"):
        AnalogyConfig.from_dict({"alignment": {"method": "median"}})
    with pytest.raises(ValueError, match="lightness_slopes"):
        AnalogyConfig.from_dict({"alignment": {"lightness_slopes": [1.5, 2.0]}})
    with pytest.raises(ValueError, match="samples"):
        AnalogyConfig.from_dict({"alignment": {"method": "sliced", "samples": 10}})
    with pytest.raises(ValueError, match="iterations"):
        AnalogyConfig.from_dict({"alignment": {"method": "sliced", "iterations": 0}})


def _toned(lightness: torch.Tensor) -> torch.Tensor:
    """A split toning in Lab ``(1, 3, H, W)``: chroma that depends on L in a way no linear map of
    the colours gives (blue shadows, green mid-tones, yellow-red highlights)."""
    warmth = (lightness - 50.0) / 35.0
    return torch.stack([lightness, 30.0 * (warmth**2 - 0.4), 35.0 * warmth])[None]


def test_sliced_alignment_takes_a_toning_and_keeps_the_bounded_lightness():
    from histocolor.metrics import sliced_wasserstein
    from histocolor.model.alignment import ColourAlignment, SlicedAlignment

    generator = torch.Generator().manual_seed(12)
    lightness = 15 + 70 * torch.rand(48, 48, generator=generator)
    source = torch.stack([lightness, torch.randn(48, 48, generator=generator) * 3,
                          torch.randn(48, 48, generator=generator) * 3])[None]
    reference = _toned(15 + 70 * torch.rand(40, 40, generator=generator))
    everything, all_theirs = torch.ones(1, 1, 48, 48), torch.ones(1, 1, 40, 40)
    colour = align_regions(source, reference, everything, all_theirs, everything, ColourAlignment())
    sliced = align_regions(source, reference, everything, all_theirs, everything, SlicedAlignment(iterations=8))
    # Lightness is the colour alignment's bounded L curve, untouched.
    assert torch.equal(sliced[:, 0], colour[:, 0])

    def distance(lab):  # numpy's sliced Wasserstein distance in Lab, on sRGB images
        rgb = [lab_to_rgb(image).clamp(0, 1)[0].permute(1, 2, 0).numpy() for image in (lab, reference)]
        return sliced_wasserstein(*rgb)

    assert distance(sliced) < 0.6 * distance(colour)
    # The toning itself: warm where light, cool where dark, as in the reference.
    def toning_gap(lab):  # how far a and b are from the reference's function of L
        return (lab[0, 1:] - _toned(lab[0, 0])[0, 1:]).abs().mean()

    assert toning_gap(sliced) < 0.8 * toning_gap(colour)


def test_sliced_alignment_maps_other_colours_as_it_maps_the_source():
    from histocolor.model.alignment import SlicedAlignment

    generator = torch.Generator().manual_seed(13)
    source = rgb_to_lab(torch.rand(1, 3, 90, 90, generator=generator))
    reference = _toned(10 + 80 * torch.rand(70, 70, generator=generator))
    regions = torch.ones(1, 1, 90, 90)
    alignment = SlicedAlignment(iterations=4)
    everything = alignment.maps(source, reference, regions, torch.ones(1, 1, 70, 70))
    # The LUT head applies the same map to grid colours: the same colours must land the same way.
    again = alignment.maps(source, reference, regions, torch.ones(1, 1, 70, 70), source[..., :30, :])
    assert torch.allclose(again, everything[..., :30, :], atol=1e-4)


def test_sliced_alignment_fits_a_region_thinner_than_its_sampling_stride():
    from histocolor.model.alignment import SlicedAlignment

    generator = torch.Generator().manual_seed(14)
    source = rgb_to_lab(torch.rand(1, 3, 200, 200, generator=generator))
    reference = _toned(10 + 80 * torch.rand(120, 120, generator=generator))
    # Two regions: one-pixel lines on rows 1, 5, 9, ... (a stride of 4 never samples them) and the rest.
    lines = torch.zeros(1, 1, 200, 200)
    lines[..., 1::4, :] = 1.0
    regions = torch.cat([lines, 1.0 - lines], dim=1)
    reference_regions = torch.ones(1, 2, 120, 120)
    sampled = SlicedAlignment(iterations=4, samples=4096).maps(source, reference, regions, reference_regions)
    exact = SlicedAlignment(iterations=4, samples=1 << 20).maps(source, reference, regions, reference_regions)
    gap = (sampled - exact)[:, 0].abs()[..., 1::4, :].mean()
    assert gap < 1.5, gap  # Lab units; a region lost from the fit lands tens of units away


def test_the_sliced_directions_stay_those_the_shipped_weights_were_trained_with():
    from histocolor.model.alignment import fixed_bases

    bases = fixed_bases(24)
    assert torch.allclose(bases[0, 0], torch.tensor([-0.902658, -0.347869, -0.253368]), atol=1e-5)
    assert torch.allclose(bases[23, 2], torch.tensor([-0.868288, 0.494968, 0.032912]), atol=1e-5)
    assert torch.allclose(bases @ bases.transpose(1, 2), torch.eye(3).expand(24, 3, 3), atol=1e-5)


def test_linear_alignment_is_the_classical_mkl_in_lab():
    from histocolor.classical import fit_mkl
    from histocolor.color import lab_to_rgb

    generator = torch.Generator().manual_seed(4)
    source = torch.rand(1, 3, 24, 24, generator=generator) * torch.tensor([0.8, 0.5, 0.4]).view(1, 3, 1, 1) + 0.05
    reference = torch.rand(1, 3, 20, 20, generator=generator) ** 2 * 0.7 + 0.15
    aligner = AnalogyConfig.from_dict({**SMALL.to_dict(), "alignment": {"method": "linear"}}).alignment.build()
    aligned = align_regions(rgb_to_lab(source), rgb_to_lab(reference), torch.ones(1, 1, 24, 24),
                            torch.ones(1, 1, 20, 20), torch.ones(1, 1, 24, 24), aligner)
    ours = lab_to_rgb(aligned)[0].flatten(1).T.numpy()
    theirs = fit_mkl(source[0].flatten(1).T.numpy(), reference[0].flatten(1).T.numpy())(source[0].flatten(1).T.numpy())
    np.testing.assert_allclose(ours, theirs, atol=2e-3)
    # Per region: each region follows its own reference region's Gaussian.
    halves = torch.zeros(1, 2, 24, 24)
    halves[:, 0, :12], halves[:, 1, 12:] = 1.0, 1.0
    reference_halves = torch.zeros(1, 2, 20, 20)
    reference_halves[:, 0, :10], reference_halves[:, 1, 10:] = 1.0, 1.0
    moved = aligner.maps(rgb_to_lab(source), rgb_to_lab(reference), halves, reference_halves)
    assert moved.shape == (1, 2, 3, 24, 24)
    top = lab_to_rgb(moved[:, 0])[0][:, :12].flatten(1).mean(1)
    np.testing.assert_allclose(top.numpy(), reference[0][:, :10].flatten(1).mean(1).numpy(), atol=0.02)
