"""Files only their owner can read: ``BEAMRAY_HOME`` holds task arguments and results, tokens, keys and
secrets, so beamray makes its directories 0700 and its files 0600 whatever the umask.

Values that must survive a crash (secrets, tokens, keys) are written whole and fsynced, file and directory,
before a write counts as done; one that reads back empty is an error, never a reason to make a new one.
"""

from __future__ import annotations

import contextlib
import os
import stat
from pathlib import Path
from typing import Iterator

DIR_MODE = 0o700
FILE_MODE = 0o600


def private_dirs(path: Path) -> Path:
    """``path`` as a directory; the parts that are missing are created 0700 (existing ones are left as they are)."""
    missing = []
    part = path
    while not part.is_dir() and part.parent != part:
        missing.append(part)
        part = part.parent
    for directory in reversed(missing):
        with contextlib.suppress(FileExistsError):  # another process made it first
            os.mkdir(directory, DIR_MODE)
            os.chmod(directory, DIR_MODE)  # the umask may have taken bits the owner needs
    return path


def tighten(path: Path) -> None:
    """Take group and other permissions off ``path`` (0644 → 0600, 0755 → 0700: an owner's execute bit
    stays); links are left alone, and a file gone meanwhile is no error."""
    with contextlib.suppress(FileNotFoundError):
        st = os.lstat(path)
        if not stat.S_ISLNK(st.st_mode) and st.st_mode & 0o077:
            os.chmod(path, stat.S_IMODE(st.st_mode) & 0o700)


def private_home(path: Path) -> Path:
    """``path`` as beamray's home: created 0700, or tightened when an older beamray left it open.

    A home that was wider than 0700 was made before beamray kept its files private: everything in it is
    tightened once (a 0700 home is what keeps its contents unreachable, so later calls cost one stat).
    """
    private_dirs(path)
    if stat.S_IMODE(path.stat().st_mode) & 0o077:
        for directory, dirnames, filenames in os.walk(path):
            for name in dirnames + filenames:
                tighten(Path(directory) / name)
        tighten(path)
    return path


def private_opener(path: str | os.PathLike[str], flags: int) -> int:
    """``open(…, opener=private_opener)``: the file is 0600 whatever the umask (an existing one is tightened)."""
    fd = os.open(path, flags, FILE_MODE)
    try:
        os.fchmod(fd, FILE_MODE)
    except BaseException:
        os.close(fd)
        raise
    return fd


@contextlib.contextmanager
def open_private(path: Path, flags: int = os.O_WRONLY | os.O_CREAT | os.O_TRUNC) -> Iterator[int]:
    """A file descriptor of ``path`` opened 0600, closed after the block."""
    fd = private_opener(path, flags)
    try:
        yield fd
    finally:
        os.close(fd)


def write_private(path: Path, data: str | bytes) -> None:
    """Write ``data`` to ``path`` readable by its owner only, atomically (other processes never see half a
    file) and durably (file and directory fsynced: after a crash the file is the old one or the new one)."""
    private_dirs(path.parent)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{os.urandom(4).hex()}.tmp")
    try:
        with open_private(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL) as fd:
            view = memoryview(data.encode() if isinstance(data, str) else data)
            while view:
                view = view[os.write(fd, view):]
            os.fsync(fd)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    fsync_directory(path.parent)


def fsync_directory(path: Path) -> None:
    """Make a rename or a new file in ``path`` durable (the entry lives in the directory)."""
    fd = os.open(path, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def read_value(path: Path, what: str, consequence: str) -> str | None:
    """The stripped text of ``path``, None when it does not exist; an empty file is an error naming it.

    Such a file was lost in a crash or emptied by hand; making a new value would silently break whatever
    holds the old one, so the user decides.
    """
    try:
        text = path.read_text().strip()
    except FileNotFoundError:
        return None
    if not text:
        raise ValueError(damaged_message(path, what, "is empty", consequence))
    return text


def damaged_message(path: Path, what: str, problem: str, consequence: str) -> str:
    """One message for a damaged state file: which file, what it is, and the user's two ways out."""
    return (f"{what} {path} {problem}; restore it from a backup, or delete it to start over ({consequence})")
