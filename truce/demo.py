"""``make demo``: build small models in both frameworks, register, convert and serve them.

Every step runs the real ``truce`` command and prints it first, so each line can be
copied and run by hand. Models are random-weight (no downloads): a PyTorch MLP exported
with ``torch.export`` and as TorchScript, a PyTorch ResNet-style CNN as ONNX, and a Keras
CNN as a ``.keras`` file and a TF SavedModel. The MLP is then converted to ONNX and TFLite
(each conversion checked for parity), and the gateway serves them all while the demo calls it
through the Open Inference Protocol (curl, tritonclient HTTP and gRPC), TF Serving's and
TorchServe's APIs (:mod:`truce.demo_serve`).
"""

from __future__ import annotations

import os
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

DEMO_DIR = Path("demo")


def _truce() -> list[str]:
    exe = Path(sys.executable).with_name("truce")
    return [str(exe)] if exe.exists() else [sys.executable, "-m", "truce"]


def sh(*args: str) -> str:
    """Run ``truce ARGS`` (printed first, as typed) and return its output."""
    print(f"\n$ truce {shlex.join(args)}", flush=True)
    proc = subprocess.run([*_truce(), *args], capture_output=True, text=True, check=False)
    sys.stdout.write(proc.stdout)
    if proc.returncode != 0:
        sys.stderr.write(proc.stderr)
        raise SystemExit(proc.returncode)
    return proc.stdout


def build_models(out: Path) -> dict[str, Path]:
    """Write the demo models (seeded, random weights) into ``out``."""
    from truce import zoo

    out.mkdir(parents=True, exist_ok=True)
    import torch

    mlp, cnn = zoo.TinyMLP(), zoo.TinyResNet()
    files = {
        "mlp.pt2": zoo.write_torch_export(mlp, torch.from_numpy(zoo.mlp_input(2)), out / "mlp.pt2"),
        "mlp.pt": zoo.write_torchscript(mlp, torch.from_numpy(zoo.mlp_input(2)), out / "mlp.pt"),
        "cnn.onnx": zoo.write_onnx(cnn, torch.from_numpy(zoo.cnn_input(2)), out / "cnn.onnx"),
    }
    kcnn = zoo.keras_cnn()
    files["keras_cnn.keras"] = zoo.write_keras(kcnn, out / "keras_cnn.keras")
    files["keras_cnn_savedmodel"] = zoo.write_savedmodel(kcnn, out / "keras_cnn_savedmodel")
    return files


def main() -> int:
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    store = DEMO_DIR / "store"
    if store.exists():
        shutil.rmtree(store)
    os.environ["TRUCE_STORE"] = str(store)
    print(f"== building demo models in {DEMO_DIR}/models (PyTorch and Keras, random weights)")
    m = build_models(DEMO_DIR / "models")
    print(f"== registering them in the store {store} (export TRUCE_STORE={store} to reuse it)")
    sh("models", "register", str(m["mlp.pt2"]), "--name", "mlp", "--max-batch-size", "32")
    sh("models", "register", str(m["mlp.pt"]), "--name", "mlp", "--input", "input:FP32:-1,64")
    sh("models", "alias", "mlp", "stable", "1")
    sh("models", "register", str(m["cnn.onnx"]), "--name", "resnet")
    sh("models", "register", str(m["keras_cnn.keras"]), "--name", "keras_cnn")
    sh("models", "register", str(m["keras_cnn_savedmodel"]), "--name", "keras_cnn")
    sh("models", "list")
    sh("models", "show", "mlp@stable")
    sh("models", "show", "keras_cnn")
    print("\n== converting the PyTorch MLP to ONNX and TFLite, each proven by a parity check")
    sh("convert", "mlp@stable", "--to", "onnx", "--to", "tflite")
    sh("models", "list")

    from truce.demo_serve import call_everything, gateway

    print("\n== serving every model, both frameworks, behind one gateway")
    with gateway(store, DEMO_DIR) as ports:
        call_everything(ports)
    print(
        f"\n== done. Serve it yourself: 'truce serve --store {store}', then the calls above "
        "on ports 8080 (REST), 8081 (gRPC), 8082 (admin)."
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
