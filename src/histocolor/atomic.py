"""Atomic file writes: a failure never leaves a partial file nor harms an existing one, and a
write that must not replace never does, even when another process creates the file meanwhile."""

import contextlib
import ctypes
import errno
import hashlib
import os
import re
import socket
import tempfile
from pathlib import Path

from histocolor.errors import HistocolorError


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
# Temporary files are named ".histocolor-HOST-PID-NAME.RANDOM.EXT": recognisable, and stale once
# process PID of this host is gone (killed with SIGKILL). HOST is a short hash of the host name,
# so that a folder shared between machines (NFS) never loses another machine's live file.
_PREFIX = ".histocolor-"
_HOST = hashlib.sha1(socket.gethostname().encode()).hexdigest()[:8]
_STALE = re.compile(r"\.histocolor-([0-9a-f]{8})-(\d{1,10})-")
_swept: set = set()  # folders swept by this process (once each)


def temporary_file(path, suffix: str = "") -> str:
    """An empty hidden file next to ``path`` to write and then rename onto it.

    Stale temporary files of ours in that folder (their process is gone) are removed first.
    """
    path = Path(path)
    if path.parent.resolve() not in _swept:
        _swept.add(path.parent.resolve())
        sweep_stale(path.parent)
    handle, temporary = tempfile.mkstemp(
        dir=path.parent, prefix=f"{_PREFIX}{_HOST}-{os.getpid()}-{path.name[:_NAME_KEPT]}.", suffix=suffix
    )
    os.close(handle)
    return temporary


def sweep_stale(folder) -> list[Path]:
    """Remove the temporary files in ``folder`` that histocolor processes of this host, now gone,
    left behind (only files of this user)."""
    removed = []
    try:
        entries = list(Path(folder).glob(f"{_PREFIX}*"))
    except OSError:
        return removed
    for entry in entries:
        match = _STALE.match(entry.name)
        if match is None or match.group(1) != _HOST or _alive(int(match.group(2))):
            continue
        with contextlib.suppress(OSError):
            if entry.lstat().st_uid != os.getuid():
                continue
        with contextlib.suppress(OSError):
            entry.unlink()
            removed.append(entry)
    return removed


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (OSError, OverflowError):  # it exists, owned by someone else; or no such PID can exist
        return True
    return True


class OutputExists(HistocolorError):
    """The output exists (another process made it while this one worked) and was not to be replaced."""

    def __init__(self, path):
        super().__init__(f"'{path}' exists: add --overwrite to replace it")
        self.path = path


_RENAME_NOREPLACE = 1  # linux/fs.h
_AT_FDCWD = -100


def _libc_renameat2():
    """glibc's ``renameat2`` (Linux 3.15+, glibc 2.28+), or None."""
    try:
        function = ctypes.CDLL(None, use_errno=True).renameat2
    except (OSError, AttributeError):
        return None
    function.argtypes = (ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p, ctypes.c_uint)
    return function


_renameat2 = _libc_renameat2()


def publish(temporary, path, replace: bool = False) -> None:
    """Move the finished file ``temporary`` onto ``path`` in one step.

    With ``replace`` an existing ``path`` is replaced (``os.replace``). Without, an existing
    ``path`` is never touched, even one another process creates a moment before: raises
    :class:`OutputExists` and leaves ``temporary`` in place. The move is ``renameat2`` with
    ``RENAME_NOREPLACE`` where the system and file system have it, else a hard link and an
    unlink (both fail on an existing name); a file system without either (FAT, some network
    shares) gets a check and a rename, which a writer racing within that instant can beat.
    """
    if replace:
        os.replace(temporary, path)
        return
    source, target = os.fsencode(temporary), os.fsencode(path)
    if _renameat2 is not None:
        if _renameat2(_AT_FDCWD, source, _AT_FDCWD, target, _RENAME_NOREPLACE) == 0:
            return
        code = ctypes.get_errno()
        if code == errno.EEXIST:
            raise OutputExists(path)
        if code not in (errno.EINVAL, errno.ENOSYS, errno.ENOTSUP, errno.EPERM):
            raise OSError(code, os.strerror(code), str(path))
    try:
        os.link(temporary, path)
    except FileExistsError:
        raise OutputExists(path) from None
    except OSError as error:
        if error.errno not in (errno.EPERM, errno.ENOTSUP, errno.EOPNOTSUPP, errno.EXDEV, errno.ENOSYS, errno.EMLINK):
            raise
        if os.path.lexists(path):
            raise OutputExists(path) from None
        os.replace(temporary, path)
        return
    os.unlink(temporary)


@contextlib.contextmanager
def atomic_path(path, suffix: str = "", replace: bool = True):
    """Yield the name of a temporary file next to ``path``, for writers that open files by name.

    Missing folders are made. When the block succeeds, the file gets the mode a new (or the
    replaced) file would have and is moved onto ``path`` (see :func:`publish`: without
    ``replace``, an existing ``path`` raises :class:`OutputExists`); on any failure, Ctrl-C
    included, it is removed, and so are the folders made for it.
    """
    path = Path(path)
    made = make_folders(path.parent)
    temporary = None
    try:
        temporary = temporary_file(path, suffix)
        yield temporary
        os.chmod(temporary, _new_file_mode(path))
        publish(temporary, path, replace)
    except BaseException:
        if temporary is not None:
            with contextlib.suppress(OSError):
                os.unlink(temporary)
        for folder in reversed(made):
            with contextlib.suppress(OSError):
                folder.rmdir()  # only if empty: another writer may have put files there meanwhile
        raise


def make_folders(folder: Path) -> list[Path]:
    """Create ``folder`` and its missing parents; return the folders made, outermost first."""
    missing = []
    while not folder.exists() and folder != folder.parent:
        missing.append(folder)
        folder = folder.parent
    made = []
    try:
        for folder in reversed(missing):
            folder.mkdir(exist_ok=True)
            made.append(folder)
    except BaseException:
        for folder in reversed(made):
            with contextlib.suppress(OSError):
                folder.rmdir()
        raise
    return made


@contextlib.contextmanager
def atomic_write(path, suffix: str = "", replace: bool = True):
    """Yield a binary file next to ``path``; it becomes ``path`` only if the block succeeds (and,
    without ``replace``, only if ``path`` does not exist then: :class:`OutputExists`).

    The temporary file keeps ``suffix`` (encoders that look at the extension see the right
    one), is flushed to disk before the rename, and is removed on any failure, Ctrl-C included
    (see :func:`atomic_path`).
    """
    with atomic_path(path, suffix, replace) as temporary:
        with open(temporary, "wb") as stream:  # opened by name: tifffile wants a named file
            yield stream
            stream.flush()
            os.fsync(stream.fileno())
