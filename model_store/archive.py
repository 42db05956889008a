"""Safe extraction of untrusted archives (TorchServe ``.mar``, edge bundles, uploads).

Every entry is checked before anything is written: no absolute paths, no ``..``, no links
or device files, a cap on the entry count and on the total size. Extraction then counts the
bytes actually written, so an archive whose headers lie about sizes cannot fill the disk.
"""

from __future__ import annotations

import stat
import tarfile
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import IO

from truce.errors import InvalidArgument

MAX_ENTRIES = 10_000
MAX_TOTAL_BYTES = 8 << 30
_CHUNK = 1 << 20


@dataclass(frozen=True)
class _Entry:
    name: str
    size: int
    is_dir: bool


def _check_name(name: str) -> None:
    p = PurePosixPath(name)
    if not name or "\\" in name or "\0" in name or p.is_absolute() or ".." in p.parts:
        raise InvalidArgument(
            f"unsafe archive: entry {name[:100]!r} would be written outside the target folder"
        )


def _zip_entries(zf: zipfile.ZipFile) -> Iterator[_Entry]:
    for info in zf.infolist():
        kind = stat.S_IFMT(info.external_attr >> 16)  # 0: no Unix type recorded
        if kind not in (0, stat.S_IFREG, stat.S_IFDIR):
            raise InvalidArgument(
                f"unsafe archive: entry {info.filename[:100]!r} is a link or special file"
            )
        yield _Entry(info.filename, info.file_size, info.is_dir())


def _tar_entries(tf: tarfile.TarFile) -> Iterator[_Entry]:
    for m in tf.getmembers():
        if m.issym() or m.islnk():
            raise InvalidArgument(f"unsafe archive: entry {m.name[:100]!r} is a link")
        if not (m.isfile() or m.isdir()):
            raise InvalidArgument(f"unsafe archive: entry {m.name[:100]!r} is a special file")
        yield _Entry(m.name, m.size, m.isdir())


def _check_all(entries: Iterator[_Entry], max_entries: int, max_bytes: int) -> list[_Entry]:
    checked: list[_Entry] = []
    seen: set[str] = set()
    total = 0
    for e in entries:
        _check_name(e.name)
        key = e.name.rstrip("/")
        if key in seen:
            raise InvalidArgument(f"unsafe archive: entry {e.name[:100]!r} appears twice")
        seen.add(key)
        checked.append(e)
        total += e.size
        if len(checked) > max_entries:
            raise InvalidArgument(f"archive has more than {max_entries} entries")
        if total > max_bytes:
            raise InvalidArgument(f"archive expands to more than {max_bytes >> 20} MiB")
    return checked


def _copy_bounded(src: IO[bytes], dst: Path, budget: list[int]) -> None:
    with dst.open("xb") as out:
        while chunk := src.read(_CHUNK):
            budget[0] -= len(chunk)
            if budget[0] < 0:
                raise InvalidArgument("archive expands to more than its declared size limit")
            out.write(chunk)


def safe_extract(
    archive: Path,
    target: Path,
    *,
    max_entries: int = MAX_ENTRIES,
    max_bytes: int = MAX_TOTAL_BYTES,
) -> list[str]:
    """Extract a zip or tar(.gz) archive into the empty directory ``target``.

    Returns the extracted file names. Raises ``InvalidArgument`` (writing nothing) when any
    entry is unsafe or the caps are exceeded; raises it too for files that are no archive.
    """
    try:
        return _extract(archive, target, max_entries, max_bytes)
    except (OSError, EOFError, zipfile.BadZipFile, tarfile.TarError):
        raise InvalidArgument(
            "the archive is damaged or its entries conflict with each other"
        ) from None


def _extract(
    archive: Path,
    target: Path,
    max_entries: int,
    max_bytes: int,
) -> list[str]:
    target.mkdir(parents=True, exist_ok=True)
    budget = [max_bytes]
    names: list[str] = []
    if zipfile.is_zipfile(archive):
        with zipfile.ZipFile(archive) as zf:
            entries = _check_all(_zip_entries(zf), max_entries, max_bytes)
            for e in entries:
                dest = target / e.name
                if e.is_dir:
                    dest.mkdir(parents=True, exist_ok=True)
                    continue
                dest.parent.mkdir(parents=True, exist_ok=True)
                with zf.open(e.name) as src:
                    _copy_bounded(src, dest, budget)
                names.append(e.name)
        return names
    try:
        tf = tarfile.open(archive)  # noqa: SIM115 - closed below
    except tarfile.TarError:
        raise InvalidArgument("not a zip or tar archive") from None
    with tf:
        entries = _check_all(_tar_entries(tf), max_entries, max_bytes)
        for e in entries:
            dest = target / e.name
            if e.is_dir:
                dest.mkdir(parents=True, exist_ok=True)
                continue
            dest.parent.mkdir(parents=True, exist_ok=True)
            member = tf.extractfile(e.name)
            if member is None:
                raise InvalidArgument(f"archive entry {e.name[:100]!r} cannot be read")
            with member:
                _copy_bounded(member, dest, budget)
            names.append(e.name)
    return names
