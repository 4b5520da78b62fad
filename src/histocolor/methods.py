"""Transfer methods: each fits the colour maps of a source/reference pair.

A method is an object chosen once (:func:`build_method`); the engine then asks it for
colour maps, one per matched source region plus one for the rest of the image. Without
masks there is no region and the rest is the whole image: the same code serves both cases.

- :class:`ClassicalMethod`: a classical fit on each region's pixels (an affine map, curves
  or a composed map, see :mod:`histocolor.classical`).
- :class:`NetworkMethod`: the network with the pixel head (CTN) runs on a copy shrunk to a
  working size; a 3D LUT fitted to its (source colour -> output colour) pairs in each
  region is that region's map (see docs/BENCHMARKS.md for why a LUT).
- :class:`LutHeadMethod`: the network with the LUT head predicts each region's LUT.
"""

import numpy as np
import torch
import torch.nn.functional as F

from histocolor.classical import CLASSICAL_METHODS
from histocolor.color import lab_to_rgb, rgb_to_lab
from histocolor.colormap import LutMap, to_unit, unit_scale
from histocolor.errors import HistocolorError
from histocolor.imageio import LoadedImage
from histocolor.lut import fit_lut
from histocolor.regions import Regions
from histocolor.timing import Stopwatch

# A region with fewer working-size pixels than this borrows the LUT fitted on all pixels.
MIN_FIT_PIXELS = 64


def working_shape(shape, max_side: int) -> tuple[int, int]:
    """The ``(h, w)`` an image of ``shape`` is shrunk to so that its long side is at most ``max_side``."""
    height, width = shape[:2]
    scale = min(1.0, max_side / max(height, width))
    return (max(1, round(height * scale)), max(1, round(width * scale))) if scale < 1.0 else (height, width)


def image_tensor(rgb: np.ndarray, max_side: int | None = None) -> torch.Tensor:
    """``(H, W, 3)`` -> ``(1, 3, h, w)`` float in [0, 1], shrunk so the long side is at most ``max_side``.

    torch's antialiased bilinear resize (its uint8 path is vectorised) rather than
    kornia's blur-then-resize: 0.05 s against 5 s for 12 megapixels on two cores.

    Example:
        >>> image_tensor(np.zeros((300, 600, 3), np.uint8), 256).shape
        torch.Size([1, 3, 128, 256])
    """
    tensor = torch.from_numpy(rgb).permute(2, 0, 1).unsqueeze(0)
    height, width = rgb.shape[:2]
    size = (height, width) if max_side is None else working_shape(rgb.shape, max_side)
    if size != (height, width):
        if tensor.dtype != torch.uint8:
            tensor = tensor.float()
        tensor = F.interpolate(tensor, size=size, mode="bilinear", antialias=True, align_corners=False)
    return tensor.float().div_(unit_scale(rgb.dtype)).clamp_(0.0, 1.0)


def _working_alpha(image: LoadedImage, max_side: int) -> torch.Tensor | None:
    """Alpha at the working size, ``(1, h, w)`` in [0, 1], to weight histograms; None if opaque."""
    if image.alpha is None:
        return None
    opaque = np.iinfo(image.alpha.dtype).max if image.alpha.dtype.kind in "ui" else 1.0
    if image.alpha.min() >= opaque or image.alpha.max() == 0:
        return None
    alpha = np.ascontiguousarray(np.repeat(image.alpha[..., None], 3, axis=-1))
    return image_tensor(alpha, max_side)[:, 0]


def _pixels_of(image: LoadedImage, owned: np.ndarray | None = None) -> np.ndarray:
    """The visible pixels (of the ``owned`` mask, if given) as ``(N, 3)`` floats.

    Fully transparent pixels are left out, unless no owned pixel is visible.
    """
    if image.alpha is not None:
        visible = image.alpha > 0 if owned is None else owned & (image.alpha > 0)
        owned = visible if visible.any() else owned
    # Without a mask, a reshape: boolean indexing would copy a 12 MP image for nothing.
    return to_unit(image.rgb if owned is None else image.rgb[owned])


class TransferMethod:
    """Fits colour maps: ``fit_maps`` returns one per region pair of ``regions``, then one for the rest.

    ``weights`` are the source's feathered weights ``(R + 1, h, w)`` of the regions and the
    rest at the working size (without masks, ``R = 0``: the rest is everywhere); ``clock``
    times the stages.
    """

    def fit_maps(self, source: LoadedImage, reference: LoadedImage, regions: Regions,
                 weights: np.ndarray, clock: Stopwatch) -> list:
        raise NotImplementedError


class ClassicalMethod(TransferMethod):
    """A classical fit (``fit(source_pixels, reference_pixels) -> ColorMap``) per region."""

    def __init__(self, fit):
        self.fit = fit

    def fit_maps(self, source, reference, regions, weights, clock):
        with clock.stage("fit"):
            return [
                self.fit(_pixels_of(source, np.isin(regions.source_labels, mine)),
                         _pixels_of(reference, np.isin(regions.reference_labels, theirs)))
                for mine, theirs in regions.pairs
            ] + [self.fit(_pixels_of(source), _pixels_of(reference))]


class _Network(TransferMethod):
    """What both network heads share: the model on the device and the working-size inputs."""

    def __init__(self, model, device: torch.device, max_side: int, lut_size: int):
        self.model = model.to(device).eval()
        self.device, self.max_side, self.lut_size = device, max_side, lut_size

    def _inputs(self, source: LoadedImage, reference: LoadedImage):
        """At the working size, on the device: the source RGB, both Lab images and both alphas (None if opaque)."""
        small_source = image_tensor(source.rgb, self.max_side).to(self.device)
        small_reference = image_tensor(reference.rgb, self.max_side).to(self.device)
        source_alpha, reference_alpha = (
            None if alpha is None else alpha.to(self.device)
            for alpha in (_working_alpha(source, self.max_side), _working_alpha(reference, self.max_side))
        )
        source_lab = rgb_to_lab(small_source).contiguous(memory_format=torch.channels_last)
        return small_source, source_lab, rgb_to_lab(small_reference), source_alpha, reference_alpha

    def _tensor(self, array: np.ndarray) -> torch.Tensor:
        return torch.from_numpy(array)[None].to(self.device)


class NetworkMethod(_Network):
    """The CTN's change at the working size, fitted with one 3D LUT per region.

    Each LUT is fitted to the network's change inside its region, away from its feathered
    seams, where the output is already blended with the neighbours' (the full-resolution
    blend feathers again). (Applying a region's Lab alignment exactly at full resolution and
    fitting the LUT to the CTN's residual only was measured worse: docs/BENCHMARKS.md.)
    """

    def __init__(self, model, device, max_side, lut_size, smoothness: float):
        super().__init__(model, device, max_side, lut_size)
        if hasattr(self.model, "ctn"):
            # channels-last convolutions run about a quarter faster on CPU (oneDNN), same result.
            self.model.ctn.to(memory_format=torch.channels_last)
        self.smoothness = smoothness

    @torch.no_grad()
    def fit_maps(self, source, reference, regions, weights, clock):
        with clock.stage("network"):
            small_source, source_lab, reference_lab, source_alpha, reference_alpha = self._inputs(source, reference)
            # The network reads region histograms only when there are regions.
            region_inputs = () if not regions.pairs else (
                self._tensor(weights[:-1]), self._tensor(regions.reference_weights(reference_lab.shape[-2:]))
            )
            output_lab = self.model(source_lab, reference_lab, *region_inputs, source_weights=source_alpha,
                                    reference_weights=reference_alpha).output
            if not torch.isfinite(output_lab).all():  # never write a broken network's output
                raise HistocolorError("the network's output holds NaN or infinite values: its weights are broken")
        with clock.stage("lut_fit"):
            seen = small_source[0].flatten(1).T.cpu().numpy()
            became = lab_to_rgb(output_lab).clamp(0.0, 1.0)[0].flatten(1).T.cpu().numpy()
            owners = regions.source_weights(source_lab.shape[-2:], feather=False).reshape(len(weights), -1)
            inside = owners * (weights.reshape(len(weights), -1) >= 0.99)
            # Regions too thin for an inside keep all their pixels.
            owners = np.where((inside > 0.5).sum(1, keepdims=True) >= MIN_FIT_PIXELS, inside, owners)
            if source_alpha is not None:  # transparent pixels say nothing about the change (unless all are)
                visible = source_alpha.flatten().cpu().numpy() > 0
                owners = owners * visible if visible.any() else owners
            return [None if lut is None else LutMap(lut) for lut in self._fit_luts(seen, became, owners)]

    def _fit_luts(self, seen, became, owners) -> list:
        """One LUT per row of ``owners``; too few pixels: the LUT of all owned pixels; none: None (never applied)."""
        fallback = None
        luts = []
        for weights in owners:
            owned = weights > 0.5
            if not owned.any():
                luts.append(None)
            elif owned.sum() >= MIN_FIT_PIXELS:
                luts.append(fit_lut(seen[owned], became[owned], self.lut_size, self.smoothness))
            else:
                if fallback is None:
                    anyone = owners.max(0) > 0.5
                    fallback = fit_lut(seen[anyone], became[anyone], self.lut_size, self.smoothness)
                luts.append(fallback)
        return luts


class LutHeadMethod(_Network):
    """The LUT head predicts each region's LUT from that region's histograms; nothing to fit."""

    @torch.no_grad()
    def fit_maps(self, source, reference, regions, weights, clock):
        with clock.stage("network"):
            _, source_lab, reference_lab, source_alpha, reference_alpha = self._inputs(source, reference)

            def predict(mine, theirs):
                lut = self.model.color_lut(source_lab, reference_lab, self.lut_size, mine, theirs)[0].cpu().numpy()
                if not np.isfinite(lut).all():
                    raise HistocolorError("the network's LUT holds NaN or infinite values: its weights are broken")
                return LutMap(lut)

            overall = predict(source_alpha, reference_alpha)
            owners = regions.source_weights(source_lab.shape[-2:], feather=False)
            theirs = regions.reference_weights(reference_lab.shape[-2:])
            maps = []
            for index in range(len(regions.pairs)):
                mine, other = self._tensor(owners[index]), self._tensor(theirs[index])
                mine = mine if source_alpha is None else mine * source_alpha
                other = other if reference_alpha is None else other * reference_alpha
                # A region too thin to show at the working size has no histogram: the global LUT.
                maps.append(overall if float(mine.sum()) < 1 or float(other.sum()) < 1 else predict(mine, other))
            return maps + [overall]


def build_method(name: str, model, device: torch.device, max_side: int, lut_size: int,
                 smoothness: float) -> TransferMethod:
    """The method object for ``name``: ``analogy`` (with ``model``) or a classical method."""
    if name in CLASSICAL_METHODS:
        return ClassicalMethod(CLASSICAL_METHODS[name])
    if getattr(getattr(model, "config", None), "head", None) == "lut":
        return LutHeadMethod(model, device, max_side, lut_size)
    return NetworkMethod(model, device, max_side, lut_size, smoothness)  # the CTN, or a stand-in giving pixels
