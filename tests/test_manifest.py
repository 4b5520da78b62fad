from pathlib import Path

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
