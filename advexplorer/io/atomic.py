"""Atomic file and folder writes: a crash never leaves half a report or half a run folder.

Everything is first written under a hidden temporary name *in the destination's folder*
(so the final step is a rename on one file system, which POSIX and Windows make atomic),
then moved into place. Without ``overwrite=True`` an existing destination is never
replaced: the refusal is a :class:`~advexplorer.errors.UserError` that says how to proceed.

A writer killed outright (``kill -9``, a power cut) cannot remove its temporary; the next
write to the same place does. Temporary names carry the writer's process id
(``.report.html.4242-9f3a1c2b.tmp``), so only leftovers of processes that no longer run are
removed and a write in progress elsewhere is left alone.

An empty destination folder that the user made read-only is refused, not swapped for a
fresh writable folder of the same name.

For single files the no-clobber move is ``os.link`` (fails if the name exists, atomically,
so two writers racing for one name cannot both win); where hard links are unsupported
(some network and FAT file systems) it falls back to check-then-rename.

Typical use::

    atomic_write_text(path, html, overwrite=args.overwrite)

    with atomic_path(path, overwrite=False) as temporary:   # for writers that need a name
        pdf_writer.write(temporary)

    with atomic_directory(out_dir) as folder:                # a run folder, all or nothing
        (folder / "record.json").write_text(...)
"""

from __future__ import annotations

import contextlib
import errno
import os
import secrets
import shutil
import stat
import time
from collections.abc import Iterator
from pathlib import Path

from advexplorer.errors import UserError

__all__ = [
    "atomic_write_bytes", "atomic_write_text", "atomic_path", "atomic_directory",
    "check_destination", "remove_leftovers",
]


#: Kinds of temporary beside a destination: a file being written, a folder being filled,
#: an old folder being retired by an overwrite.
TEMPORARY_KINDS = ("tmp", "partial", "old")
#: Leftovers named before temporaries carried a process id are stale after this long.
UNOWNED_STALE_S = 24 * 3600


def _temporary_name(path: Path, kind: str) -> Path:
    # Hidden, unique, in the same folder (the final rename never crosses file systems) and
    # named after this process, so a later writer can tell a dead writer's leftover.
    return path.with_name(f".{path.name}.{os.getpid()}-{secrets.token_hex(4)}.{kind}")


def _process_runs(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # exists, owned by someone else
        return True
    return True


def _is_stale(leftover: Path, owner: str) -> bool:
    """A leftover's writer is gone: its process no longer runs (or, unnamed, it is old)."""
    pid_text = owner.split("-", 1)[0] if "-" in owner else ""
    if pid_text.isdigit():
        return int(pid_text) != os.getpid() and not _process_runs(int(pid_text))
    try:
        return time.time() - leftover.lstat().st_mtime > UNOWNED_STALE_S
    except OSError:
        return False


def remove_leftovers(path: str | os.PathLike) -> list[Path]:
    """Remove temporaries of ``path`` left beside it by killed writers; return what went.

    Called by every atomic write before it starts, so a ``.partial`` folder or ``.tmp``
    file from a ``kill -9`` disappears with the next write to the same place.
    """
    path = Path(path).expanduser()
    prefix = f".{path.name}."
    removed = []
    try:
        candidates = [p for p in path.parent.iterdir() if p.name.startswith(prefix)]
    except OSError:
        return removed
    for leftover in candidates:
        owner, dot, kind = leftover.name[len(prefix):].rpartition(".")
        if not dot or kind not in TEMPORARY_KINDS or "." in owner or not _is_stale(leftover, owner):
            continue
        if leftover.is_dir() and not leftover.is_symlink():
            shutil.rmtree(leftover, ignore_errors=True)
        else:
            with contextlib.suppress(OSError):
                leftover.unlink()
        removed.append(leftover)
    return removed


def _read_only(folder: Path) -> bool:
    """The user took write permission away (root may still write, but should not)."""
    mode = folder.stat().st_mode
    return not os.access(folder, os.W_OK) or not mode & (stat.S_IWUSR | stat.S_IWGRP | stat.S_IWOTH)


def check_destination(path: str | os.PathLike, *, overwrite: bool = False,
                      directory: bool = False) -> Path:
    """Fail early (before any long computation) if ``path`` may not be written.

    A file destination must not exist unless ``overwrite``; a folder destination may exist
    if it is empty. The parent folder is created if missing. Returns the path as a Path.
    """
    path = Path(path).expanduser()
    if directory:
        if path.exists() and not path.is_dir():
            raise UserError(f"{path} exists and is not a folder; choose another output folder.")
        if path.is_dir() and any(path.iterdir()) and not overwrite:
            raise UserError(f"Output folder {path} is not empty; choose a new folder or pass "
                            "--overwrite to replace it.")
        if path.is_dir() and _read_only(path):
            raise UserError(f"Output folder {path} is read-only; make it writable (chmod u+w) or "
                            "choose another folder.")
    else:
        if path.is_dir():
            raise UserError(f"{path} is a folder; give a file name such as {path / 'report.html'}.")
        if path.exists() and not overwrite:
            raise UserError(f"{path} already exists; choose another name or pass --overwrite "
                            "to replace it.")
    parent = path.parent
    try:
        parent.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise UserError(f"Cannot create the folder {parent}: {error.strerror or error}.") from None
    if not os.access(parent, os.W_OK):
        raise UserError(f"The folder {parent} is not writable; choose another location.")
    return path


def _commit_file(temporary: Path, path: Path, overwrite: bool) -> None:
    if overwrite:
        os.replace(temporary, path)
        return
    try:
        os.link(temporary, path)
    except FileExistsError:
        raise UserError(f"{path} already exists; choose another name or pass --overwrite "
                        "to replace it.") from None
    except OSError as error:
        if error.errno not in (errno.EPERM, errno.ENOTSUP, errno.EOPNOTSUPP, errno.EXDEV,
                               errno.EMLINK, errno.EACCES, errno.ENOSYS):
            raise
        # No hard links here: check, then rename (a tiny race window remains).
        if path.exists():
            raise UserError(f"{path} already exists; choose another name or pass --overwrite "
                            "to replace it.") from None
        os.replace(temporary, path)
        return
    temporary.unlink()


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike, *, overwrite: bool = False) -> Iterator[Path]:
    """Yield a temporary file name beside ``path``; on success move it to ``path``.

    If the block raises, the temporary file is deleted and ``path`` is left as it was
    (absent, or the previous file untouched).
    """
    path = check_destination(path, overwrite=overwrite)
    remove_leftovers(path)
    temporary = _temporary_name(path, "tmp")
    try:
        yield temporary
        if not temporary.exists():
            raise RuntimeError(f"nothing was written to the temporary file for {path}")
        _commit_file(temporary, path, overwrite)
    finally:
        with contextlib.suppress(FileNotFoundError):
            temporary.unlink()


def atomic_write_bytes(path: str | os.PathLike, data: bytes, *, overwrite: bool = False) -> Path:
    """Write ``data`` to ``path`` atomically (flushed to disk before the rename)."""
    with atomic_path(path, overwrite=overwrite) as temporary:
        with open(temporary, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
    return Path(path).expanduser()


def atomic_write_text(path: str | os.PathLike, text: str, *, overwrite: bool = False,
                      encoding: str = "utf-8") -> Path:
    """Write ``text`` to ``path`` atomically (UTF-8 by default)."""
    return atomic_write_bytes(path, text.encode(encoding), overwrite=overwrite)


@contextlib.contextmanager
def atomic_directory(path: str | os.PathLike, *, overwrite: bool = False) -> Iterator[Path]:
    """Yield a temporary folder beside ``path``; on success it becomes ``path``.

    ``path`` may already exist if it is empty. A non-empty ``path`` is refused unless
    ``overwrite``, in which case the old folder is replaced only after the new one is
    complete. If the block raises, the temporary folder is removed and ``path`` is as before.
    """
    path = check_destination(path, overwrite=overwrite, directory=True)
    remove_leftovers(path)
    temporary = _temporary_name(path, "partial")
    temporary.mkdir()
    try:
        yield temporary
        if path.is_dir() and any(path.iterdir()):
            if not overwrite:
                raise UserError(f"Output folder {path} is not empty; choose a new folder or "
                                "pass --overwrite to replace it.")
            retired = _temporary_name(path, "old")
            os.replace(path, retired)
            os.replace(temporary, path)
            shutil.rmtree(retired, ignore_errors=True)
        else:
            if path.is_dir():
                path.rmdir()  # empty: rename cannot replace it on every platform
            os.replace(temporary, path)
    finally:
        if temporary.exists():
            shutil.rmtree(temporary, ignore_errors=True)
