"""The network's transfer methods (:func:`~histocolor.methods.build_method` picks them for ``analogy``).

The only module of :mod:`histocolor.methods` that imports torch.

- :class:`NetworkMethod`: the network with the pixel head (CTN) runs on a copy shrunk to a
  working size; a 3D LUT fitted to its (source colour -> output colour) pairs in each
  region is that region's map (see docs/BENCHMARKS.md for why a LUT).
- :class:`LutHeadMethod`: the network with the LUT head predicts each region's LUT.
"""

import contextlib
import os
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import torch
import torch.nn.functional as F

from histocolor.color import lab_to_rgb, rgb_to_lab
from histocolor.colormap import LutMap
from histocolor.dtypes import full_scale
from histocolor.errors import HistocolorError
from histocolor.imageio import LoadedImage
from histocolor.lut import fit_lut
from histocolor.methods.base import TransferMethod, working_shape
from histocolor.timing import Stopwatch

# A region with fewer working-size pixels than this borrows the LUT fitted on all pixels.
MIN_FIT_PIXELS = 64


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
    return tensor.float().div_(full_scale(rgb.dtype)).clamp_(0.0, 1.0)


def _working_alpha(image: LoadedImage, max_side: int) -> torch.Tensor | None:
    """Alpha at the working size, ``(1, h, w)`` in [0, 1], to weight histograms; None if opaque."""
    if image.alpha is None:
        return None
    opaque = full_scale(image.alpha.dtype)
    if image.alpha.min() >= opaque or image.alpha.max() == 0:
        return None
    alpha = np.ascontiguousarray(np.repeat(image.alpha[..., None], 3, axis=-1))
    return image_tensor(alpha, max_side)[:, 0]


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

    def fit_maps(self, source, reference, regions, weights, clock):
        with clock.stage("network"):
            inputs = self._inputs(source, reference)
        return self._fit(inputs, regions, weights, clock)

    @torch.no_grad()
    def _fit(self, inputs, regions, weights, clock):
        """One pair's maps from its working-size inputs (:meth:`_inputs`)."""
        small_source, source_lab, reference_lab, source_alpha, reference_alpha = inputs
        with clock.stage("network"):
            # The network reads region histograms only when there are regions.
            region_inputs = () if not regions.pairs else (
                self._tensor(weights[:-1]), self._tensor(regions.reference_weights(reference_lab.shape[-2:]))
            )
            output_lab = self.model(source_lab, reference_lab, *region_inputs, source_weights=source_alpha,
                                    reference_weights=reference_alpha).output
        with clock.stage("lut_fit"):
            return self._maps(small_source, output_lab, regions, weights, source_alpha)

    @torch.no_grad()
    def fit_maps_batch(self, items, clocks):
        """Pairs without regions or transparency whose working sizes agree go through the network
        together (stacked); the others one by one. Each pair is billed its share of its stack's
        network time.

        On the CPU a stack is split into one part per torch thread, and the parts run side by
        side, each on one thread, network then LUT fits: the network's many small steps use
        one thread each far better than two threads one step at a time (0.08 against 0.11 s a
        pair on 2 cores, docs/BENCHMARKS.md). On a GPU a stack runs whole, and its LUT fits
        (numpy) share the CPU's cores."""
        results, inputs, groups = [None] * len(items), {}, {}
        for index, (source, reference, regions, _) in enumerate(items):
            try:
                with clocks[index].stage("network"):
                    inputs[index] = self._inputs(source, reference)
            except Exception as error:  # noqa: BLE001 - a pair that fails costs only itself
                results[index] = error
                continue
            small_source, source_lab, reference_lab, source_alpha, reference_alpha = inputs[index]
            if not regions.pairs and source_alpha is None and reference_alpha is None:
                groups.setdefault((source_lab.shape, reference_lab.shape), []).append(index)
        stacked = [group for group in groups.values() if len(group) > 1]
        for index in sorted(set(inputs) - {index for group in stacked for index in group}):
            try:
                results[index] = self._fit(inputs[index], *items[index][2:], clocks[index])
            except Exception as error:  # noqa: BLE001
                results[index] = error
        lanes = torch.get_num_threads() if self.device.type == "cpu" else 1
        parts = [part.tolist() for group in stacked for part in np.array_split(group, min(lanes, len(group)))]
        cores = os.cpu_count() or 1
        fit_threads = 1 if lanes > 1 else max(1, cores)

        def run(part):
            self._stacked(part, inputs, items, clocks, results, fit_threads)

        with _torch_threads(1 if lanes > 1 else None), ThreadPoolExecutor(max(1, min(lanes, len(parts)))) as pool:
            list(pool.map(run, parts))
        return results

    @torch.no_grad()  # in a pool's thread: torch's grad mode is per thread
    def _stacked(self, group, inputs, items, clocks, results, fit_threads: int) -> None:
        """The network once on the group's stacked pairs, then each pair's LUT fit (in
        ``fit_threads`` threads: numpy work that releases the GIL), into ``results``."""
        clock = Stopwatch(self.device)
        try:
            with clock.stage("network"):
                output_lab = self.model(torch.cat([inputs[i][1] for i in group]),
                                        torch.cat([inputs[i][2] for i in group])).output
        except Exception as error:  # noqa: BLE001 - delivered to the group's pairs
            for index in group:
                results[index] = error
            return

        def fit(position: int, index: int) -> None:
            timings = clocks[index].timings
            timings["network"] = timings.get("network", 0.0) + clock.timings["network"] / len(group)
            try:
                with clocks[index].stage("lut_fit"):
                    results[index] = self._maps(inputs[index][0], output_lab[position : position + 1],
                                                items[index][2], items[index][3], None)
            except Exception as error:  # noqa: BLE001
                results[index] = error

        if fit_threads == 1:
            for position, index in enumerate(group):
                fit(position, index)
        else:
            with ThreadPoolExecutor(min(fit_threads, len(group))) as pool:
                list(pool.map(fit, range(len(group)), group))

    def _maps(self, small_source, output_lab, regions, weights, source_alpha) -> list:
        """The LUT maps of one pair from the network's output ``(1, 3, h, w)`` at the working size."""
        if not torch.isfinite(output_lab).all():  # never write a broken network's output
            raise HistocolorError("the network's output holds NaN or infinite values: its weights are broken")
        seen = small_source[0].flatten(1).T.cpu().numpy()
        became = lab_to_rgb(output_lab).clamp(0.0, 1.0)[0].flatten(1).T.cpu().numpy()
        owners = regions.source_weights(output_lab.shape[-2:], feather=False).reshape(len(weights), -1)
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


@contextlib.contextmanager
def _torch_threads(count: int | None):
    """torch's intra-op threads set to ``count`` while the block runs (None: unchanged)."""
    if count is None:
        yield
        return
    before = torch.get_num_threads()
    torch.set_num_threads(count)
    try:
        yield
    finally:
        torch.set_num_threads(before)
