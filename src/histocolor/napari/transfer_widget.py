"""The "Color transfer" dock widget: source and reference layers in, a result layer out.

A ``(T, H, W, 3)`` time stack as the source gets one look for the whole stack (fitted on
frames sampled across it), so it does not flicker. "Export LUT…" saves the last result's
look as .cube file(s).
"""

from pathlib import Path

import numpy as np

from magicgui.widgets import CheckBox, ComboBox, Container, FileEdit, FloatSlider, PushButton, SpinBox, create_widget
from napari.utils.notifications import show_info

from histocolor.cube import save_look

from histocolor.errors import HistocolorError
from histocolor.napari._layers import (
    SAME_LAYER, add_result, check_layer, notify_error, result_name, separate_pickers, start_worker,
)
from histocolor.device import DEVICES
from histocolor.model.io import DEFAULT_WEIGHTS
from histocolor.transfer import DEFAULT_MAX_SIDE, METHODS, ColorTransfer
from histocolor.video import shot_look


class TransferWidget(Container):
    """Pick a source and a reference Image layer, a method and its settings; "Transfer"."""

    def __init__(self, viewer: "napari.viewer.Viewer"):
        super().__init__()
        self._viewer = viewer
        self.source = create_widget(annotation="napari.layers.Image", label="source")
        self.reference = create_widget(annotation="napari.layers.Image", label="reference")
        self.method = ComboBox(choices=METHODS, value="analogy", label="method")
        self.strength = FloatSlider(value=1.0, min=0.0, max=1.0, step=0.05, label="strength")
        self.working_size = SpinBox(value=DEFAULT_MAX_SIDE, min=16, max=4096, step=16, label="working size")
        self.weights = FileEdit(mode="d", value=DEFAULT_WEIGHTS, label="weights")
        self.device = ComboBox(choices=DEVICES, value="auto", label="device")
        self.replace = CheckBox(value=True, text="replace the earlier result of the same pair")
        self.run_button = PushButton(text="Transfer")
        self.run_button.changed.connect(self._clicked)
        self.export_button = PushButton(text="Export LUT…", enabled=False)
        self.export_button.changed.connect(self._export_clicked)
        self.method.changed.connect(self._method_changed)
        self.extend(
            [self.source, self.reference, self.method, self.strength, self.working_size, self.weights,
             self.device, self.replace, self.run_button, self.export_button]
        )
        self.worker = None
        self.last_look = None
        self._engine_key = self._engine = None
        self._method_changed(self.method.value)
        self._images = separate_pickers(self.source, self.reference)

    def reset_choices(self, *args) -> None:
        """The layer lists changed (napari calls this): refresh the pickers, keep them apart."""
        super().reset_choices(*args)
        self._images = separate_pickers(self.source, self.reference, getattr(self, "_images", 0))

    def _method_changed(self, method: str) -> None:
        network = method == "analogy"
        for widget in (self.working_size, self.weights, self.device):
            widget.enabled = network

    def use_weights(self, directory) -> None:
        """Switch to the network with these weights (the "Fine-tune" widget's result)."""
        self.weights.value = Path(directory)
        self.method.value = "analogy"

    def _clicked(self, *_) -> None:
        self.transfer(self.source.value, self.reference.value)

    def transfer(self, source_layer, reference_layer):
        """Start a transfer in a worker thread and return the worker (None when refused)."""
        if self.worker is not None:
            show_info("a transfer is already running: wait for it to finish")
            return None
        try:
            source = check_layer(source_layer, "source", stack=True)
            reference = check_layer(reference_layer, "reference")
            if source_layer is reference_layer:
                raise HistocolorError(SAME_LAYER)
        except HistocolorError as error:
            notify_error(error)
            return None
        method = self.method.value
        name = result_name(source_layer, reference_layer, method)
        weights = Path(self.weights.value)
        # The weights file's time is in the key: a fine-tune run may rewrite the same folder.
        stamp = (weights / "model.safetensors").stat().st_mtime if (weights / "model.safetensors").is_file() else None
        settings = (method, str(weights), stamp, self.device.value, int(self.working_size.value))
        return start_worker(
            self, self.run_button, self._compute, source, reference, settings, float(self.strength.value),
            returned=lambda made: self._show(made, name, source_layer), description=f"Color transfer ({method})",
        )

    def _show(self, made, name, source_layer) -> None:
        image, self.last_look = made
        self.export_button.enabled = True
        add_result(self._viewer, image, name, source_layer, self.replace.value)

    def _compute(self, source, reference, settings, strength):
        # Runs in the worker thread; the engine (and its loaded model) is kept for the next run.
        if self._engine_key != settings:
            method, weights, _, device, working_size = settings
            options = {"weights": weights, "device": device, "max_side": working_size} if method == "analogy" else {}
            self._engine, self._engine_key = ColorTransfer(method, **options), settings
        pixels, reference_pixels = source.read(), reference.read()
        if pixels.ndim == 4:  # a time stack: one look for all its frames (alpha passed through)
            look = shot_look(self._engine, iter(pixels[..., :3]), reference_pixels).blended(strength)
            frames = np.stack([look.apply(np.ascontiguousarray(frame[..., :3])) for frame in pixels])
            return source.restore(np.concatenate([frames, pixels[..., 3:]], axis=-1)), look
        result = self._engine(pixels, reference_pixels, strength=strength)
        return source.restore(result.image), result.look

    def _export_clicked(self, *_) -> None:
        from qtpy.QtWidgets import QFileDialog

        path, _ = QFileDialog.getSaveFileName(self.native, "Export the look as a 3D LUT", "look.cube",
                                              "3D LUT (*.cube)")
        if path:
            self.export_lut(path)

    def export_lut(self, path) -> list[Path] | None:
        """Save the last result's look (its strength included) as .cube file(s); None if it failed."""
        if self.last_look is None:
            show_info("transfer first: the LUT is the look of the last result")
            return None
        path = Path(path)
        if path.suffix.lower() != ".cube":
            path = path.with_suffix(".cube")
        try:
            size = self._engine.lut_size
            written = save_look(path, self.last_look, size)
        except (HistocolorError, OSError) as error:
            notify_error(error)
            return None
        show_info(f"look saved: {', '.join(p.name for p in written)} in {path.parent}")
        return written
