"""What the two torch runtimes (TorchScript, ``torch.export``) share.

Imports torch: only the torch runtimes import this module.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from gateway.runtimes.base import Arrays, Runtime
from gateway.runtimes.common import (
    bad_inputs,
    contiguous,
    device_unavailable,
    output_names,
    parse_device,
)
from truce.errors import InvalidArgument, Unavailable

#: torch dtype -> OIP datatype (those with a numpy and OIP equivalent)
TORCH_DATATYPES: dict[torch.dtype, str] = {
    torch.bool: "BOOL",
    torch.uint8: "UINT8",
    torch.uint16: "UINT16",
    torch.uint32: "UINT32",
    torch.uint64: "UINT64",
    torch.int8: "INT8",
    torch.int16: "INT16",
    torch.int32: "INT32",
    torch.int64: "INT64",
    torch.float16: "FP16",
    torch.float32: "FP32",
    torch.float64: "FP64",
}


def torch_device(name: str) -> torch.device:
    """The torch device for a serving device name; ``FailedPrecondition`` if torch lacks it."""
    device = parse_device(name)
    if not device.is_cuda:
        return torch.device("cpu")
    count = torch.cuda.device_count() if torch.cuda.is_available() else 0
    if device.index is None or device.index >= count:
        raise device_unavailable(name, "torch", count)
    return torch.device("cuda", device.index)


def to_tensor(arr: np.ndarray, device: torch.device) -> torch.Tensor:
    """A tensor on ``device`` for a numpy input (no copy on the CPU when possible)."""
    if arr.dtype.kind in "OSU":
        raise InvalidArgument("torch models take numeric tensors; BYTES inputs are not supported")
    if not arr.flags.writeable:  # torch warns on read-only buffers (binary request bodies)
        arr = arr.copy()
    tensor = torch.from_numpy(arr)
    return tensor if device.type == "cpu" else tensor.to(device, non_blocking=True)


def run_module(
    runtime: Runtime,
    module: Any,
    device: torch.device,
    inputs: Arrays,
    declared_outputs: list[str] | None = None,
) -> Arrays:
    """Call ``module`` on the inputs in signature order; map its outputs to names."""
    args = [to_tensor(a, device) for a in runtime.ordered_inputs(inputs)]
    try:
        with torch.inference_mode():
            result = module(*args)
            return name_outputs(runtime, result, declared_outputs)
    except torch.OutOfMemoryError:
        raise Unavailable(f"out of memory on {device}; send smaller batches") from None
    except (RuntimeError, ValueError, TypeError, AssertionError, IndexError) as exc:
        raise bad_inputs(exc) from None


def name_outputs(runtime: Runtime, result: Any, declared: list[str] | None = None) -> Arrays:
    """Numpy outputs keyed by name, from a tensor, a tuple/list or a dict of tensors."""
    if isinstance(result, dict):
        sig = runtime.spec.signature
        if sig is not None and all(t.name in result for t in sig.outputs):
            return {t.name: _numpy(result[t.name]) for t in sig.outputs}
        return {str(k): _numpy(v) for k, v in result.items()}
    values = list(result) if isinstance(result, tuple | list) else [result]
    names = output_names(runtime, declared or [], len(values))
    return {n: _numpy(v) for n, v in zip(names, values, strict=True)}


def _numpy(value: Any) -> np.ndarray:
    if isinstance(value, torch.Tensor):
        return contiguous(value.detach().cpu().numpy())
    return contiguous(np.asarray(value))
