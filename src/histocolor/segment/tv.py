"""``torchvision:<name>``: torchvision's semantic segmenters (Pascal VOC categories).

Names: ``deeplabv3_mobilenet_v3_large``, ``deeplabv3_resnet50``, ``deeplabv3_resnet101``,
``lraspp_mobilenet_v3_large``, ``fcn_resnet50``, ``fcn_resnet101``. The pretrained weights are
fetched by torchvision into its cache on first use (network needed once).
"""

import numpy as np
import torch

from histocolor.errors import HistocolorError
from histocolor.segment.base import Segmenter, as_uint8, upsample_scores
from histocolor.transfer import resolve_device

INPUT_SIDE = 520
NAMES = (
    "deeplabv3_mobilenet_v3_large", "deeplabv3_resnet50", "deeplabv3_resnet101", "lraspp_mobilenet_v3_large",
    "fcn_resnet50", "fcn_resnet101",
)


def build_model(name: str, pretrained: bool = True):
    """The torchvision model and its weights enum member (None when not pretrained)."""
    import torchvision.models as models

    if name not in NAMES:
        raise HistocolorError(f"unknown torchvision segmenter {name!r}: choose one of {', '.join(NAMES)}")
    weights = models.get_model_weights(name).DEFAULT if pretrained else None
    try:
        kwargs = {} if pretrained else {"weights_backbone": None, "num_classes": 21}
        model = models.get_model(name, weights=weights, **kwargs)
    except (OSError, RuntimeError) as error:  # no network and no cached weights
        raise HistocolorError(f"cannot load torchvision:{name} weights: {str(error).splitlines()[0]}") from None
    return model.eval(), weights


class TorchvisionSegmenter(Segmenter):
    def __init__(self, name: str, device: str = "auto", pretrained: bool = True):
        self.name = f"torchvision:{name}"
        self.device = resolve_device(device)
        self.model, weights = build_model(name, pretrained)
        self.model.to(self.device)
        categories = weights.meta["categories"] if weights is not None else [str(i) for i in range(21)]
        self.class_names = dict(enumerate(categories))

    @torch.no_grad()
    def segment(self, image):
        rgb = as_uint8(image)
        height, width = rgb.shape[:2]
        scale = INPUT_SIDE / min(height, width)  # torchvision's recipe: short side 520
        tensor = torch.from_numpy(np.ascontiguousarray(rgb)).permute(2, 0, 1)[None].float() / 255.0
        size = (max(16, round(height * scale)), max(16, round(width * scale)))
        tensor = torch.nn.functional.interpolate(tensor, size=size, mode="bilinear", antialias=True, align_corners=False)
        mean = torch.tensor([0.485, 0.456, 0.406])[None, :, None, None]
        std = torch.tensor([0.229, 0.224, 0.225])[None, :, None, None]
        scores = self.model(((tensor - mean) / std).to(self.device))["out"]
        labels = upsample_scores(scores, (height, width))
        return labels, {label: self.class_names.get(label, str(label)) for label in np.unique(labels).tolist()}
