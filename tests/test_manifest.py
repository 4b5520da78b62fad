import importlib
import re
from pathlib import Path

import pytest

import histocolor


def test_npe2_manifest_is_found_and_valid():
    from npe2 import PluginManifest

    manifest = PluginManifest.from_distribution("napari-histocolor")
    assert manifest.name == "napari-histocolor"
    assert manifest.display_name[0].isalnum() and manifest.display_name[-1].isalnum()


def test_package_links_reach_the_root_files():
    package = Path(histocolor.__file__).parent
    assert (package / "napari.yaml").is_file()
    assert (package / "resources" / "samples" / "source.jpg").is_file()


def test_npe2_validate_accepts_the_plugin():
    import shutil
    import subprocess
    import sys

    npe2 = shutil.which("npe2", path=str(Path(sys.executable).parent))
    run = subprocess.run([npe2, "validate", "napari-histocolor"], capture_output=True, text=True)
    assert run.returncode == 0 and "valid" in run.stdout, run.stdout + run.stderr


def test_the_core_imports_neither_qt_nor_napari():
    package = Path(histocolor.__file__).parent
    front_end = re.compile(r"^\s*(from|import)\s+(napari|qtpy|PyQt5|PyQt6|PySide2|PySide6|magicgui|matplotlib)\b", re.M)
    core = [path for path in package.rglob("*.py") if "napari" not in path.relative_to(package).parts]
    assert len(core) > 20
    offenders = [str(path.relative_to(package)) for path in core if front_end.search(path.read_text())]
    assert offenders == []


def test_manifest_lists_the_widgets_and_the_sample():
    from npe2 import PluginManifest

    manifest = PluginManifest.from_distribution("napari-histocolor")
    assert [widget.display_name for widget in manifest.contributions.widgets] == ["Color transfer", "Regions", "Compare", "Fine-tune"]
    assert [sample.display_name for sample in manifest.contributions.sample_data] == ["Source and reference pair"]
    pytest.importorskip("napari", reason="the napari extra is not installed")
    for command in manifest.contributions.commands:  # every entry point resolves to a real object
        module, _, name = command.python_name.partition(":")
        assert callable(getattr(importlib.import_module(module), name))
