"""One conversion and its parity check, in a process of its own.

    python -m converters.worker JOB.json RESULT.json

Converters crash (aborts, segfaults in native code) and print a lot. The worker therefore:
- sends its own stdout/stderr (and the frameworks') to ``worker.log`` in the job folder, and
  a fault handler's traceback too;
- writes progress lines, one per step, to the stdout it was started with (the parent shows
  them);
- writes ``RESULT.json`` (a ``JobResult``) atomically at the end, error or not. No result
  file means the process died: the parent reports a crash and registers nothing.

``execute`` is the same work in-process (tests, and the parent when isolation is not wanted).
"""

from __future__ import annotations

import faulthandler
import os
import shutil
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from converters.job import Arrays, Converted, ConvertRequest, Job, JobResult
from converters.parity import default_tolerance, verify
from converters.samples import count, generate, load_dir, take
from converters.targets import route
from gateway.runtimes import RuntimeSpec
from gateway.runtimes.common import first_line
from truce.errors import TruceError

Progress = Callable[[str], None]
AfterConvert = Callable[[Converted], None]


def _tree_size(path: Path) -> int:
    if path.is_file():
        return path.stat().st_size
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def _private_copy(source: Path, folder: Path) -> Path:
    """A copy of the source's version folder for the converter.

    Some tools rewrite their input in place (onnx2tf overwrites an ONNX file with its
    simplified graph); the store's copy must never change. The whole folder is copied so
    side files (ONNX external data) come along.
    """
    shutil.copytree(source.parent, folder)
    return folder / source.name


def parity_inputs(job: Job) -> tuple[Arrays, dict[str, Any]]:
    """The verification inputs: the user's files, or generated with the job's seed."""
    specs = job.signature.inputs
    if job.inputs_dir:
        arrays, hashes = load_dir(Path(job.inputs_dir), specs)
        arrays = take(arrays, 0, job.samples)
        return arrays, {"source": "files", "sha256": hashes, "count": count(arrays)}
    described = {
        "source": "generated",
        "seed": job.seed,
        "count": job.samples,
        "distribution": "standard normal (integers 0..9, booleans 0/1)",
    }
    return generate(specs, job.samples, job.seed), described


def calibration_for(job: Job, record: dict[str, Any]) -> Callable[[], Arrays]:
    """A loader of int8 calibration samples that notes in ``record`` what it used."""

    def load() -> Arrays:
        specs = job.signature.inputs
        if job.calibration_dir:
            arrays, hashes = load_dir(Path(job.calibration_dir), specs)
            record["calibration"] = {"source": "files", "sha256": hashes, "count": count(arrays)}
            return arrays
        seed = job.seed + 1
        record["calibration"] = {
            "source": "generated",
            "seed": seed,
            "count": job.calibration_samples,
            "distribution": "standard normal; real data calibrates better (--calibration DIR)",
        }
        return generate(specs, job.calibration_samples, seed)

    return load


def execute(
    job: Job, *, progress: Progress = lambda _m: None, after_convert: AfterConvert | None = None
) -> JobResult:
    """Convert and verify; every failure becomes ``JobResult.error`` (one line)."""
    result = JobResult(target=job.target, quantize=job.quantize)
    notes: dict[str, Any] = {}
    try:
        r = route(job.source_format, job.target, job.quantize)
        out_dir = Path(job.out_dir)
        out_dir.mkdir(parents=True, exist_ok=True)
        req = ConvertRequest(
            source=_private_copy(Path(job.source), out_dir / "_source"),
            source_format=job.source_format,
            signature=job.signature,
            out_dir=out_dir,
            quantize=job.quantize,
            calibration=calibration_for(job, notes) if job.quantize == "int8" else None,
            progress=progress,
        )
        started = time.monotonic()
        converted = r.convert(req)
        if after_convert is not None:
            after_convert(converted)
        result.convert_s = round(time.monotonic() - started, 3)
        result.format, result.signature = converted.format, converted.signature
        result.artifact = str(converted.artifact)
        result.tool, result.tool_version = converted.tool, converted.tool_version
        result.size_bytes = _tree_size(converted.artifact)
        result.record = {
            "target": job.target,
            "source_format": job.source_format,
            "quantize": job.quantize,
            **converted.record,
            **notes,
        }
        inputs, described = parity_inputs(job)
        tol = default_tolerance(job.quantize, job.tolerance)
        started = time.monotonic()
        report = verify(
            RuntimeSpec(
                artifact=Path(job.source), format=job.source_format, signature=job.signature
            ),
            RuntimeSpec(
                artifact=converted.artifact, format=converted.format, signature=converted.signature
            ),
            inputs,
            described,
            tol,
            progress,
        )
        result.verify_s = round(time.monotonic() - started, 3)
        result.parity = report.model_dump(mode="json")
        result.passed = report.passed
    except TruceError as exc:
        result.error = exc.message
    except Exception as exc:
        result.error = f"converting to {job.label} failed: {first_line(exc)}"
    return result


def main(argv: list[str]) -> int:
    """Entry point of ``python -m converters.worker JOB.json RESULT.json``."""
    if len(argv) != 2:
        print("usage: python -m converters.worker JOB.json RESULT.json", file=sys.stderr)
        return 2
    job_file, result_file = Path(argv[0]), Path(argv[1])
    progress_out = os.fdopen(os.dup(1), "w", buffering=1)
    log = (job_file.parent / "worker.log").open("ab")
    sys.stdout.flush()
    sys.stderr.flush()
    os.dup2(log.fileno(), 1)
    os.dup2(log.fileno(), 2)
    faulthandler.enable(file=log)

    def progress(message: str) -> None:
        progress_out.write(message.replace("\n", " ") + "\n")
        progress_out.flush()

    job = Job.model_validate_json(job_file.read_bytes())
    result = execute(job, progress=progress)
    tmp = result_file.with_suffix(".tmp")
    tmp.write_text(result.model_dump_json())
    tmp.replace(result_file)
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
