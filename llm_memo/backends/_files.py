"""Private directories and files for the on-disk stores (0700 / 0600)."""

from __future__ import annotations

import logging
import os
import stat
from pathlib import Path

__all__ = ["check_own_file", "check_shared_dir", "ensure_private_dir", "touch_private_file"]

log = logging.getLogger("llm_memo")


def ensure_private_dir(path: Path) -> Path:
    """Create ``path`` as 0700, or check an existing one.

    An existing directory owned by another user is refused: whoever owns it could
    plant entries. A group- or world-writable one is used with a warning (a shared
    CI cache may be set up that way on purpose); entries are checked on read and
    never unpickled, so planted content can cause misses but never run code.
    """
    path = path.expanduser()
    try:
        path.mkdir(mode=0o700, parents=True)
    except FileExistsError:
        info = path.stat()
        if not stat.S_ISDIR(info.st_mode):
            raise NotADirectoryError(f"{path} exists and is not a directory") from None
        if hasattr(os, "getuid") and info.st_uid != os.getuid():
            raise PermissionError(
                f"refusing cache directory {path}: it is owned by uid {info.st_uid}, not by this user"
            ) from None
        if info.st_mode & (stat.S_IWGRP | stat.S_IWOTH):
            log.warning("llm_memo: cache directory %s is writable by other users; prefer mode 0700", path)
    else:
        os.chmod(path, 0o700)  # mkdir's mode is filtered by the umask
    return path


def touch_private_file(path: Path) -> None:
    """Create ``path`` as an empty 0600 file if it does not exist.

    SQLite then creates its ``-wal`` and ``-shm`` files with the same mode.
    """
    try:
        fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600)
    except FileExistsError:
        return
    os.close(fd)
    os.chmod(path, 0o600)


def check_shared_dir(path: Path) -> None:
    """An existing directory that will hold a SQLite store (and its -wal/-shm files).

    Refused if another user owns it (root's sticky /tmp excepted); used with a
    warning if others may write to it, as for the disk store.
    """
    info = path.stat()
    sticky_root = info.st_uid == 0 and info.st_mode & stat.S_ISVTX
    if hasattr(os, "getuid") and info.st_uid != os.getuid() and not sticky_root:
        raise PermissionError(
            f"refusing cache directory {path}: it is owned by uid {info.st_uid}, not by this user"
        )
    if info.st_mode & (stat.S_IWGRP | stat.S_IWOTH):
        log.warning("llm_memo: cache directory %s is writable by other users; prefer mode 0700", path)


def check_own_file(path: Path) -> None:
    """Refuse a store file (or its -wal/-shm) that another user owns: they could plant entries."""
    for candidate in (path, Path(f"{path}-wal"), Path(f"{path}-shm")):
        try:
            uid = candidate.stat().st_uid
        except FileNotFoundError:
            continue
        if hasattr(os, "getuid") and uid != os.getuid():
            raise PermissionError(f"refusing {candidate}: it is owned by uid {uid}, not by this user")
