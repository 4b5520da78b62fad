"""Takes docs/screenshot.png: the viewer with the "Color transfer" widget and a result.

    export XDG_RUNTIME_DIR=$(mktemp -d); chmod 700 $XDG_RUNTIME_DIR
    QT_API=pyqt6 xvfb-run -a -s "-screen 0 1600x1000x24" .venv/bin/python docs/make_screenshot.py
"""

import time
from pathlib import Path

import napari
from qtpy.QtWidgets import QApplication

from histocolor.napari.compare_widget import viewer_grid

OUT = Path(__file__).resolve().parent / "screenshot.png"


def main() -> None:
    viewer = napari.Viewer(show=True)
    viewer.window._qt_window.resize(1500, 900)
    viewer.open_sample("napari-histocolor", "source-and-reference")
    _, widget = viewer.window.add_plugin_dock_widget("napari-histocolor", "Color transfer")
    widget.source.value, widget.reference.value = viewer.layers["source"], viewer.layers["reference"]
    widget.run_button.native.click()
    deadline = time.monotonic() + 300
    while widget.worker is not None and time.monotonic() < deadline:
        QApplication.processEvents()
        time.sleep(0.05)
    viewer_grid(viewer).enabled = True  # source, reference and result side by side
    viewer.reset_view()
    for _ in range(20):
        QApplication.processEvents()
        time.sleep(0.05)
    viewer.screenshot(str(OUT), canvas_only=False)
    viewer.close()
    print(f"wrote {OUT}")


if __name__ == "__main__":
    main()
