"""A pairs CSV on a local Ray cluster (issue 26): the same results, bit for bit, as the one-machine batch."""

import numpy as np
import pytest
from PIL import Image

from histocolor.cli import main
from histocolor.imageio import read_image

from conftest import SAMPLES

ray = pytest.importorskip("ray", reason="the optional extra ray (pip install 'napari-histocolor[ray]') is absent")


@pytest.fixture(scope="module")
def local_ray():
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield
    ray.shutdown()


def _pairs_csv(folder, outputs: str, rows: int = 20) -> list[str]:
    """A CSV of ``rows`` pairs of crops of the sample photos (two working sizes, so two kinds of stacks)."""
    folder.mkdir(exist_ok=True)
    photos = [np.asarray(Image.open(SAMPLES / name).convert("RGB")) for name in ("source.jpg", "reference.jpg")]
    names = []
    for index in range(6):
        photo = photos[index % 2]
        crop = photo[index * 20 : index * 20 + (160 if index < 3 else 120), index * 30 : index * 30 + 200]
        Image.fromarray(np.ascontiguousarray(crop)).save(folder / f"image{index}.png")
        names.append(f"image{index}.png")
    lines = ["source,reference,output"]
    for row in range(rows):
        lines.append(f"{names[row % 6]},{names[(row * 5 + 1) % 6]},{outputs}/{row}.png")
    (folder / f"{outputs}.csv").write_text("\n".join(lines) + "\n")
    return [f"{row}.png" for row in range(rows)]


@pytest.mark.slow
def test_a_batch_on_ray_equals_the_one_machine_batch_bit_for_bit(tmp_path, tiny_weights, local_ray, capsys):
    names = _pairs_csv(tmp_path, "here")
    _pairs_csv(tmp_path, "cluster")
    options = ["--weights", str(tiny_weights), "--max-side", "64", "--batch-size", "4"]
    assert main(["transfer", "--pairs", str(tmp_path / "here.csv"), *options]) == 0
    assert main(["transfer", "--pairs", str(tmp_path / "cluster.csv"), *options, "--ray"]) == 0
    for name in names:
        here, there = (read_image(tmp_path / folder / name).rgb for folder in ("here", "cluster"))
        assert np.array_equal(here, there), name
    source = read_image(tmp_path / "image0.png").rgb
    assert np.abs(read_image(tmp_path / "here" / "0.png").rgb.astype(int) - source).mean() > 1  # not the identity


@pytest.mark.slow
def test_bad_rows_on_ray_are_reported_and_the_others_written(tmp_path, local_ray, capsys):
    names = _pairs_csv(tmp_path, "out", rows=6)
    csv = tmp_path / "out.csv"
    lines = csv.read_text().splitlines()
    lines[3] = f"missing.png,image1.png,out/{names[2]}"  # line 4: a source that does not exist
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / names[4]).write_bytes(b"keep me")  # line 6: an output that exists, no --overwrite
    lines.append("image0.png,image1.png,out/late.png")
    lines.append("out/0.png,image2.png,out/from-an-output.png")  # reads line 2's output: runs after it
    csv.write_text("\n".join(lines) + "\n")
    capsys.readouterr()
    code = main(["transfer", "--pairs", str(csv), "--method", "mkl", "--ray"])
    err = capsys.readouterr().err
    assert code == 1
    errors = [line for line in err.splitlines() if ": error: " in line]
    assert [line.split(":")[0] for line in errors] == ["line 4", "line 6"]
    assert "missing.png" in errors[0] and "exists" in errors[1]
    assert "2 of 8 pairs failed" in err
    assert (tmp_path / "out" / names[4]).read_bytes() == b"keep me"  # never overwritten
    written = sorted(path.name for path in (tmp_path / "out").iterdir())
    assert written == sorted(["0.png", "1.png", "3.png", "4.png", "5.png", "late.png", "from-an-output.png"])
    assert not list((tmp_path / "out").glob(".*"))  # no temporary file left


def test_ray_needs_a_pairs_csv(tmp_path, capsys):
    code = main(["transfer", str(SAMPLES / "source.jpg"), str(SAMPLES / "reference.jpg"), "-o",
                 str(tmp_path / "x.png"), "--ray"])
    assert code == 2 and "--ray runs a --pairs CSV" in capsys.readouterr().err
