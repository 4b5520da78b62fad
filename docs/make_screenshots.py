"""Takes the README's three screenshots from the current code, with the sample pair, in a
1280x800 window with all four docks open (as tabs; the one shown is raised):

- docs/screenshot-transfer.png: "Color transfer", the source and the result side by side
  (before / after) at 80 % strength;
- docs/screenshot-regions.png: "Regions", both images segmented, the reference laid out next
  to the source for painting, the correspondence table;
- docs/screenshot-compare.png: "Compare" of the source, the reference and two results;
- docs/screenshot-finetune.png: "Fine-tune", the form filled in with the two open photos.

    export XDG_RUNTIME_DIR=$(mktemp -d); chmod 700 $XDG_RUNTIME_DIR
    QT_API=pyqt6 xvfb-run -a -s "-screen 0 1280x800x24" .venv/bin/python docs/make_screenshots.py
"""

import time
from pathlib import Path

import napari
from qtpy.QtWidgets import QApplication

from histocolor.napari.compare_widget import viewer_grid

DOCS = Path(__file__).resolve().parent
PLUGIN = "napari-histocolor"
DOCKS = ("Color transfer", "Regions", "Compare", "Fine-tune")


def settle(widget=None, seconds: float = 1.0) -> None:
    """Let the worker (if any) finish and the window repaint."""
    deadline = time.monotonic() + 600
    while widget is not None and (widget.worker is not None or getattr(widget, "preview_worker", None) is not None):
        if time.monotonic() > deadline:
            raise TimeoutError("the widget's worker did not finish in 10 minutes")
        QApplication.processEvents()
        time.sleep(0.05)
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        QApplication.processEvents()
        time.sleep(0.05)


def viewer_with_sample(title: str):
    """A 1280x800 viewer with the sample pair and all four docks, ``title``'s raised; its widget."""
    viewer = napari.Viewer(show=True, title=f"histocolor: {title}")
    viewer.window._qt_window.resize(1280, 800)
    viewer.open_sample(PLUGIN, "source-and-reference")
    widgets = {name: viewer.window.add_plugin_dock_widget(PLUGIN, name) for name in DOCKS}
    settle()
    dock, widget = widgets[title]
    dock.raise_()
    return viewer, widget


def widget_of(viewer, title: str):
    return viewer.window.add_plugin_dock_widget(PLUGIN, title)[1]  # the open one


def save(viewer, name: str) -> None:
    path = DOCS / name
    viewer.screenshot(str(path), canvas_only=False)
    viewer.close()
    print(f"wrote {path}")


def transfer_screenshot() -> None:
    viewer, widget = viewer_with_sample("Color transfer")
    widget.run_button.native.click()
    settle(widget)
    widget.strength.value = 0.8  # the live preview re-applies the look
    settle(widget)
    viewer.layers["reference"].visible = False
    viewer_grid(viewer).enabled = True  # before (the source) and after (the result) side by side
    viewer.reset_view()
    settle()
    save(viewer, "screenshot-transfer.png")


def regions_screenshot() -> None:
    viewer, widget = viewer_with_sample("Regions")
    widget.segment_button.native.click()  # SLIC superpixels; both images, side by side
    settle(widget)
    save(viewer, "screenshot-regions.png")


def compare_screenshot() -> None:
    viewer, widget = viewer_with_sample("Compare")
    transfer = widget_of(viewer, "Color transfer")
    for method in ("analogy", "mkl"):
        transfer.method.value = method
        transfer.run_button.native.click()
        settle(transfer)
    widget.compare_button.native.click()  # filled in: the source, the reference and both results
    settle(widget)
    widget.grid_button.native.click()  # the four layers side by side
    settle()
    save(viewer, "screenshot-compare.png")


def finetune_screenshot() -> None:
    viewer, widget = viewer_with_sample("Fine-tune")
    widget.layers.value = [viewer.layers["source"], viewer.layers["reference"]]
    settle()
    save(viewer, "screenshot-finetune.png")


def main() -> None:
    for take in (transfer_screenshot, regions_screenshot, compare_screenshot, finetune_screenshot):
        take()


if __name__ == "__main__":
    main()
