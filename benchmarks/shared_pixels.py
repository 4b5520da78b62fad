"""Same-photo references: how well the default recovers an edit from an edited copy, and false matches.

Developer tool, not installed with the package; it uses histocolor's public API only.

    python benchmarks/shared_pixels.py views [--data ../shared/data/real-retouch] [--grid /tmp/fivek-grid.png]
    python benchmarks/shared_pixels.py false-matches [--photos ../shared/data/photos] [--dpst ../shared/data/dpst-dev]
    python benchmarks/shared_pixels.py speed [--megapixels 12] [--repeat 5]
    python benchmarks/shared_pixels.py grid [--out docs/shared-pixels-grid.png]

``views`` builds, for every input -> expert pair of the folder, references that are views of
the expert render (a mirrored 80 % crop, a 70 % crop rotated 3-8°, half the size, a
perspective tilt, JPEG quality 60, a window sharing 40-60 % of the source, and the mirrored
crop with a foreign object pasted over a tenth of it), recolours the input with each method
(the default with the match on and off, histogram matching, ...) and scores the result
against the expert render itself (PSNR, ΔE2000). The ceiling is a 3D LUT fitted on the
input -> truth pixels themselves. ``false-matches`` counts references the detector calls the
same photo where none is: dpst-dev's pairs, every ordered pair of a photo folder, and the two
halves of each photo. ``speed`` times whole ``histocolor transfer`` commands on a 12 MP pair.
``grid`` draws the docs' grid on photos the project may show (scikit-image and scikit-learn
samples, edited here): the FiveK photos must never enter the project, its docs included.
"""

import argparse
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np

from histocolor.colormap import LutMap
from histocolor.dtypes import to_uint
from histocolor.engine import ColorTransfer
from histocolor.imageio import read_image, write_image
from histocolor.lut import fit_lut
from histocolor.metrics import ciede2000, psnr
from histocolor.shared_pixels import best_registration, find_shared_pixels, is_same_photo

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared"
VIEWS = ("mirrored crop", "rotated crop", "half size", "perspective", "jpeg 60", "partial window")


def _crop(image: np.ndarray, share: float, rng) -> np.ndarray:
    height, width = image.shape[:2]
    h, w = round(height * share), round(width * share)
    top, left = rng.integers(0, height - h + 1), rng.integers(0, width - w + 1)
    return image[top : top + h, left : left + w]


def _rotated_crop(image, rng) -> np.ndarray:
    height, width = image.shape[:2]
    angle = float(rng.uniform(3, 8)) * rng.choice([-1, 1])
    matrix = cv2.getRotationMatrix2D((width / 2, height / 2), angle, 1.0)
    rotated = cv2.warpAffine(image, matrix, (width, height), flags=cv2.INTER_LINEAR)
    h, w = round(height * 0.7), round(width * 0.7)
    top, left = (height - h) // 2, (width - w) // 2
    return rotated[top : top + h, left : left + w]


def _perspective(image, rng) -> np.ndarray:
    height, width = image.shape[:2]
    inset = float(rng.uniform(0.08, 0.15)) * width
    corners = np.float32([[0, 0], [width, 0], [width, height], [0, height]])
    tilted = np.float32([[inset, 0], [width - inset, 0], [width, height], [0, height]])
    warped = cv2.warpPerspective(image, cv2.getPerspectiveTransform(corners, tilted), (width, height))
    top, left = round(height * 0.05), round(width * 0.17)  # inside the trapezoid: no black corners
    return warped[top : height - top, left : width - left]


def _jpeg(image, quality: int = 60) -> np.ndarray:
    ok, data = cv2.imencode(".jpg", cv2.cvtColor(image, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, quality])
    return cv2.cvtColor(cv2.imdecode(data, cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB)


def _window(image, rng) -> np.ndarray:
    height, width = image.shape[:2]
    share = float(rng.uniform(0.4, 0.6))
    width_share = float(rng.uniform(max(share, 0.5), 0.85))
    return _crop_shares(image, width_share, share / width_share, rng)


def _crop_shares(image, width_share, height_share, rng):
    height, width = image.shape[:2]
    h, w = round(height * min(1.0, height_share)), round(width * width_share)
    top, left = rng.integers(0, height - h + 1), rng.integers(0, width - w + 1)
    return image[top : top + h, left : left + w]


def views(truth: np.ndarray, rng) -> dict[str, np.ndarray]:
    """The references of one expert render, by view name."""
    height, width = truth.shape[:2]
    return {
        "mirrored crop": np.ascontiguousarray(_crop(truth, 0.8, rng)[:, ::-1]),
        "rotated crop": _rotated_crop(truth, rng),
        "half size": cv2.resize(truth, (width // 2, height // 2), interpolation=cv2.INTER_AREA),
        "perspective": _perspective(truth, rng),
        "jpeg 60": _jpeg(truth),
        "partial window": _window(truth, rng),
    }


def paste_object(reference: np.ndarray, foreign: np.ndarray, share: float, rng) -> np.ndarray:
    """``reference`` with a patch of ``foreign`` pasted over ``share`` of its area."""
    height, width = reference.shape[:2]
    side = int(np.sqrt(share * height * width))
    patch = cv2.resize(foreign, (side, side), interpolation=cv2.INTER_AREA)
    top, left = rng.integers(0, height - side), rng.integers(0, width - side)
    pasted = reference.copy()
    pasted[top : top + side, left : left + side] = patch
    return pasted


def ceiling(source: np.ndarray, truth: np.ndarray, size: int = 17) -> np.ndarray:
    """The truth reproduced by a LUT fitted on the source -> truth pixels themselves."""
    lut = fit_lut(source.reshape(-1, 3) / 255.0, truth.reshape(-1, 3) / 255.0, size)
    return LutMap(lut).apply(source)


def _pairs(data: Path):
    for path in sorted((data / "input").glob("a*.png")):
        yield path.stem, read_image(path).rgb, read_image(data / "expert" / path.name).rgb


def run_views(arguments) -> None:
    rng = np.random.default_rng(arguments.seed)
    engines = {"default": ColorTransfer(), "default, match off": ColorTransfer(match="off")}
    for method in arguments.classical:
        engines[method] = ColorTransfer(method, match="off")
    foreign = read_image(SHARED / "data" / "photos" / "colorfulcups.jpg").rgb
    table: dict[str, dict[str, list]] = {}
    notes, grid = [], []
    for name, source, truth in _pairs(arguments.data):
        references = views(truth, rng)
        references["pasted object"] = paste_object(references["mirrored crop"], foreign, 0.1, rng)
        best = ceiling(source, truth)
        table.setdefault("ceiling", {}).setdefault("all", []).append((psnr(best, truth), ciede2000(best, truth)))
        for view, reference in references.items():
            for label, engine in engines.items():
                result = engine(source, reference)
                score = (psnr(result.image, truth), ciede2000(result.image, truth))
                table.setdefault(label, {}).setdefault(view, []).append(score)
                if label == "default":
                    shared = result.shared_pixels or best_registration(source, reference)
                    found = "no sane homography" if shared is None else (
                        f"{shared.describe() if result.shared_pixels else 'NOT MATCHED'}, {shared.inliers} inliers, "
                        f"agreement {shared.agreement:.2f}")
                    notes.append(f"{name} {view}: {found} ({score[0]:.2f} dB)")
                    if view == "mirrored crop":
                        grid.append([source, reference, engines["default, match off"](source, reference).image,
                                     result.image, truth])
        print(f"{name} done", file=sys.stderr, flush=True)
    print("\n".join(notes))
    columns = [*VIEWS, "pasted object"]
    print("\n| method | " + " | ".join(columns) + " | mean of the six views |")
    print("|---|" + "---|" * (len(columns) + 1))
    for label, by_view in table.items():
        if label == "ceiling":
            continue
        cells = [f"{np.mean([s[0] for s in by_view[v]]):.2f} / {np.mean([s[1] for s in by_view[v]]):.2f}"
                 for v in columns]
        six = [s for v in VIEWS for s in by_view[v]]
        cells.append(f"**{np.mean([s[0] for s in six]):.2f} / {np.mean([s[1] for s in six]):.2f}**")
        print(f"| {label} | " + " | ".join(cells) + " |")
    top = table["ceiling"]["all"]
    print(f"| ceiling (17³ LUT fitted on source -> truth) | {np.mean([s[0] for s in top]):.2f} / "
          f"{np.mean([s[1] for s in top]):.2f} (every view) |")
    if arguments.grid:
        _write_grid(arguments.grid, grid[: arguments.grid_rows])
        print(f"grid: {arguments.grid}", file=sys.stderr)


def _write_grid(path: Path, rows, cell: int = 200) -> None:
    """Rows of images side by side, each fitted into a ``cell`` square."""
    canvas = np.full((cell * len(rows), cell * len(rows[0]), 3), 255, np.uint8)
    for r, row in enumerate(rows):
        for c, image in enumerate(row):
            height, width = image.shape[:2]
            scale = cell / max(height, width)
            small = cv2.resize(image, (max(1, round(width * scale)), max(1, round(height * scale))),
                               interpolation=cv2.INTER_AREA)
            top, left = r * cell + (cell - small.shape[0]) // 2, c * cell + (cell - small.shape[1]) // 2
            canvas[top : top + small.shape[0], left : left + small.shape[1]] = small
    write_image(path, canvas)


def expert_like_edit(rgb: np.ndarray, rng) -> np.ndarray:
    """A global edit of the kind an expert makes: white balance, exposure, an S-curve, saturation."""
    unit = rgb.astype(np.float32) / 255.0
    unit = unit * np.float32(2.0 ** rng.uniform(-0.5, 0.5)) * rng.uniform(0.85, 1.15, 3).astype(np.float32)
    unit = np.clip(unit, 0, 1)
    contrast = rng.uniform(1.0, 1.6)
    curved = 0.5 + 0.5 * np.tanh(contrast * 2 * (unit - 0.5)) / np.tanh(contrast)
    grey = curved.mean(-1, keepdims=True)
    edited = grey + rng.uniform(0.8, 1.4) * (curved - grey)
    return to_uint(edited, np.uint8)


def run_grid(arguments) -> None:
    """The docs' grid, on photos the project may show: source | reference | default before (the
    network, match off) | default after | truth, one view kind per row, and each row's PSNR."""
    rng = np.random.default_rng(arguments.seed)
    before, after = ColorTransfer(match="off"), ColorTransfer()
    rows = []
    print("| photo | reference | before (dB) | after (dB) | found |")
    print("|---|---|---|---|---|")
    for path, view in zip(arguments.photos, VIEWS):
        source = read_image(path).rgb
        truth = expert_like_edit(source, rng)
        reference = views(truth, rng)[view]
        old, new = before(source, reference), after(source, reference)
        found = new.shared_pixels.describe() if new.shared_pixels else "nothing shared"
        print(f"| {path.name} | {view} | {psnr(old.image, truth):.2f} | {psnr(new.image, truth):.2f} | {found} |")
        rows.append([source, reference, old.image, new.image, truth])
    _write_grid(arguments.out, rows)
    print(f"grid: {arguments.out}", file=sys.stderr)


CROP_PHOTOS = ("bridge-by-sander_klootwijk.jpg", "aqua.jpg", "wood.jpg", "kite.jpg", "storm.jpg", "path.jpg",
               "dune.jpg", "raindrops.jpg")


def _crop_placements(photos: Path) -> str:
    """Edited centre crops at 1:1 (50 % and 35 % of each side: 25 % and 12 % of the source, below
    the third the issue asks for), of photos with self-similar textures: placed right, wrong, or
    not matched (the network then runs)."""
    counts, wrong = {"right": 0, "wrong": 0, "not matched": 0}, []
    for name in CROP_PHOTOS:
        source = read_image(photos / name).rgb
        height, width = source.shape[:2]
        edited = _graded(source)
        for share in (0.5, 0.35):
            h, w = int(height * share), int(width * share)
            top, left = (height - h) // 2, (width - w) // 2
            found = find_shared_pixels(source, edited[top : top + h, left : left + w])
            if found is None:
                counts["not matched"] += 1
                continue
            points = np.array([[left + w / 4, top + h / 4, 1.0], [left + 3 * w / 4, top + 3 * h / 4, 1.0]])
            placed = points @ found.homography.T
            error = np.abs(placed[:, :2] / placed[:, 2:] - (points[:, :2] - [left, top])).max()
            counts["right" if error < 5 else "wrong"] += 1
            if error >= 5:
                wrong.append(f"{name} {share:.0%}: {found.inliers} inliers, agreement {found.agreement:.2f}")
    return f"small 1:1 crops ({2 * len(CROP_PHOTOS)}): {counts}" + "".join(f"\n  placed wrong: {w}" for w in wrong)


def run_false_matches(arguments) -> None:
    """Every pair that must share nothing: its best registration's evidence, and the decision on it."""
    candidates, started = [], time.perf_counter()

    def check(label, source, reference):
        candidate = best_registration(source, reference)
        candidates.append((label, candidate))

    dpst = arguments.dpst
    for path in sorted((dpst / "input").glob("*")):
        style = next((dpst / "style").glob(path.stem.replace("in", "tar") + ".*"), None)
        if style is not None:
            check(f"dpst-dev {path.name} <- {style.name}", read_image(path).rgb, read_image(style).rgb)
    photos = [(p.name, read_image(p).rgb) for p in sorted(arguments.photos.glob("*.jpg"))]
    for name, image in photos:
        half = image.shape[1] // 2
        check(f"halves of {name}", image[:, :half], image[:, half:])
    for first_name, first in photos:
        for second_name, second in photos:
            if first_name != second_name:
                check(f"{first_name} <- {second_name}", first, second)
    seconds = time.perf_counter() - started
    placements = _crop_placements(arguments.photos)
    print(f"{len(candidates)} pairs checked in {seconds:.0f} s ({1000 * seconds / len(candidates):.0f} ms a pair)")
    found = [(label, c) for label, c in candidates if c is not None and is_same_photo(c)]
    print(f"{len(found)} called the same photo")
    print(placements)
    for label, c in found:
        print(f"  {label}: {c.describe()}, {c.inliers} inliers, agreement {c.agreement:.2f}")
    evidence = [c for _, c in candidates if c is not None]
    print(f"no sane homography at all: {len(candidates) - len(evidence)}")
    if evidence:
        inliers = np.array([c.inliers for c in evidence])
        agreement = np.array([c.agreement for c in evidence])
        print(f"inliers of the best hypothesis: median {np.median(inliers):.0f}, 99th percentile "
              f"{np.percentile(inliers, 99):.0f}, max {inliers.max()}")
        print(f"agreement: median {np.median(agreement):.2f}, 99th percentile {np.percentile(agreement, 99):.2f}, "
              f"max {agreement.max():.2f}")
        for key, what in ((lambda c: c.inliers, "most inliers"), (lambda c: c.agreement, "most agreement")):
            strongest = sorted(((label, c) for label, c in candidates if c is not None), key=lambda item: key(item[1]))
            for label, c in strongest[-5:]:
                print(f"  {what}: {label}: {c.inliers} inliers, agreement {c.agreement:.2f}, coverage {c.coverage:.2f}")


def _graded(rgb: np.ndarray) -> np.ndarray:
    """A global edit of a photo (tone curves per channel, more contrast): what an expert export looks like."""
    unit = rgb.astype(np.float32) / 255.0
    curved = np.stack([unit[..., 0] ** 0.8, unit[..., 1] ** 0.95, unit[..., 2] ** 1.2], axis=-1)
    return to_uint(0.5 + 1.15 * (curved - 0.5), np.uint8)


def _timed(command: list, timings: bool = True) -> tuple[float, dict, str]:
    """Wall seconds of one whole ``histocolor`` process, its stage timings and its relevance note."""
    started = time.perf_counter()
    done = subprocess.run([sys.executable, "-m", "histocolor", *command, *(["--timings"] if timings else [])],
                          capture_output=True, text=True, check=True)
    seconds = time.perf_counter() - started
    stages = {name: float(value) for name, value in re.findall(r"(\w+) ([\d.]+)s", done.stderr)}
    found = re.search(r"\((same photo[^)]*)\)", done.stderr)
    return seconds, stages, found.group(1) if found else "nothing shared"


def run_speed(arguments) -> None:
    """Whole ``histocolor transfer`` commands on a 12 MP photo, match on (default) and off, in turns:
    an unrelated 12 MP reference, and an edited copy (graded, mirrored 80 % crop) of the photo."""
    photo = read_image(arguments.photo).rgb
    scale = np.sqrt(arguments.megapixels * 1e6 / (photo.shape[0] * photo.shape[1]))
    size = (round(photo.shape[1] * scale), round(photo.shape[0] * scale))
    large = cv2.resize(photo, size, interpolation=cv2.INTER_LANCZOS4)
    other = read_image(arguments.other).rgb
    other = cv2.resize(other, size, interpolation=cv2.INTER_LANCZOS4)
    height, width = large.shape[:2]
    copy = np.ascontiguousarray(_graded(large)[height // 10 : height - height // 10, width - width // 10 : width // 10 : -1])
    with tempfile.TemporaryDirectory() as folder:
        folder = Path(folder)
        for name, image in (("photo", large), ("unrelated", other), ("copy", copy)):
            write_image(folder / f"{name}.jpg", image, quality=92)
        runs = {}
        cases = [(reference, match) for reference in ("unrelated", "copy") for match in ("off", "auto")]
        for round_ in range(arguments.repeat + 1):  # the first round warms the caches up, unrecorded
            for reference, match in cases[round_ % len(cases):] + cases[: round_ % len(cases)]:
                result = _timed(["transfer", str(folder / "photo.jpg"), str(folder / f"{reference}.jpg"), "-o",
                                 str(folder / "out.jpg"), "--overwrite", "--match", match])
                if round_:
                    runs.setdefault((reference, match), []).append(result)
    print(f"{width}x{height} ({arguments.megapixels} MP), median of {arguments.repeat} runs, whole processes")
    print("| reference | --match | seconds | match | match_fit | network | lut_fit | apply | found |")
    print("|---|---|---|---|---|---|---|---|---|")
    for (reference, match), results in runs.items():
        stage = lambda name, results=results: f"{statistics.median(r[1].get(name, 0.0) for r in results):.3f}"  # noqa: E731
        print(f"| {reference} | {match} | {statistics.median(r[0] for r in results):.2f} | {stage('match')} | "
              f"{stage('match_fit')} | {stage('network')} | {stage('lut_fit')} | {stage('apply')} | {results[0][2]} |")


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = parser.add_subparsers(dest="command", required=True)
    view = commands.add_parser("views", help="recover the expert render from views of it (PSNR / ΔE2000)")
    view.add_argument("--data", type=Path, default=SHARED / "data" / "real-retouch")
    view.add_argument("--classical", nargs="*", default=["histmatch", "mkl"])
    view.add_argument("--seed", type=int, default=38)
    view.add_argument("--grid", type=Path, help="write a grid: source | reference | match off | default | truth "
                      "(outside the project: FiveK photos never enter it)")
    view.add_argument("--grid-rows", type=int, default=6)
    false = commands.add_parser("false-matches", help="references called the same photo where none is")
    false.add_argument("--photos", type=Path, default=SHARED / "data" / "photos")
    false.add_argument("--dpst", type=Path, default=SHARED / "data" / "dpst-dev")
    grid = commands.add_parser("grid", help="the docs' grid on photos the project may show")
    grid.add_argument("--photos", type=Path, nargs=6, default=[SHARED / "data" / "photos" / name for name in (
        "astronaut.jpg", "chelsea.jpg", "coffee.jpg", "rocket.jpg", "china.jpg", "flower.jpg")])
    grid.add_argument("--seed", type=int, default=38)
    grid.add_argument("--out", type=Path, default=ROOT / "docs" / "shared-pixels-grid.png")
    fast = commands.add_parser("speed", help="whole 12 MP transfer commands, match on and off")
    fast.add_argument("--photo", type=Path, default=SHARED / "data" / "photos" / "picosdeeuropa-by-aitzol_berasategi.jpg")
    fast.add_argument("--other", type=Path, default=ROOT / "resources" / "samples" / "reference.jpg")
    fast.add_argument("--megapixels", type=float, default=12.0)
    fast.add_argument("--repeat", type=int, default=5)
    arguments = parser.parse_args(argv)
    {"views": run_views, "false-matches": run_false_matches, "speed": run_speed, "grid": run_grid}[arguments.command](arguments)


if __name__ == "__main__":
    main()
