"""The rows of a batch: pairs CSVs, their outputs checked before any work, and each row's
decode, transfer and encode, for ``histocolor transfer --pairs`` on one machine
(:mod:`histocolor.cli`) and on a Ray cluster (:mod:`histocolor.cluster`) alike.
"""

import csv
import os
import time
from dataclasses import dataclass
from pathlib import Path

from histocolor.errors import HistocolorError, is_out_of_memory

OUT_OF_MEMORY_ADVICE = "out of memory (try a smaller --max-side, or --device cpu)"
CSV_REQUIRED = ("source", "reference", "output")
CSV_MASKS = ("source_mask", "reference_mask")


def _same_file(first, second) -> bool:
    try:
        return os.path.samefile(first, second)
    except OSError:  # either does not exist
        return False


def check_output(output, check, overwrite: bool, *inputs) -> Path:
    """Before any work: ``check(output)`` (its format, a writable place), never an input, never a
    symbolic link, and an existing file only with ``--overwrite``."""
    output = Path(check(output))
    target = output.resolve()
    for given in inputs:
        # The same path, or the same file under another name (a case-insensitive file system, a hard link).
        if given is not None and (Path(given).resolve() == target or _same_file(output, given)):
            raise HistocolorError(f"the output '{output}' is an input file: choose another name")
    if output.is_symlink():
        raise HistocolorError(f"the output '{output}' is a symbolic link: write to a plain path")
    if output.exists() and not overwrite:
        raise HistocolorError(f"'{output}' exists: add --overwrite to replace it")
    return output


@dataclass
class Job:
    """One pair of a transfer: decoded by :func:`decode_job`, transferred, then written by :func:`encode_job`."""

    output: Path
    source: object  # LoadedImage
    reference: object
    masks: tuple
    timings: dict
    found: str | None = None  # what the reference shares with the source, when the look was fitted on it
    look: object = None  # the look fitted on shared pixels while the engine loaded (the single transfer)


def check_job(source, reference, output, masks=(None, None), overwrite: bool = False) -> Path:
    """The checks a pair passes before any work, from its paths alone: all three given, and the
    output's name (never an input, an existing file only with ``overwrite``)."""
    from histocolor.imageio import check_output_path

    if source is None or reference is None or output is None:
        raise HistocolorError("source, reference and output must all be given")
    return check_output(output, check_output_path, overwrite, source, reference, *masks)


def read_job(output: Path, source, reference, masks=(None, None)) -> Job:
    """Decode both images of a checked pair (see :func:`check_job`)."""
    from histocolor.imageio import read_image

    clock = time.perf_counter()
    source_image, reference_image = read_image(source), read_image(reference)
    return Job(output, source_image, reference_image, masks, {"decode": time.perf_counter() - clock})


def decode_job(source, reference, output, masks=(None, None), overwrite: bool = False) -> Job:
    """Check a pair and decode both images (the part a batch runs ahead, in a thread)."""
    return read_job(check_job(source, reference, output, masks, overwrite), source, reference, masks)


def run_engine_batch(engine, jobs: list, strength, region_map=None, segmenter=None) -> list:
    """Segment the jobs without masks (with ``segmenter``) and recolour them all (``engine.batch``):
    per job its result or the exception it raised."""
    pairs, failed = [], {}
    for index, job in enumerate(jobs):
        masks = job.masks
        if segmenter is not None and masks == (None, None):
            clock = time.perf_counter()
            try:
                masks = segmenter.segment_pair(job.source.rgb, job.reference.rgb)[:2]
            except Exception as error:  # noqa: BLE001 - reported per row
                failed[index] = error
            job.timings["segment"] = time.perf_counter() - clock
        pairs.append((job.source, job.reference, *masks))
    todo = [index for index in range(len(jobs)) if index not in failed]
    results = dict(zip(todo, engine.batch([pairs[i] for i in todo], strength=strength, region_map=region_map)))
    for index, job in enumerate(jobs):
        if not isinstance(results.get(index), (BaseException, type(None))):
            job.timings.update(results[index].timings)
            shared = results[index].shared_pixels
            job.found = None if shared is None else shared.describe()
    return [failed[index] if index in failed else results[index] for index in range(len(jobs))]


def matched_look(matcher, job: Job):
    """The whole image's look ``matcher`` (:class:`~histocolor.methods.SharedPixelsMatcher`) fits on
    the pixels the job's reference shares with its source, or None; its stages and what it found
    go into the job."""
    from histocolor.timing import Stopwatch

    clock = Stopwatch()
    look = matcher.look(job.source, job.reference, clock)
    job.timings.update(clock.timings)
    job.found = None if look is None else look.shared_pixels.describe()
    return look


def encode_job(job: Job, result) -> None:
    from histocolor.imageio import write_image

    clock = time.perf_counter()
    image = result.image
    rgb, alpha = (image[..., :3], image[..., 3]) if image.shape[-1] == 4 else (image, None)
    write_image(job.output, rgb, alpha, exif=job.source.exif)  # the result keeps the source's EXIF
    job.timings["encode"] = time.perf_counter() - clock


def read_pairs(path) -> list[dict]:
    """Rows of a pairs CSV, paths resolved against the CSV's folder; empty cells become None.

    Each row also holds ``line``, its line number in the file (for error messages).
    """
    path = Path(path)
    try:
        with open(path, newline="", encoding="utf-8-sig") as stream:
            reader = csv.DictReader(stream)
            header = [name.strip() for name in reader.fieldnames or []]
            rows = []
            for row in reader:
                cells = {key.strip(): (value or "").strip() for key, value in row.items() if isinstance(key, str)}
                rows.append((reader.line_num, cells))
    except (OSError, UnicodeDecodeError, csv.Error) as error:
        raise HistocolorError(f"cannot read pairs file '{path}': {error}") from None
    missing = [name for name in CSV_REQUIRED if name not in header]
    if missing:
        raise HistocolorError(
            f"pairs file '{path}' lacks the column(s) {', '.join(missing)} (header: {','.join(header)})"
        )
    if not rows:
        raise HistocolorError(f"pairs file '{path}' has no rows")
    base = path.parent
    pairs = [
        {
            "line": line,
            **{name: (base / row[name] if row.get(name) else None) for name in (*CSV_REQUIRED, *CSV_MASKS)},
        }
        for line, row in rows
    ]
    check_outputs(pairs)
    return pairs


def check_outputs(pairs) -> None:
    """Mark (``row["refused"]``) a row that would write a file an earlier row writes, or over an input
    of its own or an earlier row: a per-row error (a later row may read an earlier row's output)."""
    written, read = {}, {}
    for row in pairs:
        for key in ("source", "reference", *CSV_MASKS):
            if row[key] is not None:
                read.setdefault(Path(row[key]).resolve(), row["line"])
        row["refused"] = None
        if row["output"] is None:
            continue
        target = Path(row["output"]).resolve()
        if target in written:
            row["refused"] = f"line {written[target]} writes '{row['output']}' already"
        elif target in read:
            row["refused"] = f"'{row['output']}' is an input of line {read[target]}: choose another output"
        else:
            written[target] = row["line"]


def row_error(error: BaseException) -> str:
    if isinstance(error, HistocolorError):
        return str(error)
    if is_out_of_memory(error):
        return OUT_OF_MEMORY_ADVICE
    summary = str(error).splitlines()[0] if str(error) else ""  # a bug must not cost the other rows their results
    return f"unexpected {type(error).__name__}: {summary}"


def batch_groups(rows, size: int) -> list[tuple[int, int]]:
    """Consecutive ``(start, end)`` groups of at most ``size`` rows; a row that reads an earlier
    row's output starts a new group (decoded only once the rows before it are written)."""
    outputs = [None if row["output"] is None else Path(row["output"]).resolve() for row in rows]
    groups, start = [], 0
    for index, row in enumerate(rows):
        inputs = {Path(row[key]).resolve() for key in ("source", "reference", *CSV_MASKS) if row[key] is not None}
        if index > start and (index - start >= size or inputs & set(outputs[:index])):
            groups.append((start, index))
            start = index
    return [*groups, (start, len(rows))] if rows else []


def waits_for_outputs(rows, group) -> bool:
    """Whether the group's first row reads the output of a row before it."""
    start = group[0]
    row = rows[start]
    inputs = {Path(row[key]).resolve() for key in ("source", "reference", *CSV_MASKS) if row[key] is not None}
    return any(other["output"] is not None and Path(other["output"]).resolve() in inputs for other in rows[:start])
