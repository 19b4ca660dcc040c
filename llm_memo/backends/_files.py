"""Private directories and files for the on-disk stores (0700 / 0600)."""

from __future__ import annotations

import logging
import os
import stat
from pathlib import Path

__all__ = ["ensure_private_dir", "touch_private_file"]

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
