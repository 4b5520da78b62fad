"""Semantic segmenters behind one interface, for region-wise transfer.

``get_segmenter(name)`` gives an object with ``segment(image) -> (labels, class_names)``
(``labels`` ``(H, W)`` int32 at the image's size, ``class_names`` label -> name) and
``segment_pair(source, reference)``, which returns label maps whose equal labels
correspond. Names:

- ``ade20k``, ``voc``: DeepLabV3-MobileNetV2 TFLite models (extra ``ai-edge-litert``),
  looked up in ``$HISTOCOLOR_HOME/models`` (default ``~/.cache/histocolor/models``);
- ``slic``: no weights; superpixels grouped by lightness and position, matched across images;
- ``hf:<directory or hub id>``: HuggingFace transformers semantic segmenters (SegFormer,
  BEiT, UperNet, Mask2Former, OneFormer; extra ``transformers``);
- ``torchvision:<name>``: torchvision's DeepLabV3 / LRASPP (VOC categories);
- ``onnx:<file or name>``: ONNX semantic segmenters such as EfficientViT-Seg (extra ``onnxruntime``),
  a path or a file name in ``$HISTOCOLOR_HOME/models``, class names from a label file next to it.
"""

from histocolor.errors import HistocolorError
from histocolor.segment.base import Segmenter

BUILT_IN = ("ade20k", "voc", "slic")
PREFIXES = ("hf:", "torchvision:", "onnx:")


def get_segmenter(name: str, device: str = "auto") -> Segmenter:
    """The segmenter called ``name`` (see the module docstring); a clear error for unknown names."""
    if name in ("ade20k", "voc"):
        from histocolor.segment.tflite import DeepLabTFLite

        return DeepLabTFLite(name)
    if name == "slic":
        from histocolor.segment.slic import SlicSegmenter

        return SlicSegmenter()
    if name.startswith("hf:") and len(name) > 3:
        from histocolor.segment.hf import TransformersSegmenter

        return TransformersSegmenter(name[3:], device=device)
    if name.startswith("torchvision:") and len(name) > 12:
        from histocolor.segment.tv import TorchvisionSegmenter

        return TorchvisionSegmenter(name[12:], device=device)
    if name.startswith("onnx:") and len(name) > 5:
        from histocolor.segment.onnx import OnnxSegmenter

        return OnnxSegmenter(name[5:], device=device)
    raise HistocolorError(
        f"unknown segmenter {name!r}: choose ade20k, voc, slic, hf:<model directory or id>, torchvision:<name> "
        "or onnx:<model file>"
    )


__all__ = ["BUILT_IN", "PREFIXES", "Segmenter", "get_segmenter"]
