"""Remote model servers over HTTP: Open Inference Protocol v2, TorchServe and TF Serving REST.

One ``httpx.Client`` per runtime instance (connections are kept alive), no redirects, no
proxies from the environment. Every client implements ``RemoteClient`` (``remote.py``):
``predict(inputs, outputs)``, ``signature()`` from the remote's metadata API, ``close()``.
Failures map through ``remote_errors``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import httpx
import orjson

from gateway.protocols.json_tensors import json_value
from gateway.protocols.oip.rest_codec import decode_json_data
from gateway.runtimes.base import Arrays, DeclaredSignature
from gateway.runtimes.remote_errors import bad_answer, http_error, timed_out, unreachable
from gateway.runtimes.remote_grpc import MAX_MESSAGE, tf_spec
from gateway.runtimes.remote_json import loads, outputs_from_json, torchserve_body
from gateway.runtimes.remote_target import Target
from model_store.signature import TensorSpec, datatype_of
from truce.errors import TruceError

_NUMPY = orjson.OPT_SERIALIZE_NUMPY
_JSON = {"content-type": "application/json"}


def _read_capped(response: httpx.Response, where: str) -> bytes:
    """The body, refused past ``MAX_MESSAGE``: a remote must not exhaust the gateway's memory."""
    declared = response.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > MAX_MESSAGE:
        raise bad_answer(where, f"its answer is larger than {MAX_MESSAGE >> 20} MiB")
    chunks, size = [], 0
    for chunk in response.iter_bytes():
        size += len(chunk)
        if size > MAX_MESSAGE:
            raise bad_answer(where, f"its answer is larger than {MAX_MESSAGE >> 20} MiB")
        chunks.append(chunk)
    return b"".join(chunks)


class HttpClient:
    """Requests to one remote HTTP server, with its errors mapped."""

    def __init__(self, target: Target) -> None:
        self.target = target
        self.where = target.where
        timeout = target.config.timeout_s
        headers = {"user-agent": "truce-remote"}
        token = target.token()
        if token is not None:
            headers["authorization"] = f"Bearer {token}"
        self._client = httpx.Client(
            base_url=target.base_url,
            headers=headers,
            timeout=httpx.Timeout(timeout, connect=min(timeout, 10.0)),
            follow_redirects=False,
            trust_env=False,
        )

    def call(
        self, method: str, path: str, content: bytes | None = None, headers: Any = None
    ) -> bytes:
        try:
            with self._client.stream(method, path, content=content, headers=headers) as r:
                body = _read_capped(r, self.where)
        except httpx.ConnectTimeout:
            raise unreachable(self.where, "connecting timed out") from None
        except httpx.TimeoutException:
            raise timed_out(self.where, self.target.config.timeout_s) from None
        except httpx.TransportError as exc:
            raise unreachable(self.where, type(exc).__name__) from None
        if not 200 <= r.status_code < 300:
            raise http_error(self.where, r.status_code, body, self.target.config.timeout_s)
        return body

    def close(self) -> None:
        self._client.close()


class OipHttp(HttpClient):
    """An Open Inference Protocol v2 REST server (Triton, KServe, MLServer, another Truce)."""

    def __init__(self, target: Target) -> None:
        super().__init__(target)
        t = target
        self.path = f"/v2/models/{t.model}" + (f"/versions/{t.version}" if t.version else "")

    def predict(self, inputs: Arrays, outputs: Sequence[TensorSpec]) -> Arrays:
        body: dict[str, Any] = {
            "inputs": [
                {
                    "name": name,
                    "datatype": datatype_of(arr.dtype),
                    "shape": list(arr.shape),
                    "data": json_value(arr.ravel()),
                }
                for name, arr in inputs.items()
            ]
        }
        if outputs:
            body["outputs"] = [{"name": s.name} for s in outputs]
        payload = orjson.dumps(body, option=_NUMPY)
        doc = loads(self.call("POST", self.path + "/infer", payload, _JSON), self.where)
        if not isinstance(doc, dict) or not isinstance(doc.get("outputs"), list):
            raise bad_answer(self.where, "it has no 'outputs' list")
        out: Arrays = {}
        for tensor in doc["outputs"]:
            try:
                name = tensor["name"]
                out[name] = decode_json_data(
                    name, tensor["datatype"], tensor["shape"], tensor["data"]
                )
            except (KeyError, TypeError):
                raise bad_answer(
                    self.where, "an output lacks name, datatype, shape or data"
                ) from None
            except TruceError as exc:
                raise bad_answer(self.where, exc.message) from None
        return out

    def signature(self) -> DeclaredSignature:
        doc = loads(self.call("GET", self.path), self.where)
        try:
            return DeclaredSignature(
                inputs=[TensorSpec(name=t["name"], datatype=t["datatype"], shape=t["shape"])
                        for t in doc["inputs"]],
                outputs=[TensorSpec(name=t["name"], datatype=t["datatype"], shape=t["shape"])
                         for t in doc["outputs"]],
            )  # fmt: skip
        except (KeyError, TypeError, ValueError):
            raise bad_answer(self.where, "its model metadata is not OIP metadata") from None


class TorchServeHttp(HttpClient):
    """TorchServe's inference API: a JSON tensor (or .npy) in, the handler's JSON out."""

    def __init__(self, target: Target) -> None:
        super().__init__(target)
        t = target
        self.path = f"/predictions/{t.model}" + (f"/{t.version}" if t.version else "")

    def predict(self, inputs: Arrays, outputs: Sequence[TensorSpec]) -> Arrays:
        body, content_type = torchserve_body(inputs, self.target.config.body)
        answer = self.call("POST", self.path, body, {"content-type": content_type})
        return outputs_from_json(loads(answer, self.where), outputs, self.where)

    def signature(self) -> DeclaredSignature:
        return DeclaredSignature()  # TorchServe has no tensor metadata


class TFServingHttp(HttpClient):
    """TF Serving's REST API, columnar format."""

    def __init__(self, target: Target) -> None:
        super().__init__(target)
        t = target
        kind = "labels" if t.label else "versions"
        self.path = f"/v1/models/{t.model}" + (f"/{kind}/{t.version}" if t.version else "")

    def predict(self, inputs: Arrays, outputs: Sequence[TensorSpec]) -> Arrays:
        body: dict[str, Any] = {
            "inputs": {n: json_value(a, b64=a.dtype.kind in "OSU") for n, a in inputs.items()}
        }
        if self.target.config.signature_name:
            body["signature_name"] = self.target.config.signature_name
        payload = orjson.dumps(body, option=_NUMPY)
        doc = loads(self.call("POST", self.path + ":predict", payload, _JSON), self.where)
        if not isinstance(doc, dict) or "outputs" not in doc:
            raise bad_answer(self.where, "it has no 'outputs'")
        return outputs_from_json(doc["outputs"], outputs, self.where)

    def signature(self) -> DeclaredSignature:
        doc = loads(self.call("GET", self.path + "/metadata"), self.where)
        key = self.target.config.signature_name or "serving_default"
        try:
            sig = doc["metadata"]["signature_def"]["signature_def"][key]
            return DeclaredSignature(
                inputs=[tf_spec(n, i["dtype"], _dims(i)) for n, i in sig["inputs"].items()],
                outputs=[tf_spec(n, i["dtype"], _dims(i)) for n, i in sig["outputs"].items()],
            )
        except (KeyError, TypeError, ValueError):
            raise bad_answer(self.where, f"its metadata has no signature {key!r}") from None


def _dims(info: dict[str, Any]) -> list[int] | None:
    shape = info.get("tensor_shape", {})
    if shape.get("unknown_rank"):
        return None
    return [int(d.get("size", -1)) for d in shape.get("dim", [])]
