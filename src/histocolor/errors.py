"""The one exception type for problems the user can fix (bad input, bad options).

Front ends print its message as a single line (the CLI) or show it as a notification
(napari); anything else is a bug and keeps its traceback.
"""


class HistocolorError(Exception):
    """A user-facing error whose message is one self-contained line."""


class NoCommonRegion(HistocolorError):
    """The two label maps share no region large enough for a region-wise transfer."""


def first_line(error: BaseException) -> str:
    """The first line of an exception's message (its type name when the message is empty),
    to quote a library's error inside a one-line :class:`HistocolorError`."""
    text = str(error).strip()
    return text.splitlines()[0] if text else type(error).__name__
