"""Between napari layers and the core's arrays: checks, conversion, result layers, notices."""

import weakref
from dataclasses import dataclass

import numpy as np
from magicgui.widgets import Container
from napari.layers import Image
from napari.qt.threading import create_worker
from napari.utils.notifications import show_error, show_warning
from qtpy.QtCore import QEvent, QObject, QTimer
from qtpy.QtWidgets import QDockWidget, QMainWindow, QWidget

from histocolor.errors import HistocolorError, is_out_of_memory


# A multiscale layer is transferred at its full resolution; past this it is refused.
MAX_MULTISCALE_PIXELS = 200e6


@dataclass
class LayerPixels:
    """What a worker needs of an Image layer: checked on the UI thread, read in the worker."""

    data: object  # numpy, dask or zarr array of a 2-D image
    contrast_limits: tuple[float, float]

    def read(self) -> np.ndarray:
        """The pixels as the core takes them: uint8 and uint16 as they are; other dtypes
        (float, int16, ...) mapped to [0, 1] through the contrast limits, as the viewer shows them."""
        array = np.asarray(self.data)
        if array.dtype in (np.uint8, np.uint16):
            return array
        low, high = self.contrast_limits
        unit = (array.astype(np.float32) - np.float32(low)) / np.float32(high - low)
        return np.clip(np.nan_to_num(unit, nan=0.0), 0.0, 1.0)

    def restore(self, result: np.ndarray) -> np.ndarray:
        """A result in the layer's own dtype and range (the inverse of :meth:`read`)."""
        if self.data.dtype in (np.uint8, np.uint16):
            return result
        low, high = self.contrast_limits
        values = np.float32(low) + result.astype(np.float32) * np.float32(high - low)
        if np.issubdtype(self.data.dtype, np.integer):
            limits = np.iinfo(self.data.dtype)
            return np.clip(np.rint(values), limits.min, limits.max).astype(self.data.dtype)
        return values.astype(self.data.dtype)


def check_layer(layer, role: str, stack: bool = False) -> LayerPixels:
    """Check a layer on the UI thread (cheap: type and shape only) for reading in a worker.

    With ``stack``, a ``(T, H, W, 3)`` RGB time stack is accepted too (one look for all of it).
    """
    if layer is None:
        raise HistocolorError(f"pick a {role} image layer (open an image first)")
    if not isinstance(layer, Image):
        raise HistocolorError(f"the {role} '{layer.name}' is a {type(layer).__name__} layer: pick an Image layer")
    data = layer.data[0] if layer.multiscale else layer.data
    planes = data.shape[:-1] if layer.rgb else data.shape
    if not (len(planes) == 2 or (stack and layer.rgb and not layer.multiscale and len(planes) == 3)):
        wanted = "a 2-D image or an RGB time stack" if stack else "a 2-D image"
        raise HistocolorError(
            f"the {role} '{layer.name}' has shape {tuple(data.shape)}, a {len(planes)}-D stack: pick {wanted}"
        )
    if layer.multiscale and planes[0] * planes[1] > MAX_MULTISCALE_PIXELS:
        raise HistocolorError(
            f"the {role} '{layer.name}' is {planes[1]}x{planes[0]} pixels at full resolution, "
            f"more than {MAX_MULTISCALE_PIXELS / 1e6:.0f} megapixels"
        )
    low, high = (float(limit) for limit in layer.contrast_limits)
    return LayerPixels(data, (low, high if high > low else low + 1.0))


# Fewer reference pixels than this hold too few colours for a look: the result is warned about.
MIN_REFERENCE_PIXELS = 32 * 32


def check_reference(layer) -> LayerPixels:
    """:func:`check_layer` for a transfer's reference, with a warning when it is tiny (its few
    colours flatten the result)."""
    pixels = check_layer(layer, "reference")
    height, width = pixels.data.shape[:2]
    if height * width < MIN_REFERENCE_PIXELS:
        show_warning(f"the reference '{layer.name}' is only {width}x{height} pixels: too few colours for a look, "
                     f"the result comes out flat; use a reference of at least 32x32")
    return pixels


SAME_LAYER = "the source and the reference are the same layer, so the result would be a copy: pick another reference"

# A result layer's metadata under this key: {"source": name, "reference": name, "method": ..., "strength": ...}.
RESULT_KEY = "histocolor"


DOCK_NAME = "histocolor-dock"  # the objectName of every histocolor dock's widget


def _dock_of(native):
    """The QDockWidget holding a Qt widget, or None."""
    parent = native.parent()
    while parent is not None and not isinstance(parent, QDockWidget):
        parent = parent.parent()
    return parent


def join_tabs(native) -> None:
    """Put the dock holding ``native`` in tabs with the other histocolor docks of its area and
    show it: on a short screen the docks share the height as tabs, each one at full height."""
    dock = _dock_of(native)
    window = dock.parent() if dock is not None else None
    if not isinstance(window, QMainWindow) or dock.isFloating():
        return
    area = window.dockWidgetArea(dock)
    others = [other for other in window.findChildren(QDockWidget)
              if other is not dock and not other.isHidden() and not other.isFloating()
              and window.dockWidgetArea(other) == area and other.findChild(QWidget, DOCK_NAME) is not None]
    if others and dock not in window.tabifiedDockWidgets(others[0]):
        window.tabifyDockWidget(others[0], dock)
    dock.raise_()


class _TabJoiner(QObject):
    """Joins the tabs once the widget is docked, after napari has placed the dock."""

    def __init__(self, native):
        super().__init__(native)
        self._native = native
        native.installEventFilter(self)

    def eventFilter(self, watched, event):
        if event.type() == QEvent.Type.ParentChange and _dock_of(watched) is not None:
            QTimer.singleShot(0, self._join)  # dropped with this object if the widget goes first
        return False

    def _join(self) -> None:
        join_tabs(self._native)


class DockContainer(Container):
    """A widget container that scrolls when its dock is shorter than its contents (small screens).

    napari docks a magicgui widget's ``native``, so here ``native`` is the scroll area; the
    widgets that are not magicgui's (tables, plots) go in :attr:`body`.
    """

    def __init__(self, **kwargs):
        super().__init__(scrollable=True, **kwargs)
        self.native.setObjectName(DOCK_NAME)
        self._joiner = _TabJoiner(self.native)

    @property
    def native(self):
        return self.root_native_widget

    @property
    def body(self):
        """The widget inside the scroll area, with the layout."""
        return self._widget._mgui_get_native_widget()


def refit_for_larger_layer(viewer, event) -> None:
    """A layer inserted that reaches far past the others (a much larger photo): fit the view to
    all layers again, as napari does only for the first layer. Connect to ``layers.events.inserted``."""
    layer = unwrap(event.value)
    others = [other for other in viewer.layers if other is not layer and other.visible]
    if not others or layer.ndim != others[0].ndim:
        return
    low = np.min([other.extent.world[0][-2:] for other in others], axis=0)
    high = np.max([other.extent.world[1][-2:] for other in others], axis=0)
    new_low, new_high = layer.extent.world[0][-2:], layer.extent.world[1][-2:]
    margin = 0.25 * (high - low)  # small overhangs (a slightly larger reference) keep the view
    if (new_low < low - margin).any() or (new_high > high + margin).any():
        viewer.reset_view()


def unwrap(thing):
    """The object itself, not the proxy napari hands plugins (a new proxy each time: ``is`` fails)."""
    return getattr(thing, "__wrapped__", thing)


def in_dock(native) -> bool:
    """Whether a Qt widget sits in a dock (napari only unparents a dock widget it closes)."""
    return _dock_of(native) is not None


def bind_shortcut(viewer, key: str, widget, action) -> None:
    """Bind ``key`` in the viewer to ``action(widget)`` while the widget is docked; the binding
    holds the widget weakly (a closed widget can go)."""
    owner = weakref.ref(widget)

    def pressed(_viewer):
        found = owner()
        if found is not None and in_dock(found.native):
            action(found)

    viewer.bind_key(key, pressed, overwrite=True)


def is_result(layer) -> bool:
    """Whether ``layer`` is a result the plugin made (its metadata says of which pair)."""
    return RESULT_KEY in getattr(layer, "metadata", {})


class PairPickers:
    """A widget's source and reference pickers, kept apart and following the layer selection.

    - Pickers start on the first layer; the moment a second image is offered, the reference
      moves off the source's layer (the transfer would return a copy). A user's later choice,
      even the same layer twice, is left alone.
    - Selecting one image in the layer list makes it the source (selecting the reference
      swaps the two); selecting two, the last one clicked is the reference. Layers that the
      viewer selects itself as they are added, and results, are not choices.
    """

    def __init__(self, viewer, source, reference, swapped=None):
        self._viewer, self.source, self.reference = viewer, source, reference
        self._swapped = swapped  # called when the two images trade places
        self._images = 0
        self._added = None  # the layer added last: napari selects it, the user did not
        self._seen = self._selection()  # what was selected at the last change
        self.choices_changed()
        viewer.layers.events.inserted.connect(self._inserted)
        viewer.layers.selection.events.changed.connect(self._selected)
        source.native.destroyed.connect(self.disconnect)

    def disconnect(self, *_) -> None:
        """The widget is gone: stop following the viewer."""
        self._viewer.layers.events.inserted.disconnect(self._inserted)
        self._viewer.layers.selection.events.changed.disconnect(self._selected)

    def choices_changed(self) -> None:
        """Call after the pickers' choices were refreshed (``reset_choices``)."""
        source, reference = self.source, self.reference
        images = len(reference.choices)
        if self._images < 2 <= images and reference.value is not None and reference.value is source.value:
            reference.value = self._other_than(source.value)
        self._images = images

    def _other_than(self, layer):
        return next((choice for choice in self.reference.choices if choice is not layer), None)

    def _inserted(self, event) -> None:
        self._added = unwrap(event.value)

    def _selection(self) -> set[int]:
        return {id(unwrap(layer)) for layer in self._viewer.layers.selection}

    def _selected(self, event=None) -> None:
        selection = self._viewer.layers.selection
        active = unwrap(selection.active)
        now = self._selection()
        seen, self._seen = self._seen, now
        if now == seen or active is None or active is self._added or not in_dock(self.source.native):
            # the same layers again (the layer list syncing), a transition, a layer just added, a closed widget
            return
        self._added = None
        choices = self.source.choices
        picked = [unwrap(layer) for layer in self._viewer.layers
                  if layer in selection and layer in choices and not is_result(layer)]
        if len(picked) == 1:
            self.pick_source(picked[0])
        elif len(picked) == 2:
            reference = active if any(layer is active for layer in picked) else picked[1]
            self._pick(next(layer for layer in picked if layer is not reference), reference)

    def pick_source(self, layer) -> None:
        """``layer`` becomes the source; if it was the reference, the old source becomes the reference."""
        old, reference = self.source.value, self.reference.value
        if reference is layer or reference is None:
            reference = old if old is not None else self._other_than(layer)
        self._pick(layer, reference)

    def _pick(self, source, reference) -> None:
        old = (self.source.value, self.reference.value)
        if (source, reference) == old:
            return
        self.source.value, self.reference.value = source, reference
        if (reference, source) == old and self._swapped is not None:
            self._swapped()


def result_name(source_layer, reference_layer, method: str) -> str:
    return f"{source_layer.name} ← {reference_layer.name} ({method})"


def add_result(viewer, data: np.ndarray, name: str, source_layer, replace: bool, about: dict | None = None):
    """Add ``data`` as an Image layer placed exactly over ``source_layer``, or update the earlier one.

    ``about`` (the pair, method and strength) goes in the layer's metadata (see :func:`is_result`).
    """
    about = {"source": source_layer.name, **(about or {})}
    if replace and name in viewer.layers and isinstance(viewer.layers[name], Image):
        layer = viewer.layers[name]
        layer.data = data
        layer.metadata = {**layer.metadata, RESULT_KEY: about}
        return layer
    return viewer.add_image(
        data,
        name=name,
        rgb=data.ndim == source_layer.ndim + 1,  # grey sources come back RGB; stacks stay stacks
        scale=source_layer.scale,
        translate=source_layer.translate,
        rotate=source_layer.rotate,
        shear=source_layer.shear,
        affine=source_layer.affine.affine_matrix,
        metadata={RESULT_KEY: about},
    )


def describe(error: BaseException) -> str:
    """One line for the user: our own errors as they are, memory errors with what to do."""
    if isinstance(error, HistocolorError):
        return str(error)
    if is_out_of_memory(error):
        return "out of memory: lower the working size, close other layers, or run on the CPU"
    text = str(error).strip().splitlines()
    return f"{type(error).__name__}: {text[0]}" if text else type(error).__name__


def notify_error(error: BaseException | str) -> None:
    show_error(error if isinstance(error, str) else describe(error))


def start_worker(owner, button, function, *args, returned, description: str | None, finished=None,
                 total: int = 0, yielded=None, **kwargs):
    """Run ``function(*args, **kwargs)`` in a napari worker thread and return the worker.

    ``owner.worker`` holds it while it runs and ``button`` (or a tuple of them) is disabled meanwhile; the result goes
    to ``returned`` and any error becomes a notification. ``description`` labels napari's
    activity indicator (None: none, for work that reports its own progress). A generator
    ``function`` shows determinate progress: ``total`` steps, one per value it yields, each
    value going to ``yielded``.
    """
    worker = create_worker(
        function, *args, _progress=None if description is None else {"total": total, "desc": description},
        _ignore_errors=True, **kwargs,
    )

    def deliver(callback):
        def call(result):
            # On the UI thread: the viewer may have changed (layers removed, window closed) meanwhile.
            try:
                callback(result)
            except Exception as error:  # noqa: BLE001 - shown to the user, never raised into Qt
                notify_error(error)
        return call

    worker.returned.connect(deliver(returned))
    if yielded is not None:
        worker.yielded.connect(deliver(yielded))
    worker.errored.connect(notify_error)

    buttons = button if isinstance(button, tuple) else (button,)

    def done():
        owner.worker = None
        try:
            for each in buttons:
                each.enabled = True
            if finished is not None:
                finished()
        except RuntimeError:  # the widget was closed while the worker ran
            pass

    worker.finished.connect(done)
    owner.worker = worker
    for each in buttons:
        each.enabled = False
    worker.start()
    return worker
