"""A verified bundle, loaded and ready to run: the model plus its signature.

Inputs and outputs are named as in the bundle's signature (the names the gateway uses).
Backends by format:

- ``tflite``: ``edge.interpreter.TFLiteModel`` (ai-edge-litert, else tflite-runtime);
- ``torchscript_lite``: torch's lite interpreter, where torch is installed;
- ``executorch``: the ExecuTorch Python runtime, where installed (devices normally embed
  the C++ runtime instead).

Only numpy and the interpreter are imported at module level; torch and ExecuTorch are
imported when such a bundle is opened.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from edge.interpreter import BadInput, EdgeError
from edge.runner.verify import BundleError, verify_bundle

#: OIP v2 datatype -> numpy dtype (BYTES are object arrays of bytes)
DTYPES: dict[str, np.dtype] = {
    "BOOL": np.dtype(np.bool_),
    "UINT8": np.dtype(np.uint8),
    "UINT16": np.dtype(np.uint16),
    "UINT32": np.dtype(np.uint32),
    "UINT64": np.dtype(np.uint64),
    "INT8": np.dtype(np.int8),
    "INT16": np.dtype(np.int16),
    "INT32": np.dtype(np.int32),
    "INT64": np.dtype(np.int64),
    "FP16": np.dtype(np.float16),
    "FP32": np.dtype(np.float32),
    "FP64": np.dtype(np.float64),
    "BYTES": np.dtype(object),
}


class InputError(Exception):
    """The inputs do not match the bundle's signature (a client mistake: HTTP 400)."""


class ModelFailure(Exception):
    """The model could not run on valid inputs (a server-side failure: HTTP 500)."""


class Spec:
    """One tensor of the signature: name, OIP datatype, shape (``-1`` = any size)."""

    def __init__(self, d: Mapping[str, Any]) -> None:
        try:
            self.name = str(d["name"])
            self.datatype = str(d["datatype"])
            self.shape = [int(x) for x in d["shape"]]
            self.dtype = DTYPES[self.datatype]
        except (KeyError, TypeError, ValueError):
            raise BundleError("bundle.json has a malformed signature; rebuild the bundle") from None

    def as_dict(self) -> dict[str, Any]:
        return {"name": self.name, "datatype": self.datatype, "shape": self.shape}


def example_inputs(specs: list[Spec], batch: int = 1, seed: int = 0) -> dict[str, np.ndarray]:
    """Deterministic inputs for a signature (dynamic dimensions become ``batch``)."""
    rng = np.random.default_rng(seed)
    out: dict[str, np.ndarray] = {}
    for s in specs:
        shape = tuple(batch if d == -1 else d for d in s.shape)
        if s.datatype == "BYTES":
            out[s.name] = np.full(shape, b"truce", dtype=object)
        elif s.datatype == "BOOL":
            out[s.name] = rng.integers(0, 2, size=shape).astype(np.bool_)
        elif s.dtype.kind in "iu":
            out[s.name] = rng.integers(0, 10, size=shape).astype(s.dtype)
        else:
            out[s.name] = rng.standard_normal(size=shape).astype(s.dtype)
    return out


def check_inputs(specs: list[Spec], inputs: Mapping[str, np.ndarray]) -> None:
    """Raise ``InputError`` naming the first input that does not match its spec."""
    names = [s.name for s in specs]
    for name in inputs:
        if name not in names:
            raise InputError(f"unexpected input {name!r}; the model takes {', '.join(names)}")
    for s in specs:
        if s.name not in inputs:
            raise InputError(f"missing input {s.name!r} ({s.datatype} {s.shape})")
        arr = inputs[s.name]
        if arr.dtype != s.dtype and not (s.datatype == "BYTES" and arr.dtype.kind in "OSU"):
            raise InputError(f"input {s.name!r} has dtype {arr.dtype}, expected {s.datatype}")
        ok = len(arr.shape) == len(s.shape) and all(
            w in (-1, g) for w, g in zip(s.shape, arr.shape, strict=True)
        )
        if not ok:
            raise InputError(
                f"input {s.name!r} has shape {list(arr.shape)}, expected {s.shape} (-1 is any size)"
            )


class _TFLite:
    """TFLite through ``edge.interpreter``; tensors matched by name, else by position."""

    def __init__(self, path: Path, threads: int | None, ins: list[Spec], outs: list[Spec]) -> None:
        from edge.interpreter import TFLiteModel

        self.model = TFLiteModel(path, num_threads=threads)
        self.input_names = _match([s.name for s in ins], [t.name for t in self.model.inputs])
        self.output_names = _match([s.name for s in outs], [t.name for t in self.model.outputs])

    def __call__(self, ordered: list[np.ndarray]) -> list[np.ndarray]:
        out = self.model.predict(dict(zip(self.input_names, ordered, strict=True)))
        return [out[n] for n in self.output_names]


def _match(declared: list[str], actual: list[str]) -> list[str]:
    """The model's tensor names in the order of the bundle's signature."""
    if sorted(declared) == sorted(actual):
        return declared
    if len(declared) != len(actual):
        raise BundleError(
            f"the model has {len(actual)} tensors where the bundle declares {len(declared)}"
        )
    return actual


class _Torch:
    """Lite TorchScript (``.ptl``) or ExecuTorch (``.pte``), both called positionally."""

    def __init__(self, path: Path, fmt: str, threads: int | None) -> None:
        try:
            import torch
        except ImportError:
            raise BundleError(
                f"this {fmt} bundle needs torch on the device: pip install torch"
            ) from None
        self.torch = torch
        if threads:
            torch.set_num_threads(threads)
        if fmt == "torchscript_lite":
            from torch.jit.mobile import _load_for_lite_interpreter

            self.call: Any = _load_for_lite_interpreter(str(path), map_location="cpu")
        else:
            try:
                from executorch.runtime import Runtime
            except ImportError:
                raise BundleError(
                    "this ExecuTorch bundle needs the executorch Python package here; on "
                    "phones and boards run model/*.pte with the ExecuTorch C++ runtime"
                ) from None
            method = Runtime.get().load_program(path).load_method("forward")
            self.call = lambda *args: method.execute(list(args))

    def __call__(self, ordered: list[np.ndarray]) -> list[np.ndarray]:
        torch = self.torch
        args = [torch.from_numpy(np.ascontiguousarray(a)) for a in ordered]
        with torch.inference_mode():
            out = self.call(*args)
        if isinstance(out, dict):
            out = list(out.values())
        if not isinstance(out, list | tuple):
            out = [out]
        return [np.ascontiguousarray(o.detach().cpu().numpy()) for o in out]


class BundleModel:
    """A verified bundle with its model loaded; call ``predict`` with arrays by input name."""

    def __init__(
        self,
        bundle: Path,
        *,
        threads: int | None = None,
        trusted_keys: list[bytes] | None = None,
    ) -> None:
        self.path = Path(bundle)
        self.meta = verify_bundle(self.path, trusted_keys)
        model = self.meta["model"]
        self.name = str(model.get("name", "model"))
        self.version = str(model.get("version", "1"))
        self.format = str(model.get("format", ""))
        sig = self.meta["signature"]
        self.inputs = [Spec(d) for d in sig.get("inputs", [])]
        self.outputs = [Spec(d) for d in sig.get("outputs", [])]
        artifact = self.path / str(model.get("path", ""))
        start = time.perf_counter()
        if self.format == "tflite":
            self._backend: Any = _TFLite(artifact, threads, self.inputs, self.outputs)
        elif self.format in ("torchscript_lite", "executorch"):
            self._backend = _Torch(artifact, self.format, threads)
        else:
            raise BundleError(f"unsupported model format {self.format!r} in this bundle")
        self.load_seconds = time.perf_counter() - start

    def example_inputs(self, batch: int = 1, seed: int = 0) -> dict[str, np.ndarray]:
        return example_inputs(self.inputs, batch, seed)

    def predict(self, inputs: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Check ``inputs`` against the signature, run the model, name the outputs."""
        check_inputs(self.inputs, inputs)
        try:
            outs = self._backend([inputs[s.name] for s in self.inputs])
        except BadInput as exc:
            raise InputError(str(exc)) from None
        except EdgeError as exc:
            raise ModelFailure(str(exc)) from None
        except RuntimeError as exc:  # torch backends
            first = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:200]
            raise ModelFailure(f"the model failed: {first}") from None
        if len(outs) != len(self.outputs):
            raise BundleError(
                f"the model returned {len(outs)} outputs, the bundle declares {len(self.outputs)}"
            )
        return {
            s.name: np.asarray(o).astype(s.dtype, copy=False)
            for s, o in zip(self.outputs, outs, strict=True)
        }
