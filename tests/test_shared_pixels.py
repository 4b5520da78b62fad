"""Same-photo references: registration, false-match rejection, the robust fit and routing (issue 38)."""

import cv2
import numpy as np
import pytest

from histocolor.cli import main
from histocolor.errors import HistocolorError
from histocolor.lut import fit_lut
from histocolor.metrics import psnr
from histocolor.shared_pixels import fit_shared_look, find_shared_pixels
from histocolor.engine import ColorTransfer

from conftest import DPST, PHOTOS, SAMPLES, require


def grade(rgb: np.ndarray) -> np.ndarray:
    """A strong global edit: per-channel tone curves (warmer, more contrast) and more saturation."""
    unit = rgb.astype(np.float32) / 255.0
    curved = np.stack([unit[..., 0] ** 0.75, unit[..., 1] ** 0.95, unit[..., 2] ** 1.3], axis=-1)
    curved = 0.5 + 1.25 * (curved - 0.5)
    grey = curved.mean(-1, keepdims=True)
    return np.clip(np.rint((grey + 1.3 * (curved - grey)) * 255.0), 0, 255).astype(np.uint8)


def _centre_crop(image, share):
    height, width = image.shape[:2]
    h, w = round(height * share), round(width * share)
    top, left = (height - h) // 2, (width - w) // 2
    return image[top : top + h, left : left + w], (left, top)


def _maps_to(homography, points):
    moved = np.c_[points, np.ones(len(points))] @ homography.T
    return moved[:, :2] / moved[:, 2:]


@pytest.fixture(scope="module")
def source(sample_pair):
    return sample_pair[0]


@pytest.fixture(scope="module")
def edited(source):
    return grade(source)


def test_a_mirrored_crop_of_an_edited_copy_is_found_where_it_is(source, edited):
    crop, (left, top) = _centre_crop(edited, 0.8)
    found = find_shared_pixels(source, np.ascontiguousarray(crop[:, ::-1]))
    assert found is not None and found.mirrored
    assert found.coverage == pytest.approx(0.64, abs=0.04)
    points = np.array([[200.0, 150.0], [400.0, 250.0], [300.0, 200.0]])
    expected = np.c_[crop.shape[1] - 1 - (points[:, 0] - left), points[:, 1] - top]
    assert np.abs(_maps_to(found.homography, points) - expected).max() < 2.0


@pytest.mark.parametrize("view", ["rotated", "half size", "tone only"])
def test_rotation_scale_and_tone_change_are_registered(source, edited, view):
    height, width = source.shape[:2]
    if view == "rotated":  # 6 degrees about the centre, then a 70 % crop
        matrix = cv2.getRotationMatrix2D((width / 2, height / 2), 6.0, 1.0)
        reference, (left, top) = _centre_crop(cv2.warpAffine(edited, matrix, (width, height)), 0.7)
        truth = np.vstack([matrix, [0, 0, 1]])
        truth = np.array([[1, 0, -left], [0, 1, -top], [0, 0, 1.0]]) @ truth
        coverage = 0.49
    elif view == "half size":
        reference = cv2.resize(edited, (width // 2, height // 2), interpolation=cv2.INTER_AREA)
        truth, coverage = np.diag([0.5, 0.5, 1.0]), 1.0
    else:
        reference, truth, coverage = edited, np.eye(3), 1.0
    found = find_shared_pixels(source, reference)
    assert found is not None and not found.mirrored
    assert found.coverage == pytest.approx(coverage, abs=0.05)
    points = np.array([[250.0, 170.0], [350.0, 230.0], [300.0, 200.0]])
    assert np.abs(_maps_to(found.homography, points) - _maps_to(truth, points)).max() < 2.0


def test_unrelated_photos_and_the_two_halves_of_one_share_nothing(sample_pair):
    source, reference = sample_pair
    assert find_shared_pixels(source, reference) is None
    assert find_shared_pixels(reference, source) is None
    for photo in sample_pair:
        half = photo.shape[1] // 2
        assert find_shared_pixels(photo[:, :half], photo[:, half:]) is None
        assert find_shared_pixels(grade(photo[:, half:]), photo[:, :half]) is None


def test_images_too_small_to_hold_features_share_nothing(source):
    assert find_shared_pixels(source[:20, :20], source[:20, :20]) is None


def test_no_false_match_on_a_sample_of_the_development_photos():
    """A sample of the benchmark of record (benchmarks/shared_pixels.py false-matches)."""
    from histocolor.imageio import read_image

    photos = sorted(require(PHOTOS).glob("*.jpg"))[:8]
    images = [read_image(path).rgb for path in photos]
    for first in range(len(images)):
        second = (first + 1) % len(images)
        assert find_shared_pixels(images[first], images[second]) is None, (photos[first].name, photos[second].name)
    for path in sorted((require(DPST) / "input").glob("*"))[:4]:
        style = next((DPST / "style").glob(path.stem.replace("in", "tar") + ".*"))
        assert find_shared_pixels(read_image(path).rgb, read_image(style).rgb) is None, path.name


def test_weighted_lut_fit_equals_leaving_out_the_zero_weight_examples(rng):
    colours = rng.random((4000, 3)).astype(np.float32)
    target = np.clip(colours ** 1.4, 0, 1)
    junk = rng.random((4000, 3)).astype(np.float32)
    kept = fit_lut(colours, target, 9)
    weights = np.r_[np.ones(4000), np.zeros(4000)]
    weighted = fit_lut(np.r_[colours, colours], np.r_[target, junk], 9, weights=weights)
    assert np.abs(weighted - kept).max() < 1e-3
    unweighted = fit_lut(np.r_[colours, colours], np.r_[target, junk], 9)
    assert np.abs(unweighted - kept).max() > 0.05  # the junk does bend a plain fit
    with pytest.raises(ValueError):
        fit_lut(colours, target, 9, weights=np.zeros(4000))


def test_the_look_fitted_on_shared_pixels_recovers_the_edit(source, edited):
    crop, _ = _centre_crop(edited, 0.8)
    reference = np.ascontiguousarray(crop[:, ::-1])
    look = fit_shared_look(source, reference, find_shared_pixels(source, reference))
    assert psnr(look.apply(source), edited) > 38.0
    assert look.shared.local_edit is None


def test_something_pasted_over_the_reference_does_not_bend_the_look(sample_pair, source, edited):
    crop, _ = _centre_crop(edited, 0.8)
    clean = np.ascontiguousarray(crop[:, ::-1])
    pasted = clean.copy()
    height, width = pasted.shape[:2]
    side = int(np.sqrt(0.1 * height * width))
    pasted[40 : 40 + side, 60 : 60 + side] = cv2.resize(sample_pair[1], (side, side))
    scores = []
    for reference in (clean, pasted):
        shared = find_shared_pixels(source, reference)
        assert shared is not None
        scores.append(psnr(fit_shared_look(source, reference, shared).apply(source), edited))
    assert scores[1] > scores[0] - 0.5


def test_a_vignette_in_the_reference_is_reported_as_a_local_edit(source, edited):
    height, width = edited.shape[:2]
    y, x = np.mgrid[0:height, 0:width]
    distance = np.hypot((x - width / 2) / (width / 2), (y - height / 2) / (height / 2))
    vignette = np.clip(1.0 - 0.45 * np.clip(distance - 0.4, 0, None) ** 1.5, 0, 1)[..., None]
    reference = np.clip(np.rint(edited * vignette), 0, 255).astype(np.uint8)
    look = fit_shared_look(source, reference, find_shared_pixels(source, reference))
    assert look.shared.local_edit is not None and "locally" in look.shared.local_edit
    assert "locally" in look.shared.describe()


def test_the_default_matches_a_same_photo_reference_and_leaves_others_bit_for_bit(sample_pair, source, edited,
                                                                                  tiny_weights):
    crop, _ = _centre_crop(edited, 0.8)
    same_photo = np.ascontiguousarray(crop[:, ::-1])
    engine, unmatched = ColorTransfer(weights=tiny_weights), ColorTransfer(weights=tiny_weights, match="off")
    matched = engine(source, same_photo)
    assert matched.shared_pixels is not None and "match" in matched.timings
    assert matched.shared_pixels.describe().startswith("same photo: 6")
    assert psnr(matched.image, edited) > 38.0 > psnr(unmatched(source, same_photo).image, edited)
    other = engine(source, sample_pair[1])
    assert other.shared_pixels is None
    assert np.array_equal(other.image, unmatched(source, sample_pair[1]).image)
    assert [r.shared_pixels is not None for r in engine.batch([(source, same_photo), (source, sample_pair[1])])] \
        == [True, False]
    assert matched.look.blended(0.5).shared_pixels is matched.shared_pixels  # a dialled look still says so


def test_classical_methods_match_only_when_asked(sample_pair, source, edited):
    crop, _ = _centre_crop(edited, 0.8)
    assert ColorTransfer("mkl")(source, crop).shared_pixels is None
    assert ColorTransfer("mkl", match="on")(source, crop).shared_pixels is not None
    with pytest.raises(HistocolorError, match="shares no pixels"):
        ColorTransfer("mkl", match="on")(source, sample_pair[1])
    with pytest.raises(HistocolorError, match="match mode"):
        ColorTransfer("mkl", match="sometimes")


def test_by_regions_a_globally_edited_copy_is_still_recovered(source, edited, tiny_weights):
    crop, (left, top) = _centre_crop(edited, 0.8)
    labels = np.zeros(source.shape[:2], np.int32)
    labels[:, source.shape[1] // 2 :] = 1
    reference_labels = labels[top : top + crop.shape[0], left : left + crop.shape[1]]
    result = ColorTransfer(weights=tiny_weights)(source, crop, source_labels=labels, reference_labels=reference_labels)
    assert result.shared_pixels is not None
    assert psnr(result.image, edited) > 38.0


def test_the_cli_says_what_it_found_and_can_be_told_not_to_match(tmp_path, source, edited, tiny_weights, capsys):
    from histocolor.imageio import write_image

    crop, _ = _centre_crop(edited, 0.8)
    write_image(tmp_path / "copy.png", np.ascontiguousarray(crop[:, ::-1]))
    common = [str(SAMPLES / "source.jpg"), str(tmp_path / "copy.png"), "--weights", str(tiny_weights), "--timings"]
    assert main(["transfer", *common, "-o", str(tmp_path / "a.png")]) == 0
    assert "same photo: 6" in capsys.readouterr().err
    # The command fits the look while the engine loads: the same result as the library's.
    from histocolor.imageio import read_image

    library = ColorTransfer(weights=tiny_weights)(read_image(SAMPLES / "source.jpg"), read_image(tmp_path / "copy.png"))
    assert np.array_equal(read_image(tmp_path / "a.png").rgb, library.image)
    assert main(["transfer", *common, "-o", str(tmp_path / "b.png"), "--match", "off"]) == 0
    assert "same photo" not in capsys.readouterr().err
    code = main(["transfer", str(SAMPLES / "source.jpg"), str(SAMPLES / "reference.jpg"), "-o", str(tmp_path / "c.png"),
                 "--method", "mkl", "--match", "on"])
    err = capsys.readouterr().err
    assert code == 2 and "shares no pixels" in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "c.png").exists()


def test_a_lut_fit_started_from_a_nearby_lut_reaches_the_same_solution(rng):
    colours = rng.random((5000, 3)).astype(np.float32)
    target = np.clip(colours ** 1.3 + 0.05, 0, 1)
    fitted = fit_lut(colours, target, 17)
    restarted = fit_lut(colours, target, 17, start=np.clip(fitted + 0.02, 0, 1))
    assert np.abs(restarted - fitted).max() < 2e-3


def test_the_docstring_examples_hold():
    import doctest

    import histocolor.shared_pixels

    results = doctest.testmod(histocolor.shared_pixels)
    assert results.attempted >= 2 and results.failed == 0


@pytest.mark.slow
def test_by_regions_each_region_takes_the_edit_of_its_own_shared_pixels(held_out_region_views, tiny_weights):
    """Region views: each region of the truth graded apart, the reference a mirrored crop of it.
    The match by regions follows each region's grade, which one global look cannot."""
    from histocolor.metrics import ciede2000

    engine = ColorTransfer(weights=tiny_weights)
    by_regions, whole = [], []
    for source, labels, reference, reference_labels, truth in held_out_region_views:
        result = engine(source, reference, source_labels=labels, reference_labels=reference_labels)
        assert result.shared_pixels is not None
        by_regions.append(ciede2000(result.image, truth))
        whole.append(ciede2000(engine(source, reference).image, truth))
    assert np.mean(by_regions) < 0.8 * np.mean(whole)


def test_a_strip_too_thin_to_register_goes_to_the_network(source, tiny_weights):
    strip = np.ascontiguousarray(np.tile(source[:48, :300], (1, 40, 1)))  # 48 x 12000 pixels
    result = ColorTransfer(weights=tiny_weights)(strip, grade(strip))
    assert result.shared_pixels is None and result.image.shape == strip.shape


def test_a_region_map_that_sends_regions_elsewhere_is_not_overruled_by_the_match(source, tiny_weights):
    labels = np.zeros(source.shape[:2], np.int32)
    labels[:, source.shape[1] // 2 :] = 1
    engine = ColorTransfer(weights=tiny_weights)
    swapped = engine(source, source, source_labels=labels, reference_labels=labels, region_map={0: 1, 1: 0})
    assert swapped.shared_pixels is None
    assert engine(source, source, source_labels=labels, reference_labels=labels).shared_pixels is not None


def test_a_lut_fit_refuses_a_start_of_another_size(rng):
    with pytest.raises(ValueError, match="start"):
        fit_lut(rng.random((100, 3)), rng.random((100, 3)), 9, start=np.zeros((17, 17, 17, 3)))


def test_transparent_pixels_of_the_reference_stay_out_of_the_fit(source, edited, tiny_weights):
    """A cut-out export: the edited copy with its top half transparent, and black there."""
    height = source.shape[0]
    cut = edited.copy()
    cut[: height // 3] = 0
    alpha = np.full(source.shape[:2], 255, np.uint8)
    alpha[: height // 3] = 0
    result = ColorTransfer(weights=tiny_weights)(source, np.dstack([cut, alpha]))
    assert result.shared_pixels is not None
    assert psnr(result.image[height // 3 :], edited[height // 3 :]) > 38.0


@pytest.mark.slow
def test_the_evaluation_report_says_which_pairs_shared_pixels(tmp_path, source, edited, tiny_weights):
    from histocolor.evaluate import evaluate
    from histocolor.imageio import write_image

    crop, _ = _centre_crop(edited, 0.8)
    write_image(tmp_path / "source.png", source)
    write_image(tmp_path / "copy.png", np.ascontiguousarray(crop[:, ::-1]))
    write_image(tmp_path / "truth.png", edited)
    (tmp_path / "pairs.csv").write_text("source,reference,truth\nsource.png,copy.png,truth.png\n"
                                        f"source.png,{SAMPLES / 'reference.jpg'},truth.png\n")
    summary = evaluate({"set": tmp_path / "pairs.csv"}, ["analogy", "histmatch"], tmp_path / "report",
                       weights=tiny_weights)["set"]
    report = (tmp_path / "report" / "report.md").read_text()
    assert "analogy fitted the look on shared pixels for 1 of 2 pairs" in report and "same photo: 64 %" in report
    assert "histmatch fitted" not in report
    assert summary["analogy"]["psnr"] > summary["histmatch"]["psnr"]
