"""Import TorchServe ``.mar`` archives whose serialized file is TorchScript.

A ``.mar`` is a zip (or tar.gz) with ``MAR-INF/MANIFEST.json`` naming ``serializedFile``.
Eager-mode archives (a ``model.py`` plus pickled weights) are refused: loading them runs
arbitrary code.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from model_store.archive import safe_extract
from model_store.formats import PICKLE_HELP, detect_format
from truce.errors import InvalidArgument


@dataclass(frozen=True)
class MarContents:
    """The TorchScript file inside an extracted archive and the labels to keep."""

    artifact: Path
    labels: dict[str, str]


def extract_mar(archive: Path, workdir: Path) -> MarContents:
    """Safely extract ``archive`` into ``workdir`` and locate its TorchScript file."""
    safe_extract(archive, workdir)
    try:
        manifest = json.loads((workdir / "MAR-INF" / "MANIFEST.json").read_bytes())
        model = manifest["model"]
        serialized = str(model["serializedFile"])
    except (OSError, ValueError, KeyError, TypeError):
        raise InvalidArgument(
            "the .mar has no valid MAR-INF/MANIFEST.json with model.serializedFile; "
            "rebuild it with torch-model-archiver --serialized-file model.pt"
        ) from None
    rel = PurePosixPath(serialized)
    if rel.is_absolute() or ".." in rel.parts:
        raise InvalidArgument("the .mar manifest names a serializedFile outside the archive")
    artifact = workdir / rel
    if not artifact.is_file():
        raise InvalidArgument(f"the .mar does not contain its serializedFile {serialized!r}")
    try:
        fmt = detect_format(artifact)
    except InvalidArgument:
        fmt = "unknown"
    if fmt != "torchscript":
        raise InvalidArgument(
            f"the .mar's serializedFile {serialized!r} is not TorchScript (eager-mode archive). "
            + PICKLE_HELP
        )
    labels = {"torchserve.model_name": str(model.get("modelName", ""))}
    if model.get("handler"):
        labels["torchserve.handler"] = str(model["handler"])
    if model.get("modelVersion"):
        labels["torchserve.model_version"] = str(model["modelVersion"])
    return MarContents(artifact=artifact, labels=labels)
