"""``make gpu-check``: run the conformance models on CUDA, compare with the CPU, time both.

Runs every servable format of the tiny CNN through the gateway's own runtimes (the code
that serves them) on ``cpu`` and on ``cuda``, checks that the outputs agree, and prints
throughput at batch 1 and batch 32. Exits 2 when no CUDA GPU is visible (nothing to check),
1 when an output differs beyond tolerance or a runtime fails on the GPU.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from gateway.runtimes import Runtime, RuntimeSpec, open_runtime
from model_store.register import RegisterOptions, register_path
from model_store.signature import example_inputs, parse_tensor_arg
from model_store.store import ModelStore

CASES = {  # zoo key -> --input needed at registration (TorchScript only)
    "torchscript_cnn": "input:FP32:-1,3,64,64",
    "torch_export_cnn": None,
    "onnx_cnn": None,
    "savedmodel_cnn": None,
    "keras_cnn": None,
}


def _throughput(rt: Runtime, feed: dict[str, np.ndarray], seconds: float) -> float:
    predict = rt.predict_blocking
    predict(feed)  # warm-up (CUDA kernels, graph compilation)
    batch = int(next(iter(feed.values())).shape[0])
    n, start = 0, time.perf_counter()
    while (elapsed := time.perf_counter() - start) < seconds:
        predict(feed)
        n += 1
    return n * batch / elapsed


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda:0")
    parser.add_argument("--seconds", type=float, default=3.0, help="timing per point")
    parser.add_argument("--rtol", type=float, default=1e-3)
    parser.add_argument("--atol", type=float, default=1e-4)
    args = parser.parse_args(argv)

    import torch

    if args.device != "cpu":  # --device cpu runs the same path without a GPU (tests)
        if not torch.cuda.is_available():
            print("no CUDA GPU is visible to torch: nothing to check on this machine")
            return 2
        print(f"GPU: {torch.cuda.get_device_name(0)}; torch {torch.__version__}")
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    from truce import zoo

    failed = False
    with tempfile.TemporaryDirectory() as tmp:
        files = zoo.build_all(Path(tmp) / "zoo")
        store = ModelStore(Path(tmp) / "store")
        print(
            f"{'model':<18} {'max|diff|':>10} {'cpu b1':>9} {'gpu b1':>9} {'cpu b32':>9} "
            f"{'gpu b32':>9}  (samples/s)"
        )
        for key, spec in CASES.items():
            inputs = [parse_tensor_arg(spec)] if spec else []
            m = register_path(store, files[key], RegisterOptions(name=key, inputs=inputs))
            artifact = store.version_dir(key, m.version) / m.artifact
            feed1 = example_inputs(m.signature.inputs, batch=1)
            feed32 = example_inputs(m.signature.inputs, batch=32, seed=1)
            row: list[str] = []
            try:
                results = {}
                for side, device in (("cpu", "cpu"), ("gpu", args.device)):
                    rt = open_runtime(RuntimeSpec(artifact, m.format, m.signature, device))
                    rt.load_blocking()
                    results[side] = (
                        rt.predict_blocking(feed32),
                        _throughput(rt, feed1, args.seconds),
                        _throughput(rt, feed32, args.seconds),
                    )
                    rt.unload_blocking()
                cpu, gpu = results["cpu"], results["gpu"]
                diff = max(
                    float(np.max(np.abs(cpu[0][k].astype(np.float64) - gpu[0][k]))) for k in cpu[0]
                )
                ok = all(
                    np.allclose(cpu[0][k], gpu[0][k], rtol=args.rtol, atol=args.atol)
                    for k in cpu[0]
                )
                failed |= not ok
                row = [
                    f"{diff:10.2e}",
                    f"{cpu[1]:9.0f}",
                    f"{gpu[1]:9.0f}",
                    f"{cpu[2]:9.0f}",
                    f"{gpu[2]:9.0f}",
                    "" if ok else "  MISMATCH",
                ]
            except Exception as exc:  # report every model, then fail
                failed = True
                row = [f"  FAILED: {str(exc).splitlines()[0][:120]}"]
            print(f"{key:<18} {' '.join(row)}", flush=True)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
