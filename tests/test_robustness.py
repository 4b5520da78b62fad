"""A generated corpus of bad, odd and hostile command lines (issue 15).

For every case: the exit code, one line on stderr for an error (no traceback), no file left
behind (no temporary file, no partial output, no folder made), inputs unchanged, and for
odd but valid inputs, a result of the source's shape. The SIGTERM and kill -9 cases live in
test_cli.py (they need a child process); the corpus runs in this process, in well under a minute.
"""

import hashlib
import json
import struct
import zlib
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from histocolor.cli import main
from histocolor.imageio import read_image
from histocolor.model import AnalogyConfig, HistogramAnalogy

from conftest import SAMPLES

SOURCE, REFERENCE = SAMPLES / "source.jpg", SAMPLES / "reference.jpg"


def _png_claiming(path: Path, width: int, height: int) -> None:
    """A PNG whose header claims ``width`` x ``height``: a decompression bomb's signature."""

    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(b"\0" * 64))
                     + chunk(b"IEND", b""))


def _inputs(folder: Path) -> dict:
    """Every input file of the corpus, written into ``folder``."""
    small = np.asarray(Image.open(SOURCE).convert("RGB").resize((60, 40)))
    files = {"source": folder / "source.png", "reference": folder / "reference.png"}
    Image.fromarray(small).save(files["source"])
    Image.fromarray(small[::-1]).save(files["reference"])
    whole = files["source"].read_bytes()
    specials = {
        "zero_byte.png": b"",
        "truncated.png": whole[: len(whole) // 2],
        "text.png": b"this is not an image\n",
        "truncated.jpg": SOURCE.read_bytes()[:2000],
    }
    for name, data in specials.items():
        (folder / name).write_bytes(data)
        files[name] = folder / name
    _png_claiming(folder / "bomb.png", 50000, 50000)
    files["bomb.png"] = folder / "bomb.png"
    odd = {
        "one_pixel.png": Image.fromarray(small[:1, :1]),
        "cmyk.jpg": Image.fromarray(small).convert("CMYK"),
        "palette.png": Image.fromarray(small).convert("P"),
        "grey_alpha.png": Image.fromarray(small).convert("LA"),
        "sixteen.tif": None,
    }
    for name, image in odd.items():
        if image is not None:
            image.save(folder / name)
        files[name] = folder / name
    import tifffile

    tifffile.imwrite(folder / "sixteen.tif", small.astype(np.uint16) * 257, photometric="rgb")
    # Masks: integer halves, one of another size, a bomb, NaN floats.
    halves = np.zeros(small.shape[:2], np.uint8)
    halves[:, 30:] = 1
    Image.fromarray(halves).save(folder / "mask.png")
    Image.fromarray(halves[:20, :20]).save(folder / "small_mask.png")
    _png_claiming(folder / "bomb_mask.png", 50000, 50000)
    nan = np.zeros(small.shape[:2], np.float32)
    nan[0, 0] = np.nan
    Image.fromarray(nan).save(folder / "nan_mask.tif")
    files.update({name: folder / name for name in ("mask.png", "small_mask.png", "bomb_mask.png", "nan_mask.tif")})
    # Weights: tiny real ones, NaN ones, a hostile config, a corrupt file, another model type.
    model = HistogramAnalogy(AnalogyConfig(hen_widths=[4, 4, 4, 4], feature_size=8, ctn_width=4, ctn_depth=2))
    model.save_pretrained(folder / "weights")
    from safetensors.torch import load_file, save_file

    model.save_pretrained(folder / "nan_weights")
    state = load_file(folder / "nan_weights" / "model.safetensors")
    state = {name: torch.full_like(t, float("nan")) if t.is_floating_point() else t for name, t in state.items()}
    save_file(state, folder / "nan_weights" / "model.safetensors")
    model.save_pretrained(folder / "corrupt_weights")
    (folder / "corrupt_weights" / "model.safetensors").write_bytes(b"\x08\x00\x00\x00\x00\x00\x00\x00{}garbage")
    for name, config in (("hostile_weights", {"ctn_width": 100000}), ("alien_weights", None)):
        (folder / name).mkdir()
        document = {"model_type": "histogram-analogy", "format_version": 1, **(config or {})}
        if config is None:
            document["model_type"] = "something-else"
        (folder / name / "config.json").write_text(json.dumps(document))
        (folder / name / "model.safetensors").write_bytes(b"")
    (folder / "empty_folder").mkdir()
    files.update({name: folder / name for name in
                  ("weights", "nan_weights", "corrupt_weights", "hostile_weights", "alien_weights", "empty_folder")})
    # LUTs, CSVs, training configs, a fake video.
    (folder / "bad.cube").write_text("LUT_3D_SIZE 2\n0 0 0\nnot numbers\n")
    (folder / "nan.cube").write_text("LUT_3D_SIZE 2\n" + "nan 0 0\n" * 8)
    (folder / "no_columns.csv").write_text("a,b\n1,2\n")
    (folder / "empty.csv").write_text("")
    (folder / "latin1.csv").write_bytes("source,reference,output\ncaf\xe9.png,r.png,o.png\n".encode("latin-1"))
    (folder / "fake.mp4").write_bytes(b"not a video")
    for name, settings in (("zero_batch.json", {"batch_size": 0}), ("text_steps.json", {"steps": "40"}),
                           ("huge_crop.json", {"crop": 100000}), ("bad_json.json", None)):
        (folder / name).write_text("{not json" if settings is None else json.dumps(settings))
    files.update({name: folder / name for name in (
        "bad.cube", "nan.cube", "no_columns.csv", "empty.csv", "latin1.csv", "fake.mp4", "zero_batch.json",
        "text_steps.json", "huge_crop.json", "bad_json.json")})
    return files


def _cases(files: dict, out: Path) -> list:
    """(name, argv, expected exit code); an output path is always under ``out``."""
    s, r = str(files["source"]), str(files["reference"])
    o = str(out / "result.png")
    bad_images = ["zero_byte.png", "truncated.png", "text.png", "truncated.jpg", "bomb.png", "empty_folder"]
    cases = [(f"source {name}", ["transfer", str(files[name]), r, "-o", o, "--method", "mkl"], 2) for name in bad_images]
    cases += [(f"reference {name}", ["transfer", s, str(files[name]), "-o", o, "--method", "mkl"], 2)
              for name in bad_images]
    cases += [(f"odd but valid {name}", ["transfer", str(files[name]), r, "-o", o, "--method", "mkl"], 0)
              for name in ("one_pixel.png", "cmyk.jpg", "palette.png", "grey_alpha.png", "sixteen.tif")]
    cases += [
        ("missing source", ["transfer", str(out / "missing.png"), r, "-o", o], 2),
        ("unknown output format", ["transfer", s, r, "-o", str(out / "result.xyz"), "--method", "mkl"], 2),
        ("output is the source", ["transfer", s, r, "-o", s, "--method", "mkl"], 2),
        ("unwritable output", ["transfer", s, r, "-o", "/proc/histocolor/result.png", "--method", "mkl"], 2),
        ("260-character name", ["transfer", s, r, "-o", str(out / ("x" * 260 + ".png")), "--method", "mkl"], 2),
        ("strength 2", ["transfer", s, r, "-o", o, "--strength", "2"], 2),
        ("max-side 0", ["transfer", s, r, "-o", o, "--max-side", "0"], 2),
        ("max-side 100000", ["transfer", s, r, "-o", o, "--max-side", "100000"], 2),
        ("lut-size 1", ["transfer", s, r, "-o", o, "--lut-size", "1"], 2),
        ("device tpu", ["transfer", s, r, "-o", o, "--device", "tpu"], 2),
        ("method nope", ["transfer", s, r, "-o", o, "--method", "nope"], 2),
        ("save-lut .txt", ["transfer", s, r, "-o", o, "--method", "mkl", "--save-lut", str(out / "look.txt")], 2),
    ]
    cases += [(f"weights {name}", ["transfer", s, r, "-o", o, "--weights", str(files[name])], 2)
              for name in ("nan_weights", "corrupt_weights", "hostile_weights", "alien_weights", "empty_folder")]
    cases += [(f"mask {name}", ["transfer", s, r, "-o", o, "--method", "mkl", "--source-mask", str(files[name]),
                                "--reference-mask", str(files["mask.png"])], 2)
              for name in ("small_mask.png", "bomb_mask.png", "nan_mask.tif", "text.png")]
    cases += [(f"pairs {name}", ["transfer", "--pairs", str(files[name]), "--method", "mkl"], 2)
              for name in ("no_columns.csv", "empty.csv", "latin1.csv")]
    cases += [
        ("apply-lut bad cube", ["apply-lut", s, str(files["bad.cube"]), "-o", o], 2),
        ("apply-lut NaN cube", ["apply-lut", s, str(files["nan.cube"]), "-o", o], 2),
        ("apply-lut missing cube", ["apply-lut", s, str(out / "missing.cube"), "-o", o], 2),
        ("video fake", ["video", str(files["fake.mp4"]), "--reference", r, "-o", str(out / "v.mp4"),
                        "--method", "mkl"], 2),
        ("video to .gif", ["video", str(files["fake.mp4"]), "--reference", r, "-o", str(out / "v.gif")], 2),
        ("segment to .jpg", ["segment", s, "-o", str(out / "labels.jpg"), "--segmenter", "slic"], 2),
        ("segment bomb", ["segment", str(files["bomb.png"]), "-o", str(out / "labels.png"), "--segmenter", "slic"], 2),
    ]
    cases += [(f"train {name}", ["train", "--data", str(out), "--config", str(files[name]), "--out",
                                 str(out / "run")], 2)
              for name in ("zero_batch.json", "text_steps.json", "huge_crop.json", "bad_json.json")]
    cases += [
        ("no arguments", ["transfer"], 2),
        ("io-threads -1", ["transfer", "--pairs", str(files["no_columns.csv"]), "--io-threads", "-1"], 2),
        ("region-map without masks", ["transfer", s, r, "-o", o, "--region-map", str(files["bad_json.json"])], 2),
        ("region-map bad JSON", ["transfer", s, r, "-o", o, "--method", "mkl", "--source-mask", str(files["mask.png"]),
                                 "--reference-mask", str(files["mask.png"]), "--region-map", str(files["bad_json.json"])],
         2),
        ("apply-lut strength 5", ["apply-lut", s, str(files["bad.cube"]), "-o", o, "--strength", "5"], 2),
        ("video sample-frames 0", ["video", str(files["fake.mp4"]), "--reference", r, "-o", str(out / "v.mp4"),
                                   "--sample-frames", "0"], 2),
        ("segment reference alone", ["segment", s, "-o", str(out / "labels.png"), "--reference", r], 2),
        ("evaluate missing set", ["evaluate", str(out / "missing.csv"), "--out", str(out / "report")], 2),
        ("train missing config", ["train", "--data", str(out), "--config", str(out / "missing.json"), "--out",
                                  str(out / "run")], 2),
    ]
    return cases


def _digest(folder: Path) -> dict:
    return {path: hashlib.sha256(path.read_bytes()).hexdigest() for path in folder.rglob("*") if path.is_file()}


def test_the_corpus_gives_clean_errors_leaves_nothing_and_changes_no_input(tmp_path, capsys):
    inputs = tmp_path / "inputs"
    inputs.mkdir()
    files = _inputs(inputs)
    before = _digest(inputs)
    counts = {"cases": 0, "clean errors": 0, "valid": 0, "tracebacks": 0, "files left": 0, "wrong exit": 0}
    problems = []
    for name, argv, expected in _cases(files, tmp_path / "out"):
        out = tmp_path / "out"
        out.mkdir(exist_ok=True)
        counts["cases"] += 1
        try:
            code = main(argv)
        except SystemExit as exit_:  # argparse's usage errors exit through SystemExit, one line too
            code = exit_.code
        except BaseException as error:  # noqa: BLE001 - a traceback: counted and reported
            counts["tracebacks"] += 1
            problems.append(f"{name}: {type(error).__name__}: {error}")
            continue
        err = capsys.readouterr().err
        lines = [line for line in err.splitlines() if line.strip()]
        left = sorted(path.name for path in out.rglob("*"))
        if code != expected:
            counts["wrong exit"] += 1
            problems.append(f"{name}: exit {code}, expected {expected}: {err.strip()[:200]}")
        elif code == 0:
            counts["valid"] += 1
            result = read_image(out / "result.png")
            source = read_image(argv[1])
            if result.rgb.shape != source.rgb.shape or result.rgb.dtype != source.rgb.dtype:
                problems.append(f"{name}: result {result.rgb.shape} {result.rgb.dtype}, source {source.rgb.shape}")
            (out / "result.png").unlink()
            left = sorted(path.name for path in out.rglob("*"))
        else:
            if len(lines) != 1 or not lines[0].startswith("histocolor") or "Traceback" in err:
                problems.append(f"{name}: stderr is not one line: {err!r}")
            else:
                counts["clean errors"] += 1
        if left:
            counts["files left"] += 1
            problems.append(f"{name}: left {left}")
        for path in out.iterdir():  # start the next case clean even after a failure
            path.unlink() if path.is_file() else __import__("shutil").rmtree(path)
    changed = [str(path) for path, digest in _digest(inputs).items() if before.get(path) != digest]
    print(f"robustness corpus: {counts}")  # the closing note quotes these counts (pytest -s)
    assert not problems, "\n".join(problems)
    assert not changed, f"inputs changed: {changed}"
    assert counts["tracebacks"] == counts["files left"] == counts["wrong exit"] == 0
    assert counts["clean errors"] + counts["valid"] == counts["cases"] == 61
