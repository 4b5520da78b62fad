"""Between napari layers and the core's arrays: checks, conversion, result layers, notices."""

from dataclasses import dataclass

import numpy as np
from napari.layers import Image
from napari.qt.threading import create_worker
from napari.utils.notifications import show_error

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


SAME_LAYER = "the source and the reference are the same layer, so the result would be a copy: pick another reference"


def separate_pickers(source, reference, images_before: int = 0) -> int:
    """Move the reference picker off the source's layer when a second image becomes available.

    Pickers start on the first layer; with the source and reference on the same layer the
    transfer would return a copy. Called whenever the layer lists change (``reset_choices``)
    with the number of images the picker offered before: only the moment a second image
    arrives moves it, so a user's later choice (even the same layer twice) is left alone.
    Returns the number of images offered now.
    """
    images = len(reference.choices)
    if images_before < 2 <= images and reference.value is not None and reference.value is source.value:
        reference.value = next(choice for choice in reference.choices if choice is not source.value)
    return images


def result_name(source_layer, reference_layer, method: str) -> str:
    return f"{source_layer.name} ← {reference_layer.name} ({method})"


def add_result(viewer, data: np.ndarray, name: str, source_layer, replace: bool):
    """Add ``data`` as an Image layer placed exactly over ``source_layer``, or update the earlier one."""
    if replace and name in viewer.layers and isinstance(viewer.layers[name], Image):
        layer = viewer.layers[name]
        layer.data = data
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


def start_worker(owner, button, function, *args, returned, description: str | None, finished=None, **kwargs):
    """Run ``function(*args, **kwargs)`` in a napari worker thread and return the worker.

    ``owner.worker`` holds it while it runs and ``button`` is disabled meanwhile; the result goes
    to ``returned`` and any error becomes a notification. ``description`` labels napari's busy
    indicator (None: none, for work that reports its own progress).
    """
    worker = create_worker(
        function, *args, _progress=None if description is None else {"total": 0, "desc": description},
        _ignore_errors=True, **kwargs,
    )

    def deliver(result):
        # On the UI thread: the viewer may have changed (layers removed, window closed) meanwhile.
        try:
            returned(result)
        except Exception as error:  # noqa: BLE001 - shown to the user, never raised into Qt
            notify_error(error)

    worker.returned.connect(deliver)
    worker.errored.connect(notify_error)

    def done():
        owner.worker = None
        try:
            button.enabled = True
            if finished is not None:
                finished()
        except RuntimeError:  # the widget was closed while the worker ran
            pass

    worker.finished.connect(done)
    owner.worker = worker
    button.enabled = False
    worker.start()
    return worker
