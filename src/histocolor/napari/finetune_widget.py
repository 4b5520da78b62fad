"""The "Fine-tune" dock widget: train the network further on the user's photos."""

import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING

import torch
from magicgui.widgets import (
    FileEdit, FloatSpinBox, Label, ProgressBar, PushButton, Select, SpinBox,
)
from matplotlib.backends.backend_qtagg import FigureCanvasQTAgg
from matplotlib.figure import Figure
from napari.layers import Image
from napari.utils import progress
from napari.utils.notifications import show_info
from qtpy.QtCore import QObject, Signal

from histocolor.training.data.photos import PhotoFolderDataset, list_photos
from histocolor.errors import HistocolorError
from histocolor.napari._layers import DockContainer, check_layer, notify_error, start_worker, unwrap
from histocolor.training.train import TrainConfig, train
from histocolor.imageio import as_image
from histocolor.model.io import DEFAULT_WEIGHTS

if TYPE_CHECKING:  # napari passes the viewer to a parameter annotated "napari.viewer.Viewer" (the string)
    import napari.viewer


def _keep_triton_out() -> None:
    """Make ``import triton`` fail in this process when there is no CUDA GPU to use it.

    torch's optimizers import torch._dynamo, which imports triton when it is installed; once a
    napari canvas has created an OpenGL context on Mesa's llvmpipe (software rendering, as
    under Xvfb), loading triton's bundled LLVM next to Mesa's crashes the process. Without a
    GPU triton does nothing for us, and torch treats a failed import as "not installed".
    """
    if not torch.cuda.is_available():
        sys.modules.setdefault("triton", None)


def _fine_tune(config: TrainConfig, photos, layers, out, weights, callback, should_stop):
    """The worker's job: read the photos and layers, then train from ``weights``."""
    recipe = {name: getattr(config, name) for name in (
        "crop", "seed", "identical_rate", "same_grade_rate", "same_photo_rate", "natural_source_rate",
        "strong_style_rate", "region_rate")}
    images = [as_image(layer.read()).rgb for layer in layers]
    dataset = PhotoFolderDataset(None, photos=photos, images=images, length=10**9, **recipe)
    steps = [0]

    def stepped(update):
        steps[0] = update.step  # counted here: the queued signals to the UI may still be on their way
        callback(update)

    out = train(config, dataset, out, init_weights=weights, device="auto", progress_bar=False,
                callback=stepped, should_stop=should_stop)
    return out, steps[0]


def fresh_folder(path: Path) -> Path:
    """``path`` when it is missing or empty, else the first free ``path-2``, ``path-3``, ...: a run
    never replaces the weights of an earlier one (which Color transfer may be using)."""
    def free(candidate: Path) -> bool:
        return not candidate.exists() or (candidate.is_dir() and not any(candidate.iterdir()))

    number = 2
    candidate = path
    while not free(candidate):
        candidate, number = path.with_name(f"{path.name}-{number}"), number + 1
    return candidate


ABOUT = ("Teaches the network your photos: it trains on synthetic retouches (new looks) of the chosen "
         "photos, from a folder and/or the open image layers you select, starting from the chosen weights.")
DEFAULT_STEPS = 40
NO_LAYERS = "(no image layers open: open photos in napari to train on them, or pick a photo folder)"


def progress_text(step: int, steps: int, seconds: float) -> str:
    """"step 12 of 40, ~2 min left" (the time left from the mean time per step so far)."""
    left = seconds / max(step, 1) * (steps - step)
    estimate = f"~{left:.0f} s left" if left < 90 else f"~{left / 60:.0f} min left"
    return f"step {step} of {steps}, {estimate}" if step < steps else f"step {step} of {steps}"


class _Relay(QObject):
    """Carries the training callback from the worker thread to the main thread (a queued signal)."""

    stepped = Signal(object)


class FineTuneWidget(DockContainer):
    """Photos (a folder and/or open layers), starting weights, steps, learning rate, output folder."""

    def __init__(self, viewer: "napari.viewer.Viewer"):
        super().__init__()
        self._viewer = viewer = unwrap(viewer)  # the viewer itself: napari hands plugins a proxy
        self.folder = FileEdit(mode="d", value="", label="photo folder")
        self.layers = Select(choices=self._image_layers, label="open layers")
        self.layers_hint = Label(value=NO_LAYERS)
        self.layers_hint.native.setWordWrap(True)
        self.weights = FileEdit(mode="d", value=DEFAULT_WEIGHTS, label="starting weights")
        self.about = Label(value=ABOUT)
        self.about.native.setWordWrap(True)
        # A few minutes on a laptop CPU (about 3-5 s a step); more steps fit the photos closer.
        self.steps = SpinBox(value=DEFAULT_STEPS, min=1, max=1_000_000, label="steps")
        self.learning_rate = FloatSpinBox(value=2e-4, min=1e-6, max=1e-1, step=1e-5, label="learning rate")
        self.learning_rate.native.setDecimals(6)
        self.output = FileEdit(mode="d", value=Path.home() / "histocolor-fine-tuned", label="output folder")
        self.start_button = PushButton(text="Start")
        self.stop_button = PushButton(text="Stop", enabled=False)
        self.use_button = PushButton(text="Use in Color transfer", enabled=False)
        self.bar = ProgressBar(value=0, min=0, max=1, label="progress")
        self.status = Label(value="")
        self.status.native.setWordWrap(True)  # a long weights path must not widen the dock
        self.start_button.changed.connect(self._clicked)
        self.stop_button.changed.connect(self.stop)
        self.use_button.changed.connect(self.use_weights)
        self.extend(
            [self.about, self.folder, self.layers, self.layers_hint, self.weights, self.steps, self.learning_rate, self.output,
             self.start_button, self.stop_button, self.bar, self.status, self.use_button]
        )
        self.figure = Figure(figsize=(4, 2.2), tight_layout=True)
        self.canvas = FigureCanvasQTAgg(self.figure)
        self.canvas.setMinimumHeight(180)
        self.body.layout().addWidget(self.canvas)
        self.body.layout().addStretch(1)  # the controls stay together at the top of a tall dock
        self.relay = _Relay(self.native)
        self.relay.stepped.connect(self._stepped)
        # Closing the widget ends a run after its current step (the weights are kept).
        self.native.destroyed.connect(lambda *_: setattr(self, "_stop_requested", True))
        self.worker = None
        self.trained = None  # the weights directory of the last finished run
        self._stop_requested = False
        self._losses: list[tuple[int, float]] = []
        self._progress = None
        self._started = None  # perf_counter at the start of a run, for the time left
        self.reset_choices()  # napari refreshes the choices on layer events only: fill them in now

    def reset_choices(self, *args) -> None:
        super().reset_choices(*args)
        if hasattr(self, "layers_hint"):  # built
            self.layers_hint.visible = not self._image_layers()

    def _image_layers(self, _widget=None):
        return [(layer.name, layer) for layer in self._viewer.layers if isinstance(layer, Image)]

    def _clicked(self, *_) -> None:
        self.start()

    def _training_images(self) -> tuple[list[Path], list]:
        """The photo paths and checked layers to train on (read later, in the worker)."""
        folder = str(self.folder.value).strip()
        photos = list_photos([folder]) if folder not in ("", ".") else []
        layers = [check_layer(layer, "training") for layer in self.layers.value]
        if len(photos) + len(layers) < 2:
            raise HistocolorError("fine-tuning needs at least two photos: pick a photo folder or open layers")
        return photos, layers

    def start(self):
        """Start training in a worker thread; returns the worker (None when refused)."""
        if self.worker is not None:
            show_info("fine-tuning is already running")
            return None
        try:
            config = TrainConfig.fine_tuning(int(self.steps.value), float(self.learning_rate.value))
            weights = Path(self.weights.value)
            if not (weights / "model.safetensors").is_file():
                raise HistocolorError(f"no weights (model.safetensors) in '{weights}'")
            photos, layers = self._training_images()
        except HistocolorError as error:
            notify_error(error)
            return None
        out = fresh_folder(Path(self.output.value))
        if out != Path(self.output.value):
            show_info(f"'{self.output.value}' already holds a run: this one goes to '{out}'")
        _keep_triton_out()
        self._stop_requested = False
        self._losses = []
        self.bar.max, self.bar.value = config.steps, 0
        self._progress = progress(total=config.steps, desc="Fine-tune")
        worker = start_worker(
            self, self.start_button, _fine_tune, config, photos, layers, out, weights,
            callback=self.relay.stepped.emit, should_stop=lambda: self._stop_requested,
            returned=self._trained, description=None, finished=self._finished,
        )
        self.stop_button.enabled, self.use_button.enabled = True, False
        self.status.value = f"step 0 of {config.steps}: preparing the photos"
        self._started, self._out = time.perf_counter(), out
        return worker

    def stop(self, *_) -> None:
        """End the run after the current step; the weights so far are saved."""
        self._stop_requested = True
        self.status.value = "stopping after this step..."

    def _stepped(self, update) -> None:
        self.bar.value = update.step
        if not self._stop_requested:
            self.status.value = progress_text(update.step, update.steps, time.perf_counter() - self._started)
        if self._progress is not None:
            self._progress.update(update.step - self._progress.n)
        self._losses.append((update.step, update.losses["loss"]))
        if update.step == update.steps or update.step % max(1, update.steps // 50) == 0:
            self._plot()

    def _plot(self) -> None:
        self.figure.clear()
        axes = self.figure.add_subplot()
        steps, losses = zip(*self._losses) if self._losses else ((), ())
        axes.plot(steps, losses, linewidth=1)
        axes.set_xlabel("step", fontsize=7)
        axes.set_ylabel("loss", fontsize=7)
        axes.tick_params(labelsize=6)
        self.canvas.draw_idle()

    def _trained(self, result) -> None:
        out, done = result
        self.trained = Path(out)
        self.use_button.enabled = True
        total = int(self.bar.max)
        self.bar.value = done
        if done < total:
            self.status.value = f"stopped at step {done} of {total}; weights saved to {out}"
        else:
            self.status.value = f"done: {total} of {total} steps; weights saved to {out}"
        self._plot()

    def _finished(self) -> None:
        if self._progress is not None:
            self._progress.close()
            self._progress = None
        self.stop_button.enabled = False

    def use_weights(self, *_) -> None:
        """Select the new weights in every open "Color transfer" widget (opening one if none is)."""
        from histocolor.napari.transfer_widget import TransferWidget

        if self.trained is None:
            return
        window = self._viewer.window
        targets = [widget for widget in window.dock_widgets.values() if isinstance(widget, TransferWidget)]
        if not targets:
            targets = [window.add_plugin_dock_widget("napari-histocolor", "Color transfer")[1]]
        for widget in targets:
            widget.use_weights(self.trained)
        show_info(f"Color transfer now uses {self.trained}")
