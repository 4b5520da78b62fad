"""A pairs CSV on a local Ray cluster (issue 26): the same results, bit for bit, as the one-machine batch."""

import re

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


def _histocolor(*argv, **options):
    import subprocess
    import sys

    return subprocess.run([sys.executable, "-m", "histocolor", *map(str, argv)], capture_output=True, text=True,
                          **options)


def _error_lines(err: str) -> list[str]:
    return [line for line in err.splitlines() if line.strip() and "|" not in line]  # tqdm bars hold '|'


@pytest.mark.parametrize("address", ["127.0.0.1:1", "ray://127.0.0.1:1", "no-such-host.invalid:6379", "http://[::1"])
def test_a_bad_or_unreachable_ray_address_fails_in_one_line_within_20_s(tmp_path, address):
    import time

    _pairs_csv(tmp_path, "out", rows=2)
    clock = time.perf_counter()
    done = _histocolor("transfer", "--pairs", tmp_path / "out.csv", "--method", "mkl", "--ray", address, timeout=60)
    assert time.perf_counter() - clock <= 20
    assert done.returncode == 2, done.stderr
    lines = _error_lines(done.stderr)
    assert len(lines) == 1 and lines[0].startswith("histocolor: error:"), done.stderr
    assert not (tmp_path / "out").exists()


@pytest.mark.slow
@pytest.mark.parametrize("option", [["--weights", "missing-weights"], ["--max-side", "5000"], ["--device", "cuda"]])
def test_a_user_error_in_the_ray_workers_is_one_line_and_exit_2(tmp_path, local_ray, capsys, option):
    if option[0] == "--device" and __import__("torch").cuda.is_available():
        pytest.skip("this machine has the GPU the test asks for")
    _pairs_csv(tmp_path, "out", rows=3)
    capsys.readouterr()
    code = main(["transfer", "--pairs", str(tmp_path / "out.csv"), "--ray", *option])
    err = capsys.readouterr().err
    lines = _error_lines(err)
    assert code == 2 and len(lines) == 1 and lines[0].startswith("histocolor: error:"), err
    assert "Traceback" not in err and not (tmp_path / "out").exists()


@pytest.mark.slow
def test_sigterm_during_a_ray_run_stops_with_143_and_leaves_nothing_partial(tmp_path):
    import signal
    import subprocess
    import sys
    import time

    Image.open(SAMPLES / "source.jpg").convert("RGB").resize((2000, 1500)).save(tmp_path / "big.png")
    (tmp_path / "pairs.csv").write_text("source,reference,output\n" + "".join(
        f"big.png,big.png,out/{index}.png\n" for index in range(60)))
    process = subprocess.Popen([sys.executable, "-m", "histocolor", "transfer", "--pairs", str(tmp_path / "pairs.csv"),
                                "--method", "mkl", "--ray"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and not list((tmp_path / "out").glob("*.png")) and process.poll() is None:
        time.sleep(0.2)
    assert process.poll() is None, "the run ended before it could be stopped"
    process.send_signal(signal.SIGTERM)
    code = process.wait(timeout=60)
    err = process.stderr.read()
    assert code == 143, err
    assert "histocolor: terminated" in err and "Traceback" not in err and "Stack trace" not in err, err
    assert not [path.name for path in (tmp_path / "out").iterdir() if path.name.startswith(".")]  # no temporary file
    for written in (tmp_path / "out").glob("*.png"):
        assert read_image(written).rgb.shape == (1500, 2000, 3)  # whole files only


@pytest.mark.slow
def test_a_ray_run_prints_no_ray_log_lines(tmp_path):
    _pairs_csv(tmp_path, "out", rows=2)
    done = _histocolor("transfer", "--pairs", tmp_path / "out.csv", "--method", "mkl", "--ray", timeout=300)
    assert done.returncode == 0, done.stderr
    # Only the progress bar: Ray's notices and C++ log lines would be left once its updates are cut out.
    left = re.sub(r"transfer \(ray\): [^\r\n]*?(pair/s\]|s/pair\]|\?pair/s\])", "", done.stderr)
    assert left.strip() == "", done.stderr
