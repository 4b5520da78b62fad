"""The "Color transfer" dock widget: source and reference layers in, a result layer out."""

from pathlib import Path

from magicgui.widgets import CheckBox, ComboBox, Container, FileEdit, FloatSlider, PushButton, SpinBox, create_widget
from napari.utils.notifications import show_info

from histocolor.errors import HistocolorError
from histocolor.napari._layers import (
    SAME_LAYER, add_result, check_layer, notify_error, result_name, separate_pickers, start_worker,
)
from histocolor.transfer import DEFAULT_MAX_SIDE, DEFAULT_WEIGHTS, METHODS, ColorTransfer

DEVICES = ("auto", "cpu", "cuda")


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
        self.method.changed.connect(self._method_changed)
        self.extend(
            [self.source, self.reference, self.method, self.strength, self.working_size, self.weights,
             self.device, self.replace, self.run_button]
        )
        self.worker = None
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
            source = check_layer(source_layer, "source")
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
            returned=lambda image: add_result(self._viewer, image, name, source_layer, self.replace.value),
            description=f"Color transfer ({method})",
        )

    def _compute(self, source, reference, settings, strength):
        # Runs in the worker thread; the engine (and its loaded model) is kept for the next run.
        if self._engine_key != settings:
            method, weights, _, device, working_size = settings
            options = {"weights": weights, "device": device, "max_side": working_size} if method == "analogy" else {}
            self._engine, self._engine_key = ColorTransfer(method, **options), settings
        return source.restore(self._engine(source.read(), reference.read(), strength=strength).image)
