"""Benchmarks whose numbers go into docs/BENCHMARKS.md (timings never run as tests).

Developer tools, not installed with the package; they use histocolor's public API only.

    python benchmarks/benchmark.py speed [--megapixels 12 24]
    python benchmarks/benchmark.py startup [--color-matcher PATH] [--repeat 5]
    python benchmarks/benchmark.py video [--seconds 10 --size 1920 1080]
    python benchmarks/benchmark.py batch [--pairs 200 --side 512 | --size 640 480] [--batch-sizes 1 8]
    python benchmarks/benchmark.py upsampling [--data ../shared/data/dpst-dev]
    python benchmarks/benchmark.py graded-set --photos DIR... --holdout-from CONFIG --out DIR
    python benchmarks/benchmark.py strength-sweep --graded graded/graded.csv [--unpaired ../shared/data/dpst-dev]
    python benchmarks/benchmark.py frontier [--data ../shared/data/dpst-dev] [--csv docs/frontier.csv]
    python benchmarks/benchmark.py alignment-only --method sliced --out DIR [--like WEIGHTS] [--faithful | --keep-gate]
    python benchmarks/benchmark.py tone-grid --set realistic/realistic.csv --out docs/tone-grid.png
    python benchmarks/benchmark.py truth-structure --sets realistic/realistic.csv [--recipe CONFIG]

``startup`` times whole processes side by side, interleaved (``--help``, a classical transfer
of a 640x480 pair, the network on a 12 MP pair, and color-matcher's MKL command on both pairs
when its command is given), with their peak memory. ``speed`` runs the real ``histocolor
transfer`` command on a large JPEG, one process per run, and reports its stage timings and
peak memory. ``upsampling`` compares the ways of bringing a working-size result to full
resolution (the engine's fitted LUT, or resizing the output or its Lab change, computed here)
against the operator run at full resolution. ``strength-sweep`` shows, for each method and
strength, what the graded set's truth asks for (PSNR) against how far the result moves
towards an unpaired reference (SWD).
``frontier`` draws colour distance to the reference (SWD) against structure kept (gradient
SSIM) on a set: each method as a curve over its strengths, the network among them.
``alignment-only`` writes weights whose network returns its alignment unchanged (residual
heads at zero): ``histocolor evaluate --weights DIR`` then scores the alignment alone, which
is what a trained network must beat.
"""

import argparse
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from histocolor.color import lab_to_rgb, rgb_to_lab
from histocolor.engine import ColorTransfer
from histocolor.dtypes import to_uint
from histocolor.imageio import read_image
from histocolor.lut import DEFAULT_SMOOTHNESS
from histocolor.methods.network import image_tensor
from histocolor.metrics import gradient_ssim, psnr
from histocolor.model import AnalogyConfig, CTNOutput, HistogramAnalogy

ROOT = Path(__file__).resolve().parents[1]
SAMPLES = ROOT / "resources" / "samples"
DEFAULT_PHOTO = ROOT.parent / "shared" / "data" / "photos" / "picosdeeuropa-by-aitzol_berasategi.jpg"
DEFAULT_DPST = ROOT.parent / "shared" / "data" / "dpst-dev"
PSNR_CAP = 100.0


def random_network(seed: int = 0, head_std: float = 0.02) -> HistogramAnalogy:
    """The default-size network with random, non-zero residual heads (it changes colours).

    Its change depends on local texture as much as on colour: the hardest case for a LUT,
    which can only express what depends on colour.
    """
    torch.manual_seed(seed)
    model = HistogramAnalogy(AnalogyConfig())
    for head in model.ctn.heads:
        torch.nn.init.normal_(head.weight, std=head_std)
    return model.eval()


class ReinhardOperator(torch.nn.Module):
    """Reinhard's Lab mean/std transfer with the network's interface: a global, smooth change.

    The statistics are fixed once per pair (from the full-resolution images), so the
    operator is the same colour map at every size and any gap to the full-resolution
    truth is the upsampling's alone.
    """

    def __init__(self, source_rgb: np.ndarray, reference_rgb: np.ndarray):
        super().__init__()
        source_lab, reference_lab = (rgb_to_lab(image_tensor(rgb)) for rgb in (source_rgb, reference_rgb))
        self.source_mean, self.source_std = source_lab.mean((2, 3), keepdim=True), source_lab.std((2, 3), keepdim=True)
        self.reference_mean = reference_lab.mean((2, 3), keepdim=True)
        self.reference_std = reference_lab.std((2, 3), keepdim=True)

    def forward(self, source_lab, reference_lab, source_regions=None, reference_regions=None, **weights):
        normalised = (source_lab - self.source_mean) / self.source_std.clamp(min=1e-3)
        return CTNOutput(normalised * self.reference_std + self.reference_mean, [])


# ---------------------------------------------------------------------------------- speed


def _make_large_jpeg(photo: Path, megapixels: float, path: Path) -> tuple[int, int]:
    image = Image.open(photo).convert("RGB")
    scale = (megapixels * 1e6 / (image.width * image.height)) ** 0.5
    size = (round(image.width * scale), round(image.height * scale))
    image.resize(size, Image.Resampling.LANCZOS).save(path, quality=92)
    return size


def _run_cli(arguments: list[str], timings: bool = True) -> tuple[dict[str, float], float]:
    """Run ``histocolor`` in a child process: its stage timings and peak resident memory (MiB)."""
    with tempfile.TemporaryFile() as log:  # a file, not a pipe: a chatty child cannot block
        process = subprocess.Popen(
            [sys.executable, "-m", "histocolor", *arguments, *(["--timings"] if timings else [])],
            stdout=subprocess.DEVNULL, stderr=log,
        )
        _, status, usage = os.wait4(process.pid, 0)
        process.returncode = os.waitstatus_to_exitcode(status)
        log.seek(0)
        stderr = log.read().decode()
    if process.returncode != 0:
        raise RuntimeError(f"histocolor failed: {stderr.strip()}")
    timings = {name: float(seconds) for name, seconds in re.findall(r"(\w+) ([\d.]+)s", stderr)}
    return timings, usage.ru_maxrss / 1024


def speed(arguments) -> None:
    with tempfile.TemporaryDirectory() as folder:
        folder = Path(folder)
        weights = folder / "weights"
        random_network().save_pretrained(weights)
        reference = SAMPLES / "reference.jpg"
        configurations = [
            ("mkl", ["--method", "mkl"]),
            ("analogy", ["--weights", str(weights)]),
            ("analogy --lut-size 33", ["--weights", str(weights), "--lut-size", "33"]),
            ("analogy --max-side 384", ["--weights", str(weights), "--max-side", "384"]),
        ]
        print(
            f"photo: {arguments.photo.name}, torch threads: {torch.get_num_threads()}, median of {arguments.repeat} runs\n"
        )
        print(
            "| image | command | decode | network / fit | LUT fit | LUT apply / apply | encode "
            "| transfer (all but decode, encode) | vs mkl | peak memory |"
        )
        print("| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |")
        for megapixels in arguments.megapixels:
            source = folder / f"source-{megapixels}mp.jpg"
            width, height = _make_large_jpeg(arguments.photo, megapixels, source)
            command = ["transfer", str(source), str(reference), "-o", str(folder / "out.jpg"), "--overwrite"]
            mkl_transfer = None
            for label, options in configurations:
                runs = [_run_cli(command + options) for _ in range(arguments.repeat)]
                stages = {name: statistics.median(run[0][name] for run in runs) for name in runs[0][0]}
                peak = max(run[1] for run in runs)
                transfer_seconds = sum(v for name, v in stages.items() if name not in ("decode", "encode"))
                mkl_transfer = mkl_transfer or transfer_seconds
                cells = [
                    stages["decode"],
                    stages.get("network", stages.get("fit")),
                    stages.get("lut_fit"),
                    stages.get("apply"),
                    stages["encode"],
                    transfer_seconds,
                ]
                text = " | ".join("-" if value is None else f"{value:.2f} s" for value in cells)
                print(
                    f"| {width}x{height} ({width * height / 1e6:.1f} MP) | {label} | {text} | "
                    f"{transfer_seconds / mkl_transfer:.2f}x | {peak:.0f} MiB |"
                )


# ------------------------------------------------------------------------------------ video


def make_clip(path, photo: np.ndarray, frames: int, size: tuple[int, int], rate: int = 30, audio: bool = True) -> None:
    """A test clip: a slow pan across ``photo`` (so each frame's colours differ), with a tone as audio.

    ``size`` is (width, height); H.264 in yuv420p (even sizes) or yuv444p, AAC audio at 8 kHz.
    """
    import av

    width, height = size
    scale = max(height / photo.shape[0], 1.3 * width / photo.shape[1])
    wide = np.asarray(Image.fromarray(photo).resize((round(photo.shape[1] * scale), round(photo.shape[0] * scale)),
                                                   Image.Resampling.BILINEAR))
    travel = wide.shape[1] - width
    with av.open(str(path), "w") as container:
        video = container.add_stream("libx264", rate=rate)
        video.width, video.height = width, height
        video.pix_fmt = "yuv420p" if width % 2 == 0 and height % 2 == 0 else "yuv444p"
        sound = container.add_stream("aac", rate=8000) if audio else None
        if sound is not None:
            sound.layout = "mono"
        for index in range(frames):
            left = round(travel * index / max(1, frames - 1))
            frame = np.ascontiguousarray(wide[:height, left : left + width])
            container.mux(video.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")))
        container.mux(video.encode(None))
        if sound is not None:
            tone = (0.3 * np.sin(np.arange(8000 * frames // rate) * 0.2)).astype(np.float32)[None]
            for start in range(0, tone.shape[1], 1024):
                chunk = av.AudioFrame.from_ndarray(np.ascontiguousarray(tone[:, start : start + 1024]), format="fltp",
                                                   layout="mono")
                chunk.sample_rate, chunk.pts = 8000, start
                container.mux(sound.encode(chunk))
            container.mux(sound.encode(None))


def video(arguments) -> None:
    """``histocolor video`` on a generated clip: frames per second, peak memory, audio kept."""
    import av

    with tempfile.TemporaryDirectory() as folder:
        folder = Path(folder)
        clip, out = folder / "clip.mp4", folder / "out.mp4"
        width, height = arguments.size
        make_clip(clip, read_image(arguments.photo).rgb, round(arguments.seconds * 30), (width, height))
        print(f"clip: {arguments.seconds:g} s, {width}x{height}, 30 fps, AAC audio; torch threads: "
              f"{torch.get_num_threads()}\n")
        print("| method | temporal | frames | seconds | frames per second | peak memory | audio packets in / out |")
        print("| --- | --- | --- | --- | --- | --- | --- |")
        for method, temporal in arguments.runs:
            clock = time.perf_counter()
            _, peak = _run_cli(["video", str(clip), "--reference", str(SAMPLES / "reference.jpg"), "-o", str(out),
                                "--method", method, "--temporal", temporal, "--overwrite"], timings=False)
            seconds = time.perf_counter() - clock
            with av.open(str(clip)) as before, av.open(str(out)) as after:
                frames = after.streams.video[0].frames
                audio = [sum(1 for p in c.demux(c.streams.audio[0]) if p.dts is not None) for c in (before, after)]
            print(f"| {method} | {temporal} | {frames} | {seconds:.1f} | {frames / seconds:.1f} | {peak:.0f} MiB | "
                  f"{audio[0]} / {audio[1]} |", flush=True)


# ------------------------------------------------------------------------------------ batch


def batch(arguments) -> None:
    """``histocolor transfer --pairs`` on many small pairs, with and without decode/encode threads."""
    photos = sorted(arguments.photos.glob("*.jpg"))[:20] or [SAMPLES / "source.jpg", SAMPLES / "reference.jpg"]
    with tempfile.TemporaryDirectory() as folder:
        folder = Path(folder)
        names = []
        for index, photo in enumerate(photos):
            image = Image.open(photo).convert("RGB")
            if arguments.size:
                image = image.resize(tuple(arguments.size), Image.BICUBIC)
            else:
                image.thumbnail((arguments.side, arguments.side))
            names.append(f"photo{index}.jpg")
            image.save(folder / names[-1], quality=92)
        lines = ["source,reference,output"] + [
            f"{names[i % len(names)]},{names[(i * 7 + 3) % len(names)]},out/{i}.{arguments.format}"
            for i in range(arguments.pairs)
        ]
        (folder / "pairs.csv").write_text("\n".join(lines) + "\n")
        size = f"{arguments.size[0]}x{arguments.size[1]}" if arguments.size else f"long side {arguments.side} px"
        print(f"{arguments.pairs} pairs of {len(names)} photos, {size}, written as {arguments.format.upper()}; "
              f"torch threads: {torch.get_num_threads()}\n")
        print("| method | --io-threads | --batch-size | seconds | pairs per second | gain |")
        print("| --- | --- | --- | --- | --- | --- |")
        weights = ["--weights", str(arguments.weights)] if arguments.weights else []
        for method in arguments.methods:
            baseline = None
            for threads in arguments.io_threads:
                for batch_size in arguments.batch_sizes:
                    clock = time.perf_counter()
                    _run_cli(["transfer", "--pairs", str(folder / "pairs.csv"), "--method", method, *weights,
                              "--io-threads", str(threads), "--batch-size", str(batch_size), "--overwrite"],
                             timings=False)
                    seconds = time.perf_counter() - clock
                    baseline = baseline or seconds
                    print(f"| {method} | {threads} | {batch_size} | {seconds:.1f} | {arguments.pairs / seconds:.2f} | "
                          f"{baseline / seconds:.2f}x |", flush=True)


# ------------------------------------------------------------------------------- upsampling


def _pairs(data: Path, limit: int | None):
    sources = sorted((data / "input").glob("in*.png"), key=lambda p: int(p.stem[2:]))[:limit]
    for source in sources:
        yield source.stem, read_image(source).rgb, read_image(data / "style" / f"tar{source.stem[2:]}.png").rgb


@torch.no_grad()
def _resized(operator, source: np.ndarray, reference: np.ndarray, working: int, mode: str) -> np.ndarray:
    """The operator at the working size, brought to full size by resizing its output or its Lab change.

    ``working`` None runs it at full resolution (the truth).
    """
    height, width = source.shape[:2]
    full_lab = rgb_to_lab(image_tensor(source))
    small_lab = full_lab if working is None else rgb_to_lab(image_tensor(source, working))
    output = operator(small_lab, rgb_to_lab(image_tensor(reference, working))).output
    if mode == "output":
        result = F.interpolate(output, size=(height, width), mode="bilinear", align_corners=False)
    else:
        result = full_lab + F.interpolate(output - small_lab, size=(height, width), mode="bilinear", align_corners=False)
    return to_uint(lab_to_rgb(result)[0].permute(1, 2, 0).double().numpy(), np.uint8)


def upsampling(arguments) -> None:
    network = random_network(head_std=arguments.head_std)
    variants = [
        (f"LUT {size}^3, smoothness {smoothness:g}", "lut", size, smoothness)
        for size in (17, 33)
        for smoothness in arguments.smoothness
    ] + [
        ("resize output", "output", None, None),
        ("resize Lab change", "lab-difference", None, None),
    ]
    rows = {}
    for name, source, reference in _pairs(arguments.data, arguments.limit):
        operators = {
            "random network (local change)": network,
            "Reinhard in Lab (global change)": ReinhardOperator(source, reference),
        }
        for operator_name, operator in operators.items():
            truth = _resized(operator, source, reference, None, "output")
            truth_row = rows.setdefault((operator_name, "-", "truth (full resolution)"), [])
            truth_row.append((PSNR_CAP, gradient_ssim(truth, source), abs_change(truth, source), 0.0))
            for working in arguments.sizes:
                for label, mode, lut_size, smoothness in variants:
                    clock = time.perf_counter()
                    if mode == "lut":
                        engine = ColorTransfer(model=operator, max_side=working, lut_size=lut_size,
                                               lut_smoothness=smoothness)
                        image = engine(source, reference).image
                    else:
                        image = _resized(operator, source, reference, working, mode)
                    seconds = time.perf_counter() - clock
                    scores = (
                        min(psnr(image, truth), PSNR_CAP),
                        gradient_ssim(image, source),
                        gradient_ssim(image, truth),
                        seconds,
                    )
                    rows.setdefault((operator_name, working, label), []).append(scores)
        print(f"{name} done", file=sys.stderr)
    count = len(next(iter(rows.values())))
    print(
        f"{count} pairs from {arguments.data}; truth = the operator run at full resolution; PSNR capped at {PSNR_CAP:g} dB"
    )
    print("(a pair of one photo twice, such as dpst-dev's pair 23, is mapped exactly by a global operator)\n")
    print(
        "| operator | working size | upsampling | PSNR to truth (dB) | gradient SSIM to source | gradient SSIM to truth | seconds |"
    )
    print("| --- | --- | --- | --- | --- | --- | --- |")
    for (operator_name, working, label), scores in rows.items():
        means = np.mean(np.array(scores), axis=0)
        if label.startswith("truth"):
            print(
                f"| {operator_name} | {working} | {label} (mean change {means[2]:.1f}/255) | - | {means[1]:.4f} | 1 | - |"
            )
        else:
            print(
                f"| {operator_name} | {working} | {label} | {means[0]:.2f} | {means[1]:.4f} | {means[2]:.4f} | {means[3]:.3f} |"
            )


def abs_change(image: np.ndarray, source: np.ndarray) -> float:
    """Mean absolute difference in 8-bit levels: how much the operator changes the image."""
    return float(np.abs(image.astype(np.float64) - source).mean())


def graded_set(arguments) -> None:
    from histocolor.training.data.graded import build_graded_set, build_realistic_set, build_view_set
    from histocolor.training.data.photos import list_photos
    from histocolor.training.train import TrainConfig

    held_out = set(TrainConfig.from_file(arguments.holdout_from).holdout)
    photos = [p for p in list_photos(arguments.photos) if p.name in held_out]
    build = {"view": build_view_set, "other": build_graded_set, "realistic": build_realistic_set}[arguments.kind]
    print(build(photos, arguments.out, seed=arguments.seed))


# --------------------------------------------------------------------------- strength sweep


def strength_sweep(arguments) -> None:
    from histocolor.evaluate import load_set
    from histocolor.metrics import ciede2000, sliced_wasserstein

    graded, unpaired = load_set(arguments.graded), load_set(arguments.unpaired)
    if any(pair.truth is None for pair in graded):
        raise SystemExit(f"error: {arguments.graded} needs a truth column")
    images = {}

    def image(path):
        if path not in images:
            images[path] = read_image(path).rgb
        return images[path]

    truth_swd = np.mean([sliced_wasserstein(image(p.truth), image(p.reference)) for p in graded])
    print(f"graded set ({len(graded)} pairs): the truth's SWD to the reference is {truth_swd:.2f}")
    print(f"unpaired set: {arguments.unpaired} ({len(unpaired)} pairs)\n")
    print("| method | strength | graded PSNR (dB) ↑ | graded ΔE2000 ↓ | graded SWD | unpaired SWD ↓ | unpaired gradient SSIM ↑ |")
    print("| --- | --- | --- | --- | --- | --- | --- |")
    for method in arguments.methods:
        engine = ColorTransfer(method, weights=arguments.weights)
        for strength in arguments.strengths:
            results = {p.name: engine(image(p.source), image(p.reference), strength=strength).image for p in graded}
            scores = [
                np.mean([psnr(results[p.name], image(p.truth)) for p in graded]),
                np.mean([ciede2000(results[p.name], image(p.truth)) for p in graded]),
                np.mean([sliced_wasserstein(results[p.name], image(p.reference)) for p in graded]),
            ]
            results = {p.name: engine(image(p.source), image(p.reference), strength=strength).image for p in unpaired}
            scores += [
                np.mean([sliced_wasserstein(results[p.name], image(p.reference)) for p in unpaired]),
                np.mean([gradient_ssim(results[p.name], image(p.source)) for p in unpaired]),
            ]
            print(f"| {method} | {strength:g} | " + " | ".join(f"{value:.3g}" for value in scores) + " |", flush=True)


# --------------------------------------------------------------------------------- frontier


def frontier(arguments) -> None:
    """Mean SWD to the reference and gradient SSIM to the source per method and strength.

    Strength blends the full result with the source in sRGB for every method (a classical
    mapping and the network's LUT alike), so each pair is transferred once per method and
    the strengths are blends of that result.
    """
    from histocolor.evaluate import load_set
    from histocolor.metrics import sliced_wasserstein

    pairs = load_set(arguments.data)[: arguments.limit]
    images = [(read_image(p.source).rgb, read_image(p.reference).rgb) for p in pairs]
    scores = {}
    print(f"{arguments.data}: {len(pairs)} pairs\n")
    print("| method | strength | SWD to reference ↓ | gradient SSIM ↑ |")
    print("| --- | --- | --- | --- |")
    for method in arguments.methods:
        engine = ColorTransfer(method, weights=arguments.weights)
        rows = []
        for source, reference in images:
            full = engine(source, reference).image.astype(np.float64)
            for strength in arguments.strengths:
                blend = np.clip(np.rint(source + strength * (full - source)), 0, 255).astype(np.uint8)
                rows.append((strength, sliced_wasserstein(blend, reference), gradient_ssim(blend, source)))
        table = np.array(rows).reshape(len(images), len(arguments.strengths), 3).mean(0)
        scores[method] = table
        for strength, swd, structure in table:
            print(f"| {method} | {strength:g} | {swd:.2f} | {structure:.3f} |", flush=True)
    if arguments.csv is not None:  # benchmarks/plot_frontier.py draws the picture from it
        lines = ["method,strength,swd,gradient_ssim"] + [
            f"{method},{strength:g},{swd:.4f},{structure:.4f}"
            for method, table in scores.items() for strength, swd, structure in table
        ]
        arguments.csv.parent.mkdir(parents=True, exist_ok=True)
        arguments.csv.write_text("\n".join(lines) + "\n")


def alignment_only(arguments) -> None:
    """Weights whose network is an alignment alone (residual heads at zero).

    ``--like`` takes the other settings from those weights. Its alignment is the careful one (a
    relevance gate is left out); ``--faithful`` takes the relevance gate's faithful alignment
    instead; ``--keep-gate`` keeps the trained gate (and every other weight) and zeroes only the
    CTN's residual heads: the gate's blend of the two alignments, without the CTN's correction.
    """
    from dataclasses import replace

    from histocolor.model import from_pretrained

    start = from_pretrained(arguments.like) if arguments.like else None
    base = start.config if start else AnalogyConfig()
    if arguments.keep_gate:
        if base.relevance is None:
            raise SystemExit("--keep-gate needs weights with a relevance gate (--like)")
        for head in start.ctn.heads:
            torch.nn.init.zeros_(head.weight)
            torch.nn.init.zeros_(head.bias)
        start.save_pretrained(arguments.out)
        print(arguments.out)
        return
    alignment = replace(base.alignment, method=arguments.method, everywhere=True)
    if arguments.faithful:
        if base.relevance is None:
            raise SystemExit("--faithful needs weights with a relevance gate (--like)")
        alignment = base.relevance.faithful(alignment)
    # A fresh network: its residual heads (CTN) or basis LUTs (LUT head) start at zero.
    model = HistogramAnalogy(replace(base, alignment=alignment, relevance=None))
    model.save_pretrained(arguments.out)
    print(arguments.out)


def truth_structure(arguments) -> None:
    """How far the truths move from their sources: gradient SSIM (truth to source) over a set's
    pairs and over the paired training triplets of a recipe. Real expert renders: about 0.84."""
    from histocolor.training.data.photos import PhotoFolderDataset, list_photos
    from histocolor.evaluate import load_set
    from histocolor.training.train import TrainConfig

    def summary(name, values):
        values = np.array(values)
        print(f"| {name} | {len(values)} | {values.mean():.3f} | {np.median(values):.3f} | "
              f"{np.percentile(values, 10):.3f} - {np.percentile(values, 90):.3f} | {values.min():.3f} - {values.max():.3f} |")

    def uint8(tensor):
        return to_uint(tensor.permute(1, 2, 0).numpy(), np.uint8)

    print("| set | pairs | mean | median | 10th - 90th percentile | min - max |")
    print("| --- | --- | --- | --- | --- | --- |")
    for path in arguments.sets:
        pairs = [p for p in load_set(path) if p.truth is not None]
        summary(str(path), [gradient_ssim(read_image(p.truth).rgb, read_image(p.source).rgb) for p in pairs])
    if arguments.recipe is not None:
        config = TrainConfig.from_file(arguments.recipe)
        photos = [p for p in list_photos(arguments.photos) if p.name not in set(config.holdout)]
        dataset = PhotoFolderDataset(
            None, photos=photos, crop=config.crop, seed=config.seed, identical_rate=config.identical_rate,
            same_grade_rate=config.same_grade_rate, same_photo_rate=config.same_photo_rate,
            natural_source_rate=config.natural_source_rate, strong_style_rate=config.strong_style_rate,
            reference_flip_rate=config.reference_flip_rate, unpaired_rate=config.unpaired_rate,
            realistic_style_rate=config.realistic_style_rate, flat_source_rate=config.flat_source_rate,
            view_rate=config.view_rate,
        )
        values = []
        for index in range(10**6):
            item = dataset[index]
            if item.paired and not torch.equal(item.target, item.source):  # graded triplets with a truth
                values.append(gradient_ssim(uint8(item.target), uint8(item.source)))
            if len(values) == arguments.items:
                break
        summary(f"training triplets of {arguments.recipe} (global, graded)", values)


def tone_grid(arguments) -> None:
    """The pairs of a set whose truths change tones most (lowest gradient SSIM to the source):
    source | reference | network | histogram matching | truth, with each method's PSNR."""
    from histocolor.evaluate import _write_grid, load_set

    pairs = [p for p in load_set(arguments.set) if p.truth is not None]
    images = {p.name: tuple(read_image(path).rgb for path in (p.source, p.reference, p.truth)) for p in pairs}
    pairs.sort(key=lambda p: gradient_ssim(images[p.name][2], images[p.name][0]))
    network, matching = ColorTransfer("analogy", weights=arguments.weights), ColorTransfer("histmatch")
    rows = []
    for pair in pairs[: arguments.rows]:
        source, reference, truth = images[pair.name]
        results = [engine(source, reference).image for engine in (network, matching)]
        rows.append([source, reference, *results, truth])
        print(f"{pair.name}: truth gradient SSIM {gradient_ssim(truth, source):.3f}; PSNR network "
              f"{psnr(results[0], truth):.2f} dB, histogram matching {psnr(results[1], truth):.2f} dB")
    _write_grid(arguments.out, rows, ["source", "reference", "network", "histmatch", "truth"])
    print(arguments.out)


def _whole_process(command: list, cwd=None, env=None) -> tuple[float, float]:
    """Wall seconds and peak resident memory (MB) of one run of ``command``, start-up included.

    The memory comes from GNU time (``/usr/bin/time -f %M``): a child's own ``ru_maxrss`` would
    include this (torch-holding) process's memory, which the child shares until it execs.
    """
    with tempfile.NamedTemporaryFile("r", suffix=".txt") as report:
        wrapper = ["/usr/bin/time", "-f", "%M", "-o", report.name] if Path("/usr/bin/time").exists() else []
        started = time.perf_counter()
        subprocess.run([*wrapper, *(str(part) for part in command)], cwd=cwd, env=env, stdout=subprocess.DEVNULL,
                       stderr=subprocess.DEVNULL, check=False)
        elapsed = time.perf_counter() - started
        kilobytes = report.read().strip().splitlines()[-1:] if wrapper else []
    return elapsed, float(kilobytes[0]) / 1024 if kilobytes and kilobytes[0].isdigit() else float("nan")


def startup(arguments) -> None:
    histocolor = Path(sys.executable).with_name("histocolor")
    with tempfile.TemporaryDirectory() as folder:
        folder = Path(folder)
        pairs = {}
        for label, size, images in (("640x480", (640, 480), (SAMPLES / "source.jpg", SAMPLES / "reference.jpg")),
                                    ("12 MP", (4000, 3000), (arguments.photo, SAMPLES / "reference.jpg"))):
            names = []
            for role, path in zip(("source", "reference"), images):
                name = folder / f"{role}-{size[0]}.jpg"
                Image.open(path).convert("RGB").resize(size, Image.BICUBIC).save(name, quality=92)
                names.append(name)
            pairs[label] = names
        commands = {"histocolor --help": ([histocolor, "--help"], None)}
        for label, (source, reference) in pairs.items():
            method = ["--method", "mkl"] if label == "640x480" else []
            name = "mkl" if method else "network"
            commands[f"histocolor transfer ({name}), {label}"] = (
                [histocolor, "transfer", source, reference, "-o", folder / f"out-{name}.jpg", "--overwrite", *method],
                None)
            if arguments.color_matcher:
                commands[f"color-matcher --method=mkl, {label}"] = (
                    [arguments.color_matcher, "-s", source, "-r", reference, "--method=mkl"], folder)
        # Both tools run from bytecode, as installed packages do: an editable install under
        # PYTHONDONTWRITEBYTECODE would compile histocolor's sources in every run. The first
        # round (which writes the bytecode and fills the page cache) is not counted.
        env = {key: value for key, value in os.environ.items() if key != "PYTHONDONTWRITEBYTECODE"}
        env["PYTHONPYCACHEPREFIX"] = str(folder / "pycache")
        names = list(commands)
        runs = {name: [] for name in names}
        for round_ in range(arguments.repeat + 1):  # interleaved, every command once per round, in turns
            for name in names[round_ % len(names):] + names[: round_ % len(names)]:
                timing = _whole_process(*commands[name], env=env)
                if round_:
                    runs[name].append(timing)
    medians = {name: (statistics.median(t for t, _ in r), statistics.median(m for _, m in r)) for name, r in runs.items()}
    print(f"| command | wall (s), median of {arguments.repeat} | fastest (s) | peak memory (MB) | ratio to color-matcher |")
    print("| --- | --- | --- | --- | --- |")
    for name, (seconds, memory) in medians.items():
        size = name.rsplit(", ", 1)[-1]
        peer = medians.get(f"color-matcher --method=mkl, {size}")
        ratio = f"{seconds / peer[0]:.2f}x" if peer and not name.startswith("color-matcher") else "-"
        fastest = min(t for t, _ in runs[name])
        print(f"| `{name}` | {seconds:.3f} | {fastest:.3f} | {memory:.0f} | {ratio} |")


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(prog="python benchmarks/benchmark.py", description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)
    timing = commands.add_parser("speed", help="stage timings and peak memory of the CLI on large JPEGs")
    timing.add_argument("--megapixels", type=float, nargs="+", default=[12, 24])
    timing.add_argument(
        "--photo", type=Path, default=DEFAULT_PHOTO if DEFAULT_PHOTO.exists() else SAMPLES / "source.jpg"
    )
    timing.add_argument("--repeat", type=int, default=5)
    start = commands.add_parser("startup", help="whole-process wall time and memory, side by side with color-matcher")
    start.add_argument("--color-matcher", type=Path, default=None, help="color-matcher's command, to compare with")
    start.add_argument(
        "--photo", type=Path, default=DEFAULT_PHOTO if DEFAULT_PHOTO.exists() else SAMPLES / "source.jpg"
    )
    start.add_argument("--repeat", type=int, default=5)
    upsample = commands.add_parser("upsampling", help="LUT vs resized output vs resized Lab change on dpst-dev")
    upsample.add_argument("--data", type=Path, default=DEFAULT_DPST)
    upsample.add_argument("--sizes", type=int, nargs="+", default=[256, 384, 512])
    upsample.add_argument("--limit", type=int, default=None, help="only the first N pairs")
    upsample.add_argument("--head-std", type=float, default=0.2, help="size of the random network's change")
    upsample.add_argument("--smoothness", type=float, nargs="+", default=[DEFAULT_SMOOTHNESS], help="LUT fit penalties")
    clip = commands.add_parser("video", help="histocolor video on a generated clip: fps, peak memory, audio")
    clip.add_argument("--seconds", type=float, default=10.0)
    clip.add_argument("--size", type=int, nargs=2, default=[1920, 1080], metavar=("WIDTH", "HEIGHT"))
    clip.add_argument(
        "--photo", type=Path, default=DEFAULT_PHOTO if DEFAULT_PHOTO.exists() else SAMPLES / "source.jpg"
    )
    clip.add_argument("--runs", type=lambda text: tuple(text.split(":")), nargs="+",
                      default=[("analogy", "shot"), ("mkl", "shot"), ("analogy", "smooth")],
                      help="METHOD:TEMPORAL pairs (default: analogy:shot mkl:shot analogy:smooth)")
    many = commands.add_parser("batch", help="pairs per second of transfer --pairs, with and without I/O threads")
    many.add_argument("--pairs", type=int, default=200)
    many.add_argument("--side", type=int, default=512, help="long side of each image")
    many.add_argument("--photos", type=Path, default=DEFAULT_PHOTO.parent)
    many.add_argument("--methods", nargs="+", default=["analogy", "mkl"])
    many.add_argument("--io-threads", type=int, nargs="+", default=[0, 2])
    many.add_argument("--batch-sizes", type=int, nargs="+", default=[1, 8])
    many.add_argument("--format", choices=["png", "jpg"], default="png", help="the results' format")
    many.add_argument("--size", type=int, nargs=2, default=None, metavar=("WIDTH", "HEIGHT"),
                      help="resize every photo to exactly this size (instead of --side)")
    many.add_argument("--weights", type=Path, default=None, help="weights of the analogy method (default: shipped)")
    graded = commands.add_parser("graded-set", help="build the held-out graded evaluation set (evaluation styles)")
    graded.add_argument("--photos", type=Path, nargs="+", required=True, help="folders holding the held-out photos")
    graded.add_argument("--holdout-from", type=Path, required=True, help="training config whose holdout list to use")
    graded.add_argument("--out", type=Path, required=True)
    graded.add_argument("--seed", type=int, default=0)
    graded.add_argument("--kind", choices=["other", "view", "realistic"], default="other",
                        help="other: reference = another photo under the truth's grade; view: reference = another "
                             "view (crop, mirror, scale) of the truth (the paper's situation); realistic: the same "
                             "with truths that change tones as expert renders do (realistic grades, raw-like sources)")
    sweep = commands.add_parser("strength-sweep", help="graded PSNR against unpaired SWD, per method and strength")
    sweep.add_argument("--graded", type=Path, required=True, help="CSV with a truth column (graded-set output)")
    sweep.add_argument("--unpaired", type=Path, default=DEFAULT_DPST, help="set scored by SWD to the reference")
    sweep.add_argument("--methods", nargs="+", default=["analogy", "mkl", "reinhard"])
    sweep.add_argument("--strengths", type=float, nargs="+", default=[0.25, 0.5, 0.75, 1.0])
    sweep.add_argument("--weights", type=Path, default=None, help="weights of the analogy method (default: shipped)")
    front = commands.add_parser("frontier", help="SWD to the reference against gradient SSIM, per method and strength")
    front.add_argument("--data", type=Path, default=DEFAULT_DPST, help="evaluation set (folder or CSV)")
    front.add_argument("--methods", nargs="+", default=["analogy", "reinhard", "mkl", "histmatch", "idt"])
    front.add_argument("--strengths", type=float, nargs="+", default=[0.25, 0.5, 0.75, 1.0])
    front.add_argument("--weights", type=Path, default=None, help="weights of the analogy method (default: shipped)")
    front.add_argument("--limit", type=int, default=None, help="only the first N pairs")
    front.add_argument("--csv", type=Path, default=None, help="also write the table here (for benchmarks/plot_frontier.py)")
    aligned = commands.add_parser("alignment-only", help="weights whose network is its alignment alone")
    aligned.add_argument("--method", choices=["moments", "linear", "quantiles", "colour", "sliced"], default="sliced")
    aligned.add_argument("--like", type=Path, default=None, help="take the other settings from these weights")
    aligned.add_argument("--out", type=Path, required=True)
    aligned.add_argument("--faithful", action="store_true", help="the relevance gate's faithful alignment")
    aligned.add_argument("--keep-gate", action="store_true", help="the trained gate's blend, CTN heads at zero")
    tones = commands.add_parser("tone-grid", help="grid of the pairs whose truths change tones most")
    tones.add_argument("--set", type=Path, required=True, help="CSV set with a truth column")
    tones.add_argument("--weights", type=Path, default=None, help="weights of the network (default: shipped)")
    tones.add_argument("--rows", type=int, default=6)
    tones.add_argument("--out", type=Path, required=True, help="PNG to write")
    truths = commands.add_parser("truth-structure", help="gradient SSIM of the truths to their sources")
    truths.add_argument("--sets", type=Path, nargs="*", default=[], help="CSV sets with a truth column")
    truths.add_argument("--recipe", type=Path, default=None, help="training config whose triplets to measure")
    truths.add_argument("--photos", type=Path, nargs="+", default=[ROOT.parent / "shared" / "data" / "photos"])
    truths.add_argument("--items", type=int, default=200)
    arguments = parser.parse_args(argv)
    commands = {
        "alignment-only": alignment_only, "speed": speed, "startup": startup, "video": video, "batch": batch, "upsampling": upsampling,
        "graded-set": graded_set,
        "strength-sweep": strength_sweep, "frontier": frontier, "truth-structure": truth_structure,
        "tone-grid": tone_grid,
    }
    commands[arguments.command](arguments)


if __name__ == "__main__":
    main()
