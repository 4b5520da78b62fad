"""``hf:<directory or hub id>``: HuggingFace transformers semantic segmenters.

Per-pixel models (SegFormer, BEiT, UperNet with Swin or ConvNeXt backbones, DPT, ...) give
class logits; mask transformers (Mask2Former, OneFormer) give class and mask queries, which
are combined into per-class scores (the semantic post-processing). A local directory works
offline; a hub id is fetched by transformers into its cache when online.
"""

import numpy as np
import torch

from histocolor.errors import HistocolorError, first_line
from histocolor.segment.base import Segmenter, as_uint8, imagenet_input, present_names, scaled_size, upsample_scores
from histocolor.device import resolve_device

INPUT_SIDE = 512


def _transformers():
    try:
        import transformers
    except ImportError:
        raise HistocolorError(
            'hf: segmenters need transformers: pip install transformers (or "napari-histocolor[transformers]")'
        ) from None
    return transformers


def load_model(source: str):
    """The model (semantic or universal segmentation) and its image processor (None if it has none)."""
    transformers = _transformers()
    try:
        config = transformers.AutoConfig.from_pretrained(source)
    except (OSError, ValueError) as error:
        raise HistocolorError(f"cannot load segmenter 'hf:{source}': {first_line(error)}") from None
    universal = config.model_type in ("mask2former", "oneformer", "maskformer")
    loader = transformers.AutoModelForUniversalSegmentation if universal else transformers.AutoModelForSemanticSegmentation
    try:
        model = loader.from_pretrained(source)
    except (OSError, ValueError) as error:
        raise HistocolorError(f"cannot load segmenter 'hf:{source}': {first_line(error)}") from None
    try:
        kind = transformers.AutoProcessor if config.model_type == "oneformer" else transformers.AutoImageProcessor
        processor = kind.from_pretrained(source)
    except (OSError, ValueError, TypeError):
        processor = None
    return model.eval(), processor


class TransformersSegmenter(Segmenter):
    def __init__(self, source: str, device: str = "auto"):
        self.name = f"hf:{source}"
        self.device = resolve_device(device)
        self.model, self.processor = load_model(source)
        self.model.to(self.device)
        self.model_type = self.model.config.model_type
        if self.model_type == "oneformer" and self.processor is None:
            raise HistocolorError(f"OneFormer needs its processor (tokenizer for the task input) saved in '{source}'")
        self.class_names = {int(k): v for k, v in (self.model.config.id2label or {}).items()}

    def _inputs(self, rgb: np.ndarray) -> dict:
        if self.processor is not None:
            options = {"task_inputs": ["semantic"]} if self.model_type == "oneformer" else {}
            return dict(self.processor(images=rgb, return_tensors="pt", **options))
        # No processor saved (e.g. a model built from a config): ImageNet normalisation at 512.
        size = scaled_size(rgb.shape[:2], INPUT_SIDE / max(rgb.shape[:2]), multiple=32)
        return {"pixel_values": imagenet_input(rgb, size)}

    @torch.no_grad()
    def segment(self, image):
        rgb = as_uint8(image)
        inputs = {key: value.to(self.device) if hasattr(value, "to") else value for key, value in self._inputs(rgb).items()}
        outputs = self.model(**inputs)
        if hasattr(outputs, "class_queries_logits"):
            # Semantic scores of a mask transformer: class probabilities (without "no object")
            # times mask probabilities, summed over the queries.
            classes = outputs.class_queries_logits.softmax(-1)[..., :-1]
            masks = outputs.masks_queries_logits.sigmoid()
            scores = torch.einsum("bqc,bqhw->bchw", classes, masks)
        else:
            scores = outputs.logits
        labels = upsample_scores(scores, rgb.shape[:2])
        return labels, present_names(labels, self.class_names)
