"""Helpers every runtime shares: device names, tensor naming, one-line error text.

Devices are ``cpu``, ``cuda`` (the first GPU) or ``cuda:N``. Each runtime checks that its
framework sees the device and raises ``FailedPrecondition`` naming it otherwise, so a
model configured for a GPU on a CPU-only server is reported FAILED with a reason that says
what to change, instead of silently running on the CPU.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from gateway.runtimes.base import Arrays, Runtime
from truce.errors import FailedPrecondition, InvalidArgument

_DEVICE = re.compile(r"^(cpu|cuda)(?::(\d{1,3}))?$")
# absolute paths in framework messages: never shown to clients
_PATH = re.compile(r"(?:[A-Za-z]:)?(?:/[^\s'\"/:,;()\[\]]+){2,}/?")


@dataclass(frozen=True)
class Device:
    """A parsed device name; ``index`` is ``None`` for ``cpu``, 0 for a bare ``cuda``."""

    kind: str
    index: int | None

    @property
    def is_cuda(self) -> bool:
        return self.kind == "cuda"

    def __str__(self) -> str:
        return "cpu" if self.index is None else f"{self.kind}:{self.index}"


def parse_device(text: str) -> Device:
    """Parse ``cpu`` / ``cuda`` / ``cuda:N``; anything else is an ``InvalidArgument``."""
    m = _DEVICE.match(text.strip().lower())
    if m is None:
        raise InvalidArgument(f"unknown device {text!r}: use cpu, cuda or cuda:N (N = GPU index)")
    kind, index = m.group(1), m.group(2)
    if kind == "cpu":
        return Device("cpu", None)
    return Device("cuda", int(index) if index is not None else 0)


def device_unavailable(device: str, framework: str, seen: int) -> FailedPrecondition:
    """The error for a GPU the framework does not see (``seen`` = GPUs it does see)."""
    return FailedPrecondition(
        f"device {device!r} is not available: {framework} sees {seen} CUDA GPU(s) on this "
        "server; set the model's serving device to 'cpu' or to a GPU that exists"
    )


def first_line(exc: BaseException, limit: int = 200) -> str:
    """The telling line of an exception message, with file paths removed, for a client.

    That is the first line, except for TorchScript interpreter errors, whose first line is
    boilerplate and whose last line is the actual error (e.g. a shape mismatch).
    """
    lines = [ln.strip() for ln in str(exc).strip().splitlines() if ln.strip()]
    if len(lines) > 1 and "TorchScript interpreter" in lines[0]:
        lines = [lines[-1]]
    text = _PATH.sub("<path>", lines[0]) if lines else type(exc).__name__
    return text[:limit]


def bad_artifact(what: str, exc: BaseException, hint: str) -> InvalidArgument:
    """A one-line error for an artifact the framework cannot load."""
    return InvalidArgument(f"cannot load the {what} ({first_line(exc)}); {hint}")


def bad_inputs(exc: BaseException) -> InvalidArgument:
    """A one-line error for inputs the framework refused while running the model."""
    return InvalidArgument(f"the model refused the inputs: {first_line(exc)}")


def output_names(runtime: Runtime, declared: Sequence[str], count: int) -> list[str]:
    """Names for ``count`` outputs: the spec's signature, else the artifact's, else
    ``output__0``... (Triton's convention)."""
    sig = runtime.spec.signature
    if sig is not None and len(sig.outputs) == count:
        return [t.name for t in sig.outputs]
    if len(declared) == count:
        return list(declared)
    return [f"output__{i}" for i in range(count)]


def keyed_inputs(runtime: Runtime, inputs: Arrays, declared: Sequence[str]) -> Arrays:
    """Inputs keyed by the artifact's own names.

    When the stored signature names the inputs differently (chosen at registration), they
    are matched by position: signature order is the artifact's order.
    """
    if not declared or all(name in inputs for name in declared):
        return inputs if not declared else {name: inputs[name] for name in declared}
    try:
        ordered = runtime.ordered_inputs(inputs)
    except KeyError as exc:
        raise InvalidArgument(f"missing input {exc.args[0]!r}") from None
    if len(ordered) != len(declared):
        raise InvalidArgument(
            f"the model takes {len(declared)} input(s) ({', '.join(declared)}), got {len(ordered)}"
        )
    return dict(zip(declared, ordered, strict=True))


def contiguous(arr: np.ndarray) -> np.ndarray:
    """A C-contiguous array (serialisers and the binary tensor extension need one)."""
    return arr if arr.flags.c_contiguous else np.ascontiguousarray(arr)
