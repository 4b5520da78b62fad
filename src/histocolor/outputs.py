"""Checks on an output's name before any work: its format and folder, never an input (under
any name), never through a symbolic link, and an existing file only with ``--overwrite``.

The final write keeps the last promise even against another process (see
:func:`histocolor.atomic.publish`); these checks make a doomed run fail before it starts.
"""

import os
from pathlib import Path

from histocolor.errors import HistocolorError


def same_file(first, second) -> bool:
    """Whether two paths name one existing file (a hard link, a case-insensitive file system)."""
    try:
        return os.path.samefile(first, second)
    except OSError:  # either does not exist
        return False


def check_output(output, check, overwrite: bool, *inputs) -> Path:
    """Before any work: ``check(output)`` (its format, a writable place), never one of ``inputs``
    (paths; None and in-memory images are skipped), never a symbolic link, and an existing file
    only with ``overwrite``."""
    output = Path(check(output))
    target = output.resolve()
    for given in inputs:
        if isinstance(given, (str, os.PathLike)) and (Path(given).resolve() == target or same_file(output, given)):
            raise HistocolorError(f"the output '{output}' is an input file: choose another name")
    if output.is_symlink():
        raise HistocolorError(f"the output '{output}' is a symbolic link: write to a plain path")
    if output.exists() and not overwrite:
        raise HistocolorError(f"'{output}' exists: add --overwrite to replace it")
    return output


def check_image_output(output, overwrite: bool, *inputs) -> Path:
    """:func:`check_output` for an image a transfer writes (one of the formats histocolor writes)."""
    from histocolor.imageio import check_output_path

    if output is None:
        raise HistocolorError("source, reference and output must all be given")
    return check_output(output, check_output_path, overwrite, *inputs)
