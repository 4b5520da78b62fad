import subprocess
import sys

import numpy as np
import png
import pytest
from PIL import Image

from histocolor.cli import main
from histocolor.imageio import read_image

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


def test_single_pair_writes_a_result_of_the_source_size(tmp_path, capsys):
    output = tmp_path / "out" / "result.png"
    code, err = _run(capsys, "transfer", SOURCE, REFERENCE, "-o", str(output), "--method", "mkl", "--timings")
    assert code == 0
    assert read_image(output).rgb.shape == read_image(SOURCE).rgb.shape
    for stage in ("decode", "fit", "apply", "encode"):
        assert stage in err


def test_analogy_with_weights_directory(tmp_path, capsys, tiny_weights):
    output = tmp_path / "result.jpg"
    code, _ = _run(capsys, "transfer", SOURCE, REFERENCE, "-o", str(output), "--weights", str(tiny_weights), "--max-side", "128")
    assert code == 0 and output.stat().st_size > 0


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
        [sys.executable, "-m", "histocolor", "transfer", str(tmp_path / "missing.jpg"), REFERENCE, "-o", str(tmp_path / "o.png"), "--method", "mkl"],
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


def test_an_unexpected_failure_in_one_row_spares_the_others(tmp_path, capsys, monkeypatch):
    import histocolor.cli as cli

    real = cli._transfer_and_write

    def flaky(engine, source, reference, output, strength, timings, *regions):
        if output.name == "boom.png":
            raise ValueError("simulated bug\nsecond line")
        return real(engine, source, reference, output, strength, timings, *regions)

    monkeypatch.setattr(cli, "_transfer_and_write", flaky)
    (tmp_path / "pairs.csv").write_text(f"source,reference,output\n{SOURCE},{REFERENCE},boom.png\n{SOURCE},{REFERENCE},ok.png\n")
    code, err = _run(capsys, "transfer", "--pairs", str(tmp_path / "pairs.csv"), "--method", "mkl")
    assert code == 1 and (tmp_path / "ok.png").exists()
    assert "line 2: error: unexpected ValueError: simulated bug" in err and "second line" not in err


def test_console_script_is_installed():
    from pathlib import Path

    script = Path(sys.executable).parent / "histocolor"
    assert script.exists()
    result = subprocess.run([str(script), "--version"], capture_output=True, text=True)
    assert result.returncode == 0 and result.stdout.startswith("histocolor ")
