"""A pairs CSV recoloured on a Ray cluster (the optional extra ``ray``: ``pip install
"napari-histocolor[ray]"``): ``histocolor transfer --pairs PAIRS.csv --ray [ADDRESS]``.

The rows run as a Ray Data pipeline: the batch's groups (the same groups of ``--batch-size``
rows as on one machine, :func:`~histocolor.pairs.batch_groups`) are the dataset's items,
``map_batches`` hands them to a pool of actors, each of which builds the engine once (on a
GPU when the cluster has them) and runs its groups through the very runner of ``--pairs``
(:class:`~histocolor.runner.PairRunner`): the same results, atomic writes, never-overwrite
rules and per-row errors. A row that reads an earlier row's output runs in a later wave,
once that output is written. An error that stops every row (bad weights, a device the
workers lack) comes back as the one-line error it is on one machine.
"""

from __future__ import annotations

import contextlib
import os
import socket
import threading
from pathlib import Path
from urllib.parse import urlsplit

from histocolor.atomic import sweep_stale
from histocolor.errors import HistocolorError, first_line
from histocolor.pairs import Row, batch_groups, waves
from histocolor.runner import engine_runner, row_error

CONNECT_SECONDS = 10  # how long the cluster's address may take to answer


class _PairsWorker:
    """A Ray actor: one engine, built once; each call recolours and writes one group of rows.

    An error building the engine is kept and returned for the driver to report (a Ray actor
    that raises in its constructor dies with a long traceback)."""

    def __init__(self, engine_options: dict, settings: dict, threads: int):
        from histocolor.engine import ColorTransfer

        self.failure = None
        engine = None
        try:
            if engine_options.get("method", "analogy") == "analogy":
                import torch

                torch.set_num_threads(threads)  # torch's intra-op threads: the CPUs the actor was given
            engine = ColorTransfer(**engine_options)
        except Exception as error:  # noqa: BLE001 - reported by the driver, in one line
            self.failure = row_error(error)
        self.runner = engine_runner(engine_options, engine=lambda: engine, io_threads=1, **settings)

    def __call__(self, batch: dict) -> dict:
        import json

        lines, errors, fatal = [], [], []
        for text in batch["group"]:
            rows = [Row.from_dict(item) for item in json.loads(text)]
            if self.failure is not None:
                lines.append(rows[0].line)
                errors.append(self.failure)
                fatal.append(True)
                continue
            for outcome in self.runner.run(rows):
                lines.append(outcome.row.line)
                errors.append("" if outcome.error is None else outcome.message)
                fatal.append(False)
        return {"line": lines, "error": errors, "fatal": fatal}


def _check_address(address: str) -> None:
    """A cluster address is ``HOST:PORT``, ``ray://HOST:PORT``, ``auto`` or ``local``; one with a
    host must answer within :data:`CONNECT_SECONDS` (Ray itself would wait minutes)."""
    if address in ("auto", "local"):
        return
    usage = f"--ray: '{address}' is not a cluster address (HOST:PORT, ray://HOST:PORT, auto or local)"
    try:
        parts = urlsplit(address if "://" in address else f"ray://{address}")
        host, port = parts.hostname, parts.port
    except ValueError:
        raise HistocolorError(usage) from None
    if parts.scheme != "ray" or not host or port is None:
        raise HistocolorError(usage)
    outcome = {}

    def knock():
        try:
            with socket.create_connection((host, port), timeout=CONNECT_SECONDS):
                outcome["error"] = None
        except OSError as error:
            outcome["error"] = error

    thread = threading.Thread(target=knock, daemon=True)  # a host name may take long to resolve
    thread.start()
    thread.join(CONNECT_SECONDS)
    error = outcome.get("error", TimeoutError("no answer"))
    if error is not None:
        raise HistocolorError(f"cannot reach the Ray cluster at {address}: {first_line(error)}")


@contextlib.contextmanager
def _ray_session(address: str | None, verbose: bool):
    """Ray, connected to ``address`` (started locally when None), shut down afterwards if this
    call connected it; our signal handlers stay in place (Ray replaces them on start)."""
    import logging
    import signal

    import ray

    if ray.is_initialized():
        yield ray
        return
    address = address or os.environ.get("RAY_ADDRESS") or None
    if address is not None:
        _check_address(address)
    handlers = {number: signal.getsignal(number) for number in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)} \
        if threading.current_thread() is threading.main_thread() else {}
    try:
        ray.init(address=address, log_to_driver=verbose, configure_logging=not verbose,
                 logging_level=logging.INFO if verbose else logging.ERROR, include_dashboard=False)
    except (ConnectionError, ValueError, RuntimeError, TimeoutError) as error:
        raise HistocolorError(f"cannot reach the Ray cluster at {address or 'a new local one'}: "
                              f"{first_line(error)}") from None
    finally:
        for number, handler in handlers.items():
            signal.signal(number, handler)
    try:
        yield ray
    finally:
        ray.shutdown()


@contextlib.contextmanager
def native_log_lines_hidden():
    """Ray's C++ core writes its log lines (errors, notices) straight to file descriptor 2, past
    Python's logging: while the block runs, descriptor 2 goes to /dev/null and ``sys.stderr``
    to a copy of the terminal's, so that histocolor's own lines still show. Nothing changes
    when ``sys.stderr`` is not descriptor 2 (a test's capture, an embedding application)."""
    import sys

    try:
        redirected = sys.stderr.fileno() == 2
    except (AttributeError, OSError, ValueError):
        redirected = False
    if not redirected:
        yield
        return
    original = sys.stderr
    original.flush()
    saved, devnull = os.dup(2), os.open(os.devnull, os.O_WRONLY)
    terminal = os.fdopen(os.dup(saved), "w", buffering=1, encoding=original.encoding, errors=original.errors)
    try:
        os.dup2(devnull, 2)
        sys.stderr = terminal
        yield
    finally:
        terminal.flush()
        sys.stderr = original
        os.dup2(saved, 2)
        for descriptor in (saved, devnull):
            os.close(descriptor)
        terminal.close()


def transfer_pairs_on_ray(rows: list[Row], engine_options: dict, *, strength: float = 1.0, overwrite: bool = False,
                          region_map=None, batch_size: int = 8, address: str | None = None, actors: int | None = None,
                          threads: int | None = None, progress=None, verbose: bool = False) -> dict[int, str]:
    """Recolour the rows of a pairs CSV (:func:`~histocolor.pairs.read_pairs`) on Ray.

    ``engine_options`` are :class:`~histocolor.engine.ColorTransfer`'s keyword arguments.
    ``address``: the cluster to join (None: ``RAY_ADDRESS``, else a local instance). ``actors``:
    how many workers (default: one per GPU, else per two CPUs). ``threads``: torch threads per
    worker (default: the CPUs each worker is given). ``progress(count)`` is called as rows finish.
    ``verbose`` shows Ray's own log lines. Returns ``{line: error}``, an empty error for a row written.
    """
    import importlib.util

    if importlib.util.find_spec("ray") is None:
        raise HistocolorError('--ray needs Ray: pip install "napari-histocolor[ray]"')
    if batch_size < 1:
        raise HistocolorError(f"--batch-size must be 1 or more, got {batch_size}")
    settings = {"strength": strength, "overwrite": overwrite, "region_map": region_map, "batch_size": batch_size}
    outcome = {}
    try:
        _run_waves(rows, engine_options, settings, address, actors, threads, progress, verbose, outcome)
    finally:
        # Workers stopped mid-write (Ctrl-C, SIGTERM) leave their temporary files: gone with them.
        for folder in {Path(row.output).parent for row in rows if row.output is not None}:
            sweep_stale(folder)
    return outcome


def _run_waves(rows, engine_options, settings, address, actors, threads, progress, verbose, outcome) -> None:
    """:func:`transfer_pairs_on_ray`'s work: each wave of rows through a pool of actors, into ``outcome``."""
    import json

    with _ray_session(address, verbose) as session:
        import logging

        context = session.data.DataContext.get_current()
        context.enable_progress_bars = False
        if not verbose:  # our own progress bar and per-row report instead
            for name in ("ray", "ray.data"):  # ray.data has its own level and handlers
                logging.getLogger(name).setLevel(logging.ERROR)
        resources = session.cluster_resources()
        gpus = int(resources.get("GPU", 0))
        pool = actors or max(1, gpus or int(resources.get("CPU", 1)) // 2)
        cpus_per_actor = max(1, int(resources.get("CPU", 1)) // pool)
        for wave in waves(rows):
            chosen = [rows[index] for index in wave]
            groups = [json.dumps([row.to_dict() for row in chosen[start:end]])
                      for start, end in batch_groups(chosen, settings["batch_size"])]
            dataset = session.data.from_items([{"group": group} for group in groups], override_num_blocks=len(groups))
            results = dataset.map_batches(
                _PairsWorker, batch_size=1, compute=session.data.ActorPoolStrategy(size=min(pool, len(groups))),
                num_cpus=cpus_per_actor, num_gpus=1 if gpus else 0,
                fn_constructor_kwargs={"engine_options": engine_options, "settings": settings,
                                       "threads": threads or cpus_per_actor},
            )
            for row in results.iter_rows():
                if row["fatal"]:
                    raise HistocolorError(str(row["error"]))
                outcome[int(row["line"])] = str(row["error"])
                if progress is not None:
                    progress(1)
