"""The "Color transfer" dock widget: source and reference layers in, a result layer out.

A ``(T, H, W, 3)`` time stack as the source gets one look for the whole stack (fitted on
frames sampled across it), so it does not flicker. "Export LUT…" saves the last result's
look as .cube file(s).

The strength slider previews live: the fitted look is re-applied (cheap, no network), and
the result layer's name carries the method and the strength. "Before/after" (Shift-B) hides
and shows the result over the source; "Undo" brings back what a replaced result showed;
Shift-T transfers. "Apply to all open images" gives every other open image the reference's
colours, one result each, with progress and Cancel.
"""

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from functools import partial

import numpy as np

from magicgui.widgets import CheckBox, ComboBox, FileEdit, FloatSlider, Label, PushButton, SpinBox, create_widget
from napari.layers import Image
from napari.qt.threading import create_worker
from napari.utils.notifications import show_info

from histocolor.cube import save_look
from histocolor.training.data.photos import PHOTO_EXTENSIONS, list_photos
from histocolor.imageio import check_output_path

from histocolor.errors import HistocolorError
from histocolor.napari._layers import (
    RESULT_KEY, SAME_LAYER, DockContainer, PairPickers, add_result, check_layer, check_reference, is_result,
    notify_error, refit_for_larger_layer, result_name, bind_shortcut, start_worker, unwrap,
)
from histocolor.device import DEVICES
from histocolor.model.io import DEFAULT_WEIGHTS
from histocolor.engine import DEFAULT_MAX_SIDE, METHODS, ColorTransfer
from histocolor.video import shot_look

if TYPE_CHECKING:  # napari passes the viewer to a parameter annotated "napari.viewer.Viewer" (the string)
    import napari.viewer


_UNDO_DEPTH = 10


@dataclass
class _Shown:
    """The last result: its layer, the look at full strength, and the source it recolours."""

    layer: object
    look: object
    source: object  # LayerPixels
    base_name: str


def named(base: str, strength: float) -> str:
    """``source ← reference (method)`` at full strength, ``(method, 60 %)`` below it."""
    return base if strength >= 1.0 else f"{base[:-1]}, {round(strength * 100)} %)"


# Images the network recolours together in "Apply to all open images" and "Apply to folder…".
BATCH_SIZE = 8


def apply_look(look, source, strength: float):
    """``look`` at ``strength`` on a layer's pixels (an image or a time stack, alpha kept), in its dtype."""
    pixels = source.read()
    frames = pixels if pixels.ndim == 4 else pixels[None]
    done = np.stack([ColorTransfer.apply(look, np.ascontiguousarray(frame), strength) for frame in frames])
    return source.restore(done if pixels.ndim == 4 else done[0])


class _LayerSink:
    """Where "Apply to all open images" sends the runner's results: each look applied to its
    layer's pixels at ``strength`` (no file), as ``(image, look at full strength)``."""

    def __init__(self, sources: list, strength: float):
        self.sources, self.strength = sources, strength  # LayerPixels, by row line

    def check(self, row) -> None:
        return None

    def finish(self, engine, job, look):
        return apply_look(look, self.sources[job.row.line], self.strength), look


def found_line(look, method: str, matching: bool) -> str:
    """What the status line says of a result: what its reference shares with its source, if anything."""
    shared = look.shared_pixels
    if shared is not None:
        return shared.describe()
    if not matching:
        return "shared pixels not looked for"
    return "no shared pixels: the network's transfer" if method == "analogy" else ""


class TransferWidget(DockContainer):
    """Pick a source and a reference Image layer, a method and its settings; "Transfer"."""

    def __init__(self, viewer: "napari.viewer.Viewer"):
        super().__init__()
        self._viewer = viewer = unwrap(viewer)  # the viewer itself: napari hands plugins a proxy
        self.source = create_widget(annotation="napari.layers.Image", label="source")
        self.reference = create_widget(annotation="napari.layers.Image", label="reference")
        self.method = ComboBox(choices=METHODS, value="analogy", label="method")
        self.strength = FloatSlider(value=1.0, min=0.0, max=1.0, step=0.05, label="strength")
        self.working_size = SpinBox(value=DEFAULT_MAX_SIDE, min=16, max=4096, step=16, label="working size")
        self.weights = FileEdit(mode="d", value=DEFAULT_WEIGHTS, label="weights")
        self.device = ComboBox(choices=DEVICES, value="auto", label="device")
        self.replace = CheckBox(value=True, text="replace the earlier result of the same pair")
        self.match = CheckBox(value=True, text="match shared pixels (an edited copy of the source)")
        self.match.tooltip = ("a reference that shows the source's own pixels (an edited, cropped or exported copy, "
                              "a graded frame of the shot) gives its exact look, fitted on those pixels")
        self.found = Label(value="", label="found")
        self.found.native.setWordWrap(True)
        self.run_button = PushButton(text="Transfer")
        self.run_button.changed.connect(self._clicked)
        self.export_button = PushButton(text="Export LUT…", enabled=False)
        self.export_button.changed.connect(self._export_clicked)
        self.before_after_button = PushButton(text="Before/after (Shift-B)", enabled=False)
        self.before_after_button.changed.connect(self.toggle_before_after)
        self.undo_button = PushButton(text="Undo", enabled=False)
        self.undo_button.changed.connect(self.undo)
        self.batch_button = PushButton(text="Apply to all open images")
        self.batch_button.tooltip = "every open image other than the reference, and other than results, gets a result"
        self.batch_button.changed.connect(self._batch_clicked)
        self.folder_button = PushButton(text="Apply to folder…")
        self.folder_button.tooltip = "the photos of a folder, written to another folder"
        self.folder_button.changed.connect(self._folder_clicked)
        self.cancel_button = PushButton(text="Cancel", enabled=False)
        self.cancel_button.changed.connect(self.cancel)
        self.strength.changed.connect(self.preview)
        self.method.changed.connect(self._method_changed)
        self.extend(
            [self.source, self.reference, self.method, self.strength, self.working_size, self.weights,
             self.device, self.match, self.found, self.replace, self.run_button, self.export_button, self.before_after_button,
             self.undo_button, self.batch_button, self.folder_button, self.cancel_button]
        )
        self.worker = self.preview_worker = None
        self.last_look = None
        self._shown = None  # the last result: its layer, full-strength look and source pixels
        self._results: dict = {}  # result layers by "source ← reference (method)", for "replace"
        self._pending_strength = None
        self._undo: list = []  # (layer, data, name) of results replaced, newest last
        bind_shortcut(viewer, "Shift-T", self, TransferWidget._clicked)
        bind_shortcut(viewer, "Shift-B", self, TransferWidget.toggle_before_after)
        self._engine_key = self._engine = None
        self._method_changed(self.method.value)
        self.pickers = PairPickers(viewer, self.source, self.reference)
        refit = partial(refit_for_larger_layer, viewer)
        viewer.layers.events.inserted.connect(refit)
        self.native.destroyed.connect(lambda *_: viewer.layers.events.inserted.disconnect(refit))
        self.body.layout().addStretch(1)  # the controls stay together at the top of a tall dock

    def reset_choices(self, *args) -> None:
        """The layer lists changed (napari calls this): refresh the pickers, keep them apart."""
        super().reset_choices(*args)
        if hasattr(self, "pickers"):
            self.pickers.choices_changed()

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
            reference = check_reference(reference_layer)
            if source_layer is reference_layer:
                raise HistocolorError(SAME_LAYER)
        except HistocolorError as error:
            notify_error(error)
            return None
        settings, strength = self._settings(), float(self.strength.value)
        self.found.value = ""
        return start_worker(
            self, self._run_buttons(), self._compute, source, reference, settings, strength,
            returned=lambda made: self._show(made, source_layer, reference_layer, source, strength, settings),
            description=f"Color transfer ({settings[0]})",
        )

    def _run_buttons(self) -> tuple:
        """The buttons that start a run: one run at a time (they share the engine and ``worker``)."""
        return self.run_button, self.batch_button, self.folder_button

    def _settings(self) -> tuple:
        """What the engine is built from (a new one when it changes)."""
        weights = Path(self.weights.value)
        # The weights file's time is in the key: a fine-tune run may rewrite the same folder.
        stamp = (weights / "model.safetensors").stat().st_mtime if (weights / "model.safetensors").is_file() else None
        match = "auto" if self.match.value else "off"
        return self.method.value, str(weights), stamp, self.device.value, int(self.working_size.value), match

    def _batch_clicked(self, *_) -> None:
        self.transfer_all(self.reference.value)

    def transfer_all(self, reference_layer):
        """Give every open image but the reference (and results) the reference's colours, in a
        worker with progress; each result appears as it is done. Images that cannot be
        transferred (a grey volume, say) are skipped with one notice. Returns the worker (None
        when refused)."""
        if self.worker is not None:
            show_info("a transfer is already running: wait for it to finish")
            return None
        sources, skipped = [], []
        try:
            reference = check_reference(reference_layer)
            for layer in self._viewer.layers:
                if isinstance(layer, Image) and layer is not reference_layer and not is_result(layer):
                    try:
                        sources.append((layer, check_layer(layer, "source", stack=True)))
                    except HistocolorError:
                        skipped.append(layer.name)
            if not sources:
                raise HistocolorError("no other open image to apply the reference to"
                                      + (f" ({', '.join(skipped)}: not 2-D images)" if skipped else ""))
        except HistocolorError as error:
            notify_error(error)
            return None
        if skipped:
            show_info(f"skipped, not 2-D images or RGB time stacks: {', '.join(skipped)}")
        settings, strength = self._settings(), float(self.strength.value)
        failed: list[str] = []

        def run():  # the batch runner of the command line, its results going to layers instead of files
            from histocolor.pairs import Row
            from histocolor.runner import PairRunner

            reference_pixels, rows = reference.read(), []
            for index, (layer, source) in enumerate(sources):
                pixels = source.read()
                if pixels.ndim == 4:  # a time stack: one look for all its frames
                    yield layer, source, self._compute(source, reference, settings, strength)
                else:
                    rows.append(Row(pixels, reference_pixels, None, line=index))
            runner = PairRunner(lambda: self._engine_for(settings), batch_size=BATCH_SIZE, io_threads=1,
                                sink=_LayerSink([source for _, source in sources], strength))
            for outcome in runner.run(rows):
                layer, source = sources[outcome.row.line]
                if outcome.error is not None:
                    failed.append(f"{layer.name} ({outcome.message})")
                yield layer, source, outcome.result

        done = []

        def show(made):
            layer, source, made = made
            done.append(layer)
            if made is not None and layer in self._viewer.layers:
                self._show(made, layer, reference_layer, source, strength, settings)

        def report(_=None):
            if failed:
                notify_error(f"{len(sources) - len(failed)} of {len(sources)} images recoloured; "
                             f"failed: {'; '.join(failed)}")

        return self._start_batch(
            run, len(sources), f"Color transfer ({settings[0]}) of {len(sources)} images",
            lambda: f"cancelled: {len(done)} of {len(sources)} images done; their results stay", yielded=show,
            returned=report,
        )

    def cancel(self, *_) -> None:
        """Stop "Apply to all open images" after the image in progress (the results so far stay)."""
        if self.worker is not None:
            self.worker.quit()
            self.cancel_button.enabled = False

    def _show(self, made, source_layer, reference_layer, source, strength, settings) -> None:
        """Show a result made with ``settings`` (:meth:`_settings`, as they were when the run started)."""
        image, look = made
        method, matching = settings[0], settings[-1] == "auto"
        name = result_name(source_layer, reference_layer, method)
        about = {"reference": reference_layer.name, "method": method, "strength": strength}
        earlier = self._results.get(name)
        if earlier is None:
            earlier = self._earlier_result(source_layer, reference_layer, method)
        if self.replace.value and earlier is not None and earlier in self._viewer.layers:
            self._remember(earlier)
            earlier.data, earlier.name = image, named(name, strength)
            earlier.metadata = {**earlier.metadata, RESULT_KEY: {"source": source_layer.name, **about}}
            layer = earlier
        else:
            layer = add_result(self._viewer, image, named(name, strength), source_layer, replace=False, about=about)
        self._results[name] = layer
        self._shown = _Shown(layer, look, source, name)
        self.last_look = look.blended(strength)
        self.found.value = found_line(look, method, matching)
        for button in (self.export_button, self.before_after_button):
            button.enabled = True

    def _earlier_result(self, source_layer, reference_layer, method: str):
        """The newest open result of this pair and method made by any Color transfer widget (one
        closed and reopened since included), found by its metadata; None when there is none."""
        wanted = (source_layer.name, reference_layer.name, method)
        for layer in reversed(self._viewer.layers):
            about = layer.metadata.get(RESULT_KEY, {}) if is_result(layer) else {}
            if (about.get("source"), about.get("reference"), about.get("method")) == wanted and not about.get("regions"):
                return layer
        return None

    def preview(self, strength: float) -> None:
        """The slider moved: re-apply the last result's look at ``strength`` in a worker (no network)."""
        shown = self._shown
        if shown is None or shown.layer not in self._viewer.layers or self.worker is not None:
            return
        if self.preview_worker is not None:  # the newest value is previewed when the running one ends
            self._pending_strength = strength
            return

        def show(image, strength=float(strength)):
            shown.layer.data, shown.layer.name = image, named(shown.base_name, strength)
            about = shown.layer.metadata.get(RESULT_KEY)
            if about is not None:
                shown.layer.metadata = {**shown.layer.metadata, RESULT_KEY: {**about, "strength": strength}}
            self.last_look = shown.look.blended(strength)

        def finished():
            self.preview_worker = None
            pending, self._pending_strength = self._pending_strength, None
            if pending is not None and pending != strength:
                self.preview(pending)

        self.preview_worker = create_worker(apply_look, shown.look, shown.source, float(strength),
                                            _ignore_errors=True)
        self.preview_worker.returned.connect(show)
        self.preview_worker.errored.connect(notify_error)
        self.preview_worker.finished.connect(finished)
        self.preview_worker.start()

    def toggle_before_after(self) -> None:
        """Hide or show the last result over its source."""
        if self._shown is not None and self._shown.layer in self._viewer.layers:
            self._shown.layer.visible = not self._shown.layer.visible

    def undo(self) -> None:
        """Bring back what the last replaced result showed."""
        while self._undo:
            layer, data, name = self._undo.pop()
            if layer in self._viewer.layers:
                layer.data, layer.name = data, name
                break
        self.undo_button.enabled = bool(self._undo)

    def _remember(self, layer) -> None:
        self._undo.append((layer, layer.data, layer.name))
        del self._undo[:-_UNDO_DEPTH]
        self.undo_button.enabled = True

    def _engine_for(self, settings) -> ColorTransfer:
        # In the worker thread; the engine (and its loaded model) is kept for the next run.
        if self._engine_key != settings:
            method, weights, _, device, working_size, match = settings
            options = {"weights": weights, "device": device, "max_side": working_size} if method == "analogy" else {}
            self._engine, self._engine_key = ColorTransfer(method, match=match, **options), settings
        return self._engine

    def _compute(self, source, reference, settings, strength):
        engine = self._engine_for(settings)
        pixels, reference_pixels = source.read(), reference.read()
        if pixels.ndim == 4:  # a time stack: one look for all its frames
            look = shot_look(engine, iter(pixels[..., :3]), reference_pixels)
        else:
            look = engine.fit(pixels, reference_pixels)
        return apply_look(look, source, strength), look

    def _folder_clicked(self, *_) -> None:
        from qtpy.QtWidgets import QFileDialog

        folder = QFileDialog.getExistingDirectory(self.native, "Photos to give the reference's colours")
        if not folder:
            return
        out = QFileDialog.getExistingDirectory(self.native, "An empty folder for the results", folder)
        if out:
            self.transfer_folder(folder, out, self.reference.value)

    def transfer_folder(self, folder, out, reference_layer):
        """Give the photos directly inside ``folder`` the reference's colours, written under the same
        names into ``out`` (never over an input or an existing file), in a worker with progress and
        Cancel. A photo that fails is reported at the end; the others are written. Returns the
        worker (None when refused)."""
        if self.worker is not None:
            show_info("a transfer is already running: wait for it to finish")
            return None
        try:
            reference = check_reference(reference_layer)
            photos = list_photos([folder])
            if not photos:
                raise HistocolorError(f"no photos ({', '.join(PHOTO_EXTENSIONS)}) in '{folder}'")
            outputs = [Path(out) / photo.name for photo in photos]
            taken = [path.name for path in outputs if path.exists()]
            if taken:
                raise HistocolorError(f"'{out}' already holds {len(taken)} of the results' names "
                                      f"({', '.join(taken[:3])}{', …' if len(taken) > 3 else ''}): pick an empty folder")
            for path in outputs[:1]:
                check_output_path(path)
        except HistocolorError as error:
            notify_error(error)
            return None
        settings, strength = self._settings(), float(self.strength.value)
        failed: list[str] = []

        def run():  # the batch runner of the command line: decode ahead, recolour in groups, write atomically
            from histocolor.pairs import Row
            from histocolor.runner import PairRunner

            reference_pixels = reference.read()
            rows = [Row(photo, reference_pixels, output) for photo, output in zip(photos, outputs)]
            runner = PairRunner(lambda: self._engine_for(settings), strength=strength, batch_size=BATCH_SIZE,
                                io_threads=1)
            for outcome in runner.run(rows):
                if outcome.error is not None:
                    failed.append(f"{outcome.row.source.name} ({outcome.message})")
                yield outcome.row.source

        def report(_=None):
            written = len(photos) - len(failed)
            message = f"{written} of {len(photos)} photos written to {out}"
            if failed:
                notify_error(f"{message}; failed: {'; '.join(failed)}")
            else:
                show_info(message)

        return self._start_batch(
            run, len(photos), f"Color transfer ({settings[0]}) of {len(photos)} photos",
            lambda: f"cancelled: the photos done so far are in {out}", returned=report,
        )

    def _start_batch(self, run, total: int, description: str, cancelled, returned=lambda _: None, yielded=None):
        """Start a batch generator in a worker with determinate progress and Cancel; ``cancelled()``
        is what the user is told if they cancel."""
        worker = start_worker(
            self, self._run_buttons(), run, returned=returned, yielded=yielded, total=total, description=description,
            finished=lambda: setattr(self.cancel_button, "enabled", False),
        )
        worker.aborted.connect(lambda: show_info(cancelled()))
        self.cancel_button.enabled = True
        return worker

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
