"""The README that goes into each bundle: how to run it on its target.

Pi / Linux bundles are run by the bundled runner. Android and iOS bundles carry minimal,
correct loading snippets (Kotlin with the LiteRT ``Interpreter``; Swift with
``TensorFlowLiteSwift``). Those snippets cannot be run on this build machine; they follow the
public LiteRT / PyTorch Mobile APIs and are marked as untested here.
"""

from __future__ import annotations

from typing import Any

_KOTLIN_TFLITE = """\
```kotlin
// build.gradle.kts: implementation("com.google.ai.edge.litert:litert:1.0.1")  // or newer
// android {{ androidResources {{ noCompress += "tflite" }} }}   // so openFd() can map it
import android.content.Context
import org.tensorflow.lite.Interpreter
import java.io.FileInputStream
import java.nio.ByteBuffer
import java.nio.ByteOrder
import java.nio.channels.FileChannel

fun loadModel(context: Context): Interpreter {{
    val fd = context.assets.openFd("{model}")   // copy model/{model} to src/main/assets/
    val buffer = FileInputStream(fd.fileDescriptor).channel
        .map(FileChannel.MapMode.READ_ONLY, fd.startOffset, fd.declaredLength)
    return Interpreter(buffer, Interpreter.Options().setNumThreads(4))
}}

fun predict(interpreter: Interpreter, values: FloatArray): FloatArray {{
    // input {in_name}: FP32 {in_shape}
    val input = ByteBuffer.allocateDirect(4 * {in_count}).order(ByteOrder.nativeOrder())
    input.asFloatBuffer().put(values)
    // output {out_name}: FP32 {out_shape}
    val output = ByteBuffer.allocateDirect(4 * {out_count}).order(ByteOrder.nativeOrder())
    interpreter.run(input, output)
    output.rewind()
    return FloatArray({out_count}).also {{ output.asFloatBuffer().get(it) }}
}}
```
"""

_SWIFT_TFLITE = """\
```swift
// Podfile: pod 'TensorFlowLiteSwift'      (add model/{model} to the app target)
import Foundation
import TensorFlowLite

func predict(_ values: [Float32]) throws -> [Float32] {{
    guard let path = Bundle.main.path(forResource: "model", ofType: "tflite") else {{
        fatalError("model.tflite is not in the app bundle")
    }}
    var options = Interpreter.Options()
    options.threadCount = 2
    let interpreter = try Interpreter(modelPath: path, options: options)
    try interpreter.allocateTensors()
    // input {in_name}: FP32 {in_shape}
    let data = values.withUnsafeBufferPointer {{ Data(buffer: $0) }}
    try interpreter.copy(data, toInputAt: 0)
    try interpreter.invoke()
    // output {out_name}: FP32 {out_shape}
    let output = try interpreter.output(at: 0)
    return output.data.withUnsafeBytes {{ Array($0.bindMemory(to: Float32.self)) }}
}}
```
"""

_KOTLIN_PTL = """\
```kotlin
// build.gradle.kts: implementation("org.pytorch:pytorch_android_lite:1.13.1")
import org.pytorch.IValue
import org.pytorch.LiteModuleLoader
import org.pytorch.Tensor

// LiteModuleLoader needs a file path: copy the asset model/{model} to filesDir first
val module = LiteModuleLoader.load(modelFile.absolutePath)
val input = Tensor.fromBlob(values, longArrayOf({in_shape_csv}))   // {in_name}: FP32 {in_shape}
val output = module.forward(IValue.from(input)).toTensor().dataAsFloatArray
```
"""

_PTE = """\
ExecuTorch programs run with the ExecuTorch runtime of the device: on Android the
`org.pytorch:executorch-android` AAR (`Module.load(path).forward(EValue.from(tensor))`), on iOS
the ExecuTorch Swift package, on boards its C++ `Module` API. The program has fixed shapes
(see `bundle.json`).
"""


def _fmt_shape(shape: list[int]) -> str:
    return "[" + ", ".join("N" if d == -1 else str(d) for d in shape) + "]"


def _count(shape: list[int]) -> int:
    n = 1
    for d in shape:
        n *= 1 if d == -1 else d
    return n


def render(
    *,
    target: str,
    fmt: str,
    name: str,
    version: int,
    source: str,
    signature: dict[str, Any],
    preprocessing: dict[str, Any] | None,
    signed: bool,
) -> str:
    """The bundle's README.md."""
    ins, outs = signature["inputs"], signature["outputs"]
    model_file = {"tflite": "model.tflite", "torchscript_lite": "model.ptl"}.get(fmt, "model.pte")
    lines = [
        f"# {name} version {version} for {target} ({fmt})",
        "",
        f"Exported by Truce from {source}. `bundle.json` lists the signature, the source model,",
        "the conversion's parity report and the sha256 of every file.",
        "",
        "## Signature",
        "",
        *(f"- input `{t['name']}`: {t['datatype']} {_fmt_shape(t['shape'])}" for t in ins),
        *(f"- output `{t['name']}`: {t['datatype']} {_fmt_shape(t['shape'])}" for t in outs),
        "",
    ]
    if preprocessing:
        lines += [
            "Preprocessing expected by the model (apply it before the input tensor): "
            f"`{preprocessing}`",
            "",
        ]
    trust = " --trusted-key KEY.pub" if signed else ""
    if target in ("rpi", "linux-arm64"):
        lines += [
            "## Run it (Raspberry Pi OS / 64-bit Linux, Python 3.10+)",
            "",
            "```bash",
            "python3 -m venv ~/truce-venv && ~/truce-venv/bin/pip install -r requirements.txt",
            "cd THIS_FOLDER",
            f"~/truce-venv/bin/python -m edge.runner verify .{trust}",
            "~/truce-venv/bin/python -m edge.runner run . --input x.npy --output y.npy",
            "~/truce-venv/bin/python -m edge.runner bench . --runs 200 --threads 4",
            "~/truce-venv/bin/python -m edge.runner serve . --host 0.0.0.0 --port 8080",
            "```",
            "",
            "`serve` speaks the Open Inference Protocol v2 REST API (health, metadata, JSON",
            "infer), like the Truce gateway. Or deploy from the build machine:",
            "`truce edge deploy BUNDLE.tar.gz ssh://pi@HOST/opt/truce --systemd`.",
        ]
    else:
        lines += [
            f"## Load it in an {'Android' if target == 'android' else 'iOS'} app",
            "",
            "These snippets follow the public APIs but could not be compiled or run on the",
            "machine that built this bundle (no Android/iOS toolchain there): test them in your",
            "app.",
            "",
        ]
        i, o = ins[0], outs[0]
        values = {
            "model": model_file,
            "in_name": i["name"],
            "in_shape": _fmt_shape(i["shape"]),
            "in_count": _count(i["shape"]),
            "in_shape_csv": ", ".join(f"{1 if d == -1 else d}L" for d in i["shape"]),
            "out_name": o["name"],
            "out_shape": _fmt_shape(o["shape"]),
            "out_count": _count(o["shape"]),
        }
        if fmt == "tflite":
            snippet = _KOTLIN_TFLITE if target == "android" else _SWIFT_TFLITE
            lines.append(snippet.format(**values))
            lines.append("N (a dynamic batch) is 1 in these snippets.")
        elif fmt == "torchscript_lite":
            lines.append(
                _KOTLIN_PTL.format(**values)
                if target == "android"
                else "On iOS load `model.ptl` with LibTorch-Lite "
                "(`pod 'LibTorch-Lite'`) from an Objective-C++ wrapper."
            )
        else:
            lines.append(_PTE)
    lines += [
        "",
        "## Integrity",
        "",
        "`python3 -m edge.runner verify .` re-hashes every file"
        + (" and checks the Ed25519 signature (bundle.sig)." if signed else "."),
        "",
    ]
    return "\n".join(lines)
