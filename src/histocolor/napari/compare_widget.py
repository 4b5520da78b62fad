"""The "Compare" dock widget: Lab histograms and metrics of any set of Image layers."""

import numpy as np
from magicgui.widgets import ComboBox, Container, PushButton, Select, create_widget
from matplotlib.backends.backend_qtagg import FigureCanvasQTAgg
from matplotlib.figure import Figure
from napari.layers import Image
from napari.utils.notifications import show_info
from qtpy.QtWidgets import QTableWidget, QTableWidgetItem

from histocolor.errors import HistocolorError
from histocolor.metrics import AB_RANGE, L_RANGE, ciede2000, gradient_ssim, lab_histograms, psnr, sliced_wasserstein
from histocolor.napari._layers import check_layer, notify_error, start_worker
from histocolor.imageio import as_image

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


def compare(layers: dict, source, reference, truth=None) -> dict:
    """Histograms and metrics of named layers (:class:`LayerPixels`; runs in the worker thread).

    Returns ``{name: {"histograms": (l, ab), "metrics": [4 values or None]}}``. A metric
    between images of different sizes (other than SWD) is None.
    """
    source, reference, truth = (None if pixels is None else as_image(pixels.read()).rgb for pixels in (source, reference, truth))
    results = {}
    for name, pixels in layers.items():
        image = as_image(pixels.read()).rgb
        values = [sliced_wasserstein(image, reference) if reference is not None else None]
        values.append(gradient_ssim(image, source) if _same_size(image, source) else None)
        values += [psnr(image, truth), ciede2000(image, truth)] if _same_size(image, truth) else [None, None]
        results[name] = {"histograms": lab_histograms(image), "metrics": values}
    return results


PLACEHOLDER = ("Pick the layers to compare (the source and the results, say), the source and the reference "
               "they refer to, and press Compare: their L histograms and (a, b) densities appear here.")


def _short(name: str, limit: int = 18) -> str:
    """A layer name short enough for a small plot's title."""
    return name if len(name) <= limit else name[: limit - 1] + "…"


class CompareWidget(Container):
    """Pick layers to compare, plus the source, reference and (optional) ground truth they refer to."""

    def __init__(self, viewer: "napari.viewer.Viewer"):
        super().__init__()
        self._viewer = viewer
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
        self.native.layout().addWidget(self.canvas)
        self.native.layout().addWidget(self.table)
        self.worker = None
        self._placeholder()

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
        return start_worker(self, self.compare_button, compare, images, *anchors, returned=self.show, description="Compare")

    def show(self, results: dict) -> None:
        """Fill the table and draw the L curves and one (a, b) density per layer."""
        self.table.setRowCount(len(results))
        self.table.setVerticalHeaderLabels(list(results))
        for row, result in enumerate(results.values()):
            for column, value in enumerate(result["metrics"]):
                self.table.setItem(row, column, QTableWidgetItem("-" if value is None else f"{value:.4g}"))
        for column in range(len(METRICS)):  # no empty columns (PSNR and ΔE need a ground truth)
            self.table.setColumnHidden(column, all(r["metrics"][column] is None for r in results.values()))
        self.table.resizeColumnsToContents()
        self.figure.clear()
        grid = self.figure.add_gridspec(2, len(results), height_ratios=(1, 1.4))
        curves = self.figure.add_subplot(grid[0, :])
        for index, (name, result) in enumerate(results.items()):
            lightness, chroma = result["histograms"]
            centres = np.linspace(*L_RANGE, len(lightness) + 1)
            curves.plot((centres[1:] + centres[:-1]) / 2, lightness, label=name)
            density = self.figure.add_subplot(grid[1, index])
            density.imshow(np.log1p(chroma.T * 1e4), origin="lower", extent=(*AB_RANGE, *AB_RANGE), cmap="magma")
            density.set_title(_short(name), fontsize=7)
            density.set_xlabel("a", fontsize=7)
            density.tick_params(labelsize=6)
        curves.set_xlabel("L", fontsize=8)
        curves.tick_params(labelsize=7)
        curves.legend(fontsize=6, loc="upper left", bbox_to_anchor=(1.01, 1.0), borderaxespad=0.0)  # off the curves
        self.canvas.draw_idle()

    def side_by_side(self, *_) -> None:
        """Show the picked layers (all images if none is picked) in napari's grid mode."""
        picked = list(self.layers.value) or [layer for _, layer in self._image_layers()]
        for _, layer in self._image_layers():
            layer.visible = layer in picked
        viewer_grid(self._viewer).enabled = True
        self._viewer.reset_view()
