"""Colour transfer of whole images: any size in, same size, dtype and alpha out.

The network runs on a copy of the source shrunk to a working size; the colour change it
makes there is fitted with a 3D LUT, which is applied to the full-resolution source, so
the result keeps every detail of the original (see docs/BENCHMARKS.md for why a LUT).
Classical methods fit a global colour mapping and apply it to every pixel directly.
"""

import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from histocolor.classical import CLASSICAL_METHODS
from histocolor.color import lab_to_rgb, rgb_to_lab
from histocolor.errors import HistocolorError
from histocolor.imageio import LoadedImage, read_image
from histocolor.regional import MIN_FIT_PIXELS, blend_regions, fit_region_luts, prepare_regions
from histocolor.regions import DEFAULT_FEATHER
from histocolor.lut import DEFAULT_LUT_SIZE, DEFAULT_SMOOTHNESS, apply_lut, blend_luts, fit_lut, lut_from_mapping

METHODS = ("analogy", *CLASSICAL_METHODS)
UPSAMPLING = ("lut", "output", "lab-difference")
DEFAULT_MAX_SIDE = 256  # by measurement: see docs/BENCHMARKS.md
DEFAULT_WEIGHTS = Path(__file__).resolve().parent / "resources" / "weights" / "default"
_CHUNK_PIXELS = 1 << 21


class TransferResult:
    """The recoloured image and how it was made.

    Attributes:
        image: the source's shape convention and dtype (float input comes back float32;
            grayscale sources come back RGB; alpha is passed through untouched).
        method: the method name.
        timings: seconds per stage.
        lut: ``(S, S, S, 3)`` float32 LUT over sRGB that maps source colours to result
            colours (strength included), or None when the change was resized instead of
            fitted or differs by region. Classical methods tabulate it on first access.
    """

    def __init__(self, image: np.ndarray, lut, method: str, timings: dict[str, float]):
        self.image = image
        self.method = method
        self.timings = timings
        self._lut = lut

    @property
    def lut(self) -> np.ndarray | None:
        if callable(self._lut):
            self._lut = self._lut()
        return self._lut


def resolve_device(device: str | torch.device = "auto") -> torch.device:
    """``auto`` -> CUDA when available, else CPU; asking for missing CUDA is a user error."""
    name = str(device)
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise HistocolorError("device 'cuda' requested but no CUDA GPU is available (use --device cpu)")
    try:
        resolved = torch.device(name)
    except RuntimeError:
        resolved = None
    if resolved is None or resolved.type not in ("cpu", "cuda"):
        raise HistocolorError(f"unknown device {name!r}: use auto, cpu or cuda")
    if resolved.type == "cuda" and (resolved.index or 0) >= torch.cuda.device_count():
        raise HistocolorError(f"device {name!r} does not exist: {torch.cuda.device_count()} CUDA GPU(s) present")
    return resolved


def as_image(image) -> LoadedImage:
    """Accept a path or an array ``(H, W)``, ``(H, W, 1|3|4)`` of uint8, uint16 or float in [0, 1]."""
    if isinstance(image, LoadedImage):
        return image
    if isinstance(image, (str, Path)):
        return read_image(image)
    array = np.asarray(image)
    if array.dtype.kind == "f":
        if not np.all(np.isfinite(array)):
            raise HistocolorError("the image holds NaN or infinite values")
        array = np.clip(array, 0.0, 1.0).astype(np.float32)
    elif array.dtype not in (np.uint8, np.uint16):
        raise HistocolorError(f"unsupported image dtype {array.dtype}: use uint8, uint16 or float in [0, 1]")
    if array.ndim == 3 and array.shape[-1] == 1:
        array = array[..., 0]
    if array.ndim in (2, 3) and min(array.shape[:2]) < 1:
        raise HistocolorError("the image has no pixels")
    if array.ndim == 2:
        return LoadedImage(np.ascontiguousarray(np.repeat(array[..., None], 3, axis=-1)), None, True)
    if array.ndim != 3 or array.shape[-1] not in (3, 4):
        raise HistocolorError(f"expected a 2-D grayscale, RGB or RGBA image, got an array of shape {array.shape}")
    alpha = array[..., 3].copy() if array.shape[-1] == 4 else None
    return LoadedImage(np.ascontiguousarray(array[..., :3]), alpha, False)


def _working_shape(shape, max_side: int) -> tuple[int, int]:
    """The (h, w) that :func:`_to_tensor` shrinks an image of ``shape`` to."""
    height, width = shape[:2]
    scale = min(1.0, max_side / max(height, width))
    return (max(1, round(height * scale)), max(1, round(width * scale))) if scale < 1.0 else (height, width)


def _unit_scale(dtype) -> float:
    return float(np.iinfo(dtype).max) if np.issubdtype(dtype, np.integer) else 1.0


def _to_tensor(rgb: np.ndarray, max_side: int | None = None) -> torch.Tensor:
    """``(H, W, 3)`` -> ``(1, 3, h, w)`` float in [0, 1], shrunk so the long side is at most ``max_side``.

    torch's antialiased bilinear resize (its uint8 path is vectorised) rather than
    kornia's blur-then-resize: 0.05 s against 5 s for 12 megapixels on two cores.
    """
    tensor = torch.from_numpy(rgb).permute(2, 0, 1).unsqueeze(0)
    height, width = rgb.shape[:2]
    size = (height, width) if max_side is None else _working_shape(rgb.shape, max_side)
    if size != (height, width):
        if tensor.dtype != torch.uint8:
            tensor = tensor.float()
        tensor = F.interpolate(tensor, size=size, mode="bilinear", antialias=True, align_corners=False)
    return tensor.float().div_(_unit_scale(rgb.dtype)).clamp_(0.0, 1.0)


def _pixels(rgb: np.ndarray) -> np.ndarray:
    return rgb.reshape(-1, 3).astype(np.float32) / np.float32(_unit_scale(rgb.dtype))


def _from_unit(values: np.ndarray, dtype) -> np.ndarray:
    scale = _unit_scale(dtype)
    if scale == 1.0:
        return np.clip(values, 0.0, 1.0).astype(np.float32)
    return np.clip(np.rint(values * scale), 0, scale).astype(dtype)


def _visible_pixels(image: LoadedImage) -> np.ndarray:
    """All pixels as ``(N, 3)`` floats, leaving out fully transparent ones (unless all are)."""
    pixels = _pixels(image.rgb)
    if image.alpha is None:
        return pixels
    visible = image.alpha.reshape(-1) > 0
    return pixels[visible] if visible.any() else pixels


def _working_alpha(image: LoadedImage, max_side: int) -> torch.Tensor | None:
    """Alpha at the working size, ``(1, h, w)`` in [0, 1], to weight histograms; None if opaque."""
    if image.alpha is None:
        return None
    opaque = np.iinfo(image.alpha.dtype).max if image.alpha.dtype.kind in "ui" else 1.0
    if image.alpha.min() >= opaque or image.alpha.max() == 0:
        return None
    alpha = np.ascontiguousarray(np.repeat(image.alpha[..., None], 3, axis=-1))
    return _to_tensor(alpha, max_side)[:, 0]


def _apply_mapping(rgb: np.ndarray, mapping, strength: float) -> np.ndarray:
    """Apply a colour mapping to every pixel, a chunk at a time to bound memory."""
    flat = rgb.reshape(-1, 3)
    out = np.empty_like(flat)
    for start in range(0, len(flat), _CHUNK_PIXELS):
        pixels = _pixels(flat[start : start + _CHUNK_PIXELS])
        mapped = mapping(pixels)
        if strength != 1.0:
            mapped = pixels + np.float32(strength) * (mapped - pixels)
        out[start : start + _CHUNK_PIXELS] = _from_unit(mapped, rgb.dtype)
    return out.reshape(rgb.shape)


class ColorTransfer:
    """A configured transfer, reusable over many pairs (the model is loaded once).

    Args:
        method: ``analogy`` (the network) or a classical method (``reinhard``, ``mkl``,
            ``histmatch``, ``idt``).
        weights: weights directory for ``analogy`` (default: the shipped model).
        model: an already built :class:`~histocolor.model.HistogramAnalogy` (overrides weights).
        device: ``auto``, ``cpu`` or ``cuda``.
        max_side: long side of the working size the network runs at.
        lut_size: grid points per axis of the fitted LUT.
        lut_smoothness: weight of the LUT fit's smoothness penalty.
        upsampling: how the network's change reaches full resolution: ``lut`` (fit a LUT,
            one per region by regions), ``output`` (resize the network's output) or
            ``lab-difference`` (resize the Lab change). By regions, the LUT head always uses its LUTs.
    """

    def __init__(
        self,
        method: str = "analogy",
        *,
        weights=None,
        model=None,
        device="auto",
        max_side: int = DEFAULT_MAX_SIDE,
        lut_size: int = DEFAULT_LUT_SIZE,
        lut_smoothness: float = DEFAULT_SMOOTHNESS,
        upsampling: str = "lut",
    ):
        if method not in METHODS:
            raise HistocolorError(f"unknown method {method!r}: choose one of {', '.join(METHODS)}")
        if upsampling not in UPSAMPLING:
            raise HistocolorError(f"unknown upsampling {upsampling!r}: choose one of {', '.join(UPSAMPLING)}")
        if max_side < 16:
            raise HistocolorError(f"the working size must be at least 16 pixels, got {max_side}")
        if not 2 <= lut_size <= 129:
            raise HistocolorError(f"the LUT size must be between 2 and 129, got {lut_size}")
        if not lut_smoothness > 0:
            raise HistocolorError(f"the LUT smoothness must be positive, got {lut_smoothness}")
        self.method = method
        self.max_side = int(max_side)
        self.lut_size = int(lut_size)
        self.lut_smoothness = float(lut_smoothness)
        self.upsampling = upsampling
        self.device = resolve_device(device)
        self.model = None
        if method == "analogy":
            self.model = model if model is not None else _load_model(weights, self.device)
            self.model = self.model.to(self.device).eval()
            if hasattr(self.model, "ctn"):
                # channels-last convolutions run about a quarter faster on CPU (oneDNN), same result.
                self.model.ctn.to(memory_format=torch.channels_last)

    def __call__(
        self,
        source,
        reference,
        *,
        strength: float = 1.0,
        source_labels=None,
        reference_labels=None,
        region_map: dict[int, list[int]] | None = None,
        feather: float = DEFAULT_FEATHER,
    ) -> TransferResult:
        """Recolour ``source`` after ``reference`` (paths or arrays); see :class:`TransferResult`.

        With ``source_labels`` and ``reference_labels`` (``(H, W)`` label maps of each image,
        or mask paths) the transfer is region-wise: a region takes the colours of the
        reference region with the same label, or of those ``region_map`` names for it;
        ``feather`` (a share of the image diagonal) blends the seams.
        """
        if not 0.0 <= strength <= 1.0:
            raise HistocolorError(f"strength must be between 0 and 1, got {strength}")
        timings: dict[str, float] = {}
        started = time.perf_counter()
        source_image, reference_image = as_image(source), as_image(reference)
        if isinstance(source, (str, Path)) or isinstance(reference, (str, Path)):
            timings["decode"] = time.perf_counter() - started
        regions = prepare_regions(
            source_labels, reference_labels, source_image.rgb.shape, reference_image.rgb.shape, region_map, feather
        )
        if regions is not None:
            rgb, lut = self._run_by_regions(source_image, reference_image, strength, timings, regions)
        elif self.method == "analogy":
            rgb, lut = self._run_network(source_image, reference_image, strength, timings)
        else:
            rgb, lut = self._run_classical(source_image, reference_image, strength, timings)
        image = rgb if source_image.alpha is None else np.dstack([rgb, source_image.alpha])
        return TransferResult(image, lut, self.method, timings)

    def _run_classical(self, source_image, reference_image, strength, timings):
        clock = time.perf_counter()
        mapping = CLASSICAL_METHODS[self.method](_visible_pixels(source_image), _visible_pixels(reference_image))
        timings["fit"] = time.perf_counter() - clock
        clock = time.perf_counter()
        rgb = _apply_mapping(source_image.rgb, mapping, strength)
        timings["apply"] = time.perf_counter() - clock
        return rgb, lambda: blend_luts(lut_from_mapping(mapping, self.lut_size), strength)

    @torch.no_grad()
    def _run_network(self, source_image, reference_image, strength, timings):
        clock = time.perf_counter()
        small_source, source_lab, reference_lab, source_weights, reference_weights = self._working_inputs(
            source_image, reference_image
        )
        if self.upsampling == "lut" and _predicts_lut(self.model):
            # The LUT head predicts its colour map directly: tabulate it, nothing to fit.
            lut = self.model.color_lut(
                source_lab, reference_lab, self.lut_size, source_weights, reference_weights
            )[0].cpu().numpy()
            self._synchronize()
            timings["network"] = time.perf_counter() - clock
            lut = blend_luts(lut, strength)
            clock = time.perf_counter()
            rgb = apply_lut(source_image.rgb, lut)
            timings["lut_apply"] = time.perf_counter() - clock
            return rgb, lut
        output_lab = self.model(
            source_lab, reference_lab, source_weights=source_weights, reference_weights=reference_weights
        ).output
        self._synchronize()
        timings["network"] = time.perf_counter() - clock
        clock = time.perf_counter()
        if self.upsampling != "lut":
            rgb = self._upsample(source_image.rgb, source_lab, output_lab, strength)
            timings["upsample"] = time.perf_counter() - clock
            return rgb, None
        seen = small_source[0].flatten(1).T.cpu().numpy()
        became = lab_to_rgb(output_lab).clamp(0.0, 1.0)[0].flatten(1).T.cpu().numpy()
        if source_weights is not None:  # transparent pixels say nothing about the change
            visible = source_weights.flatten().cpu().numpy() > 0
            seen, became = seen[visible], became[visible]
        lut = blend_luts(fit_lut(seen, became, self.lut_size, self.lut_smoothness), strength)
        timings["lut_fit"] = time.perf_counter() - clock
        clock = time.perf_counter()
        rgb = apply_lut(source_image.rgb, lut)
        timings["lut_apply"] = time.perf_counter() - clock
        return rgb, lut

    def _working_inputs(self, source_image, reference_image):
        """At the working size, on the device: the source RGB, both Lab images and both alphas (None if opaque)."""
        small_source = _to_tensor(source_image.rgb, self.max_side).to(self.device)
        small_reference = _to_tensor(reference_image.rgb, self.max_side).to(self.device)
        source_alpha, reference_alpha = (
            None if alpha is None else alpha.to(self.device)
            for alpha in (_working_alpha(source_image, self.max_side), _working_alpha(reference_image, self.max_side))
        )
        source_lab = rgb_to_lab(small_source).contiguous(memory_format=torch.channels_last)
        return small_source, source_lab, rgb_to_lab(small_reference), source_alpha, reference_alpha

    @torch.no_grad()
    def _run_by_regions(self, source_image, reference_image, strength, timings, regions):
        clock = time.perf_counter()
        shape = _working_shape(source_image.rgb.shape, self.max_side)
        weights = regions.source_weights(shape)
        if self.method == "analogy" and self.upsampling != "lut" and not _predicts_lut(self.model):
            _, source_lab, output_lab, _ = self._network_region_output(source_image, reference_image, regions, weights)
            self._synchronize()
            timings["network"] = time.perf_counter() - clock
            clock = time.perf_counter()
            rgb = self._upsample(source_image.rgb, source_lab, output_lab, strength)
            timings["upsample"] = time.perf_counter() - clock
            return rgb, None
        if self.method == "analogy":
            appliers = self._network_region_appliers(source_image, reference_image, regions, weights, strength)
        else:
            fit = CLASSICAL_METHODS[self.method]
            mappings = [
                fit(_region_pixels(source_image, regions.source_labels, mine),
                    _region_pixels(reference_image, regions.reference_labels, theirs))
                for mine, theirs in regions.pairs
            ] + [fit(_visible_pixels(source_image), _visible_pixels(reference_image))]
            appliers = [lambda rgb, mapping=mapping: _apply_mapping(rgb, mapping, strength) for mapping in mappings]
        self._synchronize()
        timings["fit"] = time.perf_counter() - clock
        clock = time.perf_counter()
        rgb = blend_regions(source_image.rgb, appliers, weights, _from_unit)
        timings["blend"] = time.perf_counter() - clock
        return rgb, None

    def _network_region_output(self, source_image, reference_image, regions, weights):
        """The CTN's region-wise result at the working size: (source RGB, source Lab, output Lab, source alpha)."""
        small_source, source_lab, reference_lab, source_alpha, reference_alpha = self._working_inputs(
            source_image, reference_image
        )
        output_lab = self.model(
            source_lab,
            reference_lab,
            torch.from_numpy(weights[:-1])[None].to(self.device),
            torch.from_numpy(regions.reference_weights(reference_lab.shape[-2:]))[None].to(self.device),
            source_weights=source_alpha,
            reference_weights=reference_alpha,
        ).output
        return small_source, source_lab, output_lab, source_alpha

    def _network_region_appliers(self, source_image, reference_image, regions, weights, strength):
        """One LUT per region, then one for the rest (None where a channel owns no pixel).

        Each LUT is fitted to the network's change inside its region. (Applying a region's
        Lab alignment exactly at full resolution and fitting the LUT to the CTN's residual
        only was measured worse: docs/BENCHMARKS.md.)
        """
        if _predicts_lut(self.model):
            _, source_lab, reference_lab, source_alpha, reference_alpha = self._working_inputs(
                source_image, reference_image
            )
            reference_regions = regions.reference_weights(reference_lab.shape[-2:])
            luts = self._region_luts(source_lab, reference_lab, regions, reference_regions, source_alpha, reference_alpha)
        else:
            small_source, source_lab, output_lab, source_alpha = self._network_region_output(
                source_image, reference_image, regions, weights
            )
            seen = small_source[0].flatten(1).T.cpu().numpy()
            became = lab_to_rgb(output_lab).clamp(0.0, 1.0)[0].flatten(1).T.cpu().numpy()
            owners = regions.source_weights(source_lab.shape[-2:], feather=False).reshape(len(weights), -1)
            # A region's LUT is its own mapping: fitted away from its feathered seams, where the
            # network's output is already blended with the neighbours' (the full-resolution
            # blend feathers again). Regions too thin for an inside keep all their pixels.
            inside = owners * (weights.reshape(len(weights), -1) >= 0.99)
            owners = np.where((inside > 0.5).sum(1, keepdims=True) >= MIN_FIT_PIXELS, inside, owners)
            if source_alpha is not None:  # transparent pixels say nothing about the change
                owners = owners * (source_alpha.flatten().cpu().numpy() > 0)
            luts = fit_region_luts(seen, became, owners, lambda a, b: fit_lut(a, b, self.lut_size, self.lut_smoothness))
        return [None if lut is None else lambda rgb, lut=blend_luts(lut, strength): apply_lut(rgb, lut) for lut in luts]

    def _region_luts(self, source_lab, reference_lab, regions, reference_regions, source_alpha, reference_alpha):
        """LUT head: one predicted LUT per region (histograms of that region only), then the global one."""
        owners = torch.from_numpy(regions.source_weights(source_lab.shape[-2:], feather=False)).to(self.device)
        theirs = torch.from_numpy(reference_regions).to(self.device)
        luts = []

        def predict(mine, other):
            return self.model.color_lut(source_lab, reference_lab, self.lut_size, mine, other)[0].cpu().numpy()

        overall = predict(source_alpha, reference_alpha)
        for index in range(len(owners)):
            mine = owners[index][None] if source_alpha is None else owners[index][None] * source_alpha
            if index == len(theirs):  # the rest of the image: the global LUT
                luts.append(overall)
                continue
            other = theirs[index][None] if reference_alpha is None else theirs[index][None] * reference_alpha
            # A region too thin to show at the working size has no histogram: the global LUT.
            luts.append(overall if float(mine.sum()) < 1 or float(other.sum()) < 1 else predict(mine, other))
        return luts

    def _synchronize(self):
        if self.device.type == "cuda":  # so that the network's time is not billed to the next stage
            torch.cuda.synchronize(self.device)

    def _upsample(self, source_rgb, source_lab, output_lab, strength):
        """The alternatives to a LUT, kept for comparison: resize the output or the Lab change."""
        height, width = source_rgb.shape[:2]
        full_source = _to_tensor(source_rgb).to(self.device)
        full_lab = rgb_to_lab(full_source)
        if self.upsampling == "output":
            resized = F.interpolate(output_lab, size=(height, width), mode="bilinear", align_corners=False)
            result_lab = full_lab + strength * (resized - full_lab)
        else:
            change = F.interpolate(output_lab - source_lab, size=(height, width), mode="bilinear", align_corners=False)
            result_lab = full_lab + strength * change
        rgb = lab_to_rgb(result_lab)[0].permute(1, 2, 0).cpu().numpy()
        return _from_unit(rgb, source_rgb.dtype)


def _region_pixels(image: LoadedImage, labels: np.ndarray, group: list[int]) -> np.ndarray:
    """The visible pixels of the label group, ``(N, 3)`` floats (all the group's if none is visible)."""
    owned = np.isin(labels, group)
    if image.alpha is not None and (owned & (image.alpha > 0)).any():
        owned &= image.alpha > 0
    return _pixels(image.rgb[owned])


def _predicts_lut(model) -> bool:
    """Whether the model has the LUT head (other models, e.g. test stand-ins, give pixels)."""
    return getattr(getattr(model, "config", None), "head", None) == "lut"


def _load_model(weights, device):
    from histocolor.model.io import from_pretrained

    directory = Path(weights) if weights is not None else DEFAULT_WEIGHTS
    if weights is None and not (directory / "model.safetensors").is_file():
        raise HistocolorError(
            f"no trained weights found at '{directory}': pass --weights DIR, or pick a classical method (--method mkl)"
        )
    return from_pretrained(directory, device)


def transfer(
    source,
    reference,
    method: str = "analogy",
    *,
    strength: float = 1.0,
    source_labels=None,
    reference_labels=None,
    region_map=None,
    **options,
) -> TransferResult:
    """Recolour ``source`` with the colours of ``reference``.

    Args:
        source, reference: image paths or arrays (``(H, W)``, ``(H, W, 3)`` or ``(H, W, 4)``;
            uint8, uint16 or float in [0, 1]). Any sizes and aspect ratios.
        method: ``analogy`` (default, the network), ``reinhard``, ``mkl``, ``histmatch`` or ``idt``.
        strength: 0 keeps the source, 1 applies the full change.
        source_labels, reference_labels: label maps (arrays or mask paths) for a region-wise
            transfer; ``region_map`` maps source labels to reference labels (default: same label).
        **options: passed to :class:`ColorTransfer` (``weights``, ``device``, ``max_side``,
            ``lut_size``, ``upsampling``, ``model``).

    Returns:
        :class:`TransferResult` with ``.image`` (same size and dtype as the source, alpha
        untouched) and ``.lut``.
    """
    return ColorTransfer(method, **options)(
        source, reference, strength=strength, source_labels=source_labels, reference_labels=reference_labels,
        region_map=region_map,
    )
