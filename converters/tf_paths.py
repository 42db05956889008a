"""Conversions from TensorFlow (SavedModel or Keras 3 ``.keras``), run inside the worker.

    keras / savedmodel ─► tflite      tf.lite.TFLiteConverter (from the SavedModel signature)
    keras / savedmodel ─► onnx        tf2onnx (from the SavedModel signature, opset 17)
    keras              ─► savedmodel  keras ``model.export(format="tf_saved_model")``

A Keras model is first exported to a SavedModel in the job's folder, so every route starts
from one ``serving_default`` signature. ``tflite_from_saved_model`` is shared with the ONNX
routes (onnx2tf writes a SavedModel too), so quantization behaves the same everywhere:

    none     float32
    dynamic  int8 weights, float activations (dynamic-range quantization)
    fp16     float16 weights
    int8     int8 weights and activations, calibrated on representative samples; inputs and
             outputs stay float32, so the served signature does not change
"""

from __future__ import annotations

import importlib.metadata
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np

from converters.job import Arrays, Converted, ConvertRequest
from converters.samples import count, take
from gateway.runtimes.common import first_line
from truce.errors import InvalidArgument

SIGNATURE_KEY = "serving_default"


def version_of(dist: str) -> str:
    """The installed version of distribution ``dist`` (``unknown`` when not found)."""
    try:
        return importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        return "unknown"


def _tf_version() -> str:
    v = version_of("tensorflow-cpu")
    return v if v != "unknown" else version_of("tensorflow")


def saved_model_of(req: ConvertRequest) -> Path:
    """The source as a SavedModel folder (Keras models are exported into the job folder)."""
    if req.source_format == "savedmodel":
        return req.source
    import keras

    req.progress("exporting the Keras model to a SavedModel")
    model = keras.saving.load_model(str(req.source), safe_mode=True, compile=False)
    out = req.out_dir / "_savedmodel"
    model.export(str(out), format="tf_saved_model", verbose=False)
    return out


def _signature_keys(saved_model: Path) -> list[str]:
    import tensorflow as tf

    loaded = tf.saved_model.load(str(saved_model))
    fn = loaded.signatures.get(SIGNATURE_KEY)
    if fn is None:
        raise InvalidArgument(
            f"the SavedModel has no {SIGNATURE_KEY!r} signature; export it with "
            "model.export(path, format='tf_saved_model') or tf.saved_model.save(..., signatures=)"
        )
    _, kwargs = fn.structured_input_signature
    return list(kwargs)


def representative(
    calibration: Arrays, names: list[str], keys: list[str]
) -> Callable[[], Iterator[dict[str, np.ndarray]]]:
    """A representative-dataset generator feeding one sample at a time, keyed like the model.

    Inputs are matched by name, or by position when the stored names differ (the same rule
    the runtimes use).
    """
    mapping = dict(zip(names, keys, strict=True)) if set(names) != set(keys) else None

    def gen() -> Iterator[dict[str, np.ndarray]]:
        for i in range(count(calibration)):
            sample = take(calibration, i, i + 1)
            yield {(mapping[k] if mapping else k): v for k, v in sample.items()}

    return gen


def tflite_from_saved_model(
    saved_model: Path,
    names: list[str],
    quantize: str,
    calibration: Callable[[], Arrays] | None,
) -> tuple[bytes, dict[str, Any]]:
    """Convert a SavedModel's ``serving_default`` to TFLite bytes; and what to record."""
    import tensorflow as tf

    keys = _signature_keys(saved_model)
    if len(keys) != len(names):
        raise InvalidArgument(
            f"the SavedModel takes {len(keys)} inputs but the model's signature lists "
            f"{len(names)}; register the model again so its signature matches"
        )
    converter = tf.lite.TFLiteConverter.from_saved_model(
        str(saved_model), signature_keys=[SIGNATURE_KEY]
    )
    record: dict[str, Any] = {"quantize": quantize}
    if quantize in ("dynamic", "fp16", "int8"):
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
    if quantize == "fp16":
        converter.target_spec.supported_types = [tf.float16]
    if quantize == "int8":
        if calibration is None:
            raise InvalidArgument("int8 quantization needs calibration samples")
        data = calibration()
        converter.representative_dataset = representative(data, names, keys)
        converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
        record["int8"] = "weights and activations int8; inputs and outputs stay float32"
    elif quantize == "dynamic":
        record["dynamic"] = "int8 weights, float activations (dynamic-range quantization)"
    try:
        content: bytes = converter.convert()
    except Exception as exc:
        raise InvalidArgument(
            f"the TFLite converter refused the model ({first_line(exc)}); try "
            "--quantize none or dynamic, or a model with TFLite-builtin operations only"
        ) from None
    return content, record


def to_tflite(req: ConvertRequest) -> Converted:
    """TensorFlow -> TFLite (all quantization modes)."""
    saved_model = saved_model_of(req)
    req.progress(f"converting to TFLite ({req.quantize})")
    names = [t.name for t in req.signature.inputs]
    content, record = tflite_from_saved_model(saved_model, names, req.quantize, req.calibration)
    out = req.out_dir / "model.tflite"
    out.write_bytes(content)
    return Converted(
        artifact=out,
        format="tflite",
        signature=req.signature,
        tool="tf.lite.TFLiteConverter",
        tool_version=_tf_version(),
        record=record,
    )


def to_onnx(req: ConvertRequest, opset: int = 17) -> Converted:
    """TensorFlow -> ONNX through tf2onnx, from the SavedModel's ``serving_default``."""
    import tensorflow as tf
    from tf2onnx import tf_loader
    from tf2onnx.convert import _convert_common

    saved_model = saved_model_of(req)
    req.progress(f"converting to ONNX with tf2onnx (opset {opset})")
    graph_def, inputs, outputs, tables, renames = tf_loader.from_saved_model(
        str(saved_model),
        None,
        None,
        "serve",
        [SIGNATURE_KEY],
        None,
        False,
        return_initialized_tables=True,
        return_tensors_to_rename=True,
    )
    out = req.out_dir / "model.onnx"
    with tf.device("/cpu:0"):
        _convert_common(
            graph_def,
            name="truce",
            opset=opset,
            input_names=inputs,
            output_names=outputs,
            tensors_to_rename=renames,
            initialized_tables=tables,
            output_path=str(out),
        )
    return Converted(
        artifact=out,
        format="onnx",
        signature=req.signature,
        tool="tf2onnx",
        tool_version=version_of("tf2onnx"),
        record={"opset": opset, "tensorflow": _tf_version()},
    )


def to_savedmodel(req: ConvertRequest) -> Converted:
    """Keras -> TF SavedModel (``serving_default`` signature)."""
    if req.source_format != "keras":
        raise InvalidArgument("only Keras models convert to a SavedModel")
    saved_model = saved_model_of(req)
    return Converted(
        artifact=saved_model,
        format="savedmodel",
        signature=req.signature,
        tool="keras.Model.export",
        tool_version=version_of("keras"),
        record={"signature_key": SIGNATURE_KEY},
    )
