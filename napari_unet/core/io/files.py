"""Atomic file writes: a file appears whole under its final name, or not at all."""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; on success move it over ``path``.

    The temporary file lives in the same folder so that the final
    :func:`os.replace` is atomic. If the body raises, the temporary file is
    removed and whatever stood at ``path`` before is left untouched.
    """
    path = Path(path)
    folder = path.parent if str(path.parent) else Path(".")
    if not folder.is_dir():
        raise FileNotFoundError(f"cannot write {path}: folder {folder} does not exist")
    if not os.access(folder, os.W_OK):
        raise PermissionError(f"cannot write {path}: folder {folder} is not writable")
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".partial", dir=folder)
    except OSError as e:
        raise PermissionError(f"cannot write {path}: {e.strerror or e}") from e
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        with open(tmp_path, "rb+") as f:
            os.fsync(f.fileno())
        os.chmod(tmp_path, _mode_for(path))
        os.replace(tmp_path, path)
    finally:
        tmp_path.unlink(missing_ok=True)


def _mode_for(path: Path) -> int:
    """The replaced file's permissions, or what a new file gets under the umask.

    (The temporary file is private, as mkstemp makes it; the result must not be.)
    """
    try:
        return path.stat().st_mode & 0o777
    except FileNotFoundError:
        return 0o666 & ~_UMASK


def _read_umask() -> int:
    # Read once, at import: setting the umask to read it is not safe while other threads create files.
    umask = os.umask(0o022)
    os.umask(umask)
    return umask


_UMASK = _read_umask()
