"""Benchmarks whose numbers go into docs/BENCHMARKS.md (timings never run as tests).

    python -m histocolor.benchmark speed [--megapixels 12 24]
    python -m histocolor.benchmark upsampling [--data ../shared/data/dpst-dev]
    python -m histocolor.benchmark graded-set --photos DIR... --holdout-from CONFIG --out DIR
    python -m histocolor.benchmark strength-sweep --graded graded/graded.csv [--unpaired ../shared/data/dpst-dev]
    python -m histocolor.benchmark frontier [--data ../shared/data/dpst-dev] [--csv docs/frontier.csv]
    python -m histocolor.benchmark alignment-only --method sliced --out DIR [--like WEIGHTS]

``speed`` runs the real ``histocolor transfer`` command on a large JPEG, one process per
run, and reports its stage timings and peak memory. ``upsampling`` compares the ways of
bringing a working-size result to full resolution against the operator run at full
resolution. ``strength-sweep`` shows, for each method and strength, what the graded set's
truth asks for (PSNR) against how far the result moves towards an unpaired reference (SWD).
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
from PIL import Image

from histocolor.color import rgb_to_lab
from histocolor.imageio import read_image
from histocolor.lut import DEFAULT_SMOOTHNESS
from histocolor.metrics import gradient_ssim, psnr
from histocolor.model import AnalogyConfig, CTNOutput, HistogramAnalogy
from histocolor.transfer import ColorTransfer, _to_tensor

ROOT = Path(__file__).resolve().parents[2]
SAMPLES = Path(__file__).resolve().parent / "resources" / "samples"
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
        source_lab, reference_lab = (rgb_to_lab(_to_tensor(rgb)) for rgb in (source_rgb, reference_rgb))
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


def _run_cli(arguments: list[str]) -> tuple[dict[str, float], float]:
    """Run ``histocolor`` in a child process: its stage timings and peak resident memory (MiB)."""
    with tempfile.TemporaryFile() as log:  # a file, not a pipe: a chatty child cannot block
        process = subprocess.Popen(
            [sys.executable, "-m", "histocolor", *arguments, "--timings"], stdout=subprocess.DEVNULL, stderr=log
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
            command = ["transfer", str(source), str(reference), "-o", str(folder / "out.jpg")]
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
                    stages.get("lut_apply", stages.get("apply")),
                    stages["encode"],
                    transfer_seconds,
                ]
                text = " | ".join("-" if value is None else f"{value:.2f} s" for value in cells)
                print(
                    f"| {width}x{height} ({width * height / 1e6:.1f} MP) | {label} | {text} | "
                    f"{transfer_seconds / mkl_transfer:.2f}x | {peak:.0f} MiB |"
                )


# ------------------------------------------------------------------------------- upsampling


def _pairs(data: Path, limit: int | None):
    sources = sorted((data / "input").glob("in*.png"), key=lambda p: int(p.stem[2:]))[:limit]
    for source in sources:
        yield source.stem, read_image(source).rgb, read_image(data / "style" / f"tar{source.stem[2:]}.png").rgb


def upsampling(arguments) -> None:
    network = random_network(head_std=arguments.head_std)
    variants = [
        (f"LUT {size}^3, smoothness {smoothness:g}", "lut", size, smoothness)
        for size in (17, 33)
        for smoothness in arguments.smoothness
    ] + [
        ("resize output", "output", 33, DEFAULT_SMOOTHNESS),
        ("resize Lab change", "lab-difference", 33, DEFAULT_SMOOTHNESS),
    ]
    rows = {}
    for name, source, reference in _pairs(arguments.data, arguments.limit):
        operators = {
            "random network (local change)": network,
            "Reinhard in Lab (global change)": ReinhardOperator(source, reference),
        }
        for operator_name, operator in operators.items():
            truth = ColorTransfer(model=operator, max_side=max(source.shape), upsampling="output")(
                source, reference
            ).image
            truth_row = rows.setdefault((operator_name, "-", "truth (full resolution)"), [])
            truth_row.append((PSNR_CAP, gradient_ssim(truth, source), abs_change(truth, source), 0.0))
            for working in arguments.sizes:
                for label, mode, lut_size, smoothness in variants:
                    engine = ColorTransfer(
                        model=operator, max_side=working, upsampling=mode, lut_size=lut_size, lut_smoothness=smoothness
                    )
                    clock = time.perf_counter()
                    image = engine(source, reference).image
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
    from histocolor.data.graded import build_graded_set, build_view_set
    from histocolor.data.photos import list_photos
    from histocolor.train import TrainConfig

    held_out = set(TrainConfig.from_file(arguments.holdout_from).holdout)
    photos = [p for p in list_photos(arguments.photos) if p.name in held_out]
    build = build_view_set if arguments.kind == "view" else build_graded_set
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
    from dataclasses import replace

    from histocolor.model import from_pretrained

    base = from_pretrained(arguments.like).config if arguments.like else AnalogyConfig()
    alignment = replace(base.alignment, method=arguments.method, everywhere=True)
    # A fresh network: its residual heads (CTN) or basis LUTs (LUT head) start at zero.
    model = HistogramAnalogy(replace(base, alignment=alignment))
    model.save_pretrained(arguments.out)
    print(arguments.out)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(prog="python -m histocolor.benchmark", description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)
    timing = commands.add_parser("speed", help="stage timings and peak memory of the CLI on large JPEGs")
    timing.add_argument("--megapixels", type=float, nargs="+", default=[12, 24])
    timing.add_argument(
        "--photo", type=Path, default=DEFAULT_PHOTO if DEFAULT_PHOTO.exists() else SAMPLES / "source.jpg"
    )
    timing.add_argument("--repeat", type=int, default=5)
    upsample = commands.add_parser("upsampling", help="LUT vs resized output vs resized Lab change on dpst-dev")
    upsample.add_argument("--data", type=Path, default=DEFAULT_DPST)
    upsample.add_argument("--sizes", type=int, nargs="+", default=[256, 384, 512])
    upsample.add_argument("--limit", type=int, default=None, help="only the first N pairs")
    upsample.add_argument("--head-std", type=float, default=0.2, help="size of the random network's change")
    upsample.add_argument("--smoothness", type=float, nargs="+", default=[DEFAULT_SMOOTHNESS], help="LUT fit penalties")
    graded = commands.add_parser("graded-set", help="build the held-out graded evaluation set (evaluation styles)")
    graded.add_argument("--photos", type=Path, nargs="+", required=True, help="folders holding the held-out photos")
    graded.add_argument("--holdout-from", type=Path, required=True, help="training config whose holdout list to use")
    graded.add_argument("--out", type=Path, required=True)
    graded.add_argument("--seed", type=int, default=0)
    graded.add_argument("--kind", choices=["other", "view"], default="other",
                        help="other: reference = another photo under the truth's grade; view: reference = another "
                             "view (crop, mirror, scale) of the truth (the paper's situation)")
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
    aligned.add_argument("--method", choices=["moments", "quantiles", "colour", "sliced"], default="sliced")
    aligned.add_argument("--like", type=Path, default=None, help="take the other settings from these weights")
    aligned.add_argument("--out", type=Path, required=True)
    arguments = parser.parse_args(argv)
    commands = {
        "alignment-only": alignment_only, "speed": speed, "upsampling": upsampling, "graded-set": graded_set,
        "strength-sweep": strength_sweep, "frontier": frontier,
    }
    commands[arguments.command](arguments)


if __name__ == "__main__":
    main()
