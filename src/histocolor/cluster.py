"""A pairs CSV recoloured on a Ray cluster (the optional extra ``ray``: ``pip install
"napari-histocolor[ray]"``): ``histocolor transfer --pairs PAIRS.csv --ray [ADDRESS]``.

The rows run as a Ray Data pipeline: the batch's groups (the same groups of ``--batch-size``
rows as on one machine, :func:`~histocolor.pairs.batch_groups`) are the dataset's items,
``map_batches`` hands them to a pool of actors, each of which loads the model once (on a GPU
when the cluster has them) and decodes, recolours and writes its rows with the very code of
``--pairs`` (:mod:`histocolor.pairs`): the same atomic writes, never-overwrite rules and
per-row errors. A row that reads an earlier row's output runs in a later wave, once that
output is written.
"""

from __future__ import annotations

from pathlib import Path

from histocolor.errors import HistocolorError
from histocolor.pairs import CSV_MASKS, batch_groups, decode_job, encode_job, row_error, run_engine_batch


class _PairsWorker:
    """A Ray actor: one engine, built once; each call recolours and writes some groups of rows."""

    def __init__(self, engine_options: dict, strength: float, overwrite: bool, region_map, threads: int):
        from histocolor.transfer import ColorTransfer

        if engine_options.get("method", "analogy") == "analogy":
            import torch

            torch.set_num_threads(threads)  # torch's intra-op threads: the CPUs the actor was given
        self.engine = ColorTransfer(**engine_options)
        self.strength, self.overwrite, self.region_map = strength, overwrite, region_map

    def __call__(self, batch: dict) -> dict:
        import json

        lines, errors = [], []
        for text in batch["group"]:
            rows = json.loads(text)
            jobs, outcomes = [], []
            for row in rows:
                try:
                    if row.get("refused"):
                        raise HistocolorError(row["refused"])
                    job = decode_job(row["source"], row["reference"], row["output"],
                                     (row["source_mask"], row["reference_mask"]), self.overwrite)
                    jobs.append(job)
                    outcomes.append(job)
                except Exception as error:  # noqa: BLE001 - reported per row
                    outcomes.append(error)
            results = iter(run_engine_batch(self.engine, jobs, self.strength, self.region_map))
            for row, outcome in zip(rows, outcomes):
                try:
                    if isinstance(outcome, BaseException):
                        raise outcome
                    result = next(results)
                    if isinstance(result, BaseException):
                        raise result
                    encode_job(outcome, result)
                    error = ""
                except Exception as failure:  # noqa: BLE001 - reported per row
                    error = row_error(failure)
                lines.append(row["line"])
                errors.append(error)
        return {"line": lines, "error": errors}


def _waves(rows: list[dict]) -> list[list[int]]:
    """Row indices by wave: a row that reads an earlier row's output runs one wave after it."""
    written = {}
    depth = []
    for index, row in enumerate(rows):
        inputs = {Path(row[key]).resolve() for key in ("source", "reference", *CSV_MASKS) if row[key] is not None}
        depth.append(1 + max((depth[written[p]] for p in inputs if p in written), default=-1))
        if row["output"] is not None:
            written.setdefault(Path(row["output"]).resolve(), index)
    waves = [[] for _ in range(max(depth, default=-1) + 1)]
    for index, level in enumerate(depth):
        waves[level].append(index)
    return waves


def transfer_pairs_on_ray(rows: list[dict], engine_options: dict, *, strength: float = 1.0, overwrite: bool = False,
                          region_map=None, batch_size: int = 8, address: str | None = None, actors: int | None = None,
                          threads: int | None = None, progress=None) -> dict[int, str]:
    """Recolour the rows of a pairs CSV (:func:`~histocolor.pairs.read_pairs`) on Ray.

    ``engine_options`` are :class:`~histocolor.transfer.ColorTransfer`'s keyword arguments.
    ``address``: the cluster to join (None: ``RAY_ADDRESS``, else a local instance). ``actors``:
    how many workers (default: one per GPU, else per two CPUs). ``threads``: torch threads per
    worker (default: the CPUs each worker is given). ``progress(count)`` is called as rows finish. Returns ``{line: error}``, an empty
    error for a row written.
    """
    try:
        import json

        import ray
    except ImportError:
        raise HistocolorError('--ray needs Ray: pip install "napari-histocolor[ray]"') from None
    if batch_size < 1:
        raise HistocolorError(f"--batch-size must be 1 or more, got {batch_size}")
    if not ray.is_initialized():
        try:
            ray.init(address=address, log_to_driver=False, configure_logging=False)
        except (ConnectionError, ValueError, RuntimeError) as error:
            raise HistocolorError(f"cannot reach the Ray cluster at {address or 'RAY_ADDRESS'}: {error}") from None
    import logging

    context = ray.data.DataContext.get_current()
    context.enable_progress_bars = False
    logging.getLogger("ray.data").setLevel(logging.ERROR)  # our own progress bar and per-row report instead
    resources = ray.cluster_resources()
    gpus = int(resources.get("GPU", 0))
    pool = actors or max(1, gpus or int(resources.get("CPU", 1)) // 2)
    cpus_per_actor = max(1, int(resources.get("CPU", 1)) // pool)
    outcome = {}
    for wave in _waves(rows):
        chosen = [rows[index] for index in wave]
        groups = [json.dumps(chosen[start:end]) for start, end in batch_groups(chosen, batch_size)]
        dataset = ray.data.from_items([{"group": group} for group in groups], override_num_blocks=len(groups))
        results = dataset.map_batches(
            _PairsWorker, batch_size=1, compute=ray.data.ActorPoolStrategy(size=min(pool, len(groups))),
            num_cpus=cpus_per_actor, num_gpus=1 if gpus else 0,
            fn_constructor_kwargs={"engine_options": engine_options, "strength": strength, "overwrite": overwrite,
                                   "region_map": region_map, "threads": threads or cpus_per_actor},
        )
        for row in results.iter_rows():
            outcome[int(row["line"])] = str(row["error"])
            if progress is not None:
                progress(1)
    return outcome
