"""Atomic writes: an output appears complete under its name, or not at all.

Every result file (corrected PNG, CSV table) is written to a temporary file in the same folder,
``.NAME.XXXXXXXX.tmp``, then renamed over ``NAME`` (``os.replace``: atomic on POSIX file systems). A
process killed mid-write (SIGKILL, out of memory, a cancelled job) leaves at most that temporary file,
which the next write of the same output removes (:func:`remove_temporaries`); a full disk or any other
write error removes it at once and leaves an earlier ``NAME`` as it was.
"""

from __future__ import annotations

import os
import re
import shutil
import tempfile
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path

# mkstemp's names: prefix, 8 random characters from [a-z0-9_], suffix
TEMPORARY = re.compile(r"^\.(?P<name>.+)\.[a-z0-9_]{8}\.tmp$")


def _file_mode() -> int:
    """The mode an ordinary new file gets (mkstemp makes 0600 files); read once, at import."""
    umask = os.umask(0o022)
    os.umask(umask)
    return 0o666 & ~umask


FILE_MODE = _file_mode()


@contextmanager
def atomic_write(path: str | os.PathLike, mode: str = "wb", **kwargs) -> Iterator:
    """``with atomic_write(path) as f: ...`` writes ``f`` to ``path`` through a temporary file and a rename.

    ``mode`` and ``kwargs`` go to :func:`open` (``"w", newline=""`` for text). On any error the
    temporary file is removed and ``path`` keeps what it held before.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        os.fchmod(fd, FILE_MODE)
        with os.fdopen(fd, mode, **kwargs) as f:
            yield f
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def temporaries(paths: Iterable[str | os.PathLike]) -> list[Path]:
    """Temporary files that killed writes of ``paths`` left behind (one listing per folder)."""
    names: dict[Path, set[str]] = {}
    for path in map(Path, paths):
        names.setdefault(path.parent, set()).add(path.name)
    found = []
    for folder, wanted in names.items():
        try:
            entries = list(os.scandir(folder))
        except (FileNotFoundError, NotADirectoryError):
            continue
        for entry in entries:
            match = TEMPORARY.match(entry.name)
            if match and match["name"] in wanted:
                found.append(Path(entry.path))
    return found


def remove_temporaries(paths: Iterable[str | os.PathLike]) -> int:
    """Remove what killed writes of ``paths`` left behind (files, or folders); returns how many went.

    Call it before writing ``paths`` again: never while another process writes the same outputs.
    """
    stale = temporaries(paths)
    for path in stale:
        if path.is_dir():  # a frame folder being written (m3l.data.video.ClipWriter)
            shutil.rmtree(path, ignore_errors=True)
        else:
            path.unlink(missing_ok=True)
    return len(stale)
