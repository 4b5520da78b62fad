"""The ``histocolor`` command: ``transfer`` (one pair or a CSV of pairs), ``apply-lut``, ``video``,
``train``, ``evaluate``, ``segment`` and ``info``.

User errors end in one line on stderr and exit code 2; a batch reports each bad row and
goes on, exiting 1 at the end if any row failed. Outputs are written atomically and keep
the source's EXIF (see :func:`histocolor.imageio.write_image` for what each format holds).
"""

import argparse
import contextlib
import platform
import sys
import threading
import warnings
from pathlib import Path

import numpy as np

from histocolor import __version__
from histocolor.device import DEVICES
from histocolor.errors import HistocolorError, Terminated, is_out_of_memory
from histocolor.outputs import check_output
from histocolor.pairs import read_pairs
from histocolor.runner import OUT_OF_MEMORY_ADVICE

USAGE_ERROR = 2
ROWS_FAILED = 1
TERMINATED = 143  # 128 + SIGTERM, as shells report it


class _Parser(argparse.ArgumentParser):
    """argparse, but a usage mistake is one line, as every other user error."""

    def error(self, message):
        self.exit(USAGE_ERROR, f"{self.prog}: error: {message} (see --help)\n")


def _build_parser() -> argparse.ArgumentParser:
    from histocolor.lut import DEFAULT_LUT_SIZE
    from histocolor.methods import MATCH_MODES
    from histocolor.engine import DEFAULT_MAX_SIDE, METHODS

    parser = _Parser(prog="histocolor", description="Colour transfer by histogram analogy.")
    match_option = dict(
        default="auto", choices=MATCH_MODES,
        help="a reference that shares pixels with the source (an edited copy, a graded frame of the shot): "
             "auto fits the look on those pixels for the network (default), on insists for any method, off never")
    parser.add_argument("--version", action="version", version=f"histocolor {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)

    run = commands.add_parser("transfer", help="recolour SOURCE after REFERENCE, or every pair of a CSV")
    run.add_argument("source", nargs="?", help="image to recolour")
    run.add_argument("reference", nargs="?", help="image whose colours to take")
    run.add_argument("-o", "--output", help="where to write the result (format from the extension)")
    run.add_argument("--pairs", metavar="CSV", help="CSV with columns source,reference,output (paths relative to it)")
    run.add_argument("--io-threads", type=int, default=2, metavar="N",
                     help="with --pairs: threads that decode and encode while the network runs (0: none)")
    run.add_argument("--batch-size", type=int, default=8, metavar="N",
                     help="with --pairs: pairs the network recolours together (default 8; 1: one at a time)")
    run.add_argument("--ray", nargs="?", const="", default=None, metavar="ADDRESS",
                     help="with --pairs: run on a Ray cluster (ADDRESS, else RAY_ADDRESS, else a local one)")
    run.add_argument("--ray-logs", action="store_true", help="with --ray: show Ray's own log lines")
    run.add_argument("--method", default="analogy", choices=METHODS, help="default: analogy (the network)")
    run.add_argument("--strength", type=float, default=1.0, help="0 keeps the source, 1 the full change")
    run.add_argument("--match", **match_option)
    run.add_argument("--max-side", type=int, default=DEFAULT_MAX_SIDE, help="working size of the network (long side)")
    run.add_argument("--lut-size", type=int, default=DEFAULT_LUT_SIZE,
                     help="grid points per axis of the fitted (and saved) 3D LUT: 2 to 65 for the network "
                          "and matched looks, to 129 for the classical methods")
    run.add_argument("--save-lut", metavar="LOOK.cube",
                     help="also save the look as a .cube 3D LUT (by regions: one per region, plus the label map)")
    run.add_argument("--weights", metavar="DIR", help="network weights directory (default: the shipped model)")
    run.add_argument("--device", default="auto", choices=DEVICES)
    run.add_argument("--timings", action="store_true", help="print the seconds each stage took")
    run.add_argument("--overwrite", action="store_true", help="replace outputs that exist already")
    run.add_argument("--source-mask", metavar="PNG", help="label map of the source (region-wise transfer)")
    run.add_argument("--reference-mask", metavar="PNG", help="label map of the reference (region-wise transfer)")
    run.add_argument(
        "--segmenter", metavar="NAME",
        help="segment both images automatically (ade20k, voc, slic, hf:..., torchvision:..., onnx:...)",
    )
    run.add_argument(
        "--region-map", metavar="JSON", help='source label -> reference label(s), e.g. {"3": 5} (default: same label)'
    )

    look = commands.add_parser("apply-lut", help="apply a .cube 3D LUT to an image (8/16-bit, alpha kept)")
    look.add_argument("image", help="image to recolour (sRGB-encoded, as the LUT expects)")
    look.add_argument("lut", metavar="LOOK.cube", help="3D LUT file (.cube)")
    look.add_argument("-o", "--output", required=True, help="where to write the result")
    look.add_argument("--strength", type=float, default=1.0, help="0 keeps the image, 1 the full change")
    look.add_argument("--overwrite", action="store_true", help="replace the output if it exists")

    clip = commands.add_parser("video", help="recolour a video after a reference image, one look for the shot")
    clip.add_argument("video", help="input video (any format ffmpeg reads)")
    clip.add_argument("--reference", required=True, help="image whose colours to take")
    clip.add_argument("-o", "--output", required=True, help="output video (.mp4, .mkv, .mov or .webm)")
    clip.add_argument("--method", default="analogy", choices=METHODS, help="default: analogy (the network)")
    clip.add_argument("--strength", type=float, default=1.0, help="0 keeps the video, 1 the full change")
    clip.add_argument("--match", **match_option)
    clip.add_argument("--temporal", default="shot", choices=("shot", "smooth"),
                      help="shot: one look fitted on frames sampled across the clip (default); smooth: a look "
                           "per key frame, smoothed over time")
    clip.add_argument("--sample-frames", type=int, default=9, help="frames the shot look is fitted on")
    clip.add_argument("--max-side", type=int, default=DEFAULT_MAX_SIDE, help="working size of the network (long side)")
    clip.add_argument("--lut-size", type=int, default=DEFAULT_LUT_SIZE, help="grid points per axis of the 3D LUT")
    clip.add_argument("--weights", metavar="DIR", help="network weights directory (default: the shipped model)")
    clip.add_argument("--device", default="auto", choices=DEVICES)
    clip.add_argument("--save-lut", metavar="LOOK.cube", help="also save the shot's look as a .cube 3D LUT")
    clip.add_argument("--overwrite", action="store_true", help="replace outputs that exist already")

    learn = commands.add_parser("train", help="train the network (one device, or DDP under torchrun)")
    learn.add_argument("--data", action="append", default=[], metavar="DIR", help="folder of photos (repeatable)")
    learn.add_argument("--fivek", metavar="DIR", help="MIT-Adobe FiveK root (input/ or raw/, expertA/ .. expertE/)")
    learn.add_argument("--config", metavar="FILE", help="training settings (JSON); defaults when omitted")
    learn.add_argument("--out", required=True, metavar="DIR", help="output: weights, checkpoints, log.csv")
    learn.add_argument("--resume", action="store_true", help="continue from the latest checkpoint in --out")
    learn.add_argument("--overwrite", action="store_true", help="start over, replacing a previous run in --out")
    learn.add_argument("--init", metavar="DIR", help="start from these weights (fine-tuning)")
    learn.add_argument("--device", default="auto", choices=DEVICES)

    bench = commands.add_parser("evaluate", help="compare methods on evaluation sets; Markdown report + grids")
    bench.add_argument("sets", nargs="+", metavar="SET", help="dpst-style folder or CSV (source,reference[,truth,...])")
    bench.add_argument("--methods", nargs="+", default=["analogy", "reinhard", "mkl", "histmatch", "idt", "identity"])
    bench.add_argument("--out", required=True, metavar="DIR", help="where report.md and the grids go")
    bench.add_argument("--weights", metavar="DIR", help="network weights (default: the shipped model)")
    bench.add_argument("--max-side", type=int, help="working size of the network")
    bench.add_argument("--limit", type=int, help="only the first N pairs of each set (N at least 1)")
    bench.add_argument("--overwrite", action="store_true",
                       help="replace the report, grids and videos of an earlier run in --out")
    bench.add_argument("--device", default="auto", choices=DEVICES)
    bench.add_argument("--match", **match_option)
    bench.add_argument(
        "--segmenter", metavar="NAME", help="METHOD+regions use this segmenter's labels instead of the set's masks"
    )

    cut = commands.add_parser("segment", help="write the label map of IMAGE (and of a reference, matched)")
    cut.add_argument("image")
    cut.add_argument("-o", "--output", required=True, help="label map PNG (integer labels)")
    cut.add_argument(
        "--segmenter", default="ade20k", metavar="NAME", help="ade20k (default), voc, slic, hf:..., torchvision:..., onnx:..."
    )
    cut.add_argument("--reference", help="a second image, segmented so that equal labels correspond")
    cut.add_argument("--reference-output", help="label map PNG of --reference")
    cut.add_argument("--overwrite", action="store_true", help="replace outputs that exist already")
    cut.add_argument("--device", default="auto", choices=DEVICES)

    commands.add_parser("info", help="versions, device and weights found")
    return parser


def _check_lut_path(path, overwrite: bool, by_regions: bool, *inputs) -> Path:
    """``--save-lut``'s name, checked as an output (by regions, also the label map saved next to it)."""
    from histocolor.cube import check_cube_path
    from histocolor.imageio import check_writable

    path = check_output(path, check_cube_path, overwrite or by_regions, *inputs)
    if by_regions:  # the region .cube files are named after the labels, known only after the run
        check_output(path.with_name(f"{path.stem}-labels.png"), check_writable, overwrite, *inputs)
    return path


def _format_timings(job) -> str:
    """A pair's stage timings, and what its reference shares with its source (``--timings``)."""
    line = "  ".join(f"{stage} {seconds:.3f}s" for stage, seconds in job.timings.items())
    return line if job.found is None else f"{line}  ({job.found})"


def _run_single(arguments, runner) -> int:
    from histocolor.imageio import probe_image
    from histocolor.outputs import check_image_output
    from histocolor.pairs import Row

    masks = (arguments.source_mask, arguments.reference_mask)
    if arguments.save_lut:
        by_regions = masks != (None, None) or arguments.segmenter is not None
        _check_lut_path(arguments.save_lut, arguments.overwrite, by_regions, arguments.source, arguments.reference,
                        arguments.output, *masks)
    # A bad output name, a missing or non-image file are refused now, not after torch loads.
    check_image_output(arguments.output, arguments.overwrite, arguments.source, arguments.reference, *masks)
    probe_image(arguments.source)
    probe_image(arguments.reference)
    row = Row(Path(arguments.source), Path(arguments.reference), Path(arguments.output),
              tuple(None if mask is None else Path(mask) for mask in masks))
    outcome = next(runner.run([row]))
    if outcome.error is not None:
        raise outcome.error
    if arguments.save_lut:
        from histocolor.cube import save_look

        for path in save_look(arguments.save_lut, outcome.result.look, arguments.lut_size, arguments.overwrite):
            print(f"look saved: {path}", file=sys.stderr)
    if arguments.timings:
        print(_format_timings(outcome.job), file=sys.stderr)
    return 0


def _run_batch(arguments, rows, runner) -> int:
    """Every row of a pairs CSV, reported in order; a failing row costs only itself."""
    from tqdm import tqdm

    failures = 0
    with tqdm(total=len(rows), desc="transfer", unit="pair", file=sys.stderr) as bar:
        for outcome in runner.run(rows):
            if outcome.error is not None:
                failures += 1
                bar.write(f"line {outcome.row.line}: error: {outcome.message}", file=sys.stderr)
            elif arguments.timings:
                bar.write(f"line {outcome.row.line}: {_format_timings(outcome.job)}", file=sys.stderr)
            bar.update(1)
    return _rows_failed(failures, len(rows))


def _rows_failed(failures: int, total: int) -> int:
    """A batch's exit code, with the line that counts the failed rows."""
    if failures:
        print(f"histocolor: {failures} of {total} pairs failed", file=sys.stderr)
        return ROWS_FAILED
    return 0


def _check_strength(strength: float) -> None:
    if not 0.0 <= strength <= 1.0:
        raise HistocolorError(f"--strength must be between 0 and 1, got {strength}")


def _engine_options(arguments) -> dict:
    """The :class:`~histocolor.engine.ColorTransfer` keywords of ``transfer``'s and ``video``'s options."""
    return {"method": arguments.method, "weights": arguments.weights, "device": arguments.device,
            "max_side": arguments.max_side, "lut_size": arguments.lut_size, "match": arguments.match}


def _transfer(arguments) -> int:
    from histocolor.regions import load_region_map
    from histocolor.runner import engine_runner
    from histocolor.segment import get_segmenter

    _check_strength(arguments.strength)
    if arguments.io_threads < 0:
        raise HistocolorError(f"--io-threads must be 0 or more, got {arguments.io_threads}")
    if arguments.batch_size < 1:
        raise HistocolorError(f"--batch-size must be 1 or more, got {arguments.batch_size}")
    rows = None
    if arguments.pairs:
        if arguments.source or arguments.reference or arguments.output:
            raise HistocolorError("--pairs takes its paths from the CSV: drop SOURCE, REFERENCE and -o")
        rows = read_pairs(arguments.pairs)  # a bad CSV fails before the model loads
        if arguments.save_lut:
            raise HistocolorError("--save-lut saves the look of one pair: drop it with --pairs")
        if arguments.source_mask or arguments.reference_mask:
            raise HistocolorError("with --pairs, masks come from the CSV's source_mask and reference_mask columns")
    elif not (arguments.source and arguments.reference and arguments.output):
        raise HistocolorError("give SOURCE REFERENCE -o OUTPUT, or --pairs CSV")
    elif bool(arguments.source_mask) != bool(arguments.reference_mask):
        raise HistocolorError("region-wise transfer needs both --source-mask and --reference-mask")
    if arguments.region_map and not (arguments.source_mask or arguments.segmenter or arguments.pairs):
        raise HistocolorError("--region-map needs masks (--source-mask/--reference-mask) or --segmenter")
    region_map = load_region_map(arguments.region_map) if arguments.region_map else None
    settings = {"strength": arguments.strength, "overwrite": arguments.overwrite, "region_map": region_map,
                "batch_size": arguments.batch_size}
    if arguments.ray is not None:
        if rows is None:
            raise HistocolorError("--ray runs a --pairs CSV: add --pairs")
        if arguments.segmenter:
            raise HistocolorError("--ray takes masks from the CSV: drop --segmenter")
        return _run_on_ray(arguments, rows, settings)
    segmenter = get_segmenter(arguments.segmenter, arguments.device) if arguments.segmenter else None
    runner = engine_runner(_engine_options(arguments), segmenter=segmenter, io_threads=arguments.io_threads,
                           **settings)
    return _run_single(arguments, runner) if rows is None else _run_batch(arguments, rows, runner)


def _run_on_ray(arguments, rows, settings) -> int:
    """``--pairs`` on a Ray cluster (:mod:`histocolor.cluster`), reported as ``--pairs`` reports."""
    from tqdm import tqdm

    from histocolor.cluster import native_log_lines_hidden, transfer_pairs_on_ray

    # Workers may run elsewhere, in another folder: absolute paths only.
    options = {**_engine_options(arguments),
               "weights": None if arguments.weights is None else str(Path(arguments.weights).resolve())}
    with contextlib.nullcontext() if arguments.ray_logs else native_log_lines_hidden(), \
            tqdm(total=len(rows), desc="transfer (ray)", unit="pair", file=sys.stderr) as bar:
        errors = transfer_pairs_on_ray(rows, options, address=arguments.ray or None, progress=bar.update,
                                       verbose=arguments.ray_logs, **settings)
    failures = [(line, error) for line, error in sorted(errors.items()) if error]
    for line, error in failures:
        print(f"line {line}: error: {error}", file=sys.stderr)
    return _rows_failed(len(failures), len(rows))


def _apply_lut(arguments) -> int:
    from histocolor.colormap import LutMap
    from histocolor.cube import read_cube
    from histocolor.imageio import check_output_path, read_image, write_image

    _check_strength(arguments.strength)
    output = check_output(arguments.output, check_output_path, arguments.overwrite, arguments.image, arguments.lut)
    look = LutMap(read_cube(arguments.lut)).blended(arguments.strength)
    image = read_image(arguments.image)
    write_image(output, look.apply(image.rgb), image.alpha, exif=image.exif, overwrite=arguments.overwrite)
    return 0


def _video(arguments) -> int:
    from histocolor.imageio import read_image
    from histocolor.video import check_video_output, recolour_video

    _check_strength(arguments.strength)
    if arguments.sample_frames < 1:
        raise HistocolorError(f"--sample-frames must be at least 1, got {arguments.sample_frames}")
    output = check_output(arguments.output, check_video_output, arguments.overwrite, arguments.video,
                           arguments.reference)
    if arguments.save_lut:
        if arguments.temporal != "shot":
            raise HistocolorError("--save-lut saves a shot's one look: it needs --temporal shot")
        _check_lut_path(arguments.save_lut, arguments.overwrite, False, arguments.video, arguments.reference, output)
    reference = read_image(arguments.reference)
    from histocolor.engine import ColorTransfer

    engine = ColorTransfer(**_engine_options(arguments))
    look = recolour_video(arguments.video, reference, output, engine, strength=arguments.strength,
                          temporal=arguments.temporal, sample_frames=arguments.sample_frames, progress=True,
                          overwrite=arguments.overwrite)
    if arguments.save_lut:
        from histocolor.cube import save_look

        save_look(arguments.save_lut, look, arguments.lut_size, arguments.overwrite)
    print(f"video written to {output}", file=sys.stderr)
    return 0


def _train(arguments) -> int:
    from histocolor.training.train import TrainConfig, train

    config = TrainConfig.from_file(arguments.config) if arguments.config else TrainConfig()
    stop = _StopRequest()
    with stop.on_signals():
        out = train(
            config,
            arguments.data,
            arguments.out,
            fivek=arguments.fivek,
            resume=arguments.resume,
            overwrite=arguments.overwrite,
            init_weights=arguments.init,
            device=arguments.device,
            should_stop=stop,
        )
    if stop.requested:
        print(f"stopped: checkpoint and weights written to {out}; add --resume to continue", file=sys.stderr)
        return 130
    print(f"weights written to {out}", file=sys.stderr)
    return 0


class _StopRequest:
    """Ctrl-C (or SIGTERM, SIGHUP) during training: finish the step, save a checkpoint, stop.

    A second Ctrl-C interrupts at once, as usual.
    """

    def __init__(self):
        self.requested = False

    def __call__(self) -> bool:
        return self.requested

    def _handle(self, signum, frame):
        if self.requested:
            raise KeyboardInterrupt
        self.requested = True
        print("\nhistocolor: stopping after this step (a checkpoint is saved); Ctrl-C again to quit now",
              file=sys.stderr)

    def on_signals(self):
        import signal

        return _handling((signal.SIGINT, signal.SIGTERM, signal.SIGHUP), self._handle)


def _evaluate(arguments) -> int:
    from histocolor.evaluate import evaluate

    sets = {}
    for path in map(Path, arguments.sets):
        name = path.stem if path.is_file() else path.name
        sets[name if name not in sets else f"{name}-{len(sets)}"] = path
    evaluate(
        sets,
        arguments.methods,
        arguments.out,
        weights=arguments.weights,
        device=arguments.device,
        max_side=arguments.max_side,
        limit=arguments.limit,
        segmenter=arguments.segmenter,
        match=arguments.match,
        overwrite=arguments.overwrite,
    )
    print(f"report written to {Path(arguments.out) / 'report.md'}", file=sys.stderr)
    return 0


def _segment(arguments) -> int:
    from histocolor.imageio import check_output_path, read_image
    from histocolor.segment import get_segmenter
    from histocolor.segment.base import write_labels

    if bool(arguments.reference) != bool(arguments.reference_output):
        raise HistocolorError("--reference and --reference-output go together")
    for output in (arguments.output, arguments.reference_output):
        if output is not None and Path(output).suffix.lower() not in (".png", ".tif", ".tiff"):
            raise HistocolorError(f"label maps are written losslessly, as PNG or TIFF: name the output "
                                  f"'{Path(output).stem}.png'")
    outputs = [check_output(arguments.output, check_output_path, arguments.overwrite, arguments.image,
                             arguments.reference, arguments.reference_output)]
    if arguments.reference:
        outputs.append(check_output(arguments.reference_output, check_output_path, arguments.overwrite,
                                     arguments.image, arguments.reference, arguments.output))
    segmenter = get_segmenter(arguments.segmenter, arguments.device)
    image = read_image(arguments.image).rgb
    if arguments.reference:
        *maps, names = segmenter.segment_pair(image, read_image(arguments.reference).rgb)
    else:
        first, names = segmenter.segment(image)
        maps = [first]
    for path, labels in zip(outputs, maps):
        write_labels(path, labels, arguments.overwrite)
    for label in sorted(set().union(*(np.unique(labels).tolist() for labels in maps))):
        print(f"{label}\t{names.get(label, '-')}")
    return 0


def _info() -> int:
    import numpy
    import PIL
    import torch

    from histocolor.model.io import DEFAULT_WEIGHTS
    from histocolor.engine import METHODS

    kornia_version = __import__("kornia").__version__
    cuda = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "not available"
    weights = "found" if (DEFAULT_WEIGHTS / "model.safetensors").is_file() else "not found (classical methods only)"
    for label, value in (
        ("histocolor", __version__),
        ("python", platform.python_version()),
        ("torch", torch.__version__),
        ("kornia", kornia_version),
        ("numpy", numpy.__version__),
        ("pillow", PIL.__version__),
        ("cuda", cuda),
        ("default device", "cuda" if torch.cuda.is_available() else "cpu"),
        ("default weights", f"{DEFAULT_WEIGHTS} ({weights})"),
        ("methods", ", ".join(METHODS)),
    ):
        print(f"{label + ':':17}{value}")
    return 0


def _show_one_line(message, category, filename, lineno, file=None, line=None):
    print(f"histocolor: warning: {message}", file=sys.stderr)


@contextlib.contextmanager
def _terminate_on_signals():
    """SIGTERM and SIGHUP stop the command as Ctrl-C does: temporary files are removed, one line is printed."""
    import signal

    def stop(signum, frame):
        signal.signal(signal.SIGTERM, signal.SIG_IGN)  # a second signal must not cut the cleanup short
        signal.signal(signal.SIGHUP, signal.SIG_IGN)
        raise Terminated

    with _handling((signal.SIGTERM, signal.SIGHUP), stop):
        yield


@contextlib.contextmanager
def _handling(numbers, handler):
    """``handler`` for the signals ``numbers`` while the block runs, the earlier handlers after it.

    A signal the caller ignores (nohup ignores SIGHUP; a shell's background job, SIGINT) stays
    ignored. Off the main thread nothing changes: signals reach the main thread only.
    """
    import signal

    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = {number: signal.signal(number, handler) for number in numbers
                if signal.getsignal(number) is not signal.SIG_IGN}
    try:
        yield
    finally:
        for number, handler_before in previous.items():
            signal.signal(number, handler_before)


def main(argv=None) -> int:
    arguments = _build_parser().parse_args(argv)
    try:
        with _terminate_on_signals():
            return _dispatch(arguments)
    except HistocolorError as error:
        print(f"histocolor: error: {error}", file=sys.stderr)
        return USAGE_ERROR
    except KeyboardInterrupt:
        print("histocolor: interrupted", file=sys.stderr)
        return 130
    except Terminated:
        print("histocolor: terminated", file=sys.stderr)
        return TERMINATED
    except Exception as error:
        if is_out_of_memory(error):
            print(f"histocolor: error: {OUT_OF_MEMORY_ADVICE}", file=sys.stderr)
            return USAGE_ERROR
        raise


def _dispatch(arguments) -> int:
    with warnings.catch_warnings():
        warnings.showwarning = _show_one_line
        commands = {
            "transfer": _transfer, "apply-lut": _apply_lut, "video": _video, "train": _train,
            "evaluate": _evaluate, "segment": _segment, "info": lambda _: _info(),
        }
        return commands[arguments.command](arguments)
