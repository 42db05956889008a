"""What the registry serves: model versions with their state, and routing by version or alias.

    ServedModel  one model name: its served versions, its aliases, how to route a request
    ServedVersion one version: LOADING -> READY | FAILED, then UNLOADING when retired

Routing is plain dictionary work on the event loop (no I/O, no awaits), so a request is
routed and queued in one step. An unversioned request goes to a weighted alias, picked at
random by weight (canary), when some alias has a weight > 0 and a READY version; otherwise to
the newest READY version.
"""

from __future__ import annotations

import bisect
import random
from enum import StrEnum

from gateway.batching import Batcher
from gateway.policy import VersionPolicy
from model_store.manifest import Manifest
from model_store.names import check_alias, parse_version
from model_store.store import Alias
from truce.errors import FailedPrecondition, InvalidArgument, NotFound, TruceError, Unavailable

#: OIP ``platform`` of each stored format (Triton's names where Triton has one)
PLATFORMS: dict[str, str] = {
    "torchscript": "pytorch_libtorch",
    "torch_export": "pytorch_export",
    "savedmodel": "tensorflow_savedmodel",
    "keras": "tensorflow_keras",
    "onnx": "onnxruntime_onnx",
    "tflite": "tflite",
    "remote": "remote",
}


class ModelState(StrEnum):
    LOADING = "LOADING"
    READY = "READY"
    FAILED = "FAILED"
    UNLOADING = "UNLOADING"


def shown(text: str) -> str:
    """A client-supplied name, shortened for messages."""
    return text if len(text) <= 80 else text[:77] + "..."


class ServedVersion:
    """One version the gateway serves (or is loading, or failed to load)."""

    def __init__(self, name: str, version: int) -> None:
        self.name = name
        self.version = version
        self.label = str(version)
        self.ref = f"{name}:{version}"
        self.state = ModelState.LOADING
        self.reason = ""
        self.manifest: Manifest | None = None
        self.batcher: Batcher | None = None

    def check_ready(self) -> ServedVersion:
        """Itself when READY; otherwise the error that says why not."""
        if self.state is ModelState.READY:
            return self
        if self.state is ModelState.FAILED:
            raise FailedPrecondition(f"model {self.ref} failed to load: {self.reason}")
        if self.state is ModelState.LOADING:
            raise Unavailable(f"model {self.ref} is still loading; retry shortly")
        raise Unavailable(f"model {self.ref} is being unloaded; retry")


class ServedModel:
    """All served versions of one model name, with its aliases and routing."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.versions: dict[int, ServedVersion] = {}
        self.aliases: dict[str, Alias] = {}
        self.stored: list[int] = []
        self.desired: set[int] = set()
        self.policy: VersionPolicy | None = None
        self._latest: ServedVersion | None = None
        self._split: list[ServedVersion] = []
        self._cumulative: list[float] = []

    def refresh_routes(self) -> None:
        """Recompute the unversioned route; call after any state or alias change."""
        ready = [sv for _, sv in sorted(self.versions.items()) if sv.state is ModelState.READY]
        self._latest = ready[-1] if ready else None
        self._split, self._cumulative = [], []
        total = 0.0
        for alias in sorted(self.aliases):
            a = self.aliases[alias]
            sv = self.versions.get(a.version)
            if a.weight and sv is not None and sv.state is ModelState.READY:
                total += a.weight
                self._split.append(sv)
                self._cumulative.append(total)

    def default(self) -> ServedVersion:
        """The version an unversioned request goes to (see the module docstring)."""
        if self._split:
            if len(self._split) == 1:
                return self._split[0]
            pick = random.random() * self._cumulative[-1]  # noqa: S311 - traffic split, not crypto
            return self._split[bisect.bisect_right(self._cumulative, pick)]
        if self._latest is not None:
            return self._latest
        return self.newest().check_ready()

    def newest(self) -> ServedVersion:
        """The newest served version in any state (metadata before it is ready)."""
        if self._latest is not None:
            return self._latest
        if not self.versions:
            raise NotFound(
                f"model {self.name!r} has no version being served (version policy {self.policy})"
            )
        return self.versions[max(self.versions)]

    def lookup(self, version: str) -> ServedVersion:
        """The version named by a number, ``latest`` or an alias, in any state."""
        if version.isascii() and version.isdigit():
            v = parse_version(version)
            sv = self.versions.get(v)
            if sv is None:
                hint = (
                    f"; it is stored but not served (version policy {self.policy})"
                    if v in self.stored
                    else ""
                )
                raise NotFound(
                    f"model {self.name!r} has no version {v}{hint}; served: {self.served_list()}"
                )
            return sv
        if version == "latest":
            return self.newest()
        try:
            check_alias(version)
        except TruceError:
            raise InvalidArgument(
                f"invalid version {shown(version)!r}: use a version number (1, 2, ...) or an "
                "alias name"
            ) from None
        alias = self.aliases.get(version)
        if alias is None:
            raise NotFound(f"model {self.name!r} has no alias {version!r}")
        sv = self.versions.get(alias.version)
        if sv is None:
            raise NotFound(
                f"alias {self.name}@{version} points at version {alias.version}, "
                "which is not served"
            )
        return sv

    def served_list(self) -> str:
        return ", ".join(map(str, sorted(self.versions))) or "none"
