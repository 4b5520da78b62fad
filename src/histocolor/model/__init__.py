"""The histogram-analogy network: HEN (histogram encoder) + CTN (colour transfer U-Net)."""

from histocolor.model.analogy import HistogramAnalogy
from histocolor.model.config import AnalogyConfig
from histocolor.model.ctn import CTNOutput
from histocolor.model.io import from_pretrained, save_pretrained

__all__ = ["AnalogyConfig", "CTNOutput", "HistogramAnalogy", "from_pretrained", "save_pretrained"]
