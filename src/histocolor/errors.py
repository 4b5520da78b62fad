"""The one exception type for problems the user can fix (bad input, bad options).

Front ends print its message as a single line (the CLI) or show it as a notification
(napari); anything else is a bug and keeps its traceback.
"""


class HistocolorError(Exception):
    """A user-facing error whose message is one self-contained line."""


class NoCommonRegion(HistocolorError):
    """The two label maps share no region large enough for a region-wise transfer."""


class Terminated(BaseException):
    """SIGTERM or SIGHUP arrived (``timeout``, systemd, a closed terminal): stop like Ctrl-C does."""


def is_out_of_memory(error: BaseException) -> bool:
    """Whether ``error`` means "out of memory": MemoryError, torch's CUDA out-of-memory error, or
    the RuntimeError torch raises when the CPU allocator fails."""
    if isinstance(error, MemoryError) or type(error).__name__ == "OutOfMemoryError":
        return True
    text = str(error).lower()
    return isinstance(error, RuntimeError) and any(
        phrase in text for phrase in ("out of memory", "can't allocate memory", "not enough memory")
    )


def first_line(error: BaseException) -> str:
    """The first line of an exception's message (its type name when the message is empty),
    to quote a library's error inside a one-line :class:`HistocolorError`."""
    text = str(error).strip()
    return text.splitlines()[0] if text else type(error).__name__
