"""Nothing heavy at start-up (issue 26): the classical paths, apply-lut, slic and --help run on numpy alone."""

import json
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from conftest import SAMPLES

HEAVY = ("torch", "kornia", "napari", "av", "onnxruntime", "colour", "transformers", "ray")


def _heavy_modules_after(code: str) -> list[str]:
    """The heavy packages a fresh interpreter holds after running ``code``."""
    probe = f"{code}\nimport json, sys\nprint(json.dumps(sorted(m for m in {HEAVY!r} if m in sys.modules)))"
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_the_probe_sees_torch_when_it_is_imported():
    assert _heavy_modules_after("import histocolor.methods.network") == ["torch"]


def test_the_methods_package_needs_no_torch():
    assert _heavy_modules_after("import histocolor.methods") == []


def test_import_histocolor_and_help_need_no_heavy_package():
    assert _heavy_modules_after("import histocolor; histocolor.ColorTransfer") == []
    code = "from histocolor.cli import main\ntry:\n    main(['--help'])\nexcept SystemExit:\n    pass"
    assert _heavy_modules_after(code) == []
    for command in ("transfer", "apply-lut", "segment", "evaluate", "video", "train"):
        code = f"from histocolor.cli import main\ntry:\n    main(['{command}', '--help'])\nexcept SystemExit:\n    pass"
        assert _heavy_modules_after(code) == [], command


@pytest.mark.parametrize("method", ["reinhard", "mkl", "histmatch", "idt", "hm-mkl-hm"])
def test_a_classical_transfer_globally_and_by_regions_needs_no_torch(tmp_path, method):
    labels = np.zeros((48, 64), np.uint8)
    labels[:, 32:] = 1
    Image.fromarray(labels).save(tmp_path / "labels.png")
    source, reference = SAMPLES / "source.jpg", SAMPLES / "reference.jpg"
    code = (
        "from histocolor.cli import main\n"
        f"assert main(['transfer', r'{source}', r'{reference}', '-o', r'{tmp_path / 'out.jpg'}', '--method', '{method}',"
        f" '--save-lut', r'{tmp_path / 'look.cube'}']) == 0\n"
        "import histocolor\n"
        "import numpy as np\n"
        "rng = np.random.default_rng(0)\n"
        "image = rng.integers(0, 256, (48, 64, 3), dtype=np.uint8)\n"
        f"labels = np.zeros((48, 64), int); labels[:, 32:] = 1\n"
        f"result = histocolor.transfer(image, image[::-1], '{method}', source_labels=labels, reference_labels=labels)\n"
        "assert result.image.shape == image.shape\n"
    )
    assert _heavy_modules_after(code) == []
    assert (tmp_path / "out.jpg").is_file() and (tmp_path / "look.cube").is_file()


def test_apply_lut_and_slic_segmentation_need_no_heavy_package(tmp_path):
    from histocolor.cube import write_cube
    from histocolor.lut import identity_lut

    write_cube(tmp_path / "look.cube", identity_lut(9) ** 1.2)
    source = SAMPLES / "source.jpg"
    code = (
        "from histocolor.cli import main\n"
        f"assert main(['apply-lut', r'{source}', r'{tmp_path / 'look.cube'}', '-o', r'{tmp_path / 'out.png'}']) == 0\n"
        f"assert main(['segment', r'{source}', '--segmenter', 'slic', '-o', r'{tmp_path / 'labels.png'}']) == 0\n"
    )
    assert _heavy_modules_after(code) == []
    assert (tmp_path / "out.png").is_file() and (tmp_path / "labels.png").is_file()


def test_the_network_transfer_needs_torch_alone(tmp_path):
    # kornia costs a tenth of a second to import: the network's Lab conversions are our own.
    source, reference = SAMPLES / "source.jpg", SAMPLES / "reference.jpg"
    code = (
        "from histocolor.cli import main\n"
        f"assert main(['transfer', r'{source}', r'{reference}', '-o', r'{tmp_path / 'out.jpg'}']) == 0\n"
    )
    assert _heavy_modules_after(code) == ["torch"]
    assert (tmp_path / "out.jpg").is_file()
