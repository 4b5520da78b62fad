import subprocess
import sys
from pathlib import Path

import numpy as np
import png
import pytest
from PIL import Image

from histocolor.cli import main
from histocolor.errors import HistocolorError
from histocolor.imageio import read_image
from histocolor.engine import ColorTransfer, transfer

from conftest import SAMPLES

SOURCE, REFERENCE = str(SAMPLES / "source.jpg"), str(SAMPLES / "reference.jpg")


def _run(capsys, *argv):
    code = main(list(argv))
    return code, capsys.readouterr().err


def _assert_one_line_error(code, err, *, expected_code=2):
    assert code == expected_code
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("histocolor") and "error" in lines[0]
    assert "Traceback" not in err


@pytest.mark.parametrize("method", ["mkl", "reinhard", "histmatch", "idt"])
def test_single_pair_writes_what_the_library_returns(tmp_path, capsys, method):
    output = tmp_path / "out" / "result.png"
    code, err = _run(capsys, "transfer", SOURCE, REFERENCE, "-o", str(output), "--method", method, "--timings")
    assert code == 0
    expected = transfer(SOURCE, REFERENCE, method).image
    written = read_image(output)
    assert written.alpha is None and written.rgb.dtype == expected.dtype
    assert np.array_equal(written.rgb, expected)  # pixel for pixel, same size
    assert np.abs(expected.astype(int) - read_image(SOURCE).rgb).mean() > 5  # and the method did change it
    for stage in ("decode", "fit", "apply", "encode"):
        assert stage in err


def test_analogy_with_weights_directory(tmp_path, capsys, tiny_weights):
    output = tmp_path / "result.png"
    code, _ = _run(capsys, "transfer", SOURCE, REFERENCE, "-o", str(output), "--weights", str(tiny_weights), "--max-side", "128")
    assert code == 0
    expected = ColorTransfer("analogy", weights=tiny_weights, max_side=128)(SOURCE, REFERENCE).image
    assert np.array_equal(read_image(output).rgb, expected)
    # The small network's residual heads are not zero: the result is not the source.
    assert np.abs(expected.astype(int) - read_image(SOURCE).rgb).max() > 0


def test_sixteen_bit_png_keeps_sixteen_bits(tmp_path, capsys, rng):
    pixels = rng.integers(0, 65536, (20, 30, 3), dtype=np.uint16)
    source = tmp_path / "deep.png"
    with open(source, "wb") as stream:
        png.Writer(30, 20, greyscale=False, bitdepth=16).write(stream, pixels.reshape(20, -1).tolist())
    output = tmp_path / "deep-out.png"
    code, _ = _run(capsys, "transfer", str(source), REFERENCE, "-o", str(output), "--method", "reinhard")
    assert code == 0
    result = read_image(output)
    assert result.rgb.dtype == np.uint16 and result.rgb.shape == (20, 30, 3)
    assert np.any(result.rgb % 257)  # real 16-bit values, not 8-bit ones scaled up


@pytest.mark.parametrize("size", [(1, 1), (5000, 2)])
def test_degenerate_sizes_transfer(tmp_path, capsys, size, tiny_weights):
    source = tmp_path / "odd.png"
    Image.new("RGB", size, (120, 60, 30)).save(source)
    for method in ("mkl", "analogy"):
        output = tmp_path / f"odd-{method}.png"
        code, _ = _run(capsys, "transfer", str(source), REFERENCE, "-o", str(output), "--method", method, "--weights", str(tiny_weights))
        assert code == 0 and Image.open(output).size == size


def _bad_inputs(tmp_path):
    truncated = tmp_path / "truncated.jpg"
    truncated.write_bytes((SAMPLES / "source.jpg").read_bytes()[:5000])
    empty = tmp_path / "empty.jpg"
    empty.write_bytes(b"")
    text = tmp_path / "text.png"
    text.write_text("this is not an image\n")
    return {"truncated": truncated, "empty": empty, "text": text, "missing": tmp_path / "missing.jpg"}


@pytest.mark.parametrize("case", ["truncated", "empty", "text", "missing"])
def test_bad_source_is_one_line_exit_2_and_no_output(tmp_path, capsys, case):
    output = tmp_path / "out.png"
    code, err = _run(capsys, "transfer", str(_bad_inputs(tmp_path)[case]), REFERENCE, "-o", str(output), "--method", "mkl")
    _assert_one_line_error(code, err)
    assert not output.exists()
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []


def test_a_bad_input_is_reported_even_when_the_engine_fails_too(tmp_path, capsys):
    # The images decode while the engine is built: the input's error wins over the weights' error.
    output = tmp_path / "out.png"
    code, err = _run(capsys, "transfer", str(_bad_inputs(tmp_path)["text"]), REFERENCE, "-o", str(output),
                     "--weights", str(tmp_path / "no-such-weights"))
    _assert_one_line_error(code, err)
    assert "cannot read" in err and "weights" not in err
    assert not output.exists()


@pytest.mark.parametrize("case", ["empty", "text", "missing"])
def test_an_input_that_cannot_open_is_refused_before_the_engine_is_built(tmp_path, capsys, monkeypatch, case):
    # Building the network's engine imports torch (about a second): a missing or non-image file
    # is refused from its header, before that.
    built = []
    import histocolor.engine

    monkeypatch.setattr(histocolor.engine, "ColorTransfer", lambda *args, **options: built.append(options))
    code, err = _run(capsys, "transfer", REFERENCE, str(_bad_inputs(tmp_path)[case]), "-o", str(tmp_path / "out.png"))
    _assert_one_line_error(code, err)
    assert built == []


def test_unwritable_output_is_refused_before_any_work(tmp_path, capsys):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    for output in (blocker / "out.png", tmp_path / "out.xyz", tmp_path):
        code, err = _run(capsys, "transfer", SOURCE, REFERENCE, "-o", str(output), "--method", "mkl")
        _assert_one_line_error(code, err)
    assert blocker.read_text() == "x"


def test_usage_errors_are_one_line(capsys, tmp_path):
    for argv in (
        ["transfer", SOURCE, REFERENCE],
        ["transfer", SOURCE, REFERENCE, "-o", str(tmp_path / "x.png"), "--strength", "2"],
        ["transfer", "--pairs", str(tmp_path / "none.csv")],
        ["transfer", SOURCE, REFERENCE, "-o", str(tmp_path / "x.png"), "--max-side", "4"],
        ["transfer", SOURCE, REFERENCE, "-o", str(tmp_path / "x.png"), "--weights", str(tmp_path / "nowhere")],
        ["transfer", "--pairs", str(tmp_path / "none.csv"), SOURCE],
    ):
        code, err = _run(capsys, *argv)
        _assert_one_line_error(code, err)
    assert not (tmp_path / "x.png").exists()


def test_unknown_method_exits_2_with_one_line(capsys):
    with pytest.raises(SystemExit) as caught:
        main(["transfer", SOURCE, REFERENCE, "-o", "x.png", "--method", "magic"])
    assert caught.value.code == 2
    assert len(capsys.readouterr().err.strip().splitlines()) == 1


def test_batch_reports_bad_rows_and_writes_the_others(tmp_path, capsys):
    bad = _bad_inputs(tmp_path)
    (tmp_path / "pairs.csv").write_text(
        "source,reference,output,source_mask,reference_mask\n"
        f"{SOURCE},{REFERENCE},out/a.png,,\n"
        f"{bad['truncated'].name},{REFERENCE},out/b.png,,\n"
        f"{SOURCE},{bad['text'].name},out/c.png,,\n"
        f"{REFERENCE},{SOURCE},out/d.jpg,,\n"
    )
    code, err = _run(capsys, "transfer", "--pairs", str(tmp_path / "pairs.csv"), "--method", "reinhard")
    assert code == 1
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["a.png", "d.jpg"]
    assert "line 3: error" in err and "line 4: error" in err and "2 of 4 pairs failed" in err


def test_batch_with_a_bad_header_stops_before_any_work(tmp_path, capsys):
    (tmp_path / "pairs.csv").write_text("src,ref,out\na,b,c\n")
    code, err = _run(capsys, "transfer", "--pairs", str(tmp_path / "pairs.csv"), "--method", "mkl")
    _assert_one_line_error(code, err)
    assert "lacks the column" in err


def test_info_reports_versions_and_weights(capsys):
    assert main(["info"]) == 0
    out = capsys.readouterr().out
    for label in ("histocolor:", "torch:", "kornia:", "default weights:", "default device:"):
        assert label in out


def test_module_entry_point_has_no_traceback_for_user_errors(tmp_path):
    result = subprocess.run(
        [sys.executable, "-m", "histocolor", "transfer", str(tmp_path / "missing.jpg"), REFERENCE,
         "-o", str(tmp_path / "o.png"), "--method", "mkl"],
        capture_output=True,
        text=True,
    )
    assert result.returncode == 2
    assert result.stderr.count("\n") == 1 and "missing.jpg" in result.stderr


def test_cuda_without_a_gpu_is_a_one_line_error(capsys, tmp_path):
    import torch

    if torch.cuda.is_available():
        pytest.skip("a CUDA GPU is present")
    code, err = _run(capsys, "transfer", SOURCE, REFERENCE, "-o", str(tmp_path / "x.png"), "--method", "mkl", "--device", "cuda")
    _assert_one_line_error(code, err)


def test_strength_reaches_the_result(tmp_path, capsys):
    outputs = []
    for strength in ("0", "1"):
        outputs.append(tmp_path / f"s{strength}.png")
        code, _ = _run(capsys, "transfer", SOURCE, REFERENCE, "-o", str(outputs[-1]), "--method", "mkl", "--strength", strength)
        assert code == 0
    source = read_image(SOURCE).rgb.astype(int)
    assert np.abs(read_image(outputs[0]).rgb - source).max() <= 1
    assert np.abs(read_image(outputs[1]).rgb - source).mean() > 10


def test_batch_csv_with_bom_spaces_and_mask_cells(tmp_path, capsys):
    (tmp_path / "pairs.csv").write_text(
        "\ufeff source , reference , output , source_mask , reference_mask \n"
        f"{SOURCE} , {REFERENCE} , a.png , , \n"
        "\n"
        f"{SOURCE},{REFERENCE},b.png,mask.png,mask.png\n",
        encoding="utf-8",
    )
    code, err = _run(capsys, "transfer", "--pairs", str(tmp_path / "pairs.csv"), "--method", "mkl")
    assert code == 1
    assert (tmp_path / "a.png").exists() and not (tmp_path / "b.png").exists()
    assert "line 4: error: cannot read mask" in err  # the blank line 3 is skipped, line numbers stay true


@pytest.mark.parametrize("io_threads,batch_size", [("0", "1"), ("2", "1"), ("0", "4"), ("2", "3")])
def test_an_unexpected_failure_in_one_row_spares_the_others(tmp_path, capsys, monkeypatch, io_threads, batch_size):
    """Failures while decoding, transferring or encoding a row are that row's alone, reported in order,
    whether decode and encode overlap with the transfer (threads) or not."""
    from histocolor.runner import FileSink, PairRunner

    real_engine, real_encode = PairRunner.recolour, FileSink.encode

    def flaky_engine(runner, engine, jobs):  # the engine's result for boom.png is a bug's exception
        results = real_engine(runner, engine, jobs)
        return [ValueError("simulated bug\nsecond line") if job.output.name == "boom.png" else result
                for job, result in zip(jobs, results)]

    def flaky_encode(sink, job, result):
        if job.output.name == "unwritable.png":
            raise HistocolorError("cannot write 'unwritable.png': simulated")
        return real_encode(sink, job, result)

    monkeypatch.setattr(PairRunner, "recolour", flaky_engine)
    monkeypatch.setattr(FileSink, "encode", flaky_encode)
    rows = ["boom.png", "ok1.png", "unwritable.png", "ok2.png"]
    lines = [f"{SOURCE},{REFERENCE},{name}" for name in rows] + [f"missing.jpg,{REFERENCE},never.png", f"{SOURCE},{REFERENCE},ok3.png"]
    (tmp_path / "pairs.csv").write_text("source,reference,output\n" + "\n".join(lines) + "\n")
    code, err = _run(capsys, "transfer", "--pairs", str(tmp_path / "pairs.csv"), "--method", "mkl",
                     "--io-threads", io_threads, "--batch-size", batch_size)
    assert code == 1
    assert sorted(p.name for p in tmp_path.glob("*.png")) == ["ok1.png", "ok2.png", "ok3.png"]
    errors = [line for line in err.splitlines() if ": error: " in line]
    assert [line.split(":")[0] for line in errors] == ["line 2", "line 4", "line 6"]  # in row order
    assert "unexpected ValueError: simulated bug" in errors[0] and "second line" not in err
    assert "simulated" in errors[1] and "missing.jpg" in errors[2]
    assert "3 of 6 pairs failed" in err
    expected = ColorTransfer("mkl")(SOURCE, REFERENCE).image
    assert all(np.array_equal(read_image(tmp_path / name).rgb, expected) for name in ("ok1.png", "ok2.png", "ok3.png"))


def test_a_row_can_read_an_earlier_rows_output(tmp_path, capsys):
    """Decoding ahead in a thread must not read a file an earlier row has yet to write."""
    (tmp_path / "pairs.csv").write_text(f"source,reference,output\n{SOURCE},{REFERENCE},first.png\n"
                                        f"first.png,{SOURCE},second.png\n")
    code, err = _run(capsys, "transfer", "--pairs", str(tmp_path / "pairs.csv"), "--method", "mkl")
    assert code == 0, err
    first = ColorTransfer("mkl")(SOURCE, REFERENCE).image
    assert np.array_equal(read_image(tmp_path / "second.png").rgb, ColorTransfer("mkl")(first, SOURCE).image)


def test_console_script_is_installed():
    from pathlib import Path

    script = Path(sys.executable).parent / "histocolor"
    assert script.exists()
    result = subprocess.run([str(script), "--version"], capture_output=True, text=True)
    assert result.returncode == 0 and result.stdout.startswith("histocolor ")


def _rgba_source(tmp_path):
    """The sample photo with an alpha ramp from fully transparent to opaque (every value 0..255)."""
    rgb = read_image(SOURCE).rgb
    height, width = rgb.shape[:2]
    alpha = np.broadcast_to(np.linspace(0, 255, width).round().astype(np.uint8), (height, width)).copy()
    alpha[: height // 4] = 255
    path = tmp_path / "rgba.png"
    Image.fromarray(np.dstack([rgb, alpha])).save(path)  # RGBA
    return path, rgb, alpha


@pytest.mark.parametrize("method", ["mkl", "analogy"])
def test_alpha_passes_through_the_command_unchanged(tmp_path, capsys, method, tiny_weights):
    source, rgb, alpha = _rgba_source(tmp_path)
    output = tmp_path / "out.png"
    options = ("--method", method, "--weights", str(tiny_weights), "--max-side", "64")
    code, _ = _run(capsys, "transfer", str(source), REFERENCE, "-o", str(output), *options)
    assert code == 0
    with Image.open(output) as written:
        assert written.mode == "RGBA"
        pixels = np.asarray(written)
    assert np.array_equal(pixels[..., 3], alpha)
    assert np.abs(pixels[..., :3].astype(int) - rgb).max() > 0  # the colours did change
    expected = ColorTransfer(method, weights=tiny_weights, max_side=64)(str(source), REFERENCE).image
    assert np.array_equal(pixels, expected)


def _jpeg_with_exif(tmp_path, orientation):
    """The sample photo stored sideways with an EXIF orientation (6: turn 90 degrees clockwise to view)."""
    exif = Image.Exif()
    exif[270] = "histocolor EXIF test"  # ImageDescription
    exif[315] = "A. Photographer"  # Artist
    exif[274] = orientation
    path = tmp_path / "exif.jpg"
    with Image.open(SOURCE) as upright:
        stored = upright.transpose(Image.Transpose.ROTATE_90) if orientation == 6 else upright
        stored.save(path, quality=95, exif=exif)
    return path


def test_exif_orientation_is_honoured_end_to_end(tmp_path, capsys):
    source = _jpeg_with_exif(tmp_path, 6)
    output = tmp_path / "out.png"
    code, _ = _run(capsys, "transfer", str(source), REFERENCE, "-o", str(output), "--method", "mkl")
    assert code == 0
    upright = read_image(source).rgb
    assert upright.shape == read_image(SOURCE).rgb.shape  # the reader turned it upright
    # Shown by any viewer (EXIF applied or not) the result is upright: the library's result.
    with Image.open(output) as written:
        assert written.getexif().get(274, 1) == 1
        assert np.array_equal(np.asarray(written), transfer(upright, REFERENCE, "mkl").image)


def test_exif_tags_are_kept_end_to_end(tmp_path, capsys):
    source = _jpeg_with_exif(tmp_path, 1)
    output = tmp_path / "out.jpg"
    code, _ = _run(capsys, "transfer", str(source), REFERENCE, "-o", str(output), "--method", "mkl")
    assert code == 0
    with Image.open(output) as written:
        exif = written.getexif()
    assert exif.get(270) == "histocolor EXIF test" and exif.get(315) == "A. Photographer"



def test_exif_tags_are_kept_by_a_pairs_batch(tmp_path, capsys):
    source = _jpeg_with_exif(tmp_path, 6)
    (tmp_path / "pairs.csv").write_text(f"source,reference,output\n{source.name},{REFERENCE},out.png\n")
    code, _ = _run(capsys, "transfer", "--pairs", str(tmp_path / "pairs.csv"), "--method", "mkl")
    assert code == 0
    with Image.open(tmp_path / "out.png") as written:
        exif = written.getexif()
    assert exif.get(315) == "A. Photographer" and exif.get(274, 1) == 1

def _count_model_loads(monkeypatch):
    """Record every weights directory loaded (all loads go through histocolor.model.io.from_pretrained)."""
    import histocolor.model.io as model_io

    loads, real = [], model_io.from_pretrained

    def counting(directory, *args, **kwargs):
        loads.append(directory)
        return real(directory, *args, **kwargs)

    monkeypatch.setattr(model_io, "from_pretrained", counting)
    return loads, real


@pytest.mark.slow
def test_a_pairs_batch_loads_the_model_once(tmp_path, capsys, monkeypatch, tiny_weights):
    loads, real = _count_model_loads(monkeypatch)
    pairs = [(SOURCE, REFERENCE), (REFERENCE, SOURCE), (SOURCE, SOURCE)]
    (tmp_path / "pairs.csv").write_text(
        "source,reference,output\n" + "".join(f"{s},{r},out/{i}.png\n" for i, (s, r) in enumerate(pairs))
    )
    options = ("--weights", str(tiny_weights), "--max-side", "64")
    code, _ = _run(capsys, "transfer", "--pairs", str(tmp_path / "pairs.csv"), *options)
    assert code == 0
    assert [Path(directory) for directory in loads] == [tiny_weights]  # one load for three rows
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["0.png", "1.png", "2.png"]
    engine = ColorTransfer("analogy", model=real(tiny_weights), max_side=64)
    batched = engine.batch(pairs)  # the three pairs share one working size: one stacked network run
    for index, (source, reference) in enumerate(pairs):
        written = read_image(tmp_path / "out" / f"{index}.png").rgb
        assert np.array_equal(written, batched[index].image)
        # Each row got its own pair's result: the pair alone gives it up to float rounding.
        assert np.abs(written.astype(int) - engine(source, reference).image).max() <= 1


@pytest.mark.slow
def test_lut_size_sets_the_fitted_and_saved_lut(tmp_path, capsys, tiny_weights):
    """``--lut-size`` is the grid of the LUT fitted to the network's change; ``--save-lut`` writes that LUT."""
    from histocolor.cube import read_cube
    from histocolor.lut import apply_lut

    output, look = tmp_path / "out.png", tmp_path / "look.cube"
    options = ("--weights", str(tiny_weights), "--max-side", "64")
    code, _ = _run(capsys, "transfer", SOURCE, REFERENCE, "-o", str(output), "--lut-size", "33", "--save-lut",
                   str(look), *options)
    assert code == 0
    lut = read_cube(look)
    assert lut.shape == (33, 33, 33, 3)
    written, source = read_image(output).rgb, read_image(SOURCE).rgb
    assert np.abs(apply_lut(source, lut).astype(int) - written).max() <= 1  # the saved LUT made the image
    model = ColorTransfer("analogy", weights=tiny_weights).model
    assert np.array_equal(written, ColorTransfer(model=model, max_side=64, lut_size=33)(SOURCE, REFERENCE).image)
    default = ColorTransfer(model=model, max_side=64)(SOURCE, REFERENCE).image  # 17 points: a different fit
    assert np.abs(default.astype(int) - written).max() > 1


def _uint8(rgb):
    return (rgb.permute(1, 2, 0).numpy() * 255.0).round().astype(np.uint8)


def test_the_command_beats_doing_nothing_where_the_truth_is_known(tmp_path, capsys, monkeypatch, sample_pair):
    """The shipped model (default method) on the sample photo under a known grade, as in test_default_model:
    the reference is another view of the graded photo, the truth the whole graded photo."""
    import torch

    from histocolor.training.data.graded import EvaluationStyle, another_view
    from histocolor.metrics import psnr
    from histocolor.model.io import DEFAULT_WEIGHTS

    loads, _ = _count_model_loads(monkeypatch)
    photo = torch.from_numpy(sample_pair[0]).permute(2, 0, 1).float() / 255.0
    rng = np.random.default_rng(3)
    truth = EvaluationStyle(rng)(photo)
    reference, output = tmp_path / "reference.png", tmp_path / "result.png"
    Image.fromarray(_uint8(another_view(truth, rng))).save(reference)
    code, _ = _run(capsys, "transfer", SOURCE, str(reference), "-o", str(output))
    assert code == 0
    assert [Path(directory) for directory in loads] == [DEFAULT_WEIGHTS]  # the shipped network made it
    result, truth = read_image(output).rgb, _uint8(truth)
    assert result.shape == truth.shape
    assert psnr(result, truth) >= psnr(sample_pair[0], truth) + 3.0


def test_library_errors_are_quoted_on_one_line():
    from histocolor.errors import first_line

    assert first_line(ValueError("  bad header\nTraceback (most recent call last):")) == "bad header"
    assert first_line(RuntimeError("")) == "RuntimeError"  # an empty message must not break the error itself


def test_outputs_never_replace_inputs_and_never_collide(tmp_path, capsys):
    """-o equal to an input, a label map named .jpg and a too-long name are one-line errors, and nothing
    is written; two CSV rows writing one file, or a row writing over an earlier row's input, are errors
    of that row."""
    import shutil

    source = tmp_path / "source.jpg"
    shutil.copy(SOURCE, source)
    before = source.read_bytes()
    csv_rows = {
        "twice": f"source,reference,output\n{source},{REFERENCE},same.png\n{source},{REFERENCE},same.png\n",
        "over": f"source,reference,output\n{source},{REFERENCE},a.png\na.png,{REFERENCE},{source}\n",
    }
    for name, text in csv_rows.items():
        (tmp_path / f"{name}.csv").write_text(text)
    # In a batch, the offending row is an error of its own; the others run.
    code, err = _run(capsys, "transfer", "--pairs", str(tmp_path / "twice.csv"), "--method", "mkl")
    assert code == 1 and "line 3: error: line 2 writes" in err and (tmp_path / "same.png").is_file()
    code, err = _run(capsys, "transfer", "--pairs", str(tmp_path / "over.csv"), "--method", "mkl")
    assert code == 1 and "line 3: error:" in err and "is an input of line 2" in err and (tmp_path / "a.png").is_file()
    for name in ("same.png", "a.png"):
        (tmp_path / name).unlink()
    cases = [
        ["transfer", str(source), REFERENCE, "-o", str(source), "--method", "mkl"],
        ["apply-lut", str(source), str(tmp_path / "x.cube"), "-o", str(source)],
        ["segment", str(source), "-o", str(tmp_path / "labels.jpg"), "--segmenter", "slic"],
        ["transfer", str(source), REFERENCE, "-o", str(tmp_path / ("x" * 260 + ".png")), "--method", "mkl"],
    ]
    for argv in cases:
        code, err = _run(capsys, *argv)
        _assert_one_line_error(code, err)
    assert source.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["over.csv", "source.jpg", "twice.csv"]
    long_name = tmp_path / ("y" * 245 + ".png")  # legal: its temporary name must be too
    code, err = _run(capsys, "transfer", str(source), REFERENCE, "-o", str(long_name), "--method", "mkl")
    assert code == 0, err and long_name.is_file()


def test_sigterm_during_a_write_removes_the_temporary_file_and_says_so(tmp_path):
    """SIGTERM (timeout, systemd, container stops) as Ctrl-C: no temporary file, one line, exit 143."""
    import signal

    output = tmp_path / "out.png"
    script = (
        "import time, histocolor.imageio as io\n"
        "real = io._encode\n"
        "def slow(*args, **kwargs):\n"
        "    real(*args, **kwargs)\n"
        "    print('writing', flush=True)\n"
        "    time.sleep(30)\n"
        "io._encode = slow\n"
        "from histocolor.cli import main\n"
        f"raise SystemExit(main(['transfer', {SOURCE!r}, {REFERENCE!r}, '-o', {str(output)!r}, '--method', 'mkl']))\n"
    )
    process = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert process.stdout.readline().strip() == "writing"  # inside the write, the temporary file exists
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".histocolor-")]
    process.send_signal(signal.SIGTERM)
    _, err = process.communicate(timeout=60)
    assert process.returncode == 143
    assert err.strip().splitlines() == ["histocolor: terminated"]
    assert list(tmp_path.iterdir()) == []


def test_stale_temporary_files_of_dead_processes_are_swept(tmp_path, capsys):
    import os

    from histocolor.atomic import _HOST

    dead = tmp_path / f".histocolor-{_HOST}-999999-out.png.abcd.png"  # no such process on this host
    mine = tmp_path / f".histocolor-{_HOST}-{os.getpid()}-out.png.efgh.png"  # a live writer's: kept
    remote = tmp_path / ".histocolor-0badc0de-999999-out.png.ijkl.png"  # another machine's (NFS): kept
    absurd = tmp_path / f".histocolor-{_HOST}-9999999999-out.png.mnop.png"  # no such PID can exist: kept, no crash
    other = tmp_path / ".hidden.png"  # not ours: kept
    for path in (dead, mine, remote, absurd, other):
        path.write_bytes(b"partial")
    code, err = _run(capsys, "transfer", SOURCE, REFERENCE, "-o", str(tmp_path / "out.png"), "--method", "mkl")
    assert code == 0, err
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(
        [mine.name, remote.name, absurd.name, other.name, "out.png"])


def test_memory_limits_are_one_line_errors(tmp_path, capsys, monkeypatch):
    import json

    # A working size past the documented maximum is refused before any work.
    code, err = _run(capsys, "transfer", SOURCE, REFERENCE, "-o", str(tmp_path / "a.png"), "--max-side", "100000")
    _assert_one_line_error(code, err)
    assert "4096" in err
    # A hostile config.json is refused before anything is built (ctn_width 100000 would ask for 360 GB).
    folder = tmp_path / "hostile"
    folder.mkdir()
    (folder / "config.json").write_text(json.dumps({"model_type": "histogram-analogy", "format_version": 1,
                                                    "ctn_width": 100000}))
    (folder / "model.safetensors").write_bytes(b"")
    code, err = _run(capsys, "transfer", SOURCE, REFERENCE, "-o", str(tmp_path / "b.png"), "--weights", str(folder))
    _assert_one_line_error(code, err)
    assert "ctn_width must be at most" in err
    # torch's CPU allocator failing is a RuntimeError: still one line naming what to lower.

    def allocation_fails(*args, **kwargs):
        raise RuntimeError("[enforce fail at alloc_cpu.cpp:117] DefaultCPUAllocator: can't allocate memory: "
                           "you tried to allocate 7516192768 bytes.\nsecond line")

    from histocolor.runner import PairRunner

    monkeypatch.setattr(PairRunner, "recolour", allocation_fails)
    code, err = _run(capsys, "transfer", SOURCE, REFERENCE, "-o", str(tmp_path / "c.png"), "--method", "mkl")
    _assert_one_line_error(code, err)
    assert "out of memory" in err and "--max-side" in err
    assert not any(tmp_path.glob("*.png"))


def test_a_failed_write_removes_the_folders_it_made_and_new_files_get_the_usual_mode(tmp_path, capsys, monkeypatch):
    import os
    import stat

    import histocolor.imageio as imageio

    def disk_full(*args, **kwargs):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(imageio, "_encode", disk_full)
    code, err = _run(capsys, "transfer", SOURCE, REFERENCE, "-o", str(tmp_path / "new" / "deeper" / "out.png"),
                     "--method", "mkl")
    _assert_one_line_error(code, err)
    assert "No space left" in err and list(tmp_path.iterdir()) == []
    monkeypatch.undo()
    umask = os.umask(0o022)
    os.umask(umask)
    look = tmp_path / "look.cube"
    assert main(["transfer", SOURCE, REFERENCE, "-o", str(tmp_path / "out.png"), "--method", "mkl",
                 "--save-lut", str(look)]) == 0
    for path in (look, tmp_path / "out.png"):  # not the owner-only mode of a temporary file
        assert stat.S_IMODE(path.stat().st_mode) == 0o666 & ~umask


def test_existing_outputs_need_overwrite_and_symlinks_are_refused(tmp_path, capsys):
    output = tmp_path / "out.png"
    output.write_bytes(b"an earlier result")
    code, err = _run(capsys, "transfer", SOURCE, REFERENCE, "-o", str(output), "--method", "mkl")
    _assert_one_line_error(code, err)
    assert "--overwrite" in err and output.read_bytes() == b"an earlier result"
    code, err = _run(capsys, "transfer", SOURCE, REFERENCE, "-o", str(output), "--method", "mkl", "--overwrite")
    assert code == 0 and read_image(output).rgb.shape == read_image(SOURCE).rgb.shape
    target = tmp_path / "elsewhere.png"
    target.write_bytes(b"not to be touched")
    link = tmp_path / "link.png"
    link.symlink_to(target)
    code, err = _run(capsys, "transfer", SOURCE, REFERENCE, "-o", str(link), "--method", "mkl", "--overwrite")
    _assert_one_line_error(code, err)
    assert "symbolic link" in err and target.read_bytes() == b"not to be touched"
    # In a batch, an existing output is an error of its row; the other rows run.
    (tmp_path / "pairs.csv").write_text(f"source,reference,output\n{SOURCE},{REFERENCE},out.png\n"
                                        f"{SOURCE},{REFERENCE},new.png\n")
    code, err = _run(capsys, "transfer", "--pairs", str(tmp_path / "pairs.csv"), "--method", "mkl")
    assert code == 1 and "line 2: error:" in err and "--overwrite" in err and (tmp_path / "new.png").is_file()


def test_signals_the_caller_ignores_stay_ignored():
    """Under nohup (SIGHUP ignored) a logout must not stop a long batch or a training run."""
    import signal

    from histocolor.cli import _StopRequest, _terminate_on_signals

    previous = signal.signal(signal.SIGHUP, signal.SIG_IGN)
    try:
        with _terminate_on_signals():
            assert signal.getsignal(signal.SIGHUP) is signal.SIG_IGN
            assert signal.getsignal(signal.SIGTERM) is not signal.SIG_DFL  # ours
        with _StopRequest().on_signals():
            assert signal.getsignal(signal.SIGHUP) is signal.SIG_IGN
    finally:
        signal.signal(signal.SIGHUP, previous)


def test_segment_never_writes_over_its_reference(tmp_path, capsys):
    import shutil

    reference = tmp_path / "reference.png"
    shutil.copy(SOURCE, tmp_path / "source.jpg")
    Image.open(REFERENCE).save(reference)
    before = reference.read_bytes()
    code, err = _run(capsys, "segment", str(tmp_path / "source.jpg"), "-o", str(reference), "--reference",
                     str(reference), "--reference-output", str(tmp_path / "r.png"), "--segmenter", "slic", "--overwrite")
    _assert_one_line_error(code, err)
    assert reference.read_bytes() == before
