"""Inputs for parity checks and int8 calibration: generated from a signature, or read from files.

Generated inputs are deterministic (a seed), so a report can say exactly what was fed.
User inputs come from a folder of ``.npy`` files (single-input models: one array per file)
or ``.npz`` files (one array per input name); every array holds a batch along its first
dimension, or one sample when it has one dimension fewer than the input. Files are read with
``allow_pickle=False``; the report records each file's SHA-256.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from model_store.signature import TensorSpec
from truce.errors import InvalidArgument, NotFound

Arrays = dict[str, np.ndarray]

#: size given to a dynamic dimension other than the batch when generating inputs
DYNAMIC_DIM_SIZE = 8
#: batch sizes a parity check feeds, in turn, to a model with a dynamic batch dimension
DYNAMIC_BATCHES: tuple[int, ...] = (1, 7, 8, 8, 8)
_MAX_FILES = 10_000


def has_dynamic_batch(specs: Sequence[TensorSpec]) -> bool:
    """True when every input has a dynamic first dimension (a batch the caller chooses)."""
    return bool(specs) and all(s.shape[:1] == [-1] for s in specs)


def static_batch(specs: Sequence[TensorSpec]) -> int:
    """The fixed first dimension shared by the inputs (1 for scalars or mixed shapes)."""
    firsts = {s.shape[0] for s in specs if s.shape and s.shape[0] != -1}
    return firsts.pop() if len(firsts) == 1 else 1


def generate(specs: Sequence[TensorSpec], count: int, seed: int) -> Arrays:
    """``count`` samples per input, stacked along a new or dynamic first dimension."""
    rng = np.random.default_rng(seed)
    out: Arrays = {}
    for spec in specs:
        rest = [DYNAMIC_DIM_SIZE if d == -1 else d for d in spec.shape[1:]]
        shape = (count, *rest) if spec.shape else (count,)
        dt = spec.dtype
        if spec.datatype == "BYTES":
            arr = np.full(shape, b"truce", dtype=object)
        elif spec.datatype == "BOOL":
            arr = rng.integers(0, 2, size=shape).astype(np.bool_)
        elif dt.kind in ("i", "u"):
            arr = rng.integers(0, 10, size=shape).astype(dt)
        else:
            arr = rng.standard_normal(size=shape).astype(dt)
        out[spec.name] = arr
    return out


def load_dir(directory: Path, specs: Sequence[TensorSpec]) -> tuple[Arrays, dict[str, str]]:
    """All samples in ``directory`` (``.npy`` / ``.npz``), concatenated; and file hashes."""
    if not directory.is_dir():
        raise NotFound(f"no such folder of .npy/.npz inputs: {directory.name}")
    files = sorted(p for p in directory.iterdir() if p.suffix in (".npy", ".npz") and p.is_file())
    if not files:
        raise InvalidArgument(
            f"folder {directory.name} has no .npy or .npz files; save inputs with np.save"
        )
    if len(files) > _MAX_FILES:
        raise InvalidArgument(f"folder {directory.name} has over {_MAX_FILES} input files")
    parts: dict[str, list[np.ndarray]] = {s.name: [] for s in specs}
    hashes: dict[str, str] = {}
    for path in files:
        hashes[path.name] = hashlib.sha256(path.read_bytes()).hexdigest()
        for name, arr in _read(path, specs).items():
            parts[name].append(_as_batch(arr, _spec(specs, name), path.name))
    arrays = {name: np.concatenate(chunks) for name, chunks in parts.items()}
    counts = {len(a) for a in arrays.values()}
    if len(counts) != 1:
        raise InvalidArgument(
            f"the files in {directory.name} hold different numbers of samples per input "
            f"({', '.join(f'{k}: {len(v)}' for k, v in arrays.items())}); give each input "
            "the same number"
        )
    return arrays, hashes


def _read(path: Path, specs: Sequence[TensorSpec]) -> Arrays:
    try:
        loaded: Any = np.load(path, allow_pickle=False)
    except ValueError as exc:
        raise InvalidArgument(
            f"{path.name} cannot be read without pickle ({exc}); save plain numeric arrays"
        ) from None
    if isinstance(loaded, np.ndarray):
        if len(specs) != 1:
            raise InvalidArgument(
                f"{path.name} holds one array but the model takes {len(specs)} inputs; use "
                ".npz files with one array per input name (np.savez(f, **arrays))"
            )
        return {specs[0].name: loaded}
    with loaded:
        names = set(loaded.files)
        wanted = {s.name for s in specs}
        if names != wanted:
            raise InvalidArgument(
                f"{path.name} holds arrays {sorted(names)}, the model's inputs are "
                f"{sorted(wanted)}; name each array after its input"
            )
        return {name: loaded[name] for name in wanted}


def _spec(specs: Sequence[TensorSpec], name: str) -> TensorSpec:
    return next(s for s in specs if s.name == name)


def _as_batch(arr: np.ndarray, spec: TensorSpec, filename: str) -> np.ndarray:
    if arr.ndim == len(spec.shape) - 1:
        arr = arr[np.newaxis]
    if arr.dtype != spec.dtype:
        raise InvalidArgument(
            f"{filename}: input {spec.name!r} is {arr.dtype}, the model takes {spec.dtype}"
        )
    if arr.ndim != len(spec.shape) or not all(
        want in (-1, got) for want, got in zip(spec.shape[1:], arr.shape[1:], strict=True)
    ):
        raise InvalidArgument(
            f"{filename}: input {spec.name!r} has shape {list(arr.shape)}, the model takes "
            f"{spec.shape} (-1 is any size; the first dimension is the batch)"
        )
    return arr


def take(arrays: Arrays, start: int, stop: int) -> Arrays:
    """Samples ``start:stop`` of every input."""
    return {k: v[start:stop] for k, v in arrays.items()}


def count(arrays: Arrays) -> int:
    """The number of samples (the first dimension; all inputs agree)."""
    return len(next(iter(arrays.values()))) if arrays else 0


def batch_plan(total: int, specs: Sequence[TensorSpec]) -> list[int]:
    """Batch sizes covering ``total`` samples: varied when the batch is dynamic, else fixed."""
    if has_dynamic_batch(specs):
        plan: list[int] = []
        i = 0
        while sum(plan) < total:
            plan.append(min(DYNAMIC_BATCHES[min(i, len(DYNAMIC_BATCHES) - 1)], total - sum(plan)))
            i += 1
        return plan
    size = static_batch(specs)
    return [size] * max(1, -(-total // size))


def repeat_to(arrays: Arrays, total: int) -> Arrays:
    """``arrays`` cycled or cut to exactly ``total`` samples."""
    n = count(arrays)
    if n == total:
        return arrays
    idx = np.arange(total) % n
    return {k: v[idx] for k, v in arrays.items()}
