"""File helpers for the store: hashing, copying without links, durable writes."""

from __future__ import annotations

import hashlib
import os
import shutil
from pathlib import Path

from truce.errors import InvalidArgument

_CHUNK = 1 << 20


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        while chunk := f.read(_CHUNK):
            h.update(chunk)
    return h.hexdigest()


def sha256_tree(path: Path) -> str:
    """One hash for a file, or for a directory's relative paths and contents."""
    if path.is_file():
        return sha256_file(path)
    h = hashlib.sha256()
    for rel, f in iter_files(path):
        h.update(rel.encode())
        h.update(b"\0")
        h.update(sha256_file(f).encode())
    return h.hexdigest()


def iter_files(root: Path) -> list[tuple[str, Path]]:
    """Every regular file below ``root`` as (posix relative path, path), sorted."""
    out: list[tuple[str, Path]] = []
    for dirpath, _dirs, files in os.walk(root):
        for fn in files:
            p = Path(dirpath) / fn
            out.append((p.relative_to(root).as_posix(), p))
    return sorted(out)


def refuse_links(root: Path) -> None:
    """Raise if a directory artifact contains symlinks or special files (they could escape)."""
    for dirpath, dirs, files in os.walk(root):
        for entry in (*dirs, *files):
            p = Path(dirpath) / entry
            if p.is_symlink():
                raise InvalidArgument(
                    f"the model directory contains a symbolic link ({entry}); "
                    "replace links with real files and register again"
                )
            if not (p.is_dir() or p.is_file()):
                raise InvalidArgument(f"the model directory contains a special file ({entry})")


def copy_artifact(src: Path, dst: Path) -> None:
    """Copy a file or a link-free directory tree."""
    if src.is_dir():
        refuse_links(src)
        shutil.copytree(src, dst, symlinks=False)
    else:
        shutil.copyfile(src, dst)


def fsync_tree(root: Path) -> None:
    """Flush every file and directory below ``root`` so a crash cannot expose torn files."""
    for dirpath, _dirs, files in os.walk(root):
        for fn in files:
            fd = os.open(Path(dirpath) / fn, os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
        fsync_dir(Path(dirpath))


def fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_atomic(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` via a temporary file and a rename."""
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    with tmp.open("wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    tmp.replace(path)
    fsync_dir(path.parent)
