"""Parity: does the converted model compute what the source computes?

Both models are loaded through the runtimes the gateway serves with (``open_runtime``; the
edge-only formats ExecuTorch and lite TorchScript through their own runtimes in the same
table), so what was verified is what is served. The same N inputs go through both, in batches
of the sizes the target accepts (varied sizes when its batch is dynamic), and every output is
compared:

    max_abs_err     max |target - source|
    max_rel_err     max_abs_err / max |source|  (relative to the output's scale, so values
                    near zero do not blow it up)
    cosine          cosine similarity of the flattened outputs
    top1_agreement  share of samples with the same arg-max (rank-2 outputs with >1 class)

Default tolerances by quantization (``default_tolerance``): float32 ``atol=1e-5, rtol=1e-4``
element-wise; float16 ``atol=1e-3, rtol=1e-2``; dynamic-range and int8 are judged by
``cosine >= 0.99`` and ``top1 >= 0.9``. Integer and boolean outputs must match exactly.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from typing import Any, Literal

import numpy as np
from pydantic import BaseModel, Field

from converters.job import Arrays, Tolerance
from converters.samples import batch_plan, count, has_dynamic_batch, repeat_to
from gateway.runtimes import RuntimeSpec, open_runtime
from gateway.runtimes.common import first_line

DEFAULT_TOLERANCES: dict[str, Tolerance] = {
    "none": Tolerance(atol=1e-5, rtol=1e-4),
    "fp16": Tolerance(atol=1e-3, rtol=1e-2),
    "dynamic": Tolerance(min_cosine=0.99, min_top1=0.9),
    "int8": Tolerance(min_cosine=0.99, min_top1=0.9),
}


def default_tolerance(quantize: str, overrides: Mapping[str, float] | None = None) -> Tolerance:
    """The default tolerance for a quantization mode, with user ``overrides`` on top."""
    base = DEFAULT_TOLERANCES.get(quantize, DEFAULT_TOLERANCES["none"])
    return base.model_copy(update=dict(overrides or {}))


class OutputReport(BaseModel):
    """How one output compares."""

    name: str
    shape: list[int]
    max_abs_err: float | None = None
    max_rel_err: float | None = None
    cosine: float | None = None
    top1_agreement: float | None = None
    mismatched: int = 0
    passed: bool = True
    reasons: list[str] = Field(default_factory=list)


class ParityReport(BaseModel):
    """The proof stored in the new version's ``lineage.parity``."""

    verdict: Literal["passed", "failed"]
    source_format: str
    target_format: str
    samples: int
    batches: list[int]
    inputs: dict[str, Any]
    tolerance: Tolerance
    outputs: list[OutputReport] = Field(default_factory=list)
    reasons: list[str] = Field(default_factory=list)
    seconds: float = 0.0

    @property
    def passed(self) -> bool:
        return self.verdict == "passed"

    def summary(self) -> str:
        """One line: worst errors and the verdict."""
        abs_errs = [o.max_abs_err for o in self.outputs if o.max_abs_err is not None]
        parts = [f"{self.samples} inputs"]
        if abs_errs:
            parts.append(f"max abs err {max(abs_errs):.2g}")
        cos = [o.cosine for o in self.outputs if o.cosine is not None]
        if cos:
            parts.append(f"cosine {min(cos):.6f}")
        top1 = [o.top1_agreement for o in self.outputs if o.top1_agreement is not None]
        if top1:
            parts.append(f"top-1 {min(top1):.1%}")
        return ", ".join(parts)


def _finite(x: float) -> float | None:
    return float(x) if np.isfinite(x) else None


def compare_output(name: str, ref: np.ndarray, got: np.ndarray, tol: Tolerance) -> OutputReport:
    """Compare one output of the target (``got``) with the source's (``ref``)."""
    report = OutputReport(name=name, shape=list(ref.shape))
    if got.shape != ref.shape:
        report.passed = False
        report.reasons.append(
            f"output {name!r} has shape {list(got.shape)}, the source gives {list(ref.shape)}"
        )
        return report
    if ref.dtype.kind not in "fc" or got.dtype.kind not in "fc":
        report.mismatched = int(np.count_nonzero(ref != got))
        if report.mismatched:
            report.passed = False
            report.reasons.append(
                f"output {name!r}: {report.mismatched} of {ref.size} values differ "
                "(non-float outputs must match exactly)"
            )
        return report
    a, b = got.astype(np.float64), ref.astype(np.float64)
    nan_a, nan_b = np.isnan(a), np.isnan(b)
    if np.any(nan_a != nan_b):
        report.passed = False
        report.reasons.append(f"output {name!r} has NaN where the source has none (or the reverse)")
    a, b = np.where(nan_a, 0.0, a), np.where(nan_b, 0.0, b)
    diff = np.abs(a - b)
    max_abs = float(diff.max()) if diff.size else 0.0
    scale = float(np.abs(b).max()) if b.size else 0.0
    report.max_abs_err = _finite(max_abs)
    report.max_rel_err = _finite(max_abs / scale) if scale > 0 else (0.0 if max_abs == 0 else None)
    norms = float(np.linalg.norm(a) * np.linalg.norm(b))
    report.cosine = _finite(float(np.sum(a * b)) / norms) if norms > 0 else float(max_abs == 0)
    if ref.ndim == 2 and ref.shape[1] > 1:
        report.top1_agreement = float(np.mean(a.argmax(axis=1) == b.argmax(axis=1)))
    if tol.atol is not None or tol.rtol is not None:
        atol, rtol = tol.atol or 0.0, tol.rtol or 0.0
        report.mismatched = int(np.count_nonzero(~(diff <= atol + rtol * np.abs(b))))
        if report.mismatched:
            report.reasons.append(
                f"output {name!r}: {report.mismatched} of {ref.size} values differ by more than "
                f"atol {atol:g} + rtol {rtol:g} x |source| (max abs err {max_abs:.3g})"
            )
    if tol.min_cosine is not None and (report.cosine or 0.0) < tol.min_cosine:
        report.reasons.append(
            f"output {name!r}: cosine similarity {report.cosine} < {tol.min_cosine}"
        )
    if (
        tol.min_top1 is not None
        and report.top1_agreement is not None
        and report.top1_agreement < tol.min_top1
    ):
        report.reasons.append(
            f"output {name!r}: top-1 agreement {report.top1_agreement:.1%} < {tol.min_top1:.0%}"
        )
    report.passed = not report.reasons
    return report


def _join(chunks: list[np.ndarray]) -> np.ndarray:
    if all(c.ndim >= 1 for c in chunks):
        return np.concatenate(chunks)
    return np.stack(chunks)


def _run_all(runtime: Any, inputs: Arrays, plan: list[int]) -> dict[str, np.ndarray]:
    outs: dict[str, list[np.ndarray]] = {}
    start = 0
    for size in plan:
        batch = {k: v[start : start + size] for k, v in inputs.items()}
        start += size
        for name, arr in runtime.predict_blocking(batch).items():
            outs.setdefault(name, []).append(np.asarray(arr))
    return {k: _join(v) for k, v in outs.items()}


def verify(
    source: RuntimeSpec,
    target: RuntimeSpec,
    inputs: Arrays,
    described: dict[str, Any],
    tol: Tolerance,
    progress: Callable[[str], None] = lambda _m: None,
) -> ParityReport:
    """Feed ``inputs`` through both models and compare every output."""
    started = time.monotonic()
    assert source.signature is not None and target.signature is not None
    specs = target.signature.inputs
    if has_dynamic_batch(specs) and not has_dynamic_batch(source.signature.inputs):
        specs = source.signature.inputs
    plan = batch_plan(count(inputs), specs)
    feed = repeat_to(inputs, sum(plan))
    report = ParityReport(
        verdict="failed",
        source_format=source.format,
        target_format=target.format,
        samples=sum(plan),
        batches=plan,
        inputs=described,
        tolerance=tol,
    )
    results: list[dict[str, np.ndarray]] = []
    for role, spec in (("source", source), ("converted", target)):
        progress(f"running {sum(plan)} inputs through the {role} model ({spec.format})")
        runtime = open_runtime(spec, edge=True)
        try:
            runtime.load_blocking()
            results.append(_run_all(runtime, feed, plan))
        except Exception as exc:
            report.reasons.append(f"the {role} model failed to run: {first_line(exc)}")
            report.seconds = time.monotonic() - started
            return report
        finally:
            runtime.unload_blocking()
    ref, got = results
    missing = [n for n in ref if n not in got]
    if missing or len(ref) != len(got):
        report.reasons.append(
            f"the converted model returns outputs {sorted(got)}, the source {sorted(ref)}"
        )
    for name, arr in ref.items():
        if name in got:
            out = compare_output(name, arr, got[name], tol)
            report.outputs.append(out)
            report.reasons.extend(out.reasons)
    report.verdict = "failed" if report.reasons else "passed"
    report.seconds = round(time.monotonic() - started, 3)
    return report
