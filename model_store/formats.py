"""Detect a model file's format from its content, not its name.

Pickles are refused here, before any framework sees them: an eager ``nn.Module`` saved with
``torch.save``, a ``state_dict``, a legacy Keras ``.h5``. The messages say how to export a
format Truce accepts.
"""

from __future__ import annotations

import zipfile
from pathlib import Path

from truce.errors import InvalidArgument, NotFound

#: what a user may pass to ``--format``; ``mar`` is an import container, not a stored format
ACCEPTED_FORMATS: tuple[str, ...] = (
    "torchscript",
    "torch_export",
    "savedmodel",
    "keras",
    "onnx",
    "tflite",
    "executorch",
    "torchscript_lite",
    "mar",
)

PICKLE_HELP = (
    "Truce never loads pickles (they can run arbitrary code). Export TorchScript "
    "(torch.jit.save(torch.jit.trace(model, example), 'model.pt')) or torch.export "
    "(torch.export.save(torch.export.export(model, (example,)), 'model.pt2')) and register that"
)


def _zip_kind(path: Path) -> str | None:
    try:
        with zipfile.ZipFile(path) as zf:
            names = zf.namelist()
    except (zipfile.BadZipFile, OSError):
        return None
    tails = {n.split("/", 1)[1] if "/" in n else n for n in names}
    roots = set(names)
    if "MAR-INF/MANIFEST.json" in roots:
        return "mar"
    if "archive_format" in tails or any(t.startswith("models/") for t in tails):
        return "torch_export"
    if "config.json" in roots and ("model.weights.h5" in roots or "metadata.json" in roots):
        return "keras"
    has_code = any(t.startswith("code/") for t in tails)
    if has_code and "bytecode.pkl" in tails and path.suffix == ".ptl":
        return "torchscript_lite"
    if has_code and "constants.pkl" in tails:
        return "torchscript"
    if "data.pkl" in tails:
        return "pickle"
    return "zip"


def _looks_like_onnx(path: Path) -> bool:
    try:
        import onnx
    except ImportError:
        return path.suffix == ".onnx"
    try:
        model = onnx.load_model(str(path), load_external_data=False)
    except Exception:
        return False
    return bool(model.graph.node) or bool(model.graph.output)


def detect_format(path: Path) -> str:
    """The format of ``path``: one of ``ACCEPTED_FORMATS``. Refuses pickles and unknowns."""
    if not path.exists():
        raise NotFound(f"no such file or directory: {path.name}")
    if path.is_dir():
        if (path / "saved_model.pb").is_file() or (path / "saved_model.pbtxt").is_file():
            return "savedmodel"
        raise InvalidArgument(
            f"{path.name}/ is a directory without saved_model.pb; register a TF SavedModel "
            "directory, or a model file"
        )
    with path.open("rb") as f:
        head = f.read(16)
    if head[4:8] == b"TFL3":
        return "tflite"
    if head[4:6] == b"ET":
        return "executorch"
    if head.startswith(b"\x89HDF"):
        raise InvalidArgument(
            "legacy Keras HDF5 (.h5) files are refused: they can carry unsafe code. Save with "
            "model.save('model.keras') (Keras 3 format) and register that"
        )
    if head[:1] == b"\x80":
        raise InvalidArgument(f"{path.name} is a Python pickle. {PICKLE_HELP}")
    if head[:2] == b"PK":
        kind = _zip_kind(path)
        if kind == "pickle":
            raise InvalidArgument(
                f"{path.name} is a pickled PyTorch object (torch.save of a module or "
                f"state_dict). {PICKLE_HELP}"
            )
        if kind is not None and kind != "zip":
            return kind
    if _looks_like_onnx(path):
        return "onnx"
    raise InvalidArgument(
        f"cannot tell the format of {path.name}: Truce accepts TorchScript .pt, torch.export "
        ".pt2, SavedModel directories, Keras .keras, ONNX .onnx, TFLite .tflite, ExecuTorch "
        ".pte and TorchServe .mar archives"
    )


def check_declared_format(detected: str, declared: str | None) -> str:
    """Honour ``--format`` where it agrees with the content (TorchScript may be declared lite)."""
    if declared is None or declared == detected:
        return detected
    if declared not in ACCEPTED_FORMATS:
        raise InvalidArgument(
            f"unknown format {declared!r}; use one of {', '.join(ACCEPTED_FORMATS)}"
        )
    if {declared, detected} == {"torchscript", "torchscript_lite"}:
        return declared
    raise InvalidArgument(
        f"--format {declared} does not match the file, which looks like {detected}; "
        "drop --format or pass the right file"
    )
