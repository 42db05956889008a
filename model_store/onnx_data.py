"""ONNX external data: the tensors an ``.onnx`` file keeps in side files.

Their ``location`` fields are paths written by whoever made the file; they must stay inside
the model's folder, or loading the model would read arbitrary files.
"""

from __future__ import annotations

from pathlib import Path, PurePosixPath

from truce.errors import InvalidArgument, MissingDependency


def onnx_external_files(model_path: Path) -> dict[str, Path]:
    """The side files ``model_path`` references, keyed by their relative location."""
    try:
        import onnx
        from onnx.external_data_helper import uses_external_data
    except ImportError:
        raise MissingDependency("onnx", "onnx") from None
    model = onnx.load_model(str(model_path), load_external_data=False)
    base = model_path.parent.resolve()
    found: dict[str, Path] = {}
    tensors = list(model.graph.initializer)
    for node in model.graph.node:
        tensors.extend(a.t for a in node.attribute if a.HasField("t"))
    for tensor in tensors:
        if not uses_external_data(tensor):
            continue
        location = next((e.value for e in tensor.external_data if e.key == "location"), "")
        rel = PurePosixPath(location)
        target = (base / location).resolve()
        if (
            not location
            or rel.is_absolute()
            or ".." in rel.parts
            or not target.is_relative_to(base)
        ):
            raise InvalidArgument(
                f"ONNX tensor {tensor.name!r} keeps its data at {location!r}, outside the "
                "model's folder; keep external data files next to the .onnx file"
            )
        if not target.is_file():
            raise InvalidArgument(
                f"ONNX external data file {location!r} is missing; copy it next to the .onnx file"
            )
        found[rel.as_posix()] = target
    return found
