"""``onnx:<file or name>``: semantic segmenters exported to ONNX, run with onnxruntime.

Run with ``onnxruntime`` (``pip install "napari-histocolor[onnx]"``). The contract is the one of
``EfficientViT-Seg`` as exported for histocolor (``efficientvit_seg_b0_cityscapes.onnx``): one
float32 input ``(B, 3, H, W)``, RGB / 255 normalised with the ImageNet mean and std, H and W
multiples of 32 when dynamic; the first output holds class scores ``(B, C, h, w)`` at any
smaller scale (1/8 for EfficientViT), resized bilinearly to the image before the argmax.
Input and output names are not required; the shapes are checked. A model with a fixed input
size gets the image stretched to it.

A file name without a folder that does not exist here is looked up in ``$HISTOCOLOR_HOME/models``
(default ``~/.cache/histocolor/models``), like the TFLite models. Class names come from a label
file next to the model (one name per line, or ``N name`` lines): ``<stem>_labels.txt``, else
``<tail>_labels.txt`` for the longest tail of the stem's ``_``-separated words, so
``efficientvit_seg_b0_cityscapes.onnx`` finds ``cityscapes_labels.txt``. Labels are classes, so
equal labels in two images correspond (the default ``segment_pair``).
"""

from pathlib import Path

import numpy as np
import torch

from histocolor.errors import HistocolorError, first_line
from histocolor.segment.base import (
    Segmenter, as_uint8, imagenet_input, models_home, present_names, read_class_names, scaled_size, upsample_scores,
)

LONG_SIDE = 1024  # EfficientViT-Seg segments photographs better near its training scale than at 512
MULTIPLE = 32


def find_onnx_model(source: str) -> Path:
    """The model file ``source`` names: a path, or a file name in ``$HISTOCOLOR_HOME/models``."""
    path = Path(source).expanduser()
    candidates = [path]
    if path.parent == Path("."):
        candidates += [models_home() / path.name, models_home() / f"{path.name}.onnx"]
    for candidate in candidates:
        if candidate.is_file():
            return candidate
    if path.parent == Path("."):
        missing = f"which is neither here nor in {models_home()} (set HISTOCOLOR_HOME to move it)"
    else:
        missing = "which does not exist"
    raise HistocolorError(f"the onnx:{source} segmenter needs the model file {path}, {missing}")


def find_labels_file(model_path: Path) -> Path | None:
    """The label file next to ``model_path`` (see the module docstring), or None."""
    words = model_path.stem.split("_")
    for start in range(len(words)):
        candidate = model_path.parent / f"{'_'.join(words[start:])}_labels.txt"
        if candidate.is_file():
            return candidate
    return None


def input_size(size, long_side: int = LONG_SIDE, multiple: int = MULTIPLE, fixed=None) -> tuple[int, int]:
    """The network input ``(h, w)`` for an image of ``size`` (H, W): the model's ``fixed`` size when it
    has one, else the long side scaled to about ``long_side``, both sides multiples of ``multiple``."""
    if fixed is not None:
        return tuple(fixed)
    return scaled_size(size, long_side / max(size), multiple)


def execution_providers(device: str, available) -> list:
    """onnxruntime providers for ``device`` (auto, cpu, cuda, cuda:N) given the ``available`` ones."""
    name = str(device)
    if name in ("auto", "cpu"):
        use_cuda = name == "auto" and "CUDAExecutionProvider" in available
        return (["CUDAExecutionProvider"] if use_cuda else []) + ["CPUExecutionProvider"]
    if name == "cuda" or (name.startswith("cuda:") and name[5:].isdigit()):
        if "CUDAExecutionProvider" not in available:
            raise HistocolorError(
                f"device {name!r} requested but onnxruntime has no CUDA provider (pip install onnxruntime-gpu, or use cpu)"
            )
        return [("CUDAExecutionProvider", {"device_id": int(name[5:] or 0)}), "CPUExecutionProvider"]
    raise HistocolorError(f"unknown device {name!r}: use auto, cpu or cuda")


def _onnxruntime():
    try:
        import onnxruntime
    except ImportError:
        raise HistocolorError(
            'onnx: segmenters need onnxruntime: pip install onnxruntime (or pip install "napari-histocolor[onnx]")'
        ) from None
    return onnxruntime


def check_contract(inputs, outputs, spec: str):
    """``(fixed input size or None, number of classes or None)`` from onnxruntime's input and output
    descriptions (``.name``, ``.shape``, ``.type``); a one-line error when they break the contract."""
    if len(inputs) != 1:
        names = ", ".join(item.name for item in inputs)
        raise HistocolorError(f"{spec}: expected one image input (B, 3, H, W), the model has {len(inputs)} ({names})")
    image, scores = inputs[0], outputs[0] if outputs else None
    shape = list(image.shape or [])
    # onnxruntime gives a dynamic dimension as a name or None, a fixed one as an int.
    channels_ok = len(shape) == 4 and (shape[1] == 3 or not isinstance(shape[1], int))
    if not channels_ok or image.type != "tensor(float)":
        raise HistocolorError(
            f"{spec}: expected a float32 (B, 3, H, W) input, the model's {image.name!r} is {image.type} {shape}"
        )
    if scores is None or len(scores.shape or []) != 4:
        found = "none" if scores is None else f"{scores.name!r} {list(scores.shape or [])}"
        raise HistocolorError(f"{spec}: expected class scores (B, C, h, w) as the first output, the model gives {found}")
    fixed = tuple(shape[2:]) if all(isinstance(side, int) and side > 0 for side in shape[2:]) else None
    classes = scores.shape[1] if isinstance(scores.shape[1], int) and scores.shape[1] > 0 else None
    return fixed, classes


class OnnxSegmenter(Segmenter):
    """A semantic segmenter in ONNX: the image is resized to the network input (long side about
    ``long_side``, sides multiples of ``multiple``), the class scores resized back for the argmax.

    ``labels_file`` points to a label file elsewhere than next to the model; ``threads`` sets
    onnxruntime's intra-op threads (0: its default, all physical cores).
    """

    def __init__(self, source: str, long_side: int = LONG_SIDE, multiple: int = MULTIPLE, labels_file=None,
                 device: str = "auto", threads: int = 0):
        self.name = f"onnx:{source}"
        if long_side < multiple or multiple < 1:
            raise HistocolorError(f"{self.name}: long_side ({long_side}) must be at least multiple ({multiple}) >= 1")
        self.long_side, self.multiple = long_side, multiple
        path = find_onnx_model(source)
        onnxruntime = _onnxruntime()
        providers = execution_providers(device, onnxruntime.get_available_providers())
        options = onnxruntime.SessionOptions()
        options.intra_op_num_threads = threads
        try:
            self.session = onnxruntime.InferenceSession(str(path), options, providers=providers)
        except Exception as error:  # onnxruntime's errors derive from Exception only (Fail, InvalidProtobuf, ...)
            raise HistocolorError(f"cannot load segmenter {self.name!r}: {first_line(error)}") from None
        inputs, outputs = self.session.get_inputs(), self.session.get_outputs()
        self.fixed_size, classes = check_contract(inputs, outputs, self.name)
        self.input_name, self.output_name = inputs[0].name, outputs[0].name
        if labels_file is not None and not Path(labels_file).is_file():
            raise HistocolorError(f"{self.name}: the label file {labels_file} does not exist")
        labels_file = Path(labels_file) if labels_file is not None else find_labels_file(path)
        self.class_names = read_class_names(labels_file) if labels_file is not None else {}
        if self.class_names and classes is not None and len(self.class_names) != classes:
            raise HistocolorError(
                f"{self.name}: {labels_file.name} names {len(self.class_names)} classes but the model scores {classes}"
            )

    def segment(self, image):
        rgb = as_uint8(image)
        size = input_size(rgb.shape[:2], self.long_side, self.multiple, self.fixed_size)
        pixel_values = imagenet_input(rgb, size).numpy()
        try:
            scores = self.session.run([self.output_name], {self.input_name: pixel_values})[0]
        except Exception as error:  # see __init__
            raise HistocolorError(f"{self.name} failed on a {size[0]}x{size[1]} input: {first_line(error)}") from None
        if scores.ndim != 4 or scores.shape[0] != 1:
            raise HistocolorError(f"{self.name}: expected class scores (1, C, h, w), got shape {list(scores.shape)}")
        labels = upsample_scores(torch.from_numpy(np.ascontiguousarray(scores)), rgb.shape[:2])
        return labels, present_names(labels, self.class_names)
