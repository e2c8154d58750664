"""Atomic file writes: a path is either absent or complete, never half-written (crash, Ctrl-C); and how an
input path that is no file is named to the user."""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any


@contextmanager
def atomic_write(path: str | Path, mode: str = "wb") -> Iterator[IO]:
    """Open a temporary file beside ``path``; rename it to ``path`` only if the block succeeds. A failed
    write (a full disk) names ``path``, not the temporary file, which is gone."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, mode) as f:
            yield f
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp creates 0600; give the file the usual mode
        os.replace(tmp, path)
    except OSError as exc:
        Path(tmp).unlink(missing_ok=True)
        if exc.errno is None or exc.filename not in (None, tmp):
            raise
        raise OSError(exc.errno, exc.strerror, str(path)) from None
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def write_json(data: Any, path: str | Path) -> None:
    with atomic_write(path, "w") as f:
        json.dump(data, f, indent=2)


def not_a_file(path: str | Path) -> str:
    """What ``path``, which is not a regular file, is, as the words after its name in an error."""
    path = Path(path)
    if path.is_dir():
        return "is a directory"
    if path.exists():  # reading a FIFO waits for a writer forever; a device never ends
        return "is not a regular file (a pipe, device or socket)"
    return "does not exist"
