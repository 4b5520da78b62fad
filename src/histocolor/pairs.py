"""The rows of a batch: what each pair reads and writes, read from a pairs CSV, and the order
constraints between rows (a row may read an earlier row's output).

:mod:`histocolor.runner` runs them; the CLI, Ray (:mod:`histocolor.cluster`) and napari make them.
"""

import csv
import os
from dataclasses import dataclass, field
from pathlib import Path

from histocolor.errors import HistocolorError

CSV_REQUIRED = ("source", "reference", "output")
CSV_MASKS = ("source_mask", "reference_mask")


@dataclass
class Row:
    """One pair to recolour: ``source`` and ``reference`` are paths (or pixels in memory, as
    :func:`~histocolor.imageio.as_image` takes them), ``output`` the path to write; ``masks`` the label
    maps of a region-wise transfer; ``line`` names the row in messages (a CSV's line number);
    ``refused``, when set, is the row's error found before any work."""

    source: object
    reference: object
    output: Path | None
    masks: tuple = (None, None)
    line: int = 0
    refused: str | None = None
    _inputs: set | None = field(default=None, repr=False, compare=False)

    def inputs(self) -> set[Path]:
        """The files the row reads, resolved."""
        if self._inputs is None:
            self._inputs = {Path(item).resolve() for item in (self.source, self.reference, *self.masks)
                            if isinstance(item, (str, os.PathLike))}
        return self._inputs

    def target(self) -> Path | None:
        return None if self.output is None else Path(self.output).resolve()

    def to_dict(self) -> dict:
        """Plain data (paths as absolute text) for another process, e.g. a Ray worker."""
        def text(path):
            return None if path is None else str(Path(path).resolve())

        return {"source": text(self.source), "reference": text(self.reference), "output": text(self.output),
                "masks": [text(mask) for mask in self.masks], "line": self.line, "refused": self.refused}

    @classmethod
    def from_dict(cls, data: dict) -> "Row":
        return cls(data["source"], data["reference"], data["output"], tuple(data["masks"]), data["line"],
                   data["refused"])


def read_pairs(path) -> list[Row]:
    """Rows of a pairs CSV, paths resolved against the CSV's folder; empty cells become None.

    Each row's ``line`` is its line number in the file (for error messages).
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
    for line, row in rows:
        if any("\0" in value for value in row.values()):
            raise HistocolorError(f"pairs file '{path}', line {line}: a cell holds a NUL byte (is it a text file?)")
    base = path.parent

    def cell(row, name):
        return base / row[name] if row.get(name) else None

    pairs = [Row(cell(row, "source"), cell(row, "reference"), cell(row, "output"),
                 (cell(row, "source_mask"), cell(row, "reference_mask")), line)
             for line, row in rows]
    refuse_clashes(pairs)
    return pairs


def refuse_clashes(rows: list[Row]) -> None:
    """Refuse (``row.refused``) a row that would write a file an earlier row writes, or over an
    input of its own or of an earlier row: a per-row error (a later row may read an earlier row's output)."""
    written, read = {}, {}
    for row in rows:
        for given in row.inputs():
            read.setdefault(given, row.line)
        target = row.target()
        if target is None or row.refused:
            continue
        if target in written:
            row.refused = f"line {written[target]} writes '{row.output}' already"
        elif target in read:
            row.refused = f"'{row.output}' is an input of line {read[target]}: choose another output"
        else:
            written[target] = row.line


def batch_groups(rows: list[Row], size: int) -> list[tuple[int, int]]:
    """Consecutive ``(start, end)`` groups of at most ``size`` rows; a row that reads an earlier
    row's output starts a new group (decoded only once the rows before it are written)."""
    groups, start, written = [], 0, set()
    for index, row in enumerate(rows):
        if index > start and (index - start >= size or row.inputs() & written):
            groups.append((start, index))
            start = index
        if row.target() is not None:
            written.add(row.target())
    return [*groups, (start, len(rows))] if rows else []


def waits_for_outputs(rows: list[Row], start: int) -> bool:
    """Whether row ``start`` reads the output of a row before it."""
    return any(other.target() in rows[start].inputs() for other in rows[:start] if other.target() is not None)


def waves(rows: list[Row]) -> list[list[int]]:
    """Row indices by wave: a row that reads an earlier row's output runs one wave after it."""
    written, depth = {}, []
    for index, row in enumerate(rows):
        depth.append(1 + max((depth[written[p]] for p in row.inputs() if p in written), default=-1))
        if row.target() is not None:
            written.setdefault(row.target(), index)
    grouped = [[] for _ in range(max(depth, default=-1) + 1)]
    for index, level in enumerate(depth):
        grouped[level].append(index)
    return grouped
