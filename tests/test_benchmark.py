"""The benchmark commands run end to end on tiny inputs (their numbers live in docs/BENCHMARKS.md)."""

import re

from histocolor.benchmark import main

from conftest import DPST, require


def _rows(text):
    return [line.split("|")[1:-1] for line in text.splitlines() if line.startswith("| ") and "---" not in line][1:]


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


def test_speed_benchmark_reports_every_stage(capsys):
    main(["speed", "--megapixels", "0.2", "--repeat", "1"])
    rows = _rows(capsys.readouterr().out)
    assert [cells[1].strip().split()[0] for cells in rows] == ["mkl", "analogy", "analogy", "analogy"]
    for cells in rows:
        assert re.fullmatch(r" \d+ MiB ", cells[-1]) and re.fullmatch(r" \d+\.\d\dx ", cells[-2])
        assert all(re.fullmatch(r" (\d+\.\d\d s|-) ", cell) for cell in cells[2:-2])
