"""The "Compare" dock widget: Lab histograms and metrics of any set of Image layers.

It starts filled in with the newest result's source and reference and every result of that
pair (or the first two images, before any result), and fills itself in again as results come,
unless its choices were changed by hand since.
"""

import math
from typing import TYPE_CHECKING

import numpy as np
from magicgui.widgets import PushButton, Select, create_widget
from matplotlib.backends.backend_qtagg import FigureCanvasQTAgg
from matplotlib.figure import Figure
from napari.layers import Image
from napari.utils.notifications import show_info
from qtpy.QtCore import Qt
from qtpy.QtGui import QFontMetrics
from qtpy.QtWidgets import QHeaderView, QTableWidget, QTableWidgetItem

from histocolor.errors import HistocolorError
from histocolor.metrics import AB_RANGE, L_RANGE, ciede2000, gradient_ssim, lab_histograms, psnr, sliced_wasserstein
from histocolor.napari._layers import (
    RESULT_KEY, DockContainer, check_layer, is_result, notify_error, start_worker, unwrap,
)
from histocolor.imageio import as_image

if TYPE_CHECKING:  # napari passes the viewer to a parameter annotated "napari.viewer.Viewer" (the string)
    import napari.viewer

METRICS = ("SWD to ref. ↓", "grad. SSIM ↑", "PSNR (dB) ↑", "ΔE2000 ↓")
METRIC_TIPS = (
    "sliced Wasserstein distance to the reference's Lab pixels (colour fidelity)",
    "SSIM of the L gradient magnitudes against the source (structure kept)",
    "PSNR against the ground truth",
    "mean CIEDE2000 against the ground truth",
)


def viewer_grid(viewer):
    """The viewer's grid settings (``viewer.canvas.grid`` since napari 0.9, ``viewer.grid`` before)."""
    canvas = getattr(viewer, "canvas", None)
    return canvas.grid if hasattr(canvas, "grid") else viewer.grid


def _same_size(image: np.ndarray, other) -> bool:
    return other is not None and other.shape[:2] == image.shape[:2]


def compare(layers: dict, source, reference, truth=None):
    """Histograms and metrics of named layers (:class:`LayerPixels`), a generator for a worker thread.

    Yields each layer's name once it is done (progress) and returns
    ``{name: {"histograms": (l, ab), "metrics": [4 values or None]}}``. A metric between images
    of different sizes (other than SWD) is None.
    """
    source, reference, truth = (None if pixels is None else as_image(pixels.read()).rgb for pixels in (source, reference, truth))
    results = {}
    for name, pixels in layers.items():
        image = as_image(pixels.read()).rgb
        values = [sliced_wasserstein(image, reference) if reference is not None else None]
        values.append(gradient_ssim(image, source) if _same_size(image, source) else None)
        values += [psnr(image, truth), ciede2000(image, truth)] if _same_size(image, truth) else [None, None]
        results[name] = {"histograms": lab_histograms(image), "metrics": values}
        yield name
    return results


NAME_WIDTH = 130  # pixels: a layer name in the table, elided in the middle past this (full name as tooltip)
TABLE_ROWS = 5  # rows the table shows before it scrolls
DENSITY_COLUMNS = 2  # (a, b) densities per row
CURVES_HEIGHT, DENSITY_HEIGHT = 260, 190  # pixels: the L curves (with their legend), a row of densities
PLACEHOLDER = ("Pick the layers to compare (the source and the results, say), the source and the reference "
               "they refer to, and press Compare: their L histograms and (a, b) densities appear here.")


def _short(name: str, limit: int = 18) -> str:
    """A layer name short enough for a small plot's title."""
    return name if len(name) <= limit else name[: limit - 1] + "…"


class CompareWidget(DockContainer):
    """Pick layers to compare, plus the source, reference and (optional) ground truth they refer to."""

    def __init__(self, viewer: "napari.viewer.Viewer"):
        super().__init__()
        self._viewer = viewer = unwrap(viewer)  # the viewer itself: napari hands plugins a proxy
        self.layers = Select(choices=self._image_layers, label="layers to compare")
        self.source = create_widget(annotation=Image, label="source", options={"nullable": True})
        self.reference = create_widget(annotation=Image, label="reference", options={"nullable": True})
        self.truth = create_widget(annotation=Image, label="ground truth", options={"nullable": True})
        self.compare_button = PushButton(text="Compare")
        self.grid_button = PushButton(text="Side by side (grid)")
        self.compare_button.changed.connect(self._clicked)
        self.grid_button.changed.connect(self.side_by_side)
        self.extend([self.layers, self.source, self.reference, self.truth, self.compare_button, self.grid_button])
        self.figure = Figure(figsize=(4, 4), tight_layout=True)
        self.canvas = FigureCanvasQTAgg(self.figure)
        self.canvas.setMinimumHeight(320)
        self.table = QTableWidget(0, len(METRICS))
        self.table.setHorizontalHeaderLabels(METRICS)
        for column, tip in enumerate(METRIC_TIPS):
            self.table.horizontalHeaderItem(column).setToolTip(tip)
        # Each metric column as wide as its header; the layer names, elided in the middle, take the rest.
        self.table.horizontalHeader().setSectionResizeMode(QHeaderView.ResizeMode.ResizeToContents)
        self.table.setVisible(False)  # until the first comparison (the placeholder says what to do)
        self.body.layout().addWidget(self.table)  # the numbers first, then the plots (the dock scrolls)
        self.body.layout().addWidget(self.canvas)
        self.worker = None
        self._placeholder()
        self.prefill()
        viewer.layers.events.inserted.connect(self._inserted)
        self.native.destroyed.connect(lambda *_: viewer.layers.events.inserted.disconnect(self._inserted))

    def _choices(self) -> tuple:
        """What is picked: (layers to compare, source, reference)."""
        return tuple(self.layers.value), self.source.value, self.reference.value

    def _alive(self, choices: tuple) -> tuple:
        """``choices`` as ids, without the layers removed from the viewer since (removing a layer
        is not a choice made by hand)."""
        present = {id(layer) for layer in self._viewer.layers}
        layers, source, reference = choices
        return (frozenset(id(layer) for layer in layers if id(layer) in present),
                *(id(layer) if id(layer) in present else None for layer in (source, reference)))

    def _inserted(self, event) -> None:
        # A new result: fill in again, unless the user changed what the last filling-in chose.
        if is_result(event.value) and self._alive(self._choices()) == self._alive(self._prefilled):
            self.prefill()

    def reset_choices(self, *args) -> None:
        """New choices (layers added, removed or renamed) keep what was picked among the layers
        still open: a renamed layer (a result whose strength changed) stays picked."""
        if not hasattr(self, "_prefilled"):  # still being built
            return super().reset_choices(*args)
        present = {id(layer) for layer in self._viewer.layers}
        layers, source, reference = self._choices()
        super().reset_choices(*args)
        self.layers.value = [layer for layer in layers if id(layer) in present]
        for widget, layer in ((self.source, source), (self.reference, reference)):
            if layer is not None and id(layer) in present:
                widget.value = layer

    def prefill(self) -> None:
        """The newest result's source and reference, and every result of that pair; before any
        result, the first two images."""
        self.reset_choices()
        images = [layer for _, layer in self._image_layers()]
        results = [layer for layer in images if is_result(layer)]
        by_name = {layer.name: layer for layer in images}
        if results:
            about = results[-1].metadata[RESULT_KEY]
            source, reference = by_name.get(about.get("source")), by_name.get(about.get("reference"))
            pair = [layer for layer in results if (layer.metadata[RESULT_KEY].get("source"),
                                                  layer.metadata[RESULT_KEY].get("reference"))
                    == (about.get("source"), about.get("reference"))]
        else:
            originals = [layer for layer in images if not is_result(layer)]
            source, reference = (originals + [None, None])[:2]
            pair = []
        self.source.value, self.reference.value = source, reference
        self.layers.value = [layer for layer in (source, reference, *pair) if layer is not None]
        self._prefilled = self._choices()

    def _placeholder(self) -> None:
        """What the plot area says before the first comparison (not a blank box)."""
        self.figure.clear()
        axes = self.figure.add_subplot()
        axes.axis("off")
        axes.text(0.5, 0.5, PLACEHOLDER, ha="center", va="center", wrap=True, fontsize=8, color="0.4")
        self.canvas.draw_idle()

    def _image_layers(self, _widget=None):
        return [(layer.name, layer) for layer in self._viewer.layers if isinstance(layer, Image)]

    def _clicked(self, *_) -> None:
        self.run()

    def run(self):
        """Compute in a worker thread; returns the worker (None when refused)."""
        if self.worker is not None:
            show_info("a comparison is already running")
            return None
        picked = list(self.layers.value)
        try:
            if not picked:
                raise HistocolorError("pick at least one layer to compare")
            images = {layer.name: check_layer(layer, "layer") for layer in picked}
            anchors = [
                None if widget.value is None else check_layer(widget.value, role)
                for widget, role in ((self.source, "source"), (self.reference, "reference"), (self.truth, "truth"))
            ]
        except HistocolorError as error:
            notify_error(error)
            return None
        return start_worker(self, self.compare_button, compare, images, *anchors, returned=self.show,
                            description=f"Compare {len(images)} layers", total=len(images))

    def show(self, results: dict) -> None:
        """Fill the table and draw the L curves and one (a, b) density per layer."""
        self.table.setRowCount(len(results))
        metrics = QFontMetrics(self.table.verticalHeader().font())
        for row, name in enumerate(results):
            item = QTableWidgetItem(metrics.elidedText(name, Qt.TextElideMode.ElideMiddle, NAME_WIDTH))
            item.setToolTip(name)
            self.table.setVerticalHeaderItem(row, item)
        for row, result in enumerate(results.values()):
            for column, value in enumerate(result["metrics"]):
                self.table.setItem(row, column, QTableWidgetItem("-" if value is None else f"{value:.4g}"))
        for column in range(len(METRICS)):  # no empty columns (PSNR and ΔE need a ground truth)
            self.table.setColumnHidden(column, all(r["metrics"][column] is None for r in results.values()))
        self.table.setVisible(True)
        # As tall as its rows up to TABLE_ROWS (then it scrolls): the plots stay in sight below it.
        self.table.setFixedHeight(self.table.horizontalHeader().sizeHint().height() + 2 * self.table.frameWidth()
                                  + sum(self.table.rowHeight(row) for row in range(min(self.table.rowCount(), TABLE_ROWS)))
                                  + self.table.horizontalScrollBar().sizeHint().height())
        self.figure.clear()
        columns = min(len(results), DENSITY_COLUMNS)
        rows = math.ceil(len(results) / columns)
        # A fixed height per row of densities (the dock scrolls): they stay readable with many layers.
        self.canvas.setMinimumHeight(int(CURVES_HEIGHT + rows * DENSITY_HEIGHT))
        grid = self.figure.add_gridspec(1 + rows, columns, height_ratios=(0.9, *[1.0] * rows))
        curves = self.figure.add_subplot(grid[0, :])
        first = None
        for index, (name, result) in enumerate(results.items()):
            lightness, chroma = result["histograms"]
            centres = np.linspace(*L_RANGE, len(lightness) + 1)
            curves.plot((centres[1:] + centres[:-1]) / 2, lightness, label=name)
            row, column = divmod(index, columns)
            density = self.figure.add_subplot(grid[1 + row, column], sharex=first, sharey=first)
            first = first or density
            density.imshow(np.log1p(chroma.T * 1e4), origin="lower", extent=(*AB_RANGE, *AB_RANGE), cmap="magma")
            density.set_title(_short(name, 24), fontsize=7)
            density.tick_params(labelsize=6, labelleft=column == 0)
            if column == 0:
                density.set_ylabel("b", fontsize=7)
            density.set_xlabel("a", fontsize=7)
        curves.set_xlabel("L", fontsize=8)
        curves.tick_params(labelsize=7)
        # The legend under the curves, off them, one column per two layers at most.
        curves.legend(fontsize=6, loc="upper center", bbox_to_anchor=(0.5, -0.28), ncol=min(len(results), 2),
                      frameon=False)
        self.canvas.draw_idle()

    def side_by_side(self, *_) -> None:
        """Show the picked layers (all images if none is picked) in napari's grid mode."""
        picked = list(self.layers.value) or [layer for _, layer in self._image_layers()]
        for _, layer in self._image_layers():
            layer.visible = layer in picked
        viewer_grid(self._viewer).enabled = True
        self._viewer.reset_view()
