"""The one exception type m3l shows to users as a single line instead of a traceback."""

from __future__ import annotations

import os


class M3LError(Exception):
    """Bad input a user can fix: the message names the file or key and says what to do.

    Raised in a DataLoader worker process, it reaches the main process re-created by torch with the worker's
    traceback in its message ("Caught M3LError in DataLoader worker process 0. Original Traceback ..."): that
    message is cut back to the original line, so the error is still one line.
    """

    def __init__(self, message: object = "", *args) -> None:
        text = str(message)
        if text.startswith("Caught ") and "Original Traceback" in text:
            marker = f"{type(self).__module__}.{type(self).__qualname__}: "
            if marker in text:
                text = text.rsplit(marker, 1)[1].strip()
        super().__init__(text, *args)


def shown(name: str | os.PathLike) -> str:
    """A file name as text that any log or terminal takes: bytes that are not UTF-8 (a name from another system)
    appear as ``\\xNN`` instead of breaking the log file's encoder."""
    return os.fsencode(name).decode("utf-8", "backslashreplace")
