"""Writing files on this machine (the operator's, or a node running `join --local`): atomically, with private
directories."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path


def private_dirs(path: Path) -> None:
    """mkdir -p with 0700 on every level created (Path.mkdir applies mode to the last level only)."""
    if not path.exists():
        private_dirs(path.parent)
        path.mkdir(mode=0o700, exist_ok=True)


def write_atomic(path: Path, data: bytes, mode: int) -> None:
    """Write via a temp file in the same directory and rename: readers see the old or the new file, never half."""
    private_dirs(path.parent)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        os.fchmod(fd, mode)
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_if_changed(path: Path, data: bytes, mode: int) -> bool:
    """write_atomic unless the file already holds `data`; True when written."""
    if path.is_file() and path.read_bytes() == data:
        return False
    write_atomic(path, data, mode)
    return True
