"""Seconds per stage of a transfer, for ``--timings`` and the benchmarks."""

from __future__ import annotations

import contextlib
import time
from typing import TYPE_CHECKING

from histocolor.device import synchronize

if TYPE_CHECKING:
    import torch


class Stopwatch:
    """Times named stages into ``timings`` (seconds; a stage run twice adds up).

    Example:
        >>> clock = Stopwatch()
        >>> with clock.stage("fit"):
        ...     pass
        >>> list(clock.timings)
        ['fit']
    """

    def __init__(self, device: torch.device | None = None):
        self.device = device
        self.timings: dict[str, float] = {}

    @contextlib.contextmanager
    def stage(self, name: str):
        started = time.perf_counter()
        yield
        if self.device is not None:  # queued GPU work belongs to this stage, not the next
            synchronize(self.device)
        self.timings[name] = self.timings.get(name, 0.0) + time.perf_counter() - started
