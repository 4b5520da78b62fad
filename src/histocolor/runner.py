"""One runner for every list of pairs: the single transfer, ``--pairs``, the Ray workers and
napari's folder batch all recolour through :class:`PairRunner`, so they give the same results,
the same per-row errors and the same guarantees.

For each group of ``batch_size`` rows: decode (ahead, in threads, while the engine works on
the group before), look for shared pixels in those threads (a reference that shares pixels
with its source gets the look fitted on them), recolour the rest with the engine (the network
stacks pairs of one working size), and write each result atomically in a thread, never over
an input and never over a file that exists, even one another process wrote meanwhile, unless
``overwrite``. A row that fails costs only itself; outcomes come back in the rows' order.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from histocolor.errors import HistocolorError, is_out_of_memory
from histocolor.outputs import check_image_output
from histocolor.pairs import Row, batch_groups, waits_for_outputs

OUT_OF_MEMORY_ADVICE = "out of memory (try a smaller --max-side, or --device cpu)"


@dataclass
class Job:
    """One decoded row, on its way through the engine to its output."""

    row: Row
    output: Path | None  # checked by the sink
    source: object  # LoadedImage
    reference: object
    timings: dict = field(default_factory=dict)
    look: object = None  # the look fitted on shared pixels while decoding, if any
    searched: bool = False  # whether shared pixels were looked for while decoding
    found: str | None = None  # what the reference shares with the source, when the look was fitted on it


@dataclass
class Outcome:
    """What became of a row: its job and result when written, else the error that stopped it."""

    row: Row
    job: Job | None = None
    result: object = None  # TransferResult
    error: BaseException | None = None

    @property
    def message(self) -> str:
        return row_error(self.error)


def row_error(error: BaseException) -> str:
    """A row's error in one line: a user error's message, else what went wrong, named."""
    if isinstance(error, HistocolorError):
        return str(error)
    if is_out_of_memory(error):
        return OUT_OF_MEMORY_ADVICE
    summary = str(error).splitlines()[0] if str(error) else ""  # a bug must not cost the other rows their results
    return f"unexpected {type(error).__name__}: {summary}"


def _load(item):
    """A path decoded, or pixels in memory (napari's layers) taken as an image."""
    from histocolor.imageio import as_image

    return as_image(item)


def _now(function, *args) -> Future:
    """``function(*args)`` run on this thread, as a finished future (its result or its error)."""
    future = Future()
    try:
        future.set_result(function(*args))
    except Exception as error:  # noqa: BLE001 - delivered to the row, as a thread's error is
        future.set_exception(error)
    return future


def _settled(future: Future):
    """A future's result, or the exception it raised."""
    try:
        return future.result()
    except Exception as error:  # noqa: BLE001 - delivered to the row
        return error


class FileSink:
    """Where :class:`PairRunner`'s results go by default: each look applied at ``strength`` to
    its source at full resolution and written to the row's output, atomically, keeping the
    source's EXIF and alpha. Never over an input, and never over a file that exists unless
    ``overwrite``, even one another process wrote meanwhile."""

    def __init__(self, strength: float = 1.0, overwrite: bool = False):
        if not 0.0 <= strength <= 1.0:
            raise HistocolorError(f"--strength must be between 0 and 1, got {strength}")
        self.strength, self.overwrite = strength, overwrite

    def check(self, row: Row) -> Path:
        """The row's output, checked before any work."""
        return check_image_output(row.output, self.overwrite, row.source, row.reference, *row.masks)

    def finish(self, engine, job: Job, look):
        """Apply and write; return the :class:`~histocolor.engine.TransferResult`."""
        result = engine.finish(look, job.source, self.strength)
        job.timings.update(result.timings)
        self.encode(job, result)
        return result

    def encode(self, job: Job, result) -> None:
        from histocolor.imageio import write_image

        clock = time.perf_counter()
        image = result.image
        rgb, alpha = (image[..., :3], image[..., 3]) if image.shape[-1] == 4 else (image, None)
        write_image(job.output, rgb, alpha, exif=job.source.exif, overwrite=self.overwrite)
        job.timings["encode"] = time.perf_counter() - clock


class PairRunner:
    """Runs rows (:class:`~histocolor.pairs.Row`) through an engine; see the module's description.

    Args:
        engine: builds the :class:`~histocolor.engine.ColorTransfer`, called once, after the
            first rows started decoding (for the network, torch loads meanwhile).
        strength: 0 keeps the source, 1 the full change.
        overwrite: replace outputs that exist.
        region_map, segmenter: for region-wise rows (a row without masks is segmented with ``segmenter``).
        matcher: the :class:`~histocolor.methods.SharedPixelsMatcher` that looks for shared pixels
            while decoding, in rows without regions (None: the engine alone decides).
        batch_size: rows recoloured together.
        io_threads: threads that decode and write while the engine works (0: all on this thread, in turn).
        sink: where the results go (default: :class:`FileSink`, each row's output file, at
            ``strength``, replacing files only with ``overwrite``).
    """

    def __init__(self, engine: Callable, *, strength: float = 1.0, overwrite: bool = False, region_map=None,
                 segmenter=None, matcher=None, batch_size: int = 8, io_threads: int = 2, sink=None):
        if batch_size < 1:
            raise HistocolorError(f"--batch-size must be 1 or more, got {batch_size}")
        if io_threads < 0:
            raise HistocolorError(f"--io-threads must be 0 or more, got {io_threads}")
        self.build_engine, self.sink = engine, sink or FileSink(strength, overwrite)
        self.region_map, self.segmenter, self.matcher = region_map, segmenter, matcher
        self.batch_size, self.io_threads = batch_size, io_threads

    def decode(self, row: Row) -> Job:
        """Check the row's output, decode its images and, without regions, fit the look on the
        pixels its reference shares with its source (when there are some)."""
        if row.refused:
            raise HistocolorError(row.refused)
        output = self.sink.check(row)
        clock = time.perf_counter()
        job = Job(row, output, _load(row.source), _load(row.reference))
        job.timings["decode"] = time.perf_counter() - clock
        if self.matcher is not None and row.masks == (None, None) and self.segmenter is None:
            from histocolor.timing import Stopwatch

            watch = Stopwatch()
            job.look, job.searched = self.matcher.look(job.source, job.reference, watch), True
            job.timings.update(watch.timings)
        return job

    def recolour(self, engine, jobs: list[Job]) -> list:
        """Per job the :class:`~histocolor.colormap.Look` that recolours it (at full strength),
        or the exception it raised: the look fitted on shared pixels while decoding, else the
        engine's (segmenting first, with the segmenter, the jobs without masks)."""
        looks = {index: job.look for index, job in enumerate(jobs) if job.look is not None}
        for searched in (True, False):  # searched already: the engine must not look again
            chosen = [index for index, job in enumerate(jobs) if job.look is None and job.searched == searched]
            if chosen:
                looks.update(zip(chosen, self._fit([jobs[index] for index in chosen], engine, not searched)))
        return [looks[index] for index in range(len(jobs))]

    def _fit(self, jobs: list[Job], engine, match: bool) -> list:
        """Segment the jobs without masks (with the segmenter), then ``engine.fit_batch`` them all."""
        from histocolor.timing import Stopwatch

        pairs, failed = [], {}
        for index, job in enumerate(jobs):
            masks = job.row.masks
            if self.segmenter is not None and masks == (None, None):
                clock = time.perf_counter()
                try:
                    masks = self.segmenter.segment_pair(job.source.rgb, job.reference.rgb)[:2]
                except Exception as error:  # noqa: BLE001 - reported per row
                    failed[index] = error
                job.timings["segment"] = time.perf_counter() - clock
            pairs.append((job.source, job.reference, *masks))
        todo = [index for index in range(len(jobs)) if index not in failed]
        clocks = [Stopwatch(engine.device) for _ in todo]
        done = dict(zip(todo, engine.fit_batch([pairs[index] for index in todo], region_map=self.region_map,
                                               match=match, clocks=clocks)))
        for index, clock in zip(todo, clocks):
            jobs[index].timings.update(clock.timings)
        return [failed[index] if index in failed else done[index] for index in range(len(jobs))]

    def finish(self, engine, job: Job, look):
        """The job's look to the sink (applied at full resolution and written, by default)."""
        shared = look.shared_pixels
        job.found = None if shared is None else shared.describe()
        return self.sink.finish(engine, job, look)

    def _engine(self, reading: list[Future] | None, single: bool):
        """The engine, built while the first rows decode. A single pair whose decoding failed
        reports that error rather than the engine's (a corrupt input is the thing to fix first)."""
        try:
            return self.build_engine()
        except BaseException:
            if single and reading:
                failure = reading[0].exception()
                if failure is not None:
                    raise failure from None
            raise

    def run(self, rows: list[Row]) -> Iterator[Outcome]:
        """Recolour and write ``rows``; yield each row's :class:`Outcome`, in order."""
        groups = batch_groups(rows, self.batch_size)
        threaded = self.io_threads > 0
        with ThreadPoolExecutor(max(1, self.io_threads)) as pool:

            def ahead(number):  # the group's decoding, started in threads, or None: decode it at its turn
                if not threaded or number >= len(groups) or waits_for_outputs(rows, groups[number][0]):
                    return None
                return [pool.submit(self.decode, row) for row in rows[slice(*groups[number])]]

            reading, writing = ahead(0), []
            engine = self._engine(reading, len(rows) == 1)
            for number, (start, end) in enumerate(groups):
                if reading is None:  # decoded now, once the rows before it are written
                    yield from _finished(writing)
                    writing, reading = [], [_now(self.decode, row) for row in rows[start:end]]
                decoded = [_settled(future) for future in reading]
                reading = ahead(number + 1)
                looks = iter(self.recolour(engine, [job for job in decoded if isinstance(job, Job)]))
                yield from _finished(writing)
                writing = []
                for row, job in zip(rows[start:end], decoded):
                    if not isinstance(job, Job):
                        writing.append((row, None, job))
                        continue
                    look = next(looks)
                    # Applied and written in a thread while a later group is worked on; the last group
                    # here, so that Ctrl-C or SIGTERM interrupts its writes (which then leave nothing).
                    write = pool.submit if threaded and end < len(rows) else _now
                    writing.append((row, job, look if isinstance(look, BaseException) else
                                    write(self.finish, engine, job, look)))
                    if write is _now:  # done: reported at once (a progress bar moves row by row)
                        yield from _finished(writing)
                        writing = []
            yield from _finished(writing)


def _finished(writing) -> Iterator[Outcome]:
    """Each pending row's outcome, in order, once its write is done."""
    for row, job, written in writing:
        result = written if isinstance(written, BaseException) else _settled(written)
        yield Outcome(row, job, error=result) if isinstance(result, BaseException) else Outcome(row, job, result)


def engine_runner(options: dict, *, segmenter=None, engine: Callable | None = None, **settings) -> PairRunner:
    """The runner of ``ColorTransfer(**options)`` (built when the run starts; ``engine`` builds it
    otherwise), looking for shared pixels while decoding as ``options``' method and ``match`` ask;
    ``settings`` are :class:`PairRunner`'s."""
    from histocolor.lut import DEFAULT_LUT_SIZE, DEFAULT_SMOOTHNESS
    from histocolor.methods import shared_pixels_matcher

    def build():
        from histocolor.engine import ColorTransfer

        return ColorTransfer(**options)

    matcher = None if segmenter is not None else shared_pixels_matcher(
        options.get("method", "analogy"), options.get("match", "auto"), options.get("lut_size", DEFAULT_LUT_SIZE),
        DEFAULT_SMOOTHNESS)
    return PairRunner(engine or build, segmenter=segmenter, matcher=matcher, **settings)
