"""``torchvision:<name>``: torchvision's semantic segmenters (Pascal VOC categories).

Names: ``deeplabv3_mobilenet_v3_large``, ``deeplabv3_resnet50``, ``deeplabv3_resnet101``,
``lraspp_mobilenet_v3_large``, ``fcn_resnet50``, ``fcn_resnet101``. The pretrained weights are
fetched by torchvision into its cache on first use (network needed once).
"""

import torch

from histocolor.errors import HistocolorError, first_line
from histocolor.segment.base import Segmenter, as_uint8, imagenet_input, present_names, upsample_scores
from histocolor.device import resolve_device

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
        raise HistocolorError(f"cannot load torchvision:{name} weights: {first_line(error)}") from None
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
        size = (max(16, round(height * scale)), max(16, round(width * scale)))
        scores = self.model(imagenet_input(rgb, size).to(self.device))["out"]
        labels = upsample_scores(scores, (height, width))
        return labels, present_names(labels, self.class_names)
