"""Writing a file so that a failure (a full disk, a kill) never leaves half a file in its place."""

from __future__ import annotations

import contextlib
import logging
import os
import tempfile
from pathlib import Path
from typing import Callable

logger = logging.getLogger(__name__)

TEMPORARY_SUFFIX = ".tmp"


def write_atomic(path: str | Path, write: Callable[[str], None], mode: int = 0o644) -> None:
    """Calls ``write(tmp)`` on a temporary file beside ``path``, then renames it into place.

    On any failure the temporary file is removed and ``path`` keeps what it held before; a process killed
    outright (SIGKILL, power loss) leaves it, named ``.NAME.*.tmp``, for :func:`remove_leftovers`.
    """
    path = Path(path)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=TEMPORARY_SUFFIX)
    os.close(fd)
    try:
        write(tmp)
        os.chmod(tmp, mode)  # mkstemp makes it private; these are ordinary files
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def write_text_atomic(path: str | Path, text: str) -> None:
    write_atomic(path, lambda tmp: Path(tmp).write_text(text, encoding="utf-8"))


def remove_leftovers(folder: str | Path) -> list[Path]:
    """Deletes the temporary files that writers killed mid-write left in ``folder`` (``.NAME.*.tmp``, as made by
    :func:`write_atomic`); returns them. Only for a folder that one process writes, such as a training run's."""
    leftovers = sorted(Path(folder).glob(f".*{TEMPORARY_SUFFIX}"))
    for path in leftovers:
        with contextlib.suppress(FileNotFoundError):
            path.unlink()
            logger.info("removed %s, left by a write that was killed", path)
    return leftovers
