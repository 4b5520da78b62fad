"""Benchmark runner: several methods on evaluation sets, a Markdown report and image grids.

A set is either a folder in the deep-photo-styletransfer layout (``input/inN.png``,
``style/tarN.png``, optional ``segmentation/inN.png`` and ``tarN.png``) or a CSV with the
columns ``source,reference`` and optionally ``truth,source_mask,reference_mask,
swapped_reference`` (paths relative to the CSV). With a ground truth the report gives PSNR
and mean CIEDE2000; always the sliced Wasserstein distance to the reference in Lab (colour
fidelity), the gradient SSIM to the source (structure kept), the contrast-invariant structure
score to the source (:func:`~histocolor.metrics.structure_score`: asked-for contrast costs
nothing, halos and lost edges do), region-wise SWD when masks are given, and seconds per
megapixel. With truths and ``histmatch`` among the methods, it also counts per method the
pairs whose PSNR beats histogram matching's.

A swapped reference (the reference's photo under another grade), with a ground truth, adds the
reference check:
PSNR and CIEDE2000 to the truth when the swapped reference is used instead (a method that
uses the reference gets worse), and the CIEDE2000 between the source and the result with
reference = source (a method should then leave the source alone).

A source may be a video (.mp4, .mkv, .mov, .webm, .m4v): each method then recolours the
whole clip with one look for the shot (:mod:`histocolor.video`; outputs in ``OUT/videos``),
the scores are taken on a mosaic of frames sampled across the clip, and the temporal
stability is reported: the mean frame-to-frame Lab change of the output minus that of the
input (ΔE, 0 = no flicker added).
"""

import contextlib
import csv
import io
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from histocolor.atomic import atomic_write, make_folders
from histocolor.errors import HistocolorError, NoCommonRegion
from histocolor.imageio import read_image
from histocolor.metrics import (
    ciede2000,
    gradient_ssim,
    psnr,
    region_sliced_wasserstein,
    sliced_wasserstein,
    structure_score,
)
from histocolor.regions import check_labels, load_label_map
from histocolor.engine import METHODS, ColorTransfer
from histocolor.video import VIDEO_EXTENSIONS

# "<method>+regions" runs a method region-wise with the pair's masks.
REGIONS_SUFFIX = "+regions"
# With ground truths, the report counts the pairs where each method's PSNR beats this one's.
WIN_BASELINE = "histmatch"
# The path columns of an evaluation CSV, in EvaluationPair's order.
_CSV_PATHS = ("source", "reference", "truth", "source_mask", "reference_mask", "swapped_reference")
EVALUATION_METHODS = (*METHODS, "identity", *(method + REGIONS_SUFFIX for method in METHODS))
_COLUMNS = (
    ("psnr", "PSNR (dB) ↑"),
    ("ciede2000", "ΔE2000 ↓"),
    ("swd", "SWD to reference ↓"),
    ("region_swd", "region SWD ↓"),
    ("gradient_ssim", "gradient SSIM ↑"),
    ("structure", "structure ↑"),
    ("wins", f"pairs won vs {WIN_BASELINE} (PSNR)"),
    ("seconds_per_megapixel", "s / MP"),
    ("psnr_swapped", "PSNR, swapped reference (dB)"),
    ("ciede2000_swapped", "ΔE2000, swapped reference"),
    ("self_ciede2000", "ΔE2000 to source, reference = source ↓"),
    ("added_flicker", "added flicker (ΔE) ↓"),
)


@dataclass
class EvaluationPair:
    name: str
    source: Path
    reference: Path
    truth: Path | None = None
    source_mask: Path | None = None
    reference_mask: Path | None = None
    swapped_reference: Path | None = None


def load_set(path) -> list[EvaluationPair]:
    """The pairs of a dpst-style folder or of a CSV (see the module docstring)."""
    path = Path(path)
    if path.is_dir():
        sources = sorted((path / "input").glob("in*.*"), key=lambda p: (len(p.stem), p.stem))
        if not sources:
            raise HistocolorError(f"'{path}' has no input/inN images (deep-photo-styletransfer layout)")
        pairs = []
        for source in sources:
            number = source.stem[2:]
            references = list((path / "style").glob(f"tar{number}.*"))
            if not references:
                raise HistocolorError(f"'{path}/style' lacks the reference of {source.name}")
            masks = [path / "segmentation" / f"{stem}.png" for stem in (f"in{number}", f"tar{number}")]
            with_masks = all(mask.is_file() for mask in masks)
            pairs.append(
                EvaluationPair(source.stem, source, references[0], None, *(masks if with_masks else (None, None)))
            )
        return pairs
    base = path.parent
    pairs = []
    for line, row in _read_csv(path):
        cells = {key: (row[key] or "").strip() for key in _CSV_PATHS if key in row}
        for key in ("source", "reference"):
            if not cells[key]:
                raise HistocolorError(f"evaluation set '{path}', line {line}: the {key} cell is empty")
        for key, value in cells.items():
            if value and not (base / value).exists():
                raise HistocolorError(
                    f"evaluation set '{path}', line {line}: the {key} '{base / value}' does not exist"
                )
        pairs.append(EvaluationPair(
            Path(cells["source"]).stem, *(base / cells[key] if cells.get(key) else None for key in _CSV_PATHS)
        ))
    return pairs


def _read_csv(path: Path) -> list[tuple[int, dict]]:
    """The rows of an evaluation CSV, each with its line number; text that is not UTF-8, a NUL
    byte or a row whose cells do not match the header is an error naming the line."""
    try:
        data = path.read_bytes()
    except OSError as error:
        raise HistocolorError(f"cannot read evaluation set '{path}': {error.strerror or error}") from None
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as error:
        line = data[: error.start].count(b"\n") + 1
        raise HistocolorError(f"evaluation set '{path}', line {line}: not UTF-8 text (save the CSV as UTF-8)") from None
    if "\0" in text:
        line = text[: text.index("\0")].count("\n") + 1
        raise HistocolorError(f"evaluation set '{path}', line {line}: a NUL byte (is it a text file?)")
    reader = csv.DictReader(io.StringIO(text, newline=""))
    try:
        rows = [(reader.line_num, row) for row in reader]
    except csv.Error as error:
        raise HistocolorError(f"evaluation set '{path}', line {reader.line_num}: {error}") from None
    header = reader.fieldnames or []
    if not rows or not {"source", "reference"} <= set(header):
        raise HistocolorError(f"evaluation set '{path}' needs a header with source,reference (and rows)")
    for line, row in rows:
        extra = [cell for cell in row.get(None, []) if cell.strip()]
        given = sum(value is not None for key, value in row.items() if key is not None)
        if given < len(header) or extra:
            raise HistocolorError(
                f"evaluation set '{path}', line {line}: {given + len(extra)} cell(s), the header has {len(header)}"
            )
    return rows


def _score(pair: EvaluationPair, result, source, reference, truth, seconds_per_megapixel) -> dict:
    scores = {
        "swd": sliced_wasserstein(result, reference),
        "gradient_ssim": gradient_ssim(result, source),
        "structure": structure_score(result, source),
        "seconds_per_megapixel": seconds_per_megapixel,
    }
    if truth is not None:
        if truth.shape != result.shape:
            raise HistocolorError(f"ground truth '{pair.truth}' is {truth.shape[:2]}, the source {source.shape[:2]}")
        scores["psnr"] = min(psnr(result, truth), 100.0)
        scores["ciede2000"] = ciede2000(result, truth)
    if pair.source_mask is not None and pair.reference_mask is not None:
        source_labels = check_labels(load_label_map(pair.source_mask), source.shape, "source")
        reference_labels = check_labels(load_label_map(pair.reference_mask), reference.shape, "reference")
        scores["region_swd"] = region_sliced_wasserstein(result, reference, source_labels, reference_labels)
    return scores


def _reference_check(pair: EvaluationPair, engine, source, truth) -> dict:
    """Scores with the swapped reference, and the change made when reference = source."""
    if pair.swapped_reference is None or truth is None:
        return {}
    swapped = source if engine is None else engine(source, read_image(pair.swapped_reference).rgb).image
    unchanged = source if engine is None else engine(source, source).image
    return {
        "psnr_swapped": min(psnr(swapped, truth), 100.0),
        "ciede2000_swapped": ciede2000(swapped, truth),
        "self_ciede2000": ciede2000(unchanged, source),
    }


@dataclass
class _Contender:
    """A method under evaluation, built once: its name, its engine (None: identity, the source
    itself) and whether it runs by regions (a ``+regions`` name)."""

    name: str
    engine: ColorTransfer | None
    by_regions: bool

    def run(self, pair: EvaluationPair, source, reference, segmented=None):
        """The result image, and what the reference shares with the source when the look was fitted on it.

        ``segmented``: automatic (source, reference) labels for a by-regions method, instead of the masks.
        """
        if self.engine is None:
            return source, None
        if not self.by_regions:
            result = self.engine(source, reference)
        else:
            labels = segmented if segmented is not None else self._masks(pair)
            result = self.engine(source, reference, source_labels=labels[0], reference_labels=labels[1])
        return result.image, result.shared_pixels

    def run_video(self, pair: EvaluationPair, reference, output: Path, source_change: float, written: "_Written"):
        """Recolour a video pair into ``output``: (frame mosaic of the result, added flicker, seconds
        recolouring took). The folders made and the video are recorded in ``written``.

        ``source_change`` is the input's :func:`~histocolor.video.frame_change`, measured once per pair.
        """
        from histocolor.video import added_flicker, frame_mosaic, recolour_video

        if self.by_regions:
            raise HistocolorError(f"{self.name} needs masks, and video pair '{pair.name}' has none")
        if self.engine is None:
            return frame_mosaic(pair.source), 0.0, 0.0
        written.folder(output.parent)
        clock = time.perf_counter()
        recolour_video(pair.source, reference, output, self.engine)
        seconds = time.perf_counter() - clock
        written.add(output)
        return frame_mosaic(output), added_flicker(source_change, output), seconds

    def _masks(self, pair: EvaluationPair):
        if pair.source_mask is None or pair.reference_mask is None:
            raise HistocolorError(f"{self.name} needs masks, and pair '{pair.name}' has none")
        return pair.source_mask, pair.reference_mask


def _contenders(methods, weights, device, max_side, match="auto") -> list[_Contender]:
    """One contender per method name; "analogy" and "analogy+regions" share one loaded model."""
    options = {"device": device, "match": match, **({"max_side": max_side} if max_side else {})}
    engines = {}
    contenders = []
    for method in methods:
        base = method.removesuffix(REGIONS_SUFFIX)
        if base not in engines:
            engines[base] = None if base == "identity" else ColorTransfer(base, weights=weights, **options)
        contenders.append(_Contender(method, engines[base], method != base))
    return contenders


def evaluate(
    sets: dict, methods, out, *, weights=None, device="auto", max_side=None, limit=None, grid_rows=6, segmenter=None,
    match="auto", overwrite=False,
):
    """Run ``methods`` on every set (``{name: path}``); write ``report.md`` and grids into ``out``.

    With ``segmenter`` (a name), the ``+regions`` methods use its automatic labels instead of the
    pairs' masks; the region SWD is still measured on the masks, so the score says what
    automatic segmentation costs. ``match`` is the engines' shared-pixels mode (see
    :class:`~histocolor.engine.ColorTransfer`); the report says on which pairs the look was
    fitted on shared pixels.

    Before any work the methods, ``limit`` (at least 1 pair, or None: all), the sets and ``out``
    are checked: ``out`` must be a folder or not exist yet, and files of an earlier report there
    are replaced only with ``overwrite``. Files are written atomically; if the run fails, Ctrl-C
    included, the files it wrote and the folders it made are removed again.

    Returns ``{set name: {method: mean scores}}``.
    """
    unknown = [m for m in methods if m not in EVALUATION_METHODS]
    if unknown:
        raise HistocolorError(f"unknown method(s) {', '.join(unknown)}: choose from {', '.join(EVALUATION_METHODS)}")
    if limit is not None and limit < 1:
        raise HistocolorError(f"the limit (--limit) must be at least 1 pair, got {limit}")
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise HistocolorError(f"the report folder '{out}' is a file: name a folder")
    loaded = {set_name: load_set(set_path)[:limit] for set_name, set_path in sets.items()}
    if not overwrite:
        for path in _planned_outputs(out, loaded, methods, grid_rows):
            if path.exists() or path.is_symlink():
                raise HistocolorError(f"'{path}' exists: add --overwrite to replace it")
    contenders = _contenders(methods, weights, device, max_side, match)
    if segmenter is not None:
        from histocolor.segment import get_segmenter

        segmenter = get_segmenter(segmenter, device)
    written = _Written()
    with written.undone_on_failure():
        written.folder(out)
        summary, sections = {}, []
        for set_name, set_path in sets.items():
            pairs = loaded[set_name]
            scores = {method: [] for method in methods}
            global_runs: dict[str, int] = {}
            matched: dict[str, list[str]] = {}
            grid = []
            for index, pair in enumerate(pairs):
                video = _is_video(pair)
                if video:
                    from histocolor.video import frame_change, frame_mosaic, read_frames, video_megapixels

                    if pair.truth is not None or pair.source_mask is not None:
                        raise HistocolorError(f"video pair '{pair.name}': truth images and masks are for image pairs")
                    source, megapixels = frame_mosaic(pair.source), video_megapixels(pair.source)
                    source_change = frame_change(read_frames(pair.source))
                else:
                    source = read_image(pair.source).rgb
                    megapixels = source.shape[0] * source.shape[1] / 1e6
                reference = read_image(pair.reference).rgb
                truth = read_image(pair.truth).rgb if pair.truth else None
                row = [source, reference] + ([truth] if truth is not None else [])
                segmented = None
                if segmenter is not None and not video and any(c.by_regions for c in contenders):
                    segmented = segmenter.segment_pair(source, reference)[:2]
                for contender in contenders:
                    clock = time.perf_counter()
                    shared = None
                    try:
                        if video:
                            result, flicker, seconds = contender.run_video(
                                pair, reference, _video_output(out, set_name, pair, contender.name), source_change,
                                written,
                            )
                        else:
                            result, shared = contender.run(pair, source, reference, segmented)
                    except NoCommonRegion:  # nothing to match: the transfer is the global one
                        global_runs[contender.name] = global_runs.get(contender.name, 0) + 1
                        result = contender.engine(source, reference).image
                    if not video:
                        seconds = time.perf_counter() - clock
                    if video:
                        check = {"added_flicker": flicker}
                    elif contender.by_regions:
                        check = {}
                    else:
                        check = _reference_check(pair, contender.engine, source, truth)
                    scores[contender.name].append(
                        _score(pair, result, source, reference, truth, seconds / megapixels) | check)
                    row.append(result)
                    if shared is not None:
                        matched.setdefault(contender.name, []).append(f"{pair.name} ({shared.describe()})")
                if index < grid_rows:
                    grid.append(row)
            summary[set_name] = {method: _means(values) for method, values in scores.items()}
            for method, wins in _wins(scores).items():
                summary[set_name][method]["wins"] = wins
            columns = ["source", "reference"] + (["truth"] if pairs and pairs[0].truth else []) + list(methods)
            grid_name = _grid_name(set_name) if grid else None
            if grid_name is not None:
                _write_grid(out / grid_name, grid, columns)
                written.add(out / grid_name)
            note = "" if segmenter is None else (
                f" The +regions methods use regions from the `{segmenter.name}` segmenter."
            )
            if global_runs:
                count = max(global_runs.values())
                note += f" {count} pair(s) had no region in common; the +regions methods ran globally there."
            for name, found in matched.items():
                note += (f" {name} fitted the look on shared pixels for {len(found)} of {len(pairs)} pairs: "
                         f"{'; '.join(found)}.")
            sections.append(_section(set_name, set_path, len(pairs), summary[set_name], grid_name, columns, note))
        with atomic_write(out / "report.md") as stream:
            stream.write(("# Evaluation\n\n" + "\n".join(sections)).encode())
    return summary


def _is_video(pair: EvaluationPair) -> bool:
    return pair.source.suffix.lower() in VIDEO_EXTENSIONS


def _grid_name(set_name: str) -> str:
    return f"{set_name}-grid.png"


def _video_output(out: Path, set_name: str, pair: EvaluationPair, method: str) -> Path:
    """Where a video pair's result by ``method`` goes."""
    return out / "videos" / set_name / f"{pair.name}-{method}.mp4"


def _planned_outputs(out: Path, loaded: dict, methods, grid_rows: int) -> list[Path]:
    """The files a run writes: the report, a grid per set (sets have pairs), a video per video
    pair and method that recolours (identity keeps the source; a ``+regions`` method refuses videos)."""
    recolouring = [m for m in methods if m != "identity" and not m.endswith(REGIONS_SUFFIX)]
    paths = [out / "report.md"] + ([out / _grid_name(name) for name in loaded] if grid_rows > 0 else [])
    for set_name, pairs in loaded.items():
        paths += [_video_output(out, set_name, pair, m) for pair in pairs if _is_video(pair) for m in recolouring]
    return paths


class _Written:
    """The files a run has written and the folders it has made, removed again if it fails."""

    def __init__(self):
        self.files: list[Path] = []
        self.folders: list[Path] = []

    def folder(self, folder: Path) -> None:
        """Make ``folder`` and its missing parents, remembering those made."""
        try:
            self.folders += make_folders(folder)
        except OSError as error:
            raise HistocolorError(f"cannot make the folder '{folder}': {error.strerror or error}") from None

    def add(self, path: Path) -> None:
        """Remember a file written (completely: files are written atomically)."""
        self.files.append(path)

    @contextlib.contextmanager
    def undone_on_failure(self):
        """On any failure in the block, Ctrl-C included, remove the files written, then the folders
        made (each only if empty: a file someone else put there meanwhile stays)."""
        try:
            yield
        except BaseException:
            for path in reversed(self.files):
                with contextlib.suppress(OSError):
                    path.unlink()
            for folder in reversed(self.folders):
                with contextlib.suppress(OSError):
                    folder.rmdir()
            raise


def _wins(scores: dict) -> dict:
    """``{method: pairs whose PSNR beats WIN_BASELINE's}``, when the baseline ran against truths."""
    baseline = [row.get("psnr") for row in scores.get(WIN_BASELINE, [])]
    if not baseline or None in baseline:
        return {}
    return {method: float(sum(row["psnr"] > theirs for row, theirs in zip(rows, baseline)))
            for method, rows in scores.items() if method != WIN_BASELINE and all("psnr" in row for row in rows)}


def _means(values: list[dict]) -> dict:
    keys = {key for scores in values for key in scores}
    means = {}
    for key in keys:
        present = [scores[key] for scores in values if scores.get(key) is not None]
        means[key] = float(np.mean(present)) if present else None
    return means


def _section(name, path, count, means, grid_name, columns, note="") -> str:
    shown = [(key, title) for key, title in _COLUMNS if any(m.get(key) is not None for m in means.values())]
    lines = [f"## {name}", "", f"{count} pairs from `{path}`.{note}", ""]
    lines.append("| method | " + " | ".join(title for _, title in shown) + " |")
    lines.append("| --- |" + " --- |" * len(shown))
    for method, values in means.items():
        cells = ["-" if values.get(key) is None else f"{values[key]:.4g}" for key, _ in shown]
        lines.append(f"| {method} | " + " | ".join(cells) + " |")
    lines.append("")
    if grid_name is not None:  # only a grid that was written
        lines += [f"![{name}]({grid_name}) (columns: {', '.join(columns)})", ""]
    return "\n".join(lines)


def _write_grid(path: Path, rows, columns, cell: int = 160) -> None:
    """Thumbnails, one row per pair, one column per image kind."""
    if not rows:
        return
    canvas = Image.new("RGB", (cell * len(columns), cell * len(rows)), "white")
    for y, row in enumerate(rows):
        for x, image in enumerate(row):
            thumbnail = Image.fromarray(
                image[..., :3] if image.dtype == np.uint8 else (image[..., :3] // 257).astype(np.uint8)
            )
            thumbnail.thumbnail((cell, cell))
            canvas.paste(
                thumbnail, (x * cell + (cell - thumbnail.width) // 2, y * cell + (cell - thumbnail.height) // 2)
            )
    with atomic_write(path, suffix=".png") as stream:
        canvas.save(stream, format="PNG")
