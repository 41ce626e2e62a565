"""Files knfleet writes: atomically, through a temporary file created exclusively, and folders private to the user.

A temporary file with a predictable name (`<file>.tmp`, `.<file>.<pid>.tmp`) lets anyone who can write the folder
put a symlink there first: the write then goes wherever the link points. `write_atomic` creates its temporary file
with `O_CREAT | O_EXCL` under a random name (tempfile.mkstemp) in the target's folder, so it never opens something
that was there before; `os.replace` then renames it over the target (a rename replaces a symlink at the target, it
does not follow it).
"""

from __future__ import annotations

import contextlib
import os
import stat
import tempfile
from pathlib import Path


def write_atomic(path: str | os.PathLike[str], data: str | bytes, mode: int = 0o644) -> None:
    """Write `data` to `path` atomically: a new temporary file beside it (exclusive, random name), fsync, `mode`,
    then a rename over `path`. A reader sees the old file or the new one, never half of one."""
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=p.parent, prefix=f".{p.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data.encode("utf-8") if isinstance(data, str) else data)
            fh.flush()
            os.fsync(fh.fileno())
            os.fchmod(fh.fileno(), mode)
        os.replace(tmp, p)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def private_dir(path: str | os.PathLike[str]) -> bool:
    """Make `path` a folder only its user can use (mode 0700), creating it (and its parents) if needed. False when
    that cannot be had: the folder belongs to another user, or its parent can be written by others (who could put
    another folder in its place). A cache that is not private is not used."""
    p = Path(path)
    try:
        p.mkdir(mode=0o700, parents=True, exist_ok=True)
        st = os.lstat(p)
        if not stat.S_ISDIR(st.st_mode) or st.st_uid != os.geteuid():
            return False
        if stat.S_IMODE(st.st_mode) != 0o700:
            os.chmod(p, 0o700)
        parent = os.stat(p.parent)
        if parent.st_mode & (stat.S_IWGRP | stat.S_IWOTH) and not parent.st_mode & stat.S_ISVTX:
            return False  # others may rename this folder away and put theirs in its place
    except OSError:
        return False
    return True
