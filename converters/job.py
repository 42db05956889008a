"""The data that passes between the parent process, the worker and the conversion functions.

Job        (parent -> worker, JSON file)     one target of one source artifact
JobResult  (worker -> parent, JSON file)     the new artifact, its signature, the proof
ConvertRequest / Converted                   what a conversion function takes and returns
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from model_store.signature import Signature

Quantize = Literal["none", "dynamic", "fp16", "int8"]
QUANTIZE_MODES: tuple[str, ...] = ("none", "dynamic", "fp16", "int8")
Arrays = dict[str, np.ndarray]


class Tolerance(BaseModel):
    """What a conversion must meet. ``None`` leaves a check out.

    Element-wise ``|target - source| <= atol + rtol * |source|`` (numpy's ``allclose``) for
    float outputs; ``min_cosine`` on each output flattened; ``min_top1`` on classifier outputs
    (rank 2, several classes); integer and boolean outputs must match exactly.
    """

    model_config = ConfigDict(extra="forbid")

    atol: float | None = Field(default=None, ge=0)
    rtol: float | None = Field(default=None, ge=0)
    min_cosine: float | None = Field(default=None, ge=-1, le=1)
    min_top1: float | None = Field(default=None, ge=0, le=1)


class Job(BaseModel):
    """One conversion the worker runs: source artifact -> one target, then parity."""

    model_config = ConfigDict(extra="forbid")

    source: str
    source_format: str
    signature: Signature
    target: str
    quantize: Quantize = "none"
    out_dir: str
    samples: int = Field(default=32, ge=1, le=100_000)
    seed: int = 0
    inputs_dir: str | None = None
    calibration_dir: str | None = None
    calibration_samples: int = Field(default=64, ge=1, le=100_000)
    tolerance: dict[str, float] = Field(default_factory=dict)

    @property
    def label(self) -> str:
        """``tflite`` or ``tflite (int8)``: how the job is named in progress and tables."""
        return self.target if self.quantize == "none" else f"{self.target} ({self.quantize})"


class JobResult(BaseModel):
    """What the worker produced. ``error`` is set when conversion or verification broke."""

    model_config = ConfigDict(extra="forbid")

    target: str
    quantize: Quantize = "none"
    error: str | None = None
    format: str | None = None
    artifact: str | None = None
    signature: Signature | None = None
    tool: str | None = None
    tool_version: str | None = None
    record: dict[str, Any] = Field(default_factory=dict)
    parity: dict[str, Any] | None = None
    passed: bool = False
    convert_s: float = 0.0
    verify_s: float = 0.0
    size_bytes: int = 0


@dataclass
class ConvertRequest:
    """The input of a conversion function (see ``converters.targets``)."""

    source: Path
    source_format: str
    signature: Signature
    out_dir: Path
    quantize: str = "none"
    #: int8 calibration samples, read or generated only when asked for
    calibration: Callable[[], Arrays] | None = None
    progress: Callable[[str], None] = field(default=lambda _msg: None)


@dataclass
class Converted:
    """The output of a conversion function.

    ``signature`` is what the new artifact serves: the source's, with dimensions fixed where
    the target fixes them. ``record`` goes into the manifest's lineage options (route taken,
    layout handling, quantization details...).
    """

    artifact: Path
    format: str
    signature: Signature
    tool: str
    tool_version: str
    record: dict[str, Any] = field(default_factory=dict)
