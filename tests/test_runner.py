"""One runner for every batch (issue 39): the single transfer and ``--pairs`` give the same
results for every image kind, a write never replaces a file that appeared meanwhile (two
processes racing on one output: exactly one wins), and the bad inputs of the batch surfaces
end in one line."""

import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest
import tifffile
from PIL import Image

import histocolor.imageio as imageio
from histocolor.atomic import OutputExists, publish
from histocolor.cli import main
from histocolor.imageio import read_image, write_image

from conftest import SAMPLES

SOURCE, REFERENCE = SAMPLES / "source.jpg", SAMPLES / "reference.jpg"


def _error_lines(err: str) -> list[str]:
    return [line for line in err.splitlines() if "error:" in line]


def _one_line_error(code: int, err: str, expected: int = 2) -> str:
    assert code == expected, err
    assert "Traceback" not in err, err
    lines = [line for line in err.splitlines() if line.strip() and "|" not in line]  # tqdm bars hold '|'
    assert len(lines) == 1, err
    return lines[0]


def test_publish_never_replaces_a_file_that_exists(tmp_path):
    temporary, target = tmp_path / "mine.tmp", tmp_path / "out.png"
    temporary.write_bytes(b"mine")
    target.write_bytes(b"theirs")
    with pytest.raises(OutputExists, match="exists"):
        publish(temporary, target)
    assert target.read_bytes() == b"theirs" and temporary.read_bytes() == b"mine"
    publish(temporary, target, replace=True)
    assert target.read_bytes() == b"mine" and not temporary.exists()
    fresh = tmp_path / "fresh.tmp"
    fresh.write_bytes(b"new")
    publish(fresh, tmp_path / "new.png")
    assert (tmp_path / "new.png").read_bytes() == b"new" and not fresh.exists()


def _another_process_writes(monkeypatch, target: Path, content: bytes):
    """While histocolor encodes (its checks passed), the output appears, as another process's would."""
    encode = imageio._encode

    def racing(stream, ext, *args, **kwargs):
        if not target.exists():
            target.write_bytes(content)
        return encode(stream, ext, *args, **kwargs)

    monkeypatch.setattr(imageio, "_encode", racing)


def test_an_output_that_appears_during_the_transfer_is_kept(tmp_path, monkeypatch, capsys):
    output = tmp_path / "out.png"
    _another_process_writes(monkeypatch, output, b"the other process's result")
    line = _one_line_error(main(["transfer", str(SOURCE), str(REFERENCE), "-o", str(output), "--method", "mkl"]),
                           capsys.readouterr().err)
    assert "exists" in line and "--overwrite" in line
    assert output.read_bytes() == b"the other process's result"
    assert sorted(path.name for path in tmp_path.iterdir()) == ["out.png"]  # no temporary file left


def test_a_batch_row_whose_output_appears_meanwhile_reports_exists(tmp_path, monkeypatch, capsys):
    (tmp_path / "pairs.csv").write_text(f"source,reference,output\n{SOURCE},{REFERENCE},a.png\n"
                                        f"{REFERENCE},{SOURCE},b.png\n")
    _another_process_writes(monkeypatch, tmp_path / "b.png", b"other")
    code = main(["transfer", "--pairs", str(tmp_path / "pairs.csv"), "--method", "mkl", "--io-threads", "0"])
    err = capsys.readouterr().err
    assert code == 1
    assert [line.split(":")[0] for line in _error_lines(err)] == ["line 3"] and "exists" in err
    assert (tmp_path / "b.png").read_bytes() == b"other"
    assert read_image(tmp_path / "a.png").rgb.shape[-1] == 3
    # --overwrite replaces it, as asked.
    assert main(["transfer", "--pairs", str(tmp_path / "pairs.csv"), "--method", "mkl", "--overwrite"]) == 0
    assert (tmp_path / "b.png").read_bytes()[:4] == b"\x89PNG"


def _large_pair(folder: Path) -> tuple[Path, Path]:
    """A 3000x2000 pair: long enough to work on that two processes started together overlap."""
    paths = []
    for name, photo in (("big-source.png", SOURCE), ("big-reference.png", REFERENCE)):
        Image.open(photo).convert("RGB").resize((3000, 2000)).save(folder / name, compress_level=1)
        paths.append(folder / name)
    return paths[0], paths[1]


def _histocolor(*argv) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "histocolor", *map(str, argv)], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)


@pytest.mark.slow
def test_two_processes_racing_to_one_output_one_wins_the_other_reports_exists(tmp_path):
    source, reference = _large_pair(tmp_path)
    output = tmp_path / "out.png"
    racers = [_histocolor("transfer", source, reference, "-o", output, "--method", method) for method in ("mkl", "idt")]
    finished = [(racer.wait(timeout=300), racer.stderr.read()) for racer in racers]
    codes = sorted(code for code, _ in finished)
    assert codes == [0, 2], finished
    loser = next(err for code, err in finished if code == 2)
    assert "exists" in loser and "Traceback" not in loser
    assert read_image(output).rgb.shape == (2000, 3000, 3)
    assert sorted(path.name for path in tmp_path.iterdir()) == ["big-reference.png", "big-source.png", "out.png"]


@pytest.mark.slow
def test_two_batches_into_one_folder_write_each_output_once(tmp_path):
    source, reference = _large_pair(tmp_path)
    rows = "".join(f"{source.name},{reference.name},out/{index}.png\n" for index in range(4))
    (tmp_path / "pairs.csv").write_text("source,reference,output\n" + rows)
    racers = [_histocolor("transfer", "--pairs", tmp_path / "pairs.csv", "--method", method, "--io-threads", "0")
              for method in ("mkl", "idt")]
    finished = [(racer.wait(timeout=300), racer.stderr.read()) for racer in racers]
    failed = [len(_error_lines(err)) for _, err in finished]
    assert sum(failed) == 4, finished  # each of the 4 outputs written by exactly one batch
    assert all("exists" in line for _, err in finished for line in _error_lines(err))
    assert sorted(path.name for path in (tmp_path / "out").iterdir()) == ["0.png", "1.png", "2.png", "3.png"]


def _odd_kinds(folder: Path) -> list[Path]:
    """The robustness corpus's odd but valid image kinds, as sources."""
    small = Image.open(SOURCE).convert("RGB").resize((160, 106))
    pixels = np.asarray(small)
    kinds = {
        "rgb.png": small, "palette.png": small.convert("P"), "grey.png": small.convert("L"),
        "grey_alpha.png": small.convert("LA"), "palette.gif": small.convert("P"), "cmyk.jpg": small.convert("CMYK"),
        "rgba.png": Image.fromarray(np.dstack([pixels, np.linspace(0, 255, pixels.size // 3).astype(np.uint8)
                                               .reshape(pixels.shape[:2])])),
    }
    for name, image in kinds.items():
        image.save(folder / name)
    tifffile.imwrite(folder / "sixteen.tif", pixels.astype(np.uint16) * 257, photometric="rgb")
    return [folder / name for name in (*kinds, "sixteen.tif")]


@pytest.mark.slow
@pytest.mark.parametrize("method", ["analogy", "reinhard"])
def test_a_stacked_batch_equals_the_single_transfer_for_every_image_kind(tmp_path, method, capsys):
    sources = _odd_kinds(tmp_path)
    Image.open(REFERENCE).convert("RGB").resize((160, 106)).save(tmp_path / "reference.png")
    options = ["--method", method, "--max-side", "96"]
    lines = ["source,reference,output"] + [f"{path.name},reference.png,batch/{path.name}.png" for path in sources]
    (tmp_path / "pairs.csv").write_text("\n".join(lines) + "\n")
    assert main(["transfer", "--pairs", str(tmp_path / "pairs.csv"), "--batch-size", "8", *options]) == 0
    for path in sources:
        single = tmp_path / f"single-{path.name}.png"
        assert main(["transfer", str(path), str(tmp_path / "reference.png"), "-o", str(single), *options]) == 0
        alone, stacked = read_image(single), read_image(tmp_path / "batch" / f"{path.name}.png")
        scale = 257 if alone.rgb.dtype == np.uint16 else 1
        assert stacked.rgb.dtype == alone.rgb.dtype, path.name
        assert np.abs(stacked.rgb.astype(int) - alone.rgb.astype(int)).max() <= scale, path.name
        assert (stacked.alpha is None) == (alone.alpha is None), path.name


def test_rgba_to_bmp_warns_that_alpha_is_dropped(tmp_path):
    rgb = np.zeros((4, 4, 3), np.uint8)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        write_image(tmp_path / "out.bmp", rgb, np.full((4, 4), 128, np.uint8))
    assert any("BMP has no alpha" in str(warning.message) for warning in caught)
    assert read_image(tmp_path / "out.bmp").alpha is None


@pytest.mark.parametrize("argv, phrase", [
    (["--batch-size", "0"], "--batch-size must be 1 or more"),
    (["--lut-size", "129"], "at most 65"),
])
def test_single_transfer_options_are_checked(tmp_path, capsys, argv, phrase):
    output = tmp_path / "out.png"
    line = _one_line_error(main(["transfer", str(SOURCE), str(REFERENCE), "-o", str(output), *argv]),
                           capsys.readouterr().err)
    assert phrase in line and not output.exists()


def test_the_classical_methods_still_tabulate_129_point_luts(tmp_path, capsys):
    look = tmp_path / "look.cube"
    assert main(["transfer", str(SOURCE), str(REFERENCE), "-o", str(tmp_path / "out.png"), "--method", "reinhard",
                 "--lut-size", "129", "--save-lut", str(look)]) == 0
    assert "LUT_3D_SIZE 129" in look.read_text()[:200]


def test_a_nul_byte_in_a_pairs_csv_is_one_line(tmp_path, capsys):
    (tmp_path / "pairs.csv").write_bytes(b"source,reference,output\nso\x00urce.png,ref.png,out.png\n")
    line = _one_line_error(main(["transfer", "--pairs", str(tmp_path / "pairs.csv"), "--method", "mkl"]),
                           capsys.readouterr().err)
    assert "NUL" in line and "line 2" in line


def test_apply_lut_keeps_an_output_that_appears_meanwhile(tmp_path, monkeypatch, capsys):
    from histocolor.cube import identity_lut, write_cube

    write_cube(tmp_path / "look.cube", identity_lut(3))
    output = tmp_path / "out.png"
    _another_process_writes(monkeypatch, output, b"theirs")
    line = _one_line_error(main(["apply-lut", str(SOURCE), str(tmp_path / "look.cube"), "-o", str(output)]),
                           capsys.readouterr().err)
    assert "exists" in line and output.read_bytes() == b"theirs"
