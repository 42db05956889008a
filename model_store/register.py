"""Register a model file: detect, inspect, prove it runs, then add it to the store.

    path ─► detect_format ─► (.mar: safe extract) ─► load with its runtime
         ─► signature (declared by the artifact, or --input/--output/--sample)
         ─► one inference on a generated input ─► ModelStore.add_version (atomic)

If any step fails nothing is written, and the error says what to fix.
"""

from __future__ import annotations

import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from model_store.files import sha256_tree
from model_store.formats import check_declared_format, detect_format
from model_store.manifest import Manifest, ServingConfig, SourceInfo
from model_store.mar import extract_mar
from model_store.names import check_name
from model_store.onnx_data import onnx_external_files
from model_store.signature import Signature, TensorSpec, datatype_of, example_inputs
from model_store.store import ModelStore
from truce.errors import InvalidArgument, TruceError


@dataclass
class RegisterOptions:
    """What the user told us beyond the file itself."""

    name: str
    format: str | None = None
    inputs: Sequence[TensorSpec] = ()
    outputs: Sequence[TensorSpec] = ()
    #: sample inputs by name, from ``--sample [NAME=]x.npy``; their shapes define the inputs
    samples: Mapping[str, np.ndarray] = field(default_factory=dict)
    labels: Mapping[str, str] = field(default_factory=dict)
    serving: ServingConfig | None = None


def register_path(store: ModelStore, path: Path, opts: RegisterOptions) -> Manifest:
    """Register ``path`` as the next version of ``opts.name``; returns its manifest."""
    check_name(opts.name)
    fmt = check_declared_format(detect_format(path), opts.format)
    source = SourceInfo(filename=path.name, sha256=sha256_tree(path))
    labels = dict(opts.labels)
    with tempfile.TemporaryDirectory(prefix="truce-register-") as tmp:
        artifact = path
        if fmt == "mar":
            contents = extract_mar(path, Path(tmp) / "mar")
            artifact, fmt = contents.artifact, "torchscript"
            labels = {**contents.labels, **labels}
        extra = onnx_external_files(artifact) if fmt == "onnx" else {}
        signature = probe_signature(artifact, fmt, opts)
        return store.add_version(
            opts.name,
            artifact,
            format=fmt,
            signature=signature,
            serving=opts.serving,
            labels=labels,
            source=source,
            extra_files=extra,
        )


def _user_inputs(opts: RegisterOptions) -> list[TensorSpec]:
    if opts.inputs and opts.samples:
        raise InvalidArgument("give either --input or --sample, not both")
    if opts.inputs:
        return list(opts.inputs)
    return [
        TensorSpec(
            name=n, datatype=datatype_of(a.dtype), shape=[-1, *a.shape[1:]] if a.ndim else []
        )
        for n, a in opts.samples.items()
    ]


def probe_signature(artifact: Path, fmt: str, opts: RegisterOptions) -> Signature:
    """Load ``artifact`` with its runtime, settle its signature and run one inference."""
    from gateway.runtimes import RuntimeSpec, open_runtime

    user_inputs = _user_inputs(opts)
    provisional = Signature(inputs=user_inputs, outputs=list(opts.outputs)) if user_inputs else None
    runtime = open_runtime(
        RuntimeSpec(artifact=artifact, format=fmt, signature=provisional), edge=True
    )
    try:
        runtime.load_blocking()
    except TruceError:
        raise
    except Exception as exc:
        raise InvalidArgument(
            f"{fmt} model could not be loaded: {_short(exc)}. Check that the file is a "
            "complete, uncorrupted export"
        ) from None
    try:
        declared = runtime.declared_signature()
        inputs = user_inputs or declared.inputs
        if not inputs:
            raise InvalidArgument(
                f"{fmt} files do not record their inputs: pass --input NAME:DTYPE:SHAPE "
                "(e.g. --input x:FP32:-1,64; -1 is a dynamic dimension) or --sample x.npy"
            )
        _check_against_declared(inputs, declared.inputs)
        feed = dict(opts.samples) or example_inputs(inputs, batch=1)
        try:
            result = runtime.predict_blocking(feed)
        except TruceError as exc:
            if exc.code is not InvalidArgument.code:
                raise
            raise InvalidArgument(
                f"a test inference with inputs {_describe(inputs)} failed: {exc.message}. "
                "Fix --input (names, datatypes and shapes) so they match the model"
            ) from None
        except Exception as exc:
            raise InvalidArgument(
                f"a test inference with inputs {_describe(inputs)} failed: {_short(exc)}. "
                "Fix --input (names, datatypes and shapes) so they match the model"
            ) from None
        outputs = _settle_outputs(inputs, list(opts.outputs) or declared.outputs, result)
        return Signature(inputs=inputs, outputs=outputs)
    finally:
        runtime.unload_blocking()


def _check_against_declared(user: list[TensorSpec], declared: list[TensorSpec]) -> None:
    if not declared:
        return
    names = [t.name for t in declared]
    if sorted(t.name for t in user) != sorted(names):
        raise InvalidArgument(
            f"--input names {[t.name for t in user]} do not match the model's inputs {names}"
        )


def _settle_outputs(
    inputs: list[TensorSpec], declared: list[TensorSpec], result: Mapping[str, np.ndarray]
) -> list[TensorSpec]:
    """Output specs: as declared (checked against the test run), else read off the run."""
    dynamic_batch = bool(inputs) and all(t.shape[:1] == [-1] for t in inputs)
    if declared:
        got = list(result)
        if len(got) != len(declared):
            raise InvalidArgument(
                f"the model returned {len(got)} outputs but {len(declared)} were declared "
                f"({[t.name for t in declared]}); fix --output"
            )
        for spec, arr in zip(declared, result.values(), strict=True):
            if datatype_of(arr.dtype) != spec.datatype:
                raise InvalidArgument(
                    f"output {spec.name!r} is {datatype_of(arr.dtype)}, declared "
                    f"{spec.datatype}; fix --output"
                )
        return declared
    return [
        TensorSpec(
            name=name,
            datatype=datatype_of(arr.dtype),
            shape=[-1 if (i == 0 and dynamic_batch) else d for i, d in enumerate(arr.shape)],
        )
        for name, arr in result.items()
    ]


def _describe(specs: Sequence[TensorSpec]) -> str:
    return ", ".join(f"{t.name}:{t.datatype}:{t.shape}" for t in specs)


def _short(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    line = text[0] if text else type(exc).__name__
    return line if len(line) <= 300 else line[:297] + "..."
