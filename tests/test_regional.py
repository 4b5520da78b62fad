"""Region-wise transfer: correspondence, feathering, the full-resolution blend, CLI masks."""

import json

import numpy as np
import pytest
from PIL import Image

from histocolor.cli import main
from histocolor.errors import HistocolorError
from histocolor.imageio import read_image
from histocolor.metrics import ciede2000, region_sliced_wasserstein
from histocolor.regions import check_labels, match_regions, parse_region_map, region_weights
from histocolor.engine import ColorTransfer, transfer

from conftest import DPST, require


def _halves(height=60, width=80):
    labels = np.zeros((height, width), np.int32)
    labels[:, width // 2 :] = 1
    return labels


def _two_tone(rng, left, right, height=60, width=80):
    image = np.empty((height, width, 3), np.float32)
    image[:, : width // 2] = left
    image[:, width // 2 :] = right
    return np.clip(image + rng.normal(0, 0.04, image.shape), 0, 1).astype(np.float32)


def test_regions_match_by_label_leave_out_small_ones_and_follow_a_map():
    source, reference = np.zeros((100, 100), np.int32), np.zeros((100, 100), np.int32)
    source[:50], source[99, 99] = 1, 7  # label 7: one pixel, too small
    reference[:30], reference[30:60] = 1, 2
    reference[99, :] = 7
    assert match_regions(source, reference) == [([0], [0]), ([1], [1])]
    assert match_regions(source, reference, {1: [1, 2]}) == [([0], [0]), ([1], [1, 2])]
    with pytest.raises(HistocolorError, match="no region in common"):
        match_regions(source + 10, reference)


def test_region_maps_and_label_checks_fail_clearly(tmp_path):
    assert parse_region_map({"3": 5, "4": [4, 6]}) == {3: [5], 4: [4, 6]}
    with pytest.raises(HistocolorError, match="integers"):
        parse_region_map({"sky": 5})
    with pytest.raises(HistocolorError, match="mask is 40x40 but its image is 80x60"):
        check_labels(np.zeros((40, 40)), (60, 80, 3), "source")
    # the same shape at another scale, or one pixel off (as some published masks are): resized
    half = check_labels(np.kron(np.eye(2, dtype=np.int32), np.ones((15, 20), np.int32)), (60, 80, 3), "source")
    assert half.shape == (60, 80) and half[:30, :40].min() == 1 and half[30:, :40].max() == 0
    assert check_labels(np.zeros((59, 80)), (60, 80, 3), "source").shape == (60, 80)


def test_thin_regions_keep_their_weight_and_bad_labels_fail():
    labels = np.zeros((64, 256), np.int32)
    labels[:, ::8] = 1  # every 8th column: 12.5 % of the image, thinner than a working-size pixel
    weights = region_weights(labels, [[1]], (16, 64))
    assert abs(weights.mean() - 0.125) < 1e-3
    for bad in (np.full((4, 4), 2.0**33), np.full((4, 4), np.nan)):
        with pytest.raises(HistocolorError, match="32-bit"):
            check_labels(bad, (4, 4, 3), "source")


def test_feathered_weights_stay_a_partition_of_unity():
    labels = _halves()
    hard = region_weights(labels, [[0], [1]], (30, 40))
    soft = region_weights(labels, [[0], [1]], (30, 40), feather=0.05)
    assert set(np.unique(hard).tolist()) == {0.0, 1.0}
    assert np.allclose(soft.sum(0), 1.0, atol=1e-5)
    assert 0.1 < soft[0, 15, 20] < 0.9  # the seam is blended
    assert soft[0, 15, 0] > 0.99 and soft[1, 15, 39] > 0.99


@pytest.mark.parametrize("method", ["mkl", "reinhard", "analogy"])
def test_each_region_takes_its_reference_regions_colours(rng, method, tiny_weights):
    source = _two_tone(rng, (0.5, 0.5, 0.5), (0.45, 0.5, 0.55))
    reference = _two_tone(rng, (0.8, 0.2, 0.2), (0.2, 0.2, 0.8))
    labels = _halves()
    # The network is untrained (small random residuals): by regions it recolours the source
    # aligned onto each reference region's moments, so each region gets its colours anyway.
    engine = ColorTransfer(method, weights=tiny_weights, max_side=64)
    by_regions = engine(source, reference, source_labels=labels, reference_labels=labels).image
    assert by_regions.shape == source.shape and by_regions.dtype == source.dtype
    overall = engine(source, reference).image
    left, right = by_regions[:, :30].mean((0, 1)), by_regions[:, 50:].mean((0, 1))
    assert left[0] > left[2] + 0.4 and right[2] > right[0] + 0.4  # red stays left, blue right
    ours = region_sliced_wasserstein(by_regions, reference, labels, labels)
    assert ours < region_sliced_wasserstein(overall, reference, labels, labels) / 3


@pytest.mark.slow
def test_by_regions_the_shipped_networks_learned_part_beats_its_alignment(held_out_region_views, alignment_alone):
    """Region by region the CTN must add to the per-region alignment it starts from: with its
    residual heads at zero the held-out region views come out further from their truth. (The
    views share pixels with their sources, which the default matches: the network alone here.)"""
    network, aligned = ColorTransfer("analogy", match="off"), ColorTransfer("analogy", weights=alignment_alone,
                                                                            match="off")
    ours, alone = (
        np.mean([
            ciede2000(engine(source, reference, source_labels=labels, reference_labels=reference_labels).image, truth)
            for source, labels, reference, reference_labels, truth in held_out_region_views
        ])
        for engine in (network, aligned)
    )
    global_transfer = np.mean([ciede2000(network(view[0], view[2]).image, view[4]) for view in held_out_region_views])
    assert ours < 0.995 * alone and ours < 0.7 * global_transfer


def test_swapped_region_map_swaps_the_colours(rng):
    source = _two_tone(rng, (0.5, 0.5, 0.5), (0.45, 0.5, 0.55))
    reference = _two_tone(rng, (0.8, 0.2, 0.2), (0.2, 0.2, 0.8))
    labels = _halves()
    for region_map in ({0: [1], 1: [0]}, {0: 1, 1: 0}, {"0": [1], "1": 0}):  # lists, ints, JSON's string keys
        result = transfer(source, reference, "mkl", source_labels=labels, reference_labels=labels, region_map=region_map)
        assert result.image[:, :30, 2].mean() > result.image[:, :30, 0].mean() + 0.4  # left is now blue


def test_regions_on_real_masks_beat_the_global_transfer():
    data = require(DPST)
    source, reference = (read_image(data / folder / name).rgb for folder, name in (("input", "in5.png"), ("style", "tar5.png")))
    masks = [data / "segmentation" / name for name in ("in5.png", "tar5.png")]
    from histocolor.regions import load_label_map

    labels = [load_label_map(mask) for mask in masks]
    engine = ColorTransfer("mkl")
    overall = engine(source, reference).image
    by_regions = engine(source, reference, source_labels=masks[0], reference_labels=masks[1]).image
    assert region_sliced_wasserstein(by_regions, reference, *labels) < 0.6 * region_sliced_wasserstein(overall, reference, *labels)


def test_cli_masks_region_map_and_their_errors(tmp_path, capsys, rng):
    source = (_two_tone(rng, (0.5, 0.5, 0.5), (0.45, 0.5, 0.55)) * 255).astype(np.uint8)
    reference = (_two_tone(rng, (0.8, 0.2, 0.2), (0.2, 0.2, 0.8)) * 255).astype(np.uint8)
    for name, image in (("s.png", source), ("r.png", reference)):
        Image.fromarray(image).save(tmp_path / name)
    Image.fromarray(_halves().astype(np.uint8)).save(tmp_path / "m.png")
    Image.fromarray(np.zeros((10, 10), np.uint8)).save(tmp_path / "small.png")
    Image.fromarray(np.full((60, 80), 9, np.uint8)).save(tmp_path / "other.png")
    (tmp_path / "swap.json").write_text(json.dumps({"0": 1, "1": 0}))
    paths = [str(tmp_path / n) for n in ("s.png", "r.png")]
    base = ["transfer", *paths, "--method", "mkl", "-o"]
    assert main([*base, str(tmp_path / "out.png"), "--source-mask", str(tmp_path / "m.png"),
                 "--reference-mask", str(tmp_path / "m.png"), "--region-map", str(tmp_path / "swap.json")]) == 0
    out = read_image(tmp_path / "out.png").rgb.astype(int)
    assert out[:, :30, 2].mean() > out[:, :30, 0].mean() + 80  # the map sent blue to the left
    capsys.readouterr()
    for extra, message in (
        (["--source-mask", str(tmp_path / "small.png"), "--reference-mask", str(tmp_path / "m.png")], "masks must match"),
        (["--source-mask", str(tmp_path / "other.png"), "--reference-mask", str(tmp_path / "m.png")], "no region in common"),
        (["--source-mask", str(tmp_path / "m.png")], "needs both"),
    ):
        assert main([*base, str(tmp_path / "bad.png"), *extra]) == 2
        err = capsys.readouterr().err
        assert message in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "bad.png").exists()


def test_segment_command_writes_matched_label_maps_and_transfer_uses_a_segmenter(tmp_path, capsys, rng):
    from histocolor.regions import load_label_map

    source = (_two_tone(rng, (0.8, 0.8, 0.8), (0.2, 0.25, 0.2)) * 255).astype(np.uint8)
    reference = (_two_tone(rng, (0.9, 0.6, 0.3), (0.1, 0.1, 0.3)) * 255).astype(np.uint8)
    for name, image in (("s.png", source), ("r.png", reference)):
        Image.fromarray(image).save(tmp_path / name)
    assert main(["segment", str(tmp_path / "s.png"), "-o", str(tmp_path / "s-labels.png"), "--segmenter", "slic",
                 "--reference", str(tmp_path / "r.png"), "--reference-output", str(tmp_path / "r-labels.png")]) == 0
    printed = capsys.readouterr().out
    assert "bright" in printed and "dark" in printed
    labels = [load_label_map(tmp_path / name) for name in ("s-labels.png", "r-labels.png")]
    assert labels[0].shape == (60, 80) and (labels[0] == labels[1]).mean() > 0.8
    assert main(["transfer", str(tmp_path / "s.png"), str(tmp_path / "r.png"), "-o", str(tmp_path / "out.png"),
                 "--method", "mkl", "--segmenter", "slic", "--timings"]) == 0
    assert "segment" in capsys.readouterr().err
    out = read_image(tmp_path / "out.png").rgb.astype(int)
    assert out[:, :30, 0].mean() > out[:, :30, 2].mean() + 60  # the light left half took the orange
    assert main(["transfer", str(tmp_path / "s.png"), str(tmp_path / "r.png"), "-o", str(tmp_path / "x.png"),
                 "--segmenter", "deeplab"]) == 2
    assert "unknown segmenter" in capsys.readouterr().err and not (tmp_path / "x.png").exists()


def test_the_lut_head_model_runs_region_wise_with_one_lut_per_region(rng, tmp_path):
    import torch

    from histocolor.model import AnalogyConfig, HistogramAnalogy

    torch.manual_seed(0)
    model = HistogramAnalogy(AnalogyConfig(hen_widths=(8, 8, 8, 8), feature_size=16, head="lut", lut_size=9))
    torch.nn.init.normal_(model.lut_head.bases, std=0.3)
    source = _two_tone(rng, (0.5, 0.5, 0.5), (0.5, 0.5, 0.5))  # one colour, two regions
    reference = _two_tone(rng, (0.8, 0.2, 0.2), (0.2, 0.2, 0.8))
    labels = _halves()
    result = ColorTransfer(model=model, max_side=64)(source, reference, source_labels=labels, reference_labels=labels)
    assert result.image.shape == source.shape and result.lut is None
    # the same colour became two different ones: each half got its own LUT
    assert np.abs(result.image[:, :30].mean((0, 1)) - result.image[:, 50:].mean((0, 1))).max() > 0.01


def test_a_region_map_naming_labels_that_do_not_exist_is_an_error():
    """Label 99 used to fall back silently to the global transfer."""
    labels = np.zeros((40, 40), np.int32)
    labels[:, 20:] = 1
    with pytest.raises(HistocolorError, match=r"reference label\(s\) 99 .* do not have"):
        match_regions(labels, labels, {1: [99]})
    with pytest.raises(HistocolorError, match=r"source label\(s\) 7 .* do not have"):
        match_regions(labels, labels, {7: [1]})
    assert match_regions(labels, labels, {0: [], 1: [0]}) == [([1], [0])]  # 0: [] follows the global transfer
