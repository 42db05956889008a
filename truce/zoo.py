"""Tiny random-weight models in both frameworks, and writers to every format Truce stores.

Used by the tests, ``make demo``, the converters' tests and the benchmark. Every model is
seeded, so the same ``seed`` gives the same weights in every process::

    TinyMLP(seed)      torch   FP32 [N,64]        -> [N,10]   (64->256->256->10)
    TinyResNet(seed)   torch   FP32 [N,3,64,64]   -> [N,10]   (small ResNet-style CNN)
    keras_mlp(seed)    Keras   FP32 [N,64]        -> [N,10]
    keras_cnn(seed)    Keras   FP32 [N,64,64,3]   -> [N,10]   (NHWC, softmax)

Writers (one file or folder each): ``write_torchscript`` (.pt), ``write_torch_export`` (.pt2),
``write_onnx`` (.onnx), ``write_keras`` (.keras), ``write_savedmodel`` (folder),
``write_tflite`` (.tflite), ``write_executorch`` (.pte), ``write_torchscript_lite`` (.ptl),
``write_mar`` (TorchServe .mar) and ``write_pickled_module`` (a pickle, to test refusal).
``build_all(dir)`` writes the whole set; ``python -m truce.zoo DIR`` does the same.

Heavy frameworks are imported inside functions, so importing this module costs nothing.
"""

from __future__ import annotations

import datetime
import json
import sys
import warnings
import zipfile
from pathlib import Path
from typing import TYPE_CHECKING, Any, Union

import numpy as np

if TYPE_CHECKING:
    import torch

#: an example input for tracing/exporting: a tensor or a numpy array
Example = Union["torch.Tensor", np.ndarray]

MLP_FEATURES = 64
CNN_SIZE = 64
NUM_CLASSES = 10


# --- torch models ------------------------------------------------------------------------
def TinyMLP(seed: int = 0) -> torch.nn.Module:
    """A 64->256->256->10 ReLU MLP in eval mode, input FP32 ``[N, 64]``."""
    import torch
    from torch import nn

    torch.manual_seed(seed)
    model = nn.Sequential(
        nn.Linear(MLP_FEATURES, 256),
        nn.ReLU(),
        nn.Linear(256, 256),
        nn.ReLU(),
        nn.Linear(256, NUM_CLASSES),
    )
    return model.eval()


def TinyResNet(seed: int = 0) -> torch.nn.Module:
    """A small ResNet-style CNN in eval mode, input FP32 ``[N, 3, 64, 64]``, 10 logits."""
    import torch
    from torch import nn

    class Block(nn.Module):
        def __init__(self, cin: int, cout: int, stride: int) -> None:
            super().__init__()
            self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
            self.bn1 = nn.BatchNorm2d(cout)
            self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
            self.bn2 = nn.BatchNorm2d(cout)
            self.relu = nn.ReLU()
            self.skip = (
                nn.Identity()
                if stride == 1 and cin == cout
                else nn.Sequential(
                    nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout)
                )
            )

        def forward(self, x: Any) -> Any:
            y = self.relu(self.bn1(self.conv1(x)))
            y = self.bn2(self.conv2(y))
            return self.relu(y + self.skip(x))

    class Net(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.stem = nn.Sequential(
                nn.Conv2d(3, 32, 3, 2, 1, bias=False), nn.BatchNorm2d(32), nn.ReLU()
            )
            self.blocks = nn.Sequential(
                Block(32, 32, 1), Block(32, 64, 2), Block(64, 64, 1), Block(64, 128, 2)
            )
            self.pool = nn.AdaptiveAvgPool2d(1)
            self.fc = nn.Linear(128, NUM_CLASSES)

        def forward(self, x: Any) -> Any:
            y = self.pool(self.blocks(self.stem(x)))
            return self.fc(torch.flatten(y, 1))

    torch.manual_seed(seed)
    net = Net()
    # Non-trivial BatchNorm statistics, so a converter that drops them is caught.
    for m in net.modules():
        if isinstance(m, nn.BatchNorm2d) and m.running_mean is not None:
            m.running_mean.uniform_(-0.1, 0.1)
            m.running_var.uniform_(0.5, 1.5)  # type: ignore[union-attr]
    return net.eval()


def mlp_input(batch: int = 1, seed: int = 0) -> np.ndarray:
    """A deterministic FP32 ``[batch, 64]`` input."""
    return np.random.default_rng(seed).standard_normal((batch, MLP_FEATURES)).astype(np.float32)


def cnn_input(batch: int = 1, seed: int = 0, *, channels_last: bool = False) -> np.ndarray:
    """A deterministic FP32 image batch, NCHW (torch) or NHWC (``channels_last``, Keras)."""
    shape = (batch, CNN_SIZE, CNN_SIZE, 3) if channels_last else (batch, 3, CNN_SIZE, CNN_SIZE)
    return np.random.default_rng(seed).standard_normal(shape).astype(np.float32)


# --- Keras models ------------------------------------------------------------------------
def _seed_keras_weights(model: Any, seed: int) -> None:
    """Set every weight from a numpy generator (deterministic without global seeds)."""
    rng = np.random.default_rng(seed)
    weights = []
    for w in model.get_weights():
        fan_in = int(np.prod(w.shape[:-1])) if w.ndim > 1 else 1
        scale = 1.0 / np.sqrt(max(fan_in, 1)) if w.ndim > 1 else 0.1
        weights.append((rng.standard_normal(w.shape) * scale).astype(w.dtype))
    model.set_weights(weights)


def keras_mlp(seed: int = 0) -> Any:
    """A Keras 64->256->256->10 ReLU MLP, input FP32 ``[N, 64]`` named ``x``."""
    import keras

    inp = keras.Input(shape=(MLP_FEATURES,), name="x", dtype="float32")
    h = keras.layers.Dense(256, activation="relu")(inp)
    h = keras.layers.Dense(256, activation="relu")(h)
    out = keras.layers.Dense(NUM_CLASSES, name="logits")(h)
    model = keras.Model(inp, out, name="keras_mlp")
    _seed_keras_weights(model, seed)
    return model


def keras_cnn(seed: int = 0) -> Any:
    """A small Keras conv net, input FP32 NHWC ``[N, 64, 64, 3]`` named ``image``, softmax 10."""
    import keras

    layers = keras.layers
    inp = keras.Input(shape=(CNN_SIZE, CNN_SIZE, 3), name="image", dtype="float32")
    h = layers.Conv2D(16, 3, strides=2, padding="same", activation="relu")(inp)
    h = layers.Conv2D(32, 3, strides=2, padding="same", activation="relu")(h)
    h = layers.Conv2D(64, 3, strides=2, padding="same", activation="relu")(h)
    h = layers.GlobalAveragePooling2D()(h)
    out = layers.Dense(NUM_CLASSES, activation="softmax", name="probs")(h)
    model = keras.Model(inp, out, name="keras_cnn")
    _seed_keras_weights(model, seed)
    return model


# --- torch writers -----------------------------------------------------------------------
def _example(example: Example) -> torch.Tensor:
    import torch

    return torch.as_tensor(np.asarray(example)) if isinstance(example, np.ndarray) else example


def write_torchscript(module: torch.nn.Module, example: Example, path: Path) -> Path:
    """Trace ``module`` on ``example`` and save TorchScript (``.pt``)."""
    import torch

    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")
        traced = torch.jit.trace(module.eval(), _example(example))
        torch.jit.save(traced, str(path))
    return Path(path)


def write_torchscript_lite(module: torch.nn.Module, example: Example, path: Path) -> Path:
    """Trace ``module`` and save it for the mobile lite interpreter (``.ptl``).

    ``optimize_for_mobile`` is not used: it fails on the CPU torch build (no XNNPACK).
    """
    import torch

    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")
        traced = torch.jit.trace(module.eval(), _example(example))
        traced._save_for_lite_interpreter(str(path))
    return Path(path)


def _batch2(example: Example) -> torch.Tensor:
    # torch.export specialises a dimension of size 1; trace with a batch of 2 instead.
    import torch

    x = _example(example)
    return torch.cat([x, x]) if x.shape[0] == 1 else x


def write_torch_export(module: torch.nn.Module, example: Example, path: Path) -> Path:
    """``torch.export`` ``module`` with a dynamic batch dimension and save it (``.pt2``)."""
    import torch

    batch = torch.export.Dim("batch", min=1, max=65536)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        program = torch.export.export(
            module.eval(), (_batch2(example),), dynamic_shapes=({0: batch},)
        )
        torch.export.save(program, str(path))
    return Path(path)


def write_onnx(
    module: torch.nn.Module,
    example: Example,
    path: Path,
    *,
    input_name: str = "input",
    output_name: str = "output",
    dynamo: bool = False,
    opset: int = 17,
) -> Path:
    """Export ONNX with a dynamic batch axis and named input/output.

    The TorchScript-based exporter is the default: it is fast, and its output also converts
    back to torch with ``onnx2torch`` (the dynamo exporter's ReduceMean at opset 18 does not).
    """
    import torch

    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")
        x = _example(example)
        if dynamo:
            batch = torch.export.Dim("batch", min=1, max=65536)
            torch.onnx.export(
                module.eval(),
                (_batch2(x),),
                str(path),
                input_names=[input_name],
                output_names=[output_name],
                dynamic_shapes=({0: batch},),
                dynamo=True,
                external_data=False,
            )
        else:
            torch.onnx.export(
                module.eval(),
                (x,),
                str(path),
                input_names=[input_name],
                output_names=[output_name],
                dynamic_axes={input_name: {0: "batch"}, output_name: {0: "batch"}},
                opset_version=opset,
                dynamo=False,
            )
    return Path(path)


def write_executorch(
    module: torch.nn.Module, example: Example, path: Path, *, max_batch: int = 64
) -> Path:
    """Lower ``module`` to ExecuTorch (``.pte``), with XNNPACK if it lowers, else portable.

    The batch dimension is dynamic up to ``max_batch`` (memory is planned for that bound).
    """
    import torch
    from executorch import exir

    batch = torch.export.Dim("batch", min=1, max=max_batch)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        program = torch.export.export(
            module.eval(), (_batch2(example),), dynamic_shapes=({0: batch},)
        )
        try:
            from executorch.backends.xnnpack.partition.xnnpack_partitioner import (
                XnnpackPartitioner,
            )

            edge = exir.to_edge_transform_and_lower(program, partitioner=[XnnpackPartitioner()])
        except Exception:
            edge = exir.to_edge(program)
        buffer = edge.to_executorch().buffer
    Path(path).write_bytes(buffer)
    return Path(path)


def write_mar(
    torchscript_path: Path,
    path: Path,
    model_name: str,
    *,
    version: str = "1.0",
    handler: str = "base_handler",
) -> Path:
    """A TorchServe ``.mar``: the TorchScript file plus ``MAR-INF/MANIFEST.json``.

    The manifest has the shape ``torch-model-archiver`` writes (``model.serializedFile``...).
    """
    serialized = Path(torchscript_path).name
    manifest = {
        "createdOn": datetime.datetime.now(datetime.UTC).strftime("%d/%m/%Y %H:%M:%S"),
        "runtime": "python",
        "model": {
            "modelName": model_name,
            "serializedFile": serialized,
            "handler": handler,
            "modelVersion": version,
        },
        "archiverVersion": "0.12.0",
    }
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("MAR-INF/MANIFEST.json", json.dumps(manifest, indent=2))
        zf.write(torchscript_path, serialized)
    return Path(path)


def write_pickled_module(module: torch.nn.Module, path: Path) -> Path:
    """``torch.save`` of an eager module: a pickle, which Truce must refuse to load."""
    import torch

    torch.save(module, str(path))
    return Path(path)


# --- Keras / TensorFlow writers ----------------------------------------------------------
def write_keras(model: Any, path: Path) -> Path:
    """Save a Keras 3 model (``.keras``)."""
    model.save(str(path))
    return Path(path)


def write_savedmodel(model: Any, directory: Path) -> Path:
    """Export a Keras 3 model as a TF SavedModel folder with a ``serving_default`` signature."""
    model.export(str(directory), format="tf_saved_model", verbose=False)
    return Path(directory)


def write_tflite(keras_model: Any, path: Path) -> Path:
    """Convert a Keras model to FP32 TFLite with a dynamic batch dimension."""
    import tensorflow as tf

    converter = tf.lite.TFLiteConverter.from_keras_model(keras_model)
    Path(path).write_bytes(converter.convert())
    return Path(path)


# --- the whole set -----------------------------------------------------------------------
#: every artifact ``build_all`` writes: key -> its name inside the output folder
FILE_NAMES: dict[str, str] = {
    "torchscript_mlp": "mlp.pt",
    "torchscript_cnn": "cnn.pt",
    "torch_export_mlp": "mlp.pt2",
    "torch_export_cnn": "cnn.pt2",
    "onnx_mlp": "mlp.onnx",
    "onnx_cnn": "cnn.onnx",
    "keras_mlp": "keras_mlp.keras",
    "keras_cnn": "keras_cnn.keras",
    "savedmodel_mlp": "savedmodel_mlp",
    "savedmodel_cnn": "savedmodel_cnn",
    "tflite_mlp": "mlp.tflite",
    "tflite_cnn": "cnn.tflite",
    "executorch_mlp": "mlp.pte",
    "torchscript_lite_mlp": "mlp.ptl",
    "mar_mlp": "mlp.mar",
    "pickled_mlp": "mlp_pickled.pt",
}
ALL_KEYS: tuple[str, ...] = tuple(FILE_NAMES)
TENSORFLOW_KEYS: tuple[str, ...] = tuple(
    k for k in ALL_KEYS if k.startswith(("keras_", "savedmodel_", "tflite_"))
)
TORCH_KEYS: tuple[str, ...] = tuple(k for k in ALL_KEYS if k not in TENSORFLOW_KEYS)


def build_torch(out: Path, seed: int = 0) -> dict[str, Path]:
    """Write every torch-side artifact of the MLP and the CNN into ``out``."""
    import torch

    mlp, cnn = TinyMLP(seed), TinyResNet(seed)
    xm, xc = torch.from_numpy(mlp_input(2)), torch.from_numpy(cnn_input(2))
    f = {k: Path(out) / v for k, v in FILE_NAMES.items()}
    write_torchscript(mlp, xm, f["torchscript_mlp"])
    write_torchscript(cnn, xc, f["torchscript_cnn"])
    write_torch_export(mlp, xm, f["torch_export_mlp"])
    write_torch_export(cnn, xc, f["torch_export_cnn"])
    write_onnx(mlp, xm, f["onnx_mlp"])
    write_onnx(cnn, xc, f["onnx_cnn"])
    write_torchscript_lite(mlp, xm, f["torchscript_lite_mlp"])
    write_pickled_module(mlp, f["pickled_mlp"])
    write_executorch(mlp, xm, f["executorch_mlp"])
    write_mar(f["torchscript_mlp"], f["mar_mlp"], "mlp")
    return {k: f[k] for k in TORCH_KEYS}


def build_tensorflow(out: Path, seed: int = 0) -> dict[str, Path]:
    """Write every Keras/TensorFlow-side artifact of the MLP and the CNN into ``out``."""
    mlp, cnn = keras_mlp(seed), keras_cnn(seed)
    f = {k: Path(out) / v for k, v in FILE_NAMES.items()}
    write_keras(mlp, f["keras_mlp"])
    write_keras(cnn, f["keras_cnn"])
    write_savedmodel(mlp, f["savedmodel_mlp"])
    write_savedmodel(cnn, f["savedmodel_cnn"])
    write_tflite(mlp, f["tflite_mlp"])
    write_tflite(cnn, f["tflite_cnn"])
    return {k: f[k] for k in TENSORFLOW_KEYS}


def build_all(out: Path, seed: int = 0) -> dict[str, Path]:
    """Write every format of every tiny model into ``out`` (keys: ``FILE_NAMES``)."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    files = {**build_torch(out, seed), **build_tensorflow(out, seed)}
    return {k: files[k] for k in ALL_KEYS}


def main(argv: list[str] | None = None) -> int:
    """``python -m truce.zoo DIR``: write every tiny model and print ``key<TAB>path`` lines."""
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1:
        print("usage: python -m truce.zoo DIR", file=sys.stderr)
        return 2
    for key, path in build_all(Path(args[0])).items():
        print(f"{key}\t{path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
