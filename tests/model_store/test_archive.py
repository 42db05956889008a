"""Safe archive extraction: every unsafe entry is refused before anything is written."""

from __future__ import annotations

import io
import stat
import tarfile
import zipfile
from pathlib import Path

import pytest

from model_store.archive import safe_extract
from truce.errors import InvalidArgument


def _zip(path: Path, entries: dict[str, bytes], link: str | None = None) -> Path:
    with zipfile.ZipFile(path, "w") as zf:
        for name, data in entries.items():
            zf.writestr(name, data)
        if link:
            info = zipfile.ZipInfo(link)
            info.external_attr = (stat.S_IFLNK | 0o777) << 16
            zf.writestr(info, "/etc/passwd")
    return path


def _tar(path: Path, build: object) -> Path:
    with tarfile.open(path, "w:gz") as tf:
        build(tf)  # type: ignore[operator]
    return path


def _add(tf: tarfile.TarFile, name: str, data: bytes = b"x", kind: bytes = tarfile.REGTYPE) -> None:
    info = tarfile.TarInfo(name)
    info.size = len(data) if kind == tarfile.REGTYPE else 0
    info.type = kind
    if kind in (tarfile.SYMTYPE, tarfile.LNKTYPE):
        info.linkname = "/etc/passwd"
    tf.addfile(info, io.BytesIO(data) if kind == tarfile.REGTYPE else None)


def test_good_zip_and_tar(tmp_path: Path) -> None:
    z = _zip(tmp_path / "a.zip", {"MAR-INF/MANIFEST.json": b"{}", "model.pt": b"abc"})
    assert sorted(safe_extract(z, tmp_path / "z")) == ["MAR-INF/MANIFEST.json", "model.pt"]
    assert (tmp_path / "z" / "model.pt").read_bytes() == b"abc"
    t = _tar(tmp_path / "a.tgz", lambda tf: _add(tf, "dir/f.bin", b"12345"))
    assert safe_extract(t, tmp_path / "t") == ["dir/f.bin"]


@pytest.mark.parametrize(
    "entries",
    [
        {"../escape.txt": b"x"},
        {"/abs/path.txt": b"x"},
        {"ok.txt": b"x", "a/../../escape.txt": b"x"},
        {"a\\..\\b": b"x"},
    ],
)
def test_zip_traversal_refused_before_writing(tmp_path: Path, entries: dict[str, bytes]) -> None:
    z = _zip(tmp_path / "bad.zip", entries)
    target = tmp_path / "out"
    with pytest.raises(InvalidArgument, match="unsafe archive"):
        safe_extract(z, target)
    assert not target.exists() or list(target.iterdir()) == []
    assert not (tmp_path / "escape.txt").exists()


def test_zip_symlink_refused(tmp_path: Path) -> None:
    z = _zip(tmp_path / "l.zip", {"ok": b"1"}, link="link")
    with pytest.raises(InvalidArgument, match="link"):
        safe_extract(z, tmp_path / "out")
    assert not (tmp_path / "out" / "ok").exists()


@pytest.mark.parametrize("kind", [tarfile.SYMTYPE, tarfile.LNKTYPE, tarfile.CHRTYPE])
def test_tar_links_and_devices_refused(tmp_path: Path, kind: bytes) -> None:
    t = _tar(tmp_path / "l.tgz", lambda tf: (_add(tf, "ok"), _add(tf, "evil", kind=kind)))
    with pytest.raises(InvalidArgument, match="unsafe archive"):
        safe_extract(t, tmp_path / "out")
    assert not (tmp_path / "out" / "ok").exists()


def test_caps_on_count_and_size(tmp_path: Path) -> None:
    z = _zip(tmp_path / "many.zip", {f"f{i}": b"x" for i in range(20)})
    with pytest.raises(InvalidArgument, match="more than 10 entries"):
        safe_extract(z, tmp_path / "o1", max_entries=10)
    big = _zip(tmp_path / "big.zip", {"f": b"\0" * 5000})
    with pytest.raises(InvalidArgument, match="expands to more than"):
        safe_extract(big, tmp_path / "o2", max_bytes=4096)


def test_duplicate_entries_and_non_archives(tmp_path: Path) -> None:
    t = _tar(tmp_path / "dup.tgz", lambda tf: (_add(tf, "a"), _add(tf, "a")))
    with pytest.raises(InvalidArgument, match="twice"):
        safe_extract(t, tmp_path / "o")
    junk = tmp_path / "junk.mar"
    junk.write_bytes(b"not an archive at all")
    with pytest.raises(InvalidArgument, match="not a zip or tar"):
        safe_extract(junk, tmp_path / "o2")
