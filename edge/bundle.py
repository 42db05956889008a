"""Edge bundles on the host: build a bundle directory and its ``.tar.gz``, open and verify.

Layout (``bundle.json`` lists the sha256 and size of every other file)::

    bundle.json          signature, model + source version, lineage and parity, requirements
    bundle.sig           optional Ed25519 signature of bundle.json (see edge/runner/verify.py)
    model/<file>         the model (.tflite, .ptl or .pte)
    edge/...             the runner: python3 -m edge.runner run|bench|serve|verify .
    requirements.txt     what the device needs (numpy + ai-edge-litert, or torch)
    README.md            how to run it on the target

Archives are deterministic (sorted entries, zeroed owners and times) so the same bundle gives
the same sha256. Opening an archive goes through ``edge.runner.remote.safe_extract``, the same
code the device uses.
"""

from __future__ import annotations

import gzip
import io
import json
import os
import shutil
import tarfile
import tempfile
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from edge import signing
from edge.runner import RUNNER_VERSION
from edge.runner.remote import Refused, safe_extract
from edge.runner.verify import (
    BUNDLE_FORMAT,
    BUNDLE_JSON,
    SIGNATURE_FILE,
    BundleError,
    sha256_file,
    verify_bundle,
)
from truce import __version__
from truce.errors import AlreadyExists, IntegrityError, InvalidArgument

EDGE_DIR = Path(__file__).resolve().parent
MODEL_FILE = {"tflite": "model.tflite", "torchscript_lite": "model.ptl", "executorch": "model.pte"}


def runner_files() -> dict[str, Path]:
    """The files copied into every bundle: bundle path -> source file."""
    files = {
        "edge/__init__.py": EDGE_DIR / "__init__.py",
        "edge/interpreter.py": EDGE_DIR / "interpreter.py",
    }
    for p in sorted((EDGE_DIR / "runner").glob("*.py")):
        files[f"edge/runner/{p.name}"] = p
    return files


def requirements_for(fmt: str) -> list[str]:
    """Lines of the device's ``requirements.txt`` for a model format."""
    wheels = (
        'platform_machine == "aarch64" or platform_machine == "x86_64" '
        'or platform_system == "Darwin"'
    )
    others = (
        'platform_machine != "aarch64" and platform_machine != "x86_64" '
        'and platform_system != "Darwin"'
    )
    if fmt == "tflite":
        return [
            "numpy>=1.23",
            f"ai-edge-litert>=2.0,<3; {wheels}",
            "# where ai-edge-litert has no wheel (e.g. 32-bit ARM), the legacy interpreter:",
            f"tflite-runtime>=2.11; {others}",
            f"numpy<2; {others}",
        ]
    if fmt == "torchscript_lite":
        return ["numpy>=1.23", "torch>=2.1"]
    return [
        "numpy>=1.23",
        "# run model.pte with the ExecuTorch runtime of the device",
        "executorch",
    ]


@dataclass
class BundleSpec:
    """Everything that goes into a bundle besides the runner."""

    model_file: Path
    format: str
    name: str
    version: int
    target: str
    signature: dict[str, Any]
    source: dict[str, Any]
    lineage: dict[str, Any] | None = None
    parity: dict[str, Any] | None = None
    preprocessing: dict[str, Any] | None = None
    readme: str = ""
    extra_files: dict[str, Path] = field(default_factory=dict)


def bundle_paths(out: Path) -> tuple[Path, Path]:
    """``(directory, archive)`` of ``--out``: ``X`` or ``X.tar.gz`` -> ``X/`` and ``X.tar.gz``."""
    out = Path(out)
    name = out.name[: -len(".tar.gz")] if out.name.endswith(".tar.gz") else out.name
    if not name:
        raise InvalidArgument("--out needs a file name, e.g. --out dist/mlp-rpi")
    return out.with_name(name), out.with_name(name + ".tar.gz")


def build_bundle(spec: BundleSpec, out: Path, *, sign_key: Path | None = None) -> Path:
    """Write the bundle directory for ``out`` (atomically) and its ``.tar.gz``; return the dir."""
    if spec.format not in MODEL_FILE:
        raise InvalidArgument(
            f"format {spec.format!r} cannot go into an edge bundle; use tflite, "
            "torchscript_lite or executorch"
        )
    directory, archive = bundle_paths(out)
    if directory.exists() or archive.exists():
        raise AlreadyExists(f"{directory.name} already exists; remove it or choose another --out")
    key = signing.load_private_key(sign_key) if sign_key is not None else None
    directory.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{directory.name}.", dir=directory.parent))
    try:
        model_rel = f"model/{MODEL_FILE[spec.format]}"
        copies = {model_rel: spec.model_file, **runner_files(), **spec.extra_files}
        for rel, src in copies.items():
            dst = staging / rel
            dst.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(src, dst)
        (staging / "requirements.txt").write_text("\n".join(requirements_for(spec.format)) + "\n")
        (staging / "README.md").write_text(spec.readme)
        listed = sorted([*copies, "requirements.txt", "README.md"])
        meta: dict[str, Any] = {
            "bundle_format": BUNDLE_FORMAT,
            "created_at": datetime.now(UTC).isoformat(timespec="seconds"),
            "created_by": f"truce {__version__}",
            "target": spec.target,
            "model": {
                "name": spec.name,
                "version": spec.version,
                "format": spec.format,
                "path": model_rel,
            },
            "source": spec.source,
            "signature": spec.signature,
            "lineage": spec.lineage,
            "parity": spec.parity,
            "preprocessing": spec.preprocessing,
            "runtime": {
                "python": ">=3.10",
                "runner": "python3 -m edge.runner",
                "runner_version": RUNNER_VERSION,
                "requirements": requirements_for(spec.format),
            },
            "files": {
                rel: {"sha256": sha256_file(staging / rel), "size": (staging / rel).stat().st_size}
                for rel in listed
            },
        }
        meta_bytes = (json.dumps(meta, indent=2, sort_keys=True) + "\n").encode()
        (staging / BUNDLE_JSON).write_bytes(meta_bytes)
        if key is not None:
            sig = {
                "algorithm": "ed25519",
                "public_key": signing.public_bytes(key).hex(),
                "signature": signing.sign(key, meta_bytes).hex(),
            }
            (staging / SIGNATURE_FILE).write_text(json.dumps(sig, indent=2) + "\n")
        verify_bundle(staging)
        staging.replace(directory)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    pack(directory, archive)
    return directory


def pack(directory: Path, archive: Path) -> str:
    """Write a deterministic ``.tar.gz`` of ``directory``; return its sha256."""

    def clean(info: tarfile.TarInfo) -> tarfile.TarInfo:
        info.uid = info.gid = 0
        info.uname = info.gname = ""
        info.mtime = 0
        info.mode = 0o755 if info.isdir() else 0o644
        return info

    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for root, dirs, files in os.walk(directory):
            dirs[:] = sorted(d for d in dirs if d != "__pycache__")
            for fn in sorted(files):
                p = Path(root) / fn
                tar.add(p, arcname=p.relative_to(directory).as_posix(), filter=clean)
    tmp = archive.with_name(f".{archive.name}.tmp")
    with tmp.open("wb") as raw, gzip.GzipFile(filename="", fileobj=raw, mode="wb", mtime=0) as gz:
        gz.write(buf.getvalue())
    tmp.replace(archive)
    return sha256_file(archive)


def open_bundle(path: Path, workdir: Path) -> Path:
    """A bundle directory for ``path``: itself, or a ``.tar.gz`` safely unpacked in ``workdir``."""
    path = Path(path)
    if path.is_dir():
        return path
    if not path.is_file():
        raise InvalidArgument(f"{path.name}: no such bundle directory or .tar.gz")
    dest = Path(workdir) / "bundle"
    try:
        safe_extract(path, dest)
    except Refused as exc:
        raise IntegrityError(str(exc)) from None
    return dest


def verify(path: Path, trusted_keys: list[bytes] | None = None) -> dict[str, Any]:
    """``bundle.json`` of a verified bundle (directory or archive); ``IntegrityError`` if not."""
    with tempfile.TemporaryDirectory(prefix="truce-bundle-") as tmp:
        try:
            return verify_bundle(open_bundle(path, Path(tmp)), trusted_keys)
        except BundleError as exc:
            raise IntegrityError(str(exc)) from None
