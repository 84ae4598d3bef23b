"""Safe file output: every file deepsphere writes appears whole or not at all."""
from __future__ import annotations

import contextlib
import errno
import os
import stat
import tempfile
from pathlib import Path
from typing import Iterator, Union


@contextlib.contextmanager
def atomic_path(path: Union[str, Path]) -> Iterator[Path]:
    """Yield a temporary path beside ``path`` (same folder, same extension); when the block
    ends without error it replaces ``path`` in one ``os.replace``, else it is removed.

    A crash or a kill mid-write therefore never leaves a truncated file where a reader
    (a resumed run, a cache lookup, a user) expects a complete one. The file gets the
    permissions of the one it replaces, or those of a plain ``open`` (0666 less the umask)
    for a new one: ``mkstemp``'s private 0600 would otherwise hide every output from the
    user's group.

    A symbolic link is written through, as ``open(path, "w")`` would: the temporary file
    goes beside the link's final target and replaces the target, so the link stays a link.
    """
    path = Path(os.path.realpath(path))
    if path.is_symlink():  # realpath stops at a loop of links; open() would raise ELOOP
        raise OSError(errno.ELOOP, "cannot write through a loop of symbolic links", str(path))
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=path.suffix or ".tmp")
    try:
        os.fchmod(fd, _mode_for(path))
    finally:
        os.close(fd)
    try:
        yield Path(tmp)
        with open(tmp, "rb+") as f:  # on disk before it takes the real name
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def _mode_for(path: Path) -> int:
    """Permission bits for a file written at ``path``: those of the file it replaces, else
    0666 less the process umask (what ``open(path, "w")`` would give)."""
    try:
        return stat.S_IMODE(os.stat(path).st_mode)
    except OSError:
        umask = os.umask(0)  # reading the umask means setting it; put it back at once
        os.umask(umask)
        return 0o666 & ~umask


def atomic_write_text(text: str, path: Union[str, Path]) -> None:
    """Write ``text`` to ``path`` through :func:`atomic_path`."""
    with atomic_path(path) as tmp:
        tmp.write_text(text)
