import torch

from histocolor.model import AnalogyConfig, HistogramAnalogy
from histocolor.model.alignment import MAX_SPREAD_RATIO, align_regions, weighted_moments

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
    plain = HistogramAnalogy(AnalogyConfig(**{**SMALL.to_dict(), "align_regions": False})).eval()
    with torch.no_grad():
        assert torch.allclose(plain(source, reference, regions, regions).output, source, atol=1e-3)
