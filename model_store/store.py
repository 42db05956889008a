"""The model store on disk.

Layout::

    <root>/<name>/<version>/manifest.json     one immutable version (version >= 1)
    <root>/<name>/<version>/<artifact files>  hashed in the manifest, verified on load
    <root>/<name>/aliases.json                {"stable": {"version": 3, "weight": null}}
    <root>/.staging/                          registrations in progress (never listed)
    <root>/.trash/                            removals in progress (never listed)
    <root>/.lock                              writers take this lock to allocate versions

A version appears only by ``rename(2)`` of a complete, fsynced staging directory, so an
interrupted registration leaves nothing visible. Readers take no lock.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import shutil
import time
import uuid
from collections.abc import Iterator, Mapping
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from model_store.files import (
    copy_artifact,
    fsync_dir,
    fsync_tree,
    iter_files,
    sha256_file,
    write_atomic,
)
from model_store.manifest import (
    FRAMEWORK_OF,
    FileEntry,
    Lineage,
    Manifest,
    ServingConfig,
    SourceInfo,
)
from model_store.names import check_alias, check_name, is_valid_name, parse_version
from model_store.signature import Signature
from truce.errors import FailedPrecondition, IntegrityError, InvalidArgument, NotFound

MANIFEST = "manifest.json"
ALIASES = "aliases.json"
_STAGING = ".staging"
_TRASH = ".trash"
_STALE_STAGING_S = 24 * 3600

#: canonical artifact name inside a version directory, by format
ARTIFACT_NAMES: dict[str, str] = {
    "torchscript": "model.pt",
    "torch_export": "model.pt2",
    "savedmodel": "saved_model",
    "keras": "model.keras",
    "onnx": "model.onnx",
    "tflite": "model.tflite",
    "executorch": "model.pte",
    "torchscript_lite": "model.ptl",
    "remote": "remote.json",
}


class Alias(BaseModel):
    """An alias points at one version; ``weight`` joins it to traffic splitting."""

    model_config = ConfigDict(extra="forbid")

    version: int = Field(ge=1)
    weight: float | None = Field(default=None, ge=0)


def default_store_root() -> Path:
    """The per-user default: ``$XDG_DATA_HOME/truce/store`` (``~/.local/share/truce/store``)."""
    base = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(base) / "truce" / "store"


def open_store(arg: str | os.PathLike[str] | None = None) -> ModelStore:
    """The store named by ``--store``, else ``$TRUCE_STORE``, else the per-user default."""
    chosen = arg or os.environ.get("TRUCE_STORE") or default_store_root()
    return ModelStore(Path(chosen).expanduser())


class ModelStore:
    """Versioned, checksummed model versions under one root directory."""

    def __init__(self, root: Path) -> None:
        # absolute, so paths handed to worker processes (which run elsewhere) stay valid
        self.root = Path(root).absolute()

    # --- reading ------------------------------------------------------------------------
    def model_names(self) -> list[str]:
        """Models with at least one version; foreign folders (``lost+found``...) are skipped."""
        if not self.root.is_dir():
            return []
        return sorted(
            p.name
            for p in self.root.iterdir()
            if is_valid_name(p.name) and p.is_dir() and self.versions(p.name)
        )

    def versions(self, name: str) -> list[int]:
        check_name(name)
        model_dir = self.root / name
        if not model_dir.is_dir():
            return []
        return sorted(
            int(p.name)
            for p in model_dir.iterdir()
            if p.name.isdigit() and (p / MANIFEST).is_file()
        )

    def version_dir(self, name: str, version: int) -> Path:
        return self.root / check_name(name) / str(version)

    def manifest(self, name: str, version: int) -> Manifest:
        path = self.version_dir(name, version) / MANIFEST
        try:
            raw = path.read_bytes()
        except FileNotFoundError:
            raise NotFound(f"model {name!r} has no version {version}") from None
        try:
            return Manifest.model_validate_json(raw)
        except ValidationError:
            raise IntegrityError(
                f"the manifest of {name}:{version} is damaged; remove that version and "
                "register the model again"
            ) from None

    def aliases(self, name: str) -> dict[str, Alias]:
        path = self.root / check_name(name) / ALIASES
        try:
            data = json.loads(path.read_bytes())
            return {k: Alias.model_validate(v) for k, v in data.items()}
        except FileNotFoundError:
            return {}
        except (ValueError, ValidationError):
            raise IntegrityError(
                f"the aliases of {name!r} are damaged; set them again with 'truce models alias'"
            ) from None

    def resolve(self, name: str, ref: str | None = None) -> int:
        """A version number for ``ref``: None/'latest' (newest), a number, or an alias."""
        versions = self.versions(name)
        if not versions:
            raise NotFound(f"no model named {name!r}; see 'truce models list'")
        if ref is None or ref == "latest":
            return versions[-1]
        if ref.isdigit():
            v = parse_version(ref)
            if v not in versions:
                raise NotFound(f"model {name!r} has no version {v}; it has {_ranges(versions)}")
            return v
        alias = self.aliases(name).get(ref)
        if alias is None:
            raise NotFound(f"model {name!r} has no alias {ref!r}")
        if alias.version not in versions:
            raise NotFound(f"alias {name}@{ref} points at version {alias.version}, now removed")
        return alias.version

    def verify(self, name: str, version: int) -> Manifest:
        """Re-hash every artifact file; raise ``IntegrityError`` on any difference."""
        manifest = self.manifest(name, version)
        vdir = self.version_dir(name, version)
        listed = {f.path: f for f in manifest.files}
        present = {rel: p for rel, p in iter_files(vdir) if rel != MANIFEST}
        bad = sorted(set(listed) ^ set(present))
        for rel, entry in listed.items():
            if rel in present and (
                present[rel].stat().st_size != entry.size
                or sha256_file(present[rel]) != entry.sha256
            ):
                bad.append(rel)
        if bad:
            raise IntegrityError(
                f"{name}:{version} failed its integrity check ({', '.join(sorted(bad)[:3])} "
                "changed, missing or unexpected); remove this version and register it again"
            )
        return manifest

    def fingerprint(self) -> str:
        """Changes whenever a version or an alias is added, removed or changed."""
        h = hashlib.sha256()
        for name in self.model_names():
            h.update(name.encode())
            h.update(repr(self.versions(name)).encode())
            with contextlib.suppress(FileNotFoundError):
                st = (self.root / name / ALIASES).stat()
                h.update(f"{st.st_mtime_ns}:{st.st_size}".encode())
        return h.hexdigest()

    # --- writing ------------------------------------------------------------------------
    def add_version(
        self,
        name: str,
        artifact: Path,
        *,
        format: str,
        signature: Signature,
        lineage: Lineage | None = None,
        serving: ServingConfig | None = None,
        labels: Mapping[str, str] | None = None,
        source: SourceInfo | None = None,
        extra_files: Mapping[str, Path] | None = None,
        remote: dict[str, object] | None = None,
    ) -> Manifest:
        """Copy ``artifact`` (and ``extra_files``, keyed by relative name) into a new version.

        Atomic: everything is written and fsynced in a staging directory inside the store,
        then renamed into place under the store lock. Returns the new manifest.
        """
        check_name(name)
        if format not in ARTIFACT_NAMES:
            raise InvalidArgument(f"unknown format {format!r}")
        staging = self._new_staging()
        try:
            artifact_name = ARTIFACT_NAMES[format]
            copy_artifact(artifact, staging / artifact_name)
            for rel, src in (extra_files or {}).items():
                dest = (staging / rel).resolve()
                if not dest.is_relative_to(staging.resolve()) or rel in (MANIFEST, artifact_name):
                    raise InvalidArgument(f"extra file name {rel!r} is not allowed")
                dest.parent.mkdir(parents=True, exist_ok=True)
                copy_artifact(src, dest)
            files = [
                FileEntry(path=rel, sha256=sha256_file(p), size=p.stat().st_size)
                for rel, p in iter_files(staging)
            ]
            fsync_tree(staging)
            with self._lock():
                version = (self.versions(name) or [0])[-1] + 1
                manifest = Manifest(
                    name=name,
                    version=version,
                    framework=FRAMEWORK_OF[format],
                    format=format,  # type: ignore[arg-type]
                    artifact=artifact_name,
                    signature=signature,
                    files=files,
                    source=source,
                    lineage=lineage or Lineage(),
                    serving=serving or ServingConfig(),
                    labels=dict(labels or {}),
                    remote=remote,
                )
                write_atomic(staging / MANIFEST, manifest.model_dump_json(indent=2).encode())
                model_dir = self.root / name
                model_dir.mkdir(exist_ok=True)
                staging.rename(model_dir / str(version))
                fsync_dir(model_dir)
            return manifest
        finally:
            if staging.exists():
                shutil.rmtree(staging, ignore_errors=True)

    def set_alias(self, name: str, alias: str, version: int, weight: float | None = None) -> None:
        check_alias(alias)
        with self._lock():
            if version not in self.versions(name):
                raise NotFound(f"model {name!r} has no version {version}")
            aliases = self.aliases(name)
            aliases[alias] = Alias(version=version, weight=weight)
            self._write_aliases(name, aliases)

    def remove_alias(self, name: str, alias: str) -> None:
        with self._lock():
            aliases = self.aliases(name)
            if aliases.pop(check_alias(alias), None) is None:
                raise NotFound(f"model {name!r} has no alias {alias!r}")
            self._write_aliases(name, aliases)

    def remove(self, name: str, version: int | None = None) -> list[int]:
        """Remove one version (refused while an alias points at it) or the whole model."""
        with self._lock():
            versions = self.versions(name)
            if not versions:
                raise NotFound(f"no model named {name!r}")
            if version is None:
                target, removed = self.root / name, versions
            else:
                if version not in versions:
                    raise NotFound(f"model {name!r} has no version {version}")
                pointing = sorted(a for a, v in self.aliases(name).items() if v.version == version)
                if pointing:
                    raise FailedPrecondition(
                        f"{name}:{version} is aliased as {', '.join(pointing)}; move or remove "
                        "the alias first ('truce models alias')"
                    )
                target, removed = self.version_dir(name, version), [version]
            trash = self.root / _TRASH / uuid.uuid4().hex
            trash.parent.mkdir(exist_ok=True)
            target.rename(trash)
        shutil.rmtree(trash, ignore_errors=True)
        return removed

    # --- internals ----------------------------------------------------------------------
    def _write_aliases(self, name: str, aliases: dict[str, Alias]) -> None:
        data = {k: v.model_dump() for k, v in sorted(aliases.items())}
        write_atomic(self.root / name / ALIASES, json.dumps(data, indent=2).encode())

    def _new_staging(self) -> Path:
        staging_root = self.root / _STAGING
        staging_root.mkdir(parents=True, exist_ok=True)
        now = time.time()
        for old in staging_root.iterdir():
            with contextlib.suppress(OSError):
                if now - old.stat().st_mtime > _STALE_STAGING_S:
                    shutil.rmtree(old, ignore_errors=True)
        path = staging_root / uuid.uuid4().hex
        path.mkdir()
        return path

    @contextlib.contextmanager
    def _lock(self) -> Iterator[None]:
        self.root.mkdir(parents=True, exist_ok=True)
        with (self.root / ".lock").open("a") as f:
            fcntl.flock(f, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(f, fcntl.LOCK_UN)


def _ranges(versions: list[int]) -> str:
    if len(versions) <= 5:
        return "versions " + ", ".join(map(str, versions))
    return f"versions {versions[0]}..{versions[-1]}"
