"""``truce convert`` without the command line: plan, run each job isolated, register the proven.

    convert_model(store, "mlp", "2", ConvertOptions(targets=["onnx", "tflite"]))
      1. resolve and integrity-check the source version
      2. plan every (target, quantization) and check routes and extras: all before any work
      3. per job: a temp folder outside the store, the runner (a worker process), a result
      4. parity passed (or --force): ModelStore.add_version(..., lineage=Lineage(parity=...))
         labels parity=passed|failed; else nothing is written

The store only ever sees complete, verified artifacts, through its atomic ``add_version``.
"""

from __future__ import annotations

import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from converters.job import QUANTIZE_MODES, Job, JobResult
from converters.runner import DEFAULT_TIMEOUT_S, Runner, SubprocessRunner
from converters.samples import has_dynamic_batch
from converters.targets import check_installed, route
from model_store.manifest import BatchingConfig, Lineage, Manifest, ServingConfig
from model_store.names import check_name
from model_store.store import ModelStore
from truce.errors import InvalidArgument, NotFound

Progress = Callable[[str], None]
#: formats that run on the CPU only, whatever device the source was served on
_CPU_ONLY = frozenset({"tflite", "executorch", "torchscript_lite"})


@dataclass
class ConvertOptions:
    """What ``truce convert`` was asked to do."""

    targets: list[str]
    quantize: list[str] = field(default_factory=lambda: ["none"])
    samples: int = 32
    seed: int = 0
    inputs_dir: Path | None = None
    calibration_dir: Path | None = None
    calibration_samples: int = 64
    tolerance: dict[str, float] = field(default_factory=dict)
    force: bool = False
    register_as: str | None = None
    timeout_s: float = DEFAULT_TIMEOUT_S


@dataclass
class Outcome:
    """One job's end: its result, and the version registered from it (if any)."""

    label: str
    result: JobResult
    seconds: float
    manifest: Manifest | None = None

    @property
    def status(self) -> str:
        if self.result.error is not None:
            return "error"
        if self.manifest is None:
            return "failed"
        return "registered" if self.result.passed else "registered (parity failed)"

    def to_dict(self) -> dict[str, Any]:
        return {
            "target": self.label,
            "status": self.status,
            "version": self.manifest.ref if self.manifest else None,
            "seconds": round(self.seconds, 3),
            "result": self.result.model_dump(mode="json"),
        }


def plan(source_format: str, opts: ConvertOptions) -> list[tuple[str, str]]:
    """Every (target, quantization) to run, validated up front (routes, flags, extras)."""
    if not opts.targets:
        raise InvalidArgument("name at least one target: --to TARGET")
    for q in opts.quantize:
        if q not in QUANTIZE_MODES:
            raise InvalidArgument(
                f"unknown --quantize {q!r}; use one of {', '.join(QUANTIZE_MODES)}"
            )
    quantize = list(dict.fromkeys(opts.quantize or ["none"]))
    jobs: list[tuple[str, str]] = []
    for target in dict.fromkeys(opts.targets):
        modes = quantize if route(source_format, target).quantizable else ["none"]
        for q in modes:
            check_installed(route(source_format, target, q))
            jobs.append((target, q))
    if quantize != ["none"] and all(q == "none" for _, q in jobs):
        raise InvalidArgument("--quantize applies to --to tflite only; add --to tflite")
    if "int8" not in quantize and opts.calibration_dir is not None:
        raise InvalidArgument("--calibration is used by --quantize int8 only")
    for flag, folder in (("--inputs", opts.inputs_dir), ("--calibration", opts.calibration_dir)):
        if folder is not None and not folder.is_dir():
            raise NotFound(f"{flag} {folder.name}: no such folder of .npy/.npz files")
    return jobs


def _serving(parent: Manifest, result: JobResult) -> ServingConfig:
    serving = parent.serving.model_copy(deep=True)
    if result.format in _CPU_ONLY:
        serving.device = "cpu"
    if result.signature is not None and not has_dynamic_batch(result.signature.inputs):
        serving.batching = BatchingConfig()  # a fixed batch cannot be batched dynamically
    return serving


def register(
    store: ModelStore, name: str, parent: Manifest, result: JobResult, *, parent_name: str
) -> Manifest:
    """Add ``result``'s artifact as a new version of ``name`` with its lineage and labels."""
    assert result.artifact is not None and result.format is not None
    assert result.signature is not None
    artifact = Path(result.artifact)
    extra: dict[str, Path] = {}
    if result.format == "onnx":
        from model_store.onnx_data import onnx_external_files

        extra = onnx_external_files(artifact)
    options = dict(result.record)
    if parent_name != name:
        options["parent_model"] = parent_name
    return store.add_version(
        name,
        artifact,
        format=result.format,
        signature=result.signature,
        lineage=Lineage(
            parent_version=parent.version,
            tool=result.tool,
            tool_version=result.tool_version,
            options=options,
            parity=result.parity,
        ),
        serving=_serving(parent, result),
        labels={
            "parity": "passed" if result.passed else "failed",
            "converted_from": parent.ref,
        },
        extra_files=extra,
    )


def _prefixed(progress: Progress, prefix: str) -> Progress:
    def say(message: str) -> None:
        progress(f"{prefix}: {message}")

    return say


def convert_model(
    store: ModelStore,
    name: str,
    ref: str | None,
    opts: ConvertOptions,
    *,
    runner: Runner | None = None,
    progress: Progress = lambda _m: None,
) -> list[Outcome]:
    """Convert one stored version to every requested target (see the module docstring)."""
    version = store.resolve(name, ref)
    parent = store.verify(name, version)
    target_name = check_name(opts.register_as) if opts.register_as else name
    jobs = plan(parent.format, opts)
    run = runner or SubprocessRunner(timeout_s=opts.timeout_s)
    source = store.version_dir(name, version) / parent.artifact
    outcomes: list[Outcome] = []
    for i, (target, quantize) in enumerate(jobs, 1):
        with tempfile.TemporaryDirectory(prefix="truce-convert-") as tmp:
            job = Job(
                source=str(source),
                source_format=parent.format,
                signature=parent.signature,
                target=target,
                quantize=quantize,  # type: ignore[arg-type]
                out_dir=str(Path(tmp) / "job"),
                samples=opts.samples,
                seed=opts.seed,
                inputs_dir=str(opts.inputs_dir.resolve()) if opts.inputs_dir else None,
                calibration_dir=str(opts.calibration_dir.resolve())
                if opts.calibration_dir
                else None,
                calibration_samples=opts.calibration_samples,
                tolerance=opts.tolerance,
            )
            prefix = f"[{i}/{len(jobs)}] {job.label}"
            progress(f"{prefix}: starting")
            started = time.monotonic()
            result = run(job, _prefixed(progress, prefix))
            outcome = Outcome(job.label, result, time.monotonic() - started)
            if result.error is None and (result.passed or opts.force):
                outcome.manifest = register(store, target_name, parent, result, parent_name=name)
            progress(f"{prefix}: {outcome.status}")
            outcomes.append(outcome)
    return outcomes
