"""``truce edge export``: pick (or convert to) the edge format of a stored version, bundle it.

    export_bundle(store, "mlp:2", ExportOptions(target="rpi", out=Path("dist/mlp-rpi")))

1. resolve ``NAME[:VERSION|@ALIAS]`` and integrity-check it;
2. the model file: the version itself when it already has the format (and no quantization is
   asked), else a stored version converted *from it* (lineage parent = that version, same
   quantization, parity not failed), else a new conversion through ``converters`` (which
   verifies parity and registers the result);
3. build the bundle (runner, requirements, README, hashes, optional signature), then load
   it once with the runner where this machine has the interpreter.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from edge import readme
from edge.bundle import BundleSpec, build_bundle, bundle_paths
from model_store.manifest import Manifest
from model_store.names import parse_ref
from model_store.store import ModelStore
from truce.errors import FailedPrecondition, InvalidArgument

TARGETS: tuple[str, ...] = ("rpi", "linux-arm64", "android", "ios")
EDGE_FORMATS: tuple[str, ...] = ("tflite", "torchscript_lite", "executorch")
QUANTIZE: tuple[str, ...] = ("none", "dynamic", "fp16", "int8")

Progress = Callable[[str], None]


@dataclass
class ExportOptions:
    target: str
    out: Path
    format: str | None = None
    quantize: str = "none"
    sign_key: Path | None = None
    mean: list[float] | None = None
    std: list[float] | None = None
    smoke: bool = True
    progress: Progress = field(default=lambda _m: None)


@dataclass
class ExportResult:
    directory: Path
    archive: Path
    model: Manifest
    source: Manifest
    converted: bool
    smoke: dict[str, Any] | None


def check_options(opts: ExportOptions) -> str:
    """The edge format to use; ``InvalidArgument`` for bad combinations, before any work."""
    if opts.target not in TARGETS:
        raise InvalidArgument(f"unknown --target {opts.target!r}; use one of {', '.join(TARGETS)}")
    fmt = opts.format or "tflite"
    if fmt not in EDGE_FORMATS:
        raise InvalidArgument(f"unknown --format {fmt!r}; use one of {', '.join(EDGE_FORMATS)}")
    if opts.quantize not in QUANTIZE:
        raise InvalidArgument(f"unknown --quantize {opts.quantize!r}; use {', '.join(QUANTIZE)}")
    if opts.quantize != "none" and fmt != "tflite":
        raise InvalidArgument("--quantize applies to --format tflite only")
    if (opts.mean is None) != (opts.std is None):
        raise InvalidArgument("give --mean and --std together")
    bundle_paths(opts.out)
    return fmt


def _quantize_of(m: Manifest) -> str:
    return str(m.lineage.options.get("quantize", "none"))


def find_existing(store: ModelStore, source: Manifest, fmt: str, quantize: str) -> Manifest | None:
    """The source itself, or the newest version converted from it to ``fmt``/``quantize``."""
    if source.format == fmt and quantize == "none":
        return source
    for v in reversed(store.versions(source.name)):
        m = store.manifest(source.name, v)
        if (
            m.format == fmt
            and m.lineage.parent_version == source.version
            and "parent_model" not in m.lineage.options
            and _quantize_of(m) == quantize
            and m.labels.get("parity") != "failed"
        ):
            return m
    return None


def convert(
    store: ModelStore, source: Manifest, fmt: str, quantize: str, say: Progress
) -> Manifest:
    """Convert through ``converters`` (parity-checked, registered as a new version)."""
    try:
        from converters.service import ConvertOptions, convert_model
    except ImportError:
        raise FailedPrecondition(
            f"{source.ref} is {source.format} and no {fmt} version converted from it exists; "
            f"run 'truce convert {source.ref} --to {fmt}' first"
        ) from None
    outcomes = convert_model(
        store,
        source.name,
        str(source.version),
        ConvertOptions(targets=[fmt], quantize=[quantize]),
        progress=say,
    )
    done = next((o for o in outcomes if o.manifest is not None and o.result.passed), None)
    if done is None or done.manifest is None:
        why = next((o.result.error for o in outcomes if o.result.error), None) or "parity failed"
        raise FailedPrecondition(
            f"converting {source.ref} to {fmt} failed ({why}); nothing was exported"
        )
    return done.manifest


def _preprocessing(model: Manifest, opts: ExportOptions) -> dict[str, Any] | None:
    pre: dict[str, Any] = {}
    if opts.mean is not None:
        pre["mean"], pre["std"] = opts.mean, opts.std
    layout = model.lineage.options.get("layout")
    if layout:
        pre["layout"] = layout
    return pre or None


def export_bundle(store: ModelStore, ref_text: str, opts: ExportOptions) -> ExportResult:
    """Export ``ref_text`` (``NAME[:VERSION|@ALIAS]``) as an edge bundle (module docstring)."""
    fmt = check_options(opts)
    ref = parse_ref(ref_text)
    version = store.resolve(ref.name, ref.selector)
    source = store.verify(ref.name, version)
    model = find_existing(store, source, fmt, opts.quantize)
    converted = model is None
    if model is None:
        opts.progress(f"converting {source.ref} ({source.format}) to {fmt}")
        model = convert(store, source, fmt, opts.quantize, opts.progress)
    else:
        model = store.verify(model.name, model.version)
    opts.progress(f"bundling {model.ref} ({model.format}) for {opts.target}")
    signature = model.signature.model_dump(mode="json")
    pre = _preprocessing(model, opts)
    lineage = None if model is source else model.lineage.model_dump(mode="json", exclude={"parity"})
    spec = BundleSpec(
        model_file=store.version_dir(model.name, model.version) / model.artifact,
        format=fmt,
        name=model.name,
        version=model.version,
        target=opts.target,
        signature=signature,
        source={
            "name": source.name,
            "version": source.version,
            "format": source.format,
            "framework": source.framework,
            "sha256": source.source.sha256 if source.source else None,
        },
        lineage=lineage,
        parity=None if model is source else model.lineage.parity,
        preprocessing=pre,
        readme=readme.render(
            target=opts.target,
            fmt=fmt,
            name=model.name,
            version=model.version,
            source=f"{source.ref} ({source.format})",
            signature=signature,
            preprocessing=pre,
            signed=opts.sign_key is not None,
        ),
    )
    directory = build_bundle(spec, opts.out, sign_key=opts.sign_key)
    smoke = _smoke(directory) if opts.smoke else None
    return ExportResult(directory, bundle_paths(opts.out)[1], model, source, converted, smoke)


def _smoke(directory: Path) -> dict[str, Any] | None:
    """One inference through the bundled runner, where this machine can run the format."""
    from edge.runner.model import BundleModel
    from edge.runner.verify import BundleError

    try:
        m = BundleModel(directory)
    except BundleError as exc:
        return {"ran": False, "reason": str(exc)}
    except Exception as exc:  # no interpreter here is not an export failure
        return {"ran": False, "reason": f"{type(exc).__name__}: {exc}"[:200]}
    try:
        outputs = m.predict(m.example_inputs())
    except Exception as exc:  # any failure here means a broken bundle
        archive = directory.with_name(directory.name + ".tar.gz")
        shutil.rmtree(directory, ignore_errors=True)
        archive.unlink(missing_ok=True)
        raise FailedPrecondition(
            f"the bundle does not run on this machine ({type(exc).__name__}: {exc}"[:240]
            + "); nothing was exported"
        ) from None
    return {"ran": True, "outputs": {k: list(v.shape) for k, v in outputs.items()}}
