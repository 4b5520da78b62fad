"""The benchmark commands run end to end on tiny inputs (their numbers live in docs/BENCHMARKS.md)."""

import re
import runpy
from pathlib import Path

import pytest

from conftest import DPST, SAMPLES, benchmark_module, require


def main(argv):
    benchmark_module()["main"](argv)


def _rows(text):
    return [line.split("|")[1:-1] for line in text.splitlines() if line.startswith("| ") and "---" not in line][1:]


@pytest.mark.slow
def test_upsampling_benchmark_ranks_the_lut_above_resizing_for_a_global_change(capsys):
    main(["upsampling", "--data", str(require(DPST)), "--limit", "1", "--sizes", "64"])
    rows = {(cells[0].strip(), cells[2].strip()): cells for cells in _rows(capsys.readouterr().out)}
    global_operator = "Reinhard in Lab (global change)"
    lut = float(
        next(
            cells
            for (operator, label), cells in rows.items()
            if operator == global_operator and label.startswith("LUT 33^3")
        )[3]
    )
    resized = float(rows[(global_operator, "resize output")][3])
    assert lut > resized + 5


@pytest.mark.slow
def test_speed_benchmark_reports_every_stage(capsys):
    main(["speed", "--megapixels", "0.2", "--repeat", "1"])
    rows = _rows(capsys.readouterr().out)
    assert [cells[1].strip().split()[0] for cells in rows] == ["mkl", "analogy", "analogy", "analogy"]
    for cells in rows:
        assert re.fullmatch(r" \d+ MiB ", cells[-1]) and re.fullmatch(r" \d+\.\d\dx ", cells[-2])
        assert all(re.fullmatch(r" (\d+\.\d\d s|-) ", cell) for cell in cells[2:-2])


def test_strength_sweep_scores_both_sets_per_strength(tmp_path, capsys):
    from PIL import Image

    small = {name: Image.open(SAMPLES / f"{name}.jpg").convert("RGB").resize((64, 48)) for name in ("source", "reference")}
    unpaired = tmp_path / "unpaired"
    for folder, name, image in (("input", "in1.png", small["source"]), ("style", "tar1.png", small["reference"])):
        (unpaired / folder).mkdir(parents=True, exist_ok=True)
        image.save(unpaired / folder / name)
    for name, image in small.items():
        image.save(tmp_path / f"{name}.png")
    # the truth is the reference itself: a method that matches the reference fully is perfect.
    (tmp_path / "graded.csv").write_text("source,reference,truth\nsource.png,reference.png,reference.png\n")
    main(["strength-sweep", "--graded", str(tmp_path / "graded.csv"), "--unpaired", str(unpaired),
          "--methods", "mkl", "--strengths", "0", "1"])
    output = capsys.readouterr().out
    truth_swd = float(re.search(r"truth's SWD to the reference is ([\d.]+)", output).group(1))
    assert truth_swd < 1
    rows = {float(cells[1]): [float(cell) for cell in cells[2:]] for cells in _rows(output)}
    nothing, full = rows[0.0], rows[1.0]
    assert full[0] > nothing[0] and full[1] < nothing[1]  # PSNR up, ΔE2000 down towards the truth
    assert full[3] < nothing[3] / 2  # the unpaired result moved towards its reference
    assert nothing[4] == 1.0 and full[4] < 1.0


@pytest.mark.slow
def test_frontier_benchmark_scores_each_strength_and_draws_the_picture(capsys, tmp_path):
    table = tmp_path / "frontier.csv"
    main(["frontier", "--data", str(require(DPST)), "--limit", "2", "--methods", "reinhard", "--strengths", "0", "1",
          "--csv", str(table)])
    rows = {float(cells[1]): cells for cells in _rows(capsys.readouterr().out)}
    # Strength 0 is the source itself: full structure, the source's distance; strength 1 moves closer.
    assert float(rows[0.0][3]) > 0.999
    assert float(rows[1.0][2]) < 0.8 * float(rows[0.0][2])
    plotter = runpy.run_path(str(Path(__file__).parents[1] / "benchmarks" / "plot_frontier.py"))
    assert [row[0] for row in plotter["read_table"](table)["reinhard"]] == [0.0, 1.0]
    picture = tmp_path / "frontier.png"
    plotter["main"]([str(table), str(picture)])
    assert picture.stat().st_size > 10_000


def test_alignment_only_weights_return_the_alignment(tmp_path, sample_pair):
    import numpy as np
    import torch

    from histocolor.color import rgb_to_lab
    from histocolor.model import from_pretrained

    main(["alignment-only", "--method", "colour", "--out", str(tmp_path / "aligned")])
    model = from_pretrained(tmp_path / "aligned")
    assert model.config.alignment.method == "colour" and model.config.alignment.everywhere
    source, reference = (rgb_to_lab(torch.from_numpy(image[::8, ::8].copy()).permute(2, 0, 1)[None].float() / 255)
                         for image in sample_pair)
    with torch.no_grad():
        output = model(source, reference).output
        expected = model.align(source, reference)
    assert torch.allclose(output, expected, atol=1e-3) and (output - source).abs().mean() > 5
    assert np.isfinite(output.numpy()).all()


@pytest.mark.slow
def test_video_and_batch_benchmarks_report_their_rows(capsys):
    main(["video", "--seconds", "0.5", "--size", "64", "48", "--runs", "mkl:shot"])
    (row,) = _rows(capsys.readouterr().out)
    assert row[0].strip() == "mkl" and int(row[2]) == 15
    audio_in, audio_out = row[-1].split("/")
    assert int(audio_in) > 0 and int(audio_in) == int(audio_out)
    main(["batch", "--pairs", "4", "--side", "64", "--methods", "mkl", "--io-threads", "0", "2", "--batch-sizes", "1", "3"])
    rows = _rows(capsys.readouterr().out)
    assert [(cells[1].strip(), cells[2].strip()) for cells in rows] == [("0", "1"), ("0", "3"), ("2", "1"), ("2", "3")]
    assert rows[0][-1].strip() == "1.00x"


@pytest.mark.slow
def test_the_startup_benchmark_times_whole_commands(capsys):
    main(["startup", "--repeat", "1", "--photo", str(SAMPLES / "source.jpg")])
    rows = _rows(capsys.readouterr().out)
    names = [cells[0].strip() for cells in rows]
    assert names == ["`histocolor --help`", "`histocolor transfer (mkl), 640x480`", "`histocolor transfer (network), 12 MP`"]
    seconds, fastest, memory = (float(rows[0][1]), float(rows[0][2]), float(rows[0][3]))
    assert 0 < fastest <= seconds < 30
    if Path("/usr/bin/time").exists():
        assert 5 < memory < 2000  # GNU time's peak of the child itself, not of this torch-holding process


def test_tone_grid_shows_the_pairs_whose_truths_change_tones_most(tmp_path, capsys, sample_pair):
    import numpy as np
    from PIL import Image

    source = sample_pair[0][::4, ::4]
    lines = ["source,reference,truth"]
    for index, gamma in enumerate((1.0, 0.5, 1.05, 2.0)):  # 0.5 and 2.0: the strongest tone changes
        truth = (255 * (source / 255.0) ** gamma).round().astype(np.uint8)
        for name, image in (("source", source), ("reference", truth[:, ::-1]), ("truth", truth)):
            Image.fromarray(np.ascontiguousarray(image)).save(tmp_path / f"{name}{index}.png")
        lines.append(f"source{index}.png,reference{index}.png,truth{index}.png")
    (tmp_path / "set.csv").write_text("\n".join(lines) + "\n")
    main(["tone-grid", "--set", str(tmp_path / "set.csv"), "--rows", "2", "--out", str(tmp_path / "grid.png")])
    printed = capsys.readouterr().out
    assert {line.split(":")[0] for line in printed.splitlines() if "PSNR" in line} == {"source1", "source3"}
    assert Image.open(tmp_path / "grid.png").size == (160 * 5, 160 * 2)
