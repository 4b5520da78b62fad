"""DeepLabV3-MobileNetV2 segmenters in TFLite (ADE20K: 150 scene classes; Pascal VOC: 20 objects).

Run with ``ai-edge-litert`` (``pip install "napari-histocolor[tflite]"``). The model files are
looked up in ``$HISTOCOLOR_HOME/models`` (default ``~/.cache/histocolor/models``) under the
names below and checked against their sha256; nothing is downloaded.
"""

import contextlib
import hashlib
import os
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from histocolor.errors import HistocolorError
from histocolor.segment.base import (
    Segmenter, as_uint8, models_home, present_names, read_class_names, resize_labels, upsample_scores,
)

INPUT_SIDE = 513


@dataclass(frozen=True)
class ModelFile:
    file: str
    sha256: str
    labels_file: str
    source: str  # where a user gets it


MODELS = {
    "ade20k": ModelFile(
        "ade20k_deeplabv3_mnv2.tflite",
        "9476784566f88bf0bdc3169f0012fb7d08857b325811d8c1aaf5ada1c0d4e4f9",
        "ade20k_labels.txt",
        "the TF Hub model deeplabv3-mobilenetv2-ade20k (lite-model, default, version 1), saved as a .tflite file",
    ),
    "voc": ModelFile(
        "deeplabv3_mnv2_pascal_quant.tflite",
        "350af47fd346ea6d74b58833a351f583ba860e9806ec5bd292ff8d8f1f249398",
        "pascal_voc_segmentation_labels.txt",
        "https://github.com/google-coral/test_data/raw/master/deeplabv3_mnv2_pascal_quant.tflite",
    ),
}


def find_model(name: str) -> Path:
    """The checked model file of segmenter ``name``, or an error that says where to get it."""
    model = MODELS[name]
    path = models_home() / model.file
    if not path.is_file():
        raise HistocolorError(
            f"the {name} segmenter needs {model.file} in {models_home()} (set HISTOCOLOR_HOME to move it); "
            f"get it from {model.source}"
        )
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    if digest != model.sha256:
        raise HistocolorError(f"{path} is not the expected model (sha256 {digest[:12]}..., expected {model.sha256[:12]}...)")
    return path


def _interpreter_class():
    try:
        from ai_edge_litert.interpreter import Interpreter
    except ImportError:
        raise HistocolorError(
            "the ade20k and voc segmenters need ai-edge-litert: pip install ai-edge-litert "
            '(or pip install "napari-histocolor[tflite]")'
        ) from None
    return Interpreter


@contextlib.contextmanager
def _native_stderr_silenced():
    """Send what native code writes to file descriptor 2 to /dev/null meanwhile (Python's errors
    still reach the user: they are raised, not printed, inside)."""
    sys.stderr.flush()
    saved = os.dup(2)
    try:
        with open(os.devnull, "wb") as sink:
            os.dup2(sink.fileno(), 2)
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)


class DeepLabTFLite(Segmenter):
    """DeepLabV3 on a 513x513 input: the image is scaled to fit and padded, the scores cropped back."""

    def __init__(self, name: str):
        self.name = name
        path = find_model(name)
        with _native_stderr_silenced():  # LiteRT prints "INFO: Created ... XNNPACK delegate" from C++
            self.interpreter = _interpreter_class()(model_path=str(path))
            self.interpreter.allocate_tensors()
        self.input = self.interpreter.get_input_details()[0]
        self.output = self.interpreter.get_output_details()[0]
        self.class_names = read_class_names(path.parent / MODELS[name].labels_file)

    def segment(self, image):
        rgb = as_uint8(image)
        height, width = rgb.shape[:2]
        scale = INPUT_SIDE / max(height, width)
        inner = (max(1, round(height * scale)), max(1, round(width * scale)))
        resized = np.asarray(Image.fromarray(rgb).resize((inner[1], inner[0]), Image.Resampling.BILINEAR))
        if self.input["dtype"] == np.uint8:
            batch = np.zeros((1, INPUT_SIDE, INPUT_SIDE, 3), np.uint8)
            batch[0, : inner[0], : inner[1]] = resized
        else:  # float models expect [-1, 1] (see ../shared/models/README.md: [0, 1] is much worse)
            batch = np.zeros((1, INPUT_SIDE, INPUT_SIDE, 3), np.float32)
            batch[0, : inner[0], : inner[1]] = resized.astype(np.float32) / 127.5 - 1.0
        self.interpreter.set_tensor(self.input["index"], batch)
        self.interpreter.invoke()
        output = self.interpreter.get_tensor(self.output["index"])[0, : inner[0], : inner[1]]
        if output.ndim == 3:  # class scores (h, w, C)
            scores = torch.from_numpy(np.ascontiguousarray(output.transpose(2, 0, 1)))[None]
            labels = upsample_scores(scores, (height, width))
        else:  # a label map already
            labels = resize_labels(output.astype(np.int32), (height, width))
        return labels, present_names(labels, self.class_names)
