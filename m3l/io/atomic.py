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


def _umask() -> int:
    """The process's umask (mkstemp / mkdtemp make 0600 / 0700 entries); read once, at import."""
    umask = os.umask(0o022)
    os.umask(umask)
    return umask


FILE_MODE = 0o666 & ~_umask()    # what an ordinary new file gets
FOLDER_MODE = 0o777 & ~_umask()  # what an ordinary new folder gets


def temporary(path: str | os.PathLike, folder: bool = False) -> Path:
    """A new, empty temporary file (or folder) beside ``path``, named ``.NAME.XXXXXXXX.tmp`` so that
    :func:`remove_temporaries` finds it if the write is killed, with an ordinary file's (folder's) mode."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if folder:
        tmp = tempfile.mkdtemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
        os.chmod(tmp, FOLDER_MODE)
    else:
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
        os.fchmod(fd, FILE_MODE)
        os.close(fd)
    return Path(tmp)


def discard(path: str | os.PathLike) -> None:
    """Remove a temporary file or folder, if it is there."""
    path = Path(path)
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    else:
        path.unlink(missing_ok=True)


@contextmanager
def atomic_write(path: str | os.PathLike, mode: str = "wb", **kwargs) -> Iterator:
    """``with atomic_write(path) as f: ...`` writes ``f`` to ``path`` through a temporary file and a rename.

    ``mode`` and ``kwargs`` go to :func:`open` (``"w", newline=""`` for text). On any error the
    temporary file is removed and ``path`` keeps what it held before.
    """
    tmp = temporary(path)
    try:
        with open(tmp, mode, **kwargs) as f:
            yield f
        os.replace(tmp, path)
    except BaseException:
        discard(tmp)
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
    for path in stale:  # files, and frame folders being written (m3l.data.video.ClipWriter)
        discard(path)
    return len(stale)
