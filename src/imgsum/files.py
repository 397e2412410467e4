"""Writing a file so that a failure (a full disk, a kill) never leaves half a file in its place."""

from __future__ import annotations

import contextlib
import os
import tempfile
from pathlib import Path
from typing import Callable


def write_atomic(path: str | Path, write: Callable[[str], None], mode: int = 0o644) -> None:
    """Calls ``write(tmp)`` on a temporary file beside ``path``, then renames it into place.

    On any failure the temporary file is removed and ``path`` keeps what it held before.
    """
    path = Path(path)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
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
