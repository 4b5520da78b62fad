"""Looks as .cube files: written and read through colour-science, applied by other tools alike (issue 14)."""

import colour
import numpy as np
import pytest
from PIL import Image

from histocolor.cli import main
from histocolor.cube import read_cube, save_look, write_cube
from histocolor.errors import HistocolorError
from histocolor.imageio import read_image, write_image
from histocolor.lut import apply_lut, identity_lut
from histocolor.metrics import psnr
from histocolor.model.io import DEFAULT_WEIGHTS
from histocolor.engine import METHODS, ColorTransfer

from conftest import DPST, SAMPLES, require

SOURCE, REFERENCE = SAMPLES / "source.jpg", SAMPLES / "reference.jpg"


def _colour_science_apply(cube_path, rgb: np.ndarray) -> np.ndarray:
    """The .cube applied by colour-science's own reader and trilinear interpolation, as 8-bit."""
    lut = colour.read_LUT(str(cube_path))
    return np.clip(np.rint(lut.apply(rgb / 255.0) * 255.0), 0, 255).astype(np.uint8)


def test_a_cube_round_trips_through_colour_science(tmp_path, rng):
    lut = np.clip(identity_lut(9) ** 0.8 + rng.normal(0, 0.01, (9, 9, 9, 3)), 0, 1).astype(np.float32)
    path = write_cube(tmp_path / "look.cube", lut)
    assert np.abs(read_cube(path) - lut).max() < 1e-6
    read_back = colour.read_LUT(str(path))
    assert isinstance(read_back, colour.LUT3D) and read_back.size == 9
    assert np.abs(read_back.table - lut).max() < 1e-6  # indexed [r, g, b] both sides
    assert [p.name for p in tmp_path.iterdir()] == ["look.cube"]  # no temporary file left


def test_the_shipped_networks_cube_reproduces_its_result_in_colour_science(tmp_path):
    engine = ColorTransfer("analogy", weights=DEFAULT_WEIGHTS)
    source = read_image(SOURCE).rgb
    result = engine(source, read_image(REFERENCE).rgb)
    paths = save_look(tmp_path / "look.cube", result.look, engine.lut_size)
    assert paths == [tmp_path / "look.cube"]
    theirs = _colour_science_apply(paths[0], source)
    assert np.abs(theirs.astype(int) - result.image).max() <= 1  # within 1/255
    assert np.abs(result.image.astype(int) - source).mean() > 5  # and the look is not the identity


@pytest.mark.parametrize("method", [m for m in METHODS if m != "analogy"])
def test_every_classical_look_exports_and_colour_science_applies_it_like_histocolor(tmp_path, method, sample_pair):
    source, reference = sample_pair
    result = ColorTransfer(method, lut_size=33)(source, reference)
    path = save_look(tmp_path / "look.cube", result.look, 33)[0]
    ours = apply_lut(source, read_cube(path))
    assert np.abs(_colour_science_apply(path, source).astype(int) - ours).max() <= 1
    # The exact mapping and its 33^3 tabulation differ by interpolation error only (measured:
    # 0.3-2.3 levels on average, the most for IDT's and histogram matching's curves).
    assert psnr(ours, result.image) > 35


@pytest.mark.slow
def test_apply_lut_reproduces_transfer_for_8_bit_16_bit_and_alpha(tmp_path, capsys):
    look, out = tmp_path / "look.cube", tmp_path / "out.png"
    assert main(["transfer", str(SOURCE), str(REFERENCE), "-o", str(out), "--save-lut", str(look)]) == 0
    assert f"look saved: {look}" in capsys.readouterr().err
    applied = tmp_path / "applied.png"
    assert main(["apply-lut", str(SOURCE), str(look), "-o", str(applied)]) == 0
    assert np.array_equal(read_image(applied).rgb, read_image(out).rgb)
    # 16-bit with alpha: stays 16-bit, alpha untouched, colours as the 8-bit result's.
    source = read_image(SOURCE).rgb
    alpha = np.tile(np.linspace(0, 65535, source.shape[1]).astype(np.uint16), (source.shape[0], 1))
    deep = np.dstack([source.astype(np.uint16) * 257, alpha])
    write_image(tmp_path / "deep.png", deep[..., :3], deep[..., 3])
    assert main(["apply-lut", str(tmp_path / "deep.png"), str(look), "-o", str(tmp_path / "deep-out.png")]) == 0
    written = read_image(tmp_path / "deep-out.png")
    assert written.rgb.dtype == np.uint16 and np.array_equal(written.alpha, alpha)
    assert np.abs(written.rgb / 257.0 - read_image(out).rgb).max() <= 1.0
    half = tmp_path / "half.png"
    assert main(["apply-lut", str(SOURCE), str(look), "-o", str(half), "--strength", "0.5"]) == 0
    expected = (source.astype(float) + read_image(out).rgb) / 2
    assert np.abs(read_image(half).rgb - expected).max() <= 1.0


def test_by_regions_one_cube_per_region_the_rest_and_the_label_map(tmp_path, tiny_weights):
    data = require(DPST)
    source, reference = data / "input" / "in9.png", data / "style" / "tar9.png"
    masks = [data / "segmentation" / f"{name}9.png" for name in ("in", "tar")]
    engine = ColorTransfer("mkl")
    result = engine(source, reference, source_labels=masks[0], reference_labels=masks[1])
    paths = save_look(tmp_path / "look.cube", result.look, 17)
    assert [p.name for p in paths[-2:]] == ["look-rest.cube", "look-labels.png"]
    assert all(p.name.startswith("look-region-") for p in paths[:-2]) and len(paths) == len(result.look.maps) + 1
    labels = np.asarray(Image.open(paths[-1]))
    assert np.array_equal(labels, result.look.label_map)
    image = read_image(source).rgb
    for path, group, colour_map in zip(paths, result.look.labels, result.look.maps):
        inside = np.isin(labels, group)
        # Deep inside a region, the result is that region's cube (seams are feathered blends).
        from scipy.ndimage import binary_erosion

        core = binary_erosion(inside, iterations=25)
        if core.sum() > 1000 and colour_map is not None:
            ours = apply_lut(image, read_cube(path))
            assert np.abs(ours[core].astype(int) - result.image[core]).mean() < 1.5


def test_cli_refuses_bad_lut_requests_in_one_line(tmp_path, capsys):
    (tmp_path / "bad.cube").write_text("LUT_3D_SIZE 2\n0 0 0\nnot numbers\n")
    nan = "LUT_3D_SIZE 2\n" + "nan 0 0\n" * 8
    (tmp_path / "nan.cube").write_text(nan)
    cases = [
        ["transfer", str(SOURCE), str(REFERENCE), "-o", str(tmp_path / "o.png"), "--save-lut", str(tmp_path / "l.txt")],
        ["apply-lut", str(SOURCE), str(tmp_path / "missing.cube"), "-o", str(tmp_path / "o.png")],
        ["apply-lut", str(SOURCE), str(tmp_path / "bad.cube"), "-o", str(tmp_path / "o.png")],
        ["apply-lut", str(SOURCE), str(tmp_path / "nan.cube"), "-o", str(tmp_path / "o.png")],
        ["apply-lut", str(SOURCE), str(tmp_path / "bad.cube"), "-o", str(SOURCE)],
    ]
    for argv in cases:
        assert main(argv) == 2
        lines = capsys.readouterr().err.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("histocolor: error:"), (argv, lines)
    assert not (tmp_path / "o.png").exists()


def test_a_1d_cube_is_read_as_its_3d_table(tmp_path):
    curve = colour.LUT3x1D(np.linspace(0, 1, 16)[:, None].repeat(3, 1) ** 2)
    colour.write_LUT(curve, str(tmp_path / "curve.cube"))
    table = read_cube(tmp_path / "curve.cube")
    assert table.shape == (33, 33, 33, 3)
    assert np.abs(table[32, 16, 0] - np.array([1.0, 0.25, 0.0])).max() < 0.01


def test_write_cube_refuses_other_extensions(tmp_path):
    with pytest.raises(HistocolorError, match=".cube"):
        write_cube(tmp_path / "look.png", identity_lut(3))


def test_plain_cubes_are_read_without_colour_science_as_colour_science_reads_them(tmp_path, rng):
    """The numpy reader of plain 3D tables (headers, comments, domain lines, CRLF) against colour.read_LUT."""
    table = rng.random((5, 5, 5, 3))
    rows = table.transpose(2, 1, 0, 3).reshape(-1, 3)  # red fastest, the format's order
    body = "\n".join(" ".join(f"{v:.6f}" for v in row) for row in rows)
    variants = {
        "plain": f'TITLE "a look"\nLUT_3D_SIZE 5\n{body}\n',
        "domain": f"# made elsewhere\nLUT_3D_SIZE 5\nDOMAIN_MIN 0 0 0\nDOMAIN_MAX 1.0 1.0 1.0\n\n{body}\n",
        "crlf": f'TITLE "x"\r\nLUT_3D_SIZE 5\r\n{body}'.replace("\n", "\r\n"),
    }
    for name, text in variants.items():
        path = tmp_path / f"{name}.cube"
        path.write_bytes(text.encode())
        assert np.abs(read_cube(path) - colour.read_LUT(str(path)).table).max() < 1e-6, name
        assert np.abs(read_cube(path) - table).max() < 1e-6, name
    # Another domain, or a shaper, is colour-science's case: the reader hands it over.
    other = tmp_path / "other-domain.cube"
    other.write_text(f"LUT_3D_SIZE 5\nDOMAIN_MIN 0 0 0\nDOMAIN_MAX 2 2 2\n{body}\n")
    grid = identity_lut(33).astype(np.float64)
    expected = np.clip(colour.read_LUT(str(other)).apply(grid), 0, 1)
    assert np.abs(read_cube(other) - expected).max() < 1e-6
    truncated = tmp_path / "truncated.cube"
    truncated.write_text(f"LUT_3D_SIZE 5\n{body[: len(body) // 2]}\n")
    with pytest.raises(HistocolorError, match="cannot read LUT"):
        read_cube(truncated)
