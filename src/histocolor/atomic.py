"""Atomic file writes: a failure never leaves a partial file nor harms an existing one."""

import contextlib
import os
import tempfile
from pathlib import Path


def _current_umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


_UMASK = _current_umask()


def _new_file_mode(path: Path) -> int:
    """mkstemp makes owner-only files; keep a replaced file's mode, else 0o666 minus the umask."""
    try:
        return path.stat().st_mode & 0o7777
    except OSError:
        return 0o666 & ~_UMASK


# A temporary name holds this much of the target's name, so that a legal (255-byte) name
# never gets a temporary name too long for the file system.
_NAME_KEPT = 100


def temporary_file(path, suffix: str = "") -> str:
    """An empty hidden file next to ``path`` (``.NAME.random SUFFIX``) to write and then rename onto it."""
    path = Path(path)
    handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name[:_NAME_KEPT]}.", suffix=suffix)
    os.close(handle)
    return temporary


@contextlib.contextmanager
def atomic_write(path, suffix: str = ""):
    """Yield a binary file next to ``path``; it replaces ``path`` only if the block succeeds.

    The temporary file keeps ``suffix`` (encoders that look at the extension see the right
    one), is flushed to disk before the rename, and is removed on any failure, Ctrl-C included.
    """
    path = Path(path)
    temporary = temporary_file(path, suffix)
    try:
        with open(temporary, "wb") as stream:  # opened by name: tifffile wants a named file
            os.fchmod(stream.fileno(), _new_file_mode(path))
            yield stream
            stream.flush()
            os.fsync(stream.fileno())
        os.replace(temporary, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(temporary)
        raise
