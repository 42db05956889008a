"""One ready-to-send request, saved to a folder so the locust process needs no framework.

The ``truce loadtest`` process builds the request from the model's signature (numpy,
protobuf stubs, maybe TensorFlow's protos) and saves it; the locust process only reads bytes
and sends them. This module imports only the standard library and ``truce.errors`` on
purpose: importing ssl/gRPC/TensorFlow before locust's gevent patching breaks locust
(RecursionError).

Folder layout::

    request.json   {"protocol", "transport", "target", "headers", "expect"}
    body.bin       the exact request body (HTTP body, or serialized protobuf message)
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal
from urllib.parse import urlsplit

from truce.errors import InvalidArgument

#: protocol name -> transport
PROTOCOLS: dict[str, Literal["http", "grpc"]] = {
    "oip-rest": "http",
    "oip-rest-binary": "http",
    "oip-grpc": "grpc",
    "tfserving-rest": "http",
    "tfserving-grpc": "grpc",
    "torchserve-rest": "http",
}

#: protocol name -> the locust user class in ``loadtests/locustfile.py`` that speaks it
USER_CLASSES: dict[str, str] = {
    "oip-rest": "OipRestUser",
    "oip-rest-binary": "OipRestBinaryUser",
    "oip-grpc": "OipGrpcUser",
    "tfserving-rest": "TfServingRestUser",
    "tfserving-grpc": "TfServingGrpcUser",
    "torchserve-rest": "TorchServeRestUser",
}

_META = "request.json"
_BODY = "body.bin"


@dataclass(frozen=True)
class PreparedRequest:
    """An inference request as bytes on the wire.

    ``target`` is the HTTP path (``/v2/models/m/infer``) or the full gRPC method name
    (``/inference.GRPCInferenceService/ModelInfer``). ``expect`` is a byte string that every
    good HTTP response body contains (empty: any 2xx body is good).
    """

    protocol: str
    transport: Literal["http", "grpc"]
    target: str
    body: bytes
    headers: dict[str, str] = field(default_factory=dict)
    expect: bytes = b""

    def save(self, folder: Path) -> Path:
        """Write ``request.json`` and ``body.bin`` into ``folder`` (created if needed)."""
        folder.mkdir(parents=True, exist_ok=True)
        meta = {
            "protocol": self.protocol,
            "transport": self.transport,
            "target": self.target,
            "headers": self.headers,
            "expect": self.expect.decode("ascii"),
        }
        (folder / _META).write_text(json.dumps(meta, indent=2) + "\n")
        (folder / _BODY).write_bytes(self.body)
        return folder


def load_prepared(folder: Path) -> PreparedRequest:
    """Read a request saved by ``PreparedRequest.save``; ``ValueError`` when it is not one."""
    try:
        meta = json.loads((folder / _META).read_text())
        body = (folder / _BODY).read_bytes()
    except (OSError, json.JSONDecodeError) as exc:
        raise ValueError(f"no prepared request in {folder}: {exc}") from None
    protocol = meta.get("protocol")
    if protocol not in PROTOCOLS or meta.get("transport") != PROTOCOLS[protocol]:
        raise ValueError(f"{folder / _META} names an unknown protocol {protocol!r}")
    return PreparedRequest(
        protocol=protocol,
        transport=PROTOCOLS[protocol],
        target=str(meta["target"]),
        body=body,
        headers={str(k): str(v) for k, v in dict(meta.get("headers", {})).items()},
        expect=str(meta.get("expect", "")).encode("ascii"),
    )


def grpc_target(host: str) -> str:
    """``host:port`` from ``grpc://host:port``, ``http://host:port`` or ``host:port``."""
    parts = urlsplit(host if "://" in host else f"grpc://{host}")
    if parts.scheme not in ("grpc", "http") or not parts.hostname or not parts.port:
        raise InvalidArgument(
            f"bad gRPC host {host!r}: write grpc://HOST:PORT (TLS is not supported yet)"
        )
    return parts.netloc
