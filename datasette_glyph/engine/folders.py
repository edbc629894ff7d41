"""Folders the store writes files into (kept originals, uploads): created private to the server's user, or
refused when someone else could read or replace what is written there."""

from __future__ import annotations

import contextlib
import os
import stat
from pathlib import Path
from typing import Optional


class UnsafeFolder(Exception):
    """The folder is not private to this process's user; nothing may be written there."""

    status = 503

    def __init__(self, message: str):
        super().__init__(message)
        self.message = message


def made_private(path: Path, what: str = "upload folder", setting: str = "upload_dir") -> Optional[str]:
    """Create ``path`` (0700) or check it; return a note when an existing folder had to be closed to others."""
    if not path.parent.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
    with contextlib.suppress(FileExistsError):
        os.mkdir(path, 0o700)
    try:
        info = os.lstat(path)
    except OSError as e:
        raise UnsafeFolder(f"The {what} {path} cannot be used: {e.strerror}") from None
    if stat.S_ISLNK(info.st_mode):
        raise UnsafeFolder(
            f"The {what} {path} is a symbolic link; refusing to write uploads through it. "
            f"Set {setting} to a real folder that only the server's user can write to."
        )
    if not stat.S_ISDIR(info.st_mode):
        raise UnsafeFolder(f"The {what} {path} exists and is not a folder")
    me = os.getuid()
    if info.st_uid != me:
        raise UnsafeFolder(
            f"The {what} {path} belongs to user id {info.st_uid}, not to the server's user ({me}): whoever "
            f"owns it could read or replace uploads. Remove it, or set {setting} to a folder of the server's user."
        )
    if info.st_mode & 0o077:
        os.chmod(path, 0o700)
        return (
            f"the {what} {path} was open to other users (mode {stat.S_IMODE(info.st_mode):04o}); "
            "it is now private (0700)"
        )
    return None
