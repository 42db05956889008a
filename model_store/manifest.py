"""The manifest: everything Truce knows about one immutable model version.

Stored as ``<store>/<name>/<version>/manifest.json``. The schema is versioned by
``schema_version``; docs/manifest.md documents every field. Scripts read the ``--json``
output of ``truce models show``, which is this document.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from model_store.signature import Signature

SCHEMA_VERSION = 1

Framework = Literal["pytorch", "tensorflow", "onnx", "tflite", "remote"]
Format = Literal[
    "torchscript",
    "torch_export",
    "savedmodel",
    "keras",
    "onnx",
    "tflite",
    "executorch",
    "torchscript_lite",
    "remote",
]

#: Formats the gateway can serve; the others (ExecuTorch, lite TorchScript) are kept for edge.
SERVABLE_FORMATS: frozenset[str] = frozenset(
    {"torchscript", "torch_export", "savedmodel", "keras", "onnx", "tflite", "remote"}
)

FRAMEWORK_OF: dict[str, Framework] = {
    "torchscript": "pytorch",
    "torch_export": "pytorch",
    "executorch": "pytorch",
    "torchscript_lite": "pytorch",
    "savedmodel": "tensorflow",
    "keras": "tensorflow",
    "onnx": "onnx",
    "tflite": "tflite",
    "remote": "remote",
}


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class FileEntry(_Strict):
    """One artifact file, relative to the version directory."""

    path: str
    sha256: str
    size: int


class SourceInfo(_Strict):
    """What the user registered: the original file name (no directory) and its hash."""

    filename: str
    sha256: str


class Lineage(_Strict):
    """Where this version came from. Empty for uploads; filled by ``truce convert``."""

    parent_version: int | None = None
    tool: str | None = None
    tool_version: str | None = None
    options: dict[str, Any] = Field(default_factory=dict)
    parity: dict[str, Any] | None = None


class BatchingConfig(_Strict):
    """Dynamic batching; off unless ``max_batch_size`` > 1."""

    max_batch_size: int = Field(default=1, ge=1, le=4096)
    max_queue_delay_ms: float = Field(default=0.0, ge=0, le=10_000)
    preferred_batch_sizes: list[int] = Field(default_factory=list)


class ServingConfig(_Strict):
    """How the gateway runs this version."""

    batching: BatchingConfig = Field(default_factory=BatchingConfig)
    instances: int = Field(default=1, ge=1, le=64)
    device: str = "cpu"
    max_queue_size: int = Field(default=256, ge=1, le=1_000_000)

    @field_validator("device")
    @classmethod
    def _device(cls, v: str) -> str:
        if v == "cpu" or v == "cuda" or (v.startswith("cuda:") and v[5:].isdigit()):
            return v
        raise ValueError("device must be cpu, cuda or cuda:N")


class Manifest(_Strict):
    """One model version. Written once at registration; never modified afterwards."""

    schema_version: int = SCHEMA_VERSION
    name: str
    version: int = Field(ge=1)
    framework: Framework
    format: Format
    artifact: str = Field(description="primary artifact (file or directory) in the version dir")
    signature: Signature
    files: list[FileEntry]
    created_at: datetime = Field(default_factory=lambda: datetime.now(UTC))
    source: SourceInfo | None = None
    lineage: Lineage = Field(default_factory=Lineage)
    serving: ServingConfig = Field(default_factory=ServingConfig)
    labels: dict[str, str] = Field(default_factory=dict)
    remote: dict[str, Any] | None = None

    @property
    def ref(self) -> str:
        return f"{self.name}:{self.version}"

    @property
    def servable(self) -> bool:
        return self.format in SERVABLE_FORMATS
