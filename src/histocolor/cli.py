"""The ``histocolor`` command: ``transfer`` (one pair or a CSV of pairs), ``train``, ``evaluate``,
``segment`` and ``info``.

User errors end in one line on stderr and exit code 2; a batch reports each bad row and
goes on, exiting 1 at the end if any row failed. Outputs are written atomically and keep
the source's EXIF (see :func:`histocolor.imageio.write_image` for what each format holds).
"""

import argparse
import contextlib
import csv
import platform
import sys
import threading
import time
import warnings
from pathlib import Path

import numpy as np
import torch

from histocolor import __version__
from histocolor.errors import HistocolorError

USAGE_ERROR = 2
ROWS_FAILED = 1
# torch raises its own error when a GPU runs out of memory; both mean "try smaller".
_OUT_OF_MEMORY = (MemoryError, torch.OutOfMemoryError)
_CSV_REQUIRED = ("source", "reference", "output")
_CSV_MASKS = ("source_mask", "reference_mask")


class _Parser(argparse.ArgumentParser):
    """argparse, but a usage mistake is one line, as every other user error."""

    def error(self, message):
        self.exit(USAGE_ERROR, f"{self.prog}: error: {message} (see --help)\n")


def _build_parser() -> argparse.ArgumentParser:
    from histocolor.lut import DEFAULT_LUT_SIZE
    from histocolor.transfer import DEFAULT_MAX_SIDE, METHODS, UPSAMPLING

    parser = _Parser(prog="histocolor", description="Colour transfer by histogram analogy.")
    parser.add_argument("--version", action="version", version=f"histocolor {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)

    run = commands.add_parser("transfer", help="recolour SOURCE after REFERENCE, or every pair of a CSV")
    run.add_argument("source", nargs="?", help="image to recolour")
    run.add_argument("reference", nargs="?", help="image whose colours to take")
    run.add_argument("-o", "--output", help="where to write the result (format from the extension)")
    run.add_argument("--pairs", metavar="CSV", help="CSV with columns source,reference,output (paths relative to it)")
    run.add_argument("--method", default="analogy", choices=METHODS, help="default: analogy (the network)")
    run.add_argument("--strength", type=float, default=1.0, help="0 keeps the source, 1 the full change")
    run.add_argument("--max-side", type=int, default=DEFAULT_MAX_SIDE, help="working size of the network (long side)")
    run.add_argument("--lut-size", type=int, default=DEFAULT_LUT_SIZE, help="grid points per axis of the fitted 3D LUT")
    run.add_argument("--weights", metavar="DIR", help="network weights directory (default: the shipped model)")
    run.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda"))
    run.add_argument("--timings", action="store_true", help="print the seconds each stage took")
    run.add_argument("--source-mask", metavar="PNG", help="label map of the source (region-wise transfer)")
    run.add_argument("--reference-mask", metavar="PNG", help="label map of the reference (region-wise transfer)")
    run.add_argument(
        "--segmenter", metavar="NAME",
        help="segment both images automatically (ade20k, voc, slic, hf:..., torchvision:..., onnx:...)",
    )
    run.add_argument(
        "--region-map", metavar="JSON", help='source label -> reference label(s), e.g. {"3": 5} (default: same label)'
    )

    learn = commands.add_parser("train", help="train the network (one device, or DDP under torchrun)")
    learn.add_argument("--data", action="append", default=[], metavar="DIR", help="folder of photos (repeatable)")
    learn.add_argument("--fivek", metavar="DIR", help="MIT-Adobe FiveK root (input/ or raw/, expertA/ .. expertE/)")
    learn.add_argument("--config", metavar="FILE", help="training settings (JSON); defaults when omitted")
    learn.add_argument("--out", required=True, metavar="DIR", help="output: weights, checkpoints, log.csv")
    learn.add_argument("--resume", action="store_true", help="continue from the latest checkpoint in --out")
    learn.add_argument("--init", metavar="DIR", help="start from these weights (fine-tuning)")
    learn.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda"))

    bench = commands.add_parser("evaluate", help="compare methods on evaluation sets; Markdown report + grids")
    bench.add_argument("sets", nargs="+", metavar="SET", help="dpst-style folder or CSV (source,reference[,truth,...])")
    bench.add_argument("--methods", nargs="+", default=["analogy", "reinhard", "mkl", "histmatch", "idt", "identity"])
    bench.add_argument("--out", required=True, metavar="DIR", help="where report.md and the grids go")
    bench.add_argument("--weights", metavar="DIR", help="network weights (default: the shipped model)")
    bench.add_argument("--max-side", type=int, help="working size of the network")
    bench.add_argument(
        "--upsampling", default="lut", choices=UPSAMPLING, help="how the network's change reaches full resolution"
    )
    bench.add_argument("--limit", type=int, help="only the first N pairs of each set")
    bench.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda"))
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
    cut.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda"))

    commands.add_parser("info", help="versions, device and weights found")
    return parser


def _transfer_and_write(
    engine, source, reference, output, strength, timings, masks=(None, None), region_map=None, segmenter=None
):
    from histocolor.imageio import check_output_path, read_image, write_image

    output = check_output_path(output)
    clock = time.perf_counter()
    source_image, reference_image = read_image(source), read_image(reference)
    decode = time.perf_counter() - clock
    if segmenter is not None and masks == (None, None):
        clock = time.perf_counter()
        masks = segmenter.segment_pair(source_image.rgb, reference_image.rgb)[:2]
        timings["segment"] = time.perf_counter() - clock
    result = engine(
        source_image, reference_image, strength=strength, source_labels=masks[0], reference_labels=masks[1],
        region_map=region_map,
    )
    clock = time.perf_counter()
    rgb, alpha = (result.image[..., :3], result.image[..., 3]) if result.image.shape[-1] == 4 else (result.image, None)
    write_image(output, rgb, alpha, exif=source_image.exif)  # the result keeps the source's EXIF
    timings.update({"decode": decode, **result.timings, "encode": time.perf_counter() - clock})


def _format_timings(timings: dict) -> str:
    return "  ".join(f"{stage} {seconds:.3f}s" for stage, seconds in timings.items())


def _run_single(arguments, engine, region_map, segmenter) -> int:
    timings: dict = {}
    masks = (arguments.source_mask, arguments.reference_mask)
    _transfer_and_write(
        engine, arguments.source, arguments.reference, arguments.output, arguments.strength, timings, masks, region_map,
        segmenter,
    )
    if arguments.timings:
        print(_format_timings(timings), file=sys.stderr)
    return 0


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
    missing = [name for name in _CSV_REQUIRED if name not in header]
    if missing:
        raise HistocolorError(
            f"pairs file '{path}' lacks the column(s) {', '.join(missing)} (header: {','.join(header)})"
        )
    if not rows:
        raise HistocolorError(f"pairs file '{path}' has no rows")
    base = path.parent
    return [
        {
            "line": line,
            **{name: (base / row[name] if row.get(name) else None) for name in (*_CSV_REQUIRED, *_CSV_MASKS)},
        }
        for line, row in rows
    ]


def _run_batch(arguments, rows, engine, region_map, segmenter) -> int:
    from tqdm import tqdm

    failures = 0
    with tqdm(rows, desc="transfer", unit="pair", file=sys.stderr) as bar:
        for row in bar:
            number = row["line"]
            try:
                if row["source"] is None or row["reference"] is None or row["output"] is None:
                    raise HistocolorError("source, reference and output must all be given")
                timings: dict = {}
                masks = (row["source_mask"], row["reference_mask"])
                _transfer_and_write(
                    engine, row["source"], row["reference"], row["output"], arguments.strength, timings, masks,
                    region_map, segmenter,
                )
                if arguments.timings:
                    bar.write(f"line {number}: {_format_timings(timings)}", file=sys.stderr)
            except HistocolorError as error:
                failures += 1
                bar.write(f"line {number}: error: {error}", file=sys.stderr)
            except _OUT_OF_MEMORY:
                failures += 1
                bar.write(f"line {number}: error: out of memory (try a smaller --max-side)", file=sys.stderr)
            except Exception as error:  # a bug must not cost the other rows their results
                failures += 1
                summary = str(error).splitlines()[0] if str(error) else ""
                bar.write(f"line {number}: error: unexpected {type(error).__name__}: {summary}", file=sys.stderr)
    if failures:
        print(f"histocolor: {failures} of {len(rows)} pairs failed", file=sys.stderr)
        return ROWS_FAILED
    return 0


def _transfer(arguments) -> int:
    from histocolor.regions import load_region_map
    from histocolor.segment import get_segmenter
    from histocolor.transfer import ColorTransfer

    if not 0.0 <= arguments.strength <= 1.0:
        raise HistocolorError(f"--strength must be between 0 and 1, got {arguments.strength}")
    rows = None
    if arguments.pairs:
        if arguments.source or arguments.reference or arguments.output:
            raise HistocolorError("--pairs takes its paths from the CSV: drop SOURCE, REFERENCE and -o")
        rows = read_pairs(arguments.pairs)  # a bad CSV fails before the model loads
        if arguments.source_mask or arguments.reference_mask:
            raise HistocolorError("with --pairs, masks come from the CSV's source_mask and reference_mask columns")
    elif not (arguments.source and arguments.reference and arguments.output):
        raise HistocolorError("give SOURCE REFERENCE -o OUTPUT, or --pairs CSV")
    elif bool(arguments.source_mask) != bool(arguments.reference_mask):
        raise HistocolorError("region-wise transfer needs both --source-mask and --reference-mask")
    if arguments.region_map and not (arguments.source_mask or arguments.segmenter or arguments.pairs):
        raise HistocolorError("--region-map needs masks (--source-mask/--reference-mask) or --segmenter")
    region_map = load_region_map(arguments.region_map) if arguments.region_map else None
    segmenter = get_segmenter(arguments.segmenter, arguments.device) if arguments.segmenter else None
    engine = ColorTransfer(
        arguments.method,
        weights=arguments.weights,
        device=arguments.device,
        max_side=arguments.max_side,
        lut_size=arguments.lut_size,
    )
    if rows is not None:
        return _run_batch(arguments, rows, engine, region_map, segmenter)
    return _run_single(arguments, engine, region_map, segmenter)


def _train(arguments) -> int:
    from histocolor.train import TrainConfig, train

    config = TrainConfig.from_file(arguments.config) if arguments.config else TrainConfig()
    stop = _StopRequest()
    with stop.on_signals():
        out = train(
            config,
            arguments.data,
            arguments.out,
            fivek=arguments.fivek,
            resume=arguments.resume,
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
    """Ctrl-C (or SIGTERM) during training: finish the step, save a checkpoint, stop.

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

    @contextlib.contextmanager
    def on_signals(self):
        import signal

        if threading.current_thread() is not threading.main_thread():  # signals reach the main thread only
            yield
            return
        previous = {number: signal.signal(number, self._handle) for number in (signal.SIGINT, signal.SIGTERM)}
        try:
            yield
        finally:
            for number, handler in previous.items():
                signal.signal(number, handler)


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
        upsampling=arguments.upsampling,
    )
    print(f"report written to {Path(arguments.out) / 'report.md'}", file=sys.stderr)
    return 0


def _segment(arguments) -> int:
    from histocolor.imageio import check_output_path, read_image
    from histocolor.segment import get_segmenter
    from histocolor.segment.base import write_labels

    if bool(arguments.reference) != bool(arguments.reference_output):
        raise HistocolorError("--reference and --reference-output go together")
    outputs = [check_output_path(arguments.output)]
    if arguments.reference:
        outputs.append(check_output_path(arguments.reference_output))
    segmenter = get_segmenter(arguments.segmenter, arguments.device)
    image = read_image(arguments.image).rgb
    if arguments.reference:
        *maps, names = segmenter.segment_pair(image, read_image(arguments.reference).rgb)
    else:
        first, names = segmenter.segment(image)
        maps = [first]
    for path, labels in zip(outputs, maps):
        write_labels(path, labels)
    for label in sorted(set().union(*(np.unique(labels).tolist() for labels in maps))):
        print(f"{label}\t{names.get(label, '-')}")
    return 0


def _info() -> int:
    import numpy
    import PIL
    import torch

    from histocolor.transfer import DEFAULT_WEIGHTS, METHODS

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


def main(argv=None) -> int:
    arguments = _build_parser().parse_args(argv)
    try:
        with warnings.catch_warnings():
            warnings.showwarning = _show_one_line
            commands = {
                "transfer": _transfer, "train": _train, "evaluate": _evaluate, "segment": _segment,
                "info": lambda _: _info(),
            }
            return commands[arguments.command](arguments)
    except HistocolorError as error:
        print(f"histocolor: error: {error}", file=sys.stderr)
        return USAGE_ERROR
    except _OUT_OF_MEMORY:
        print("histocolor: error: out of memory (try a smaller --max-side)", file=sys.stderr)
        return USAGE_ERROR
    except KeyboardInterrupt:
        print("histocolor: interrupted", file=sys.stderr)
        return 130
