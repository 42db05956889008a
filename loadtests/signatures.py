"""Where a load test gets the model's input signature from.

In order: ``--input NAME:DTYPE:SHAPE`` given on the command line; else ``--signature-from URL``
(an Open Inference Protocol server's REST metadata, ``GET /v2/models/{m}``); else the server
under test itself, through its own protocol's metadata API (OIP REST/gRPC ``ModelMetadata``,
TF Serving REST/gRPC ``GetModelMetadata``). TorchServe has no signature API, so it needs
``--input`` or ``--signature-from``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any
from urllib.parse import quote, urlsplit

from loadtests.payloads import ModelRef
from loadtests.payloads_tf import OIP_DTYPES, metadata_path
from loadtests.prepared import grpc_target
from model_store.signature import TensorSpec, parse_tensor_arg
from truce.errors import InvalidArgument, MissingDependency, NotFound, Unavailable

TIMEOUT_S = 10.0


def http_base(host: str) -> str:
    parts = urlsplit(host)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise InvalidArgument(f"bad host {host!r}: write http://HOST:PORT")
    return f"{parts.scheme}://{parts.netloc}{parts.path.rstrip('/')}"


def parse_oip_metadata(meta: Mapping[str, Any]) -> list[TensorSpec]:
    """The inputs of an OIP ``GET /v2/models/{m}`` (or gRPC ``ModelMetadata``) answer."""
    try:
        return [
            TensorSpec(name=t["name"], datatype=t["datatype"], shape=[int(d) for d in t["shape"]])
            for t in meta["inputs"]
        ]
    except (KeyError, TypeError, ValueError) as exc:
        raise InvalidArgument(
            f"the model metadata has no usable 'inputs' ({type(exc).__name__}: {exc}); "
            "give --input NAME:DTYPE:SHAPE instead"
        ) from None


def parse_tf_signature(meta: Mapping[str, Any], signature_name: str) -> list[TensorSpec]:
    """The inputs of one signature in TF Serving's ``GetModelMetadata`` answer."""
    try:
        defs = meta["metadata"]["signature_def"]["signature_def"]
    except (KeyError, TypeError):
        raise InvalidArgument(
            "the TF Serving metadata has no signature_def: give --input NAME:DTYPE:SHAPE"
        ) from None
    if signature_name not in defs:
        raise NotFound(
            f"the model has no signature {signature_name!r}; it has {', '.join(sorted(defs))}"
        )
    specs = []
    for name, info in sorted(defs[signature_name].get("inputs", {}).items()):
        shape_info = info.get("tensor_shape", {})
        dtype = OIP_DTYPES.get(str(info.get("dtype")))
        if dtype is None or shape_info.get("unknown_rank"):
            raise InvalidArgument(
                f"input {name!r} has dtype {info.get('dtype')} or an unknown rank, which a "
                "load test cannot generate: give --input NAME:DTYPE:SHAPE"
            )
        shape = [int(d.get("size", -1)) for d in shape_info.get("dim", [])]
        specs.append(TensorSpec(name=name, datatype=dtype, shape=shape))
    return specs


def _get_json(url: str) -> Any:
    try:
        import httpx
    except ImportError:
        raise MissingDependency("httpx", "loadtest") from None
    try:
        resp = httpx.get(url, timeout=TIMEOUT_S)
    except httpx.HTTPError as exc:
        raise Unavailable(f"cannot read the signature from {url}: {exc}") from None
    if resp.status_code == 404:
        raise NotFound(f"{url} answered 404: check the model name and version")
    if resp.status_code != 200:
        raise Unavailable(f"{url} answered HTTP {resp.status_code}: {resp.text[:200]}")
    try:
        return resp.json()
    except ValueError:
        raise InvalidArgument(f"{url} did not answer JSON") from None


def oip_metadata_url(base: str, model: ModelRef) -> str:
    if "/v2/models/" in base:
        return base  # the user gave the full metadata URL
    url = f"{http_base(base)}/v2/models/{quote(model.name, safe='')}"
    if model.version is not None:
        url += f"/versions/{quote(model.version, safe='')}"
    return url


def fetch_oip_rest(base: str, model: ModelRef) -> list[TensorSpec]:
    return parse_oip_metadata(_get_json(oip_metadata_url(base, model)))


def fetch_tfserving_rest(base: str, model: ModelRef, signature_name: str) -> list[TensorSpec]:
    url = http_base(base) + metadata_path(model)
    return parse_tf_signature(_get_json(url), signature_name)


def _grpc_call(target: str, method: str, request: bytes) -> bytes:
    import grpc

    with grpc.insecure_channel(target) as channel:
        call = channel.unary_unary(method)
        try:
            return bytes(call(request, timeout=TIMEOUT_S))
        except grpc.RpcError as exc:
            code = exc.code() if callable(getattr(exc, "code", None)) else None
            detail = exc.details() if callable(getattr(exc, "details", None)) else str(exc)
            if code == grpc.StatusCode.NOT_FOUND:
                raise NotFound(f"{target}: {detail}") from None
            raise Unavailable(
                f"cannot read the signature from {target}: {getattr(code, 'name', code)} {detail}"
            ) from None


def fetch_oip_grpc(host: str, model: ModelRef) -> list[TensorSpec]:
    from gateway.protocols.oip.generated import grpc_service_pb2 as pb

    request = pb.ModelMetadataRequest(name=model.name, version=model.version or "")
    raw = _grpc_call(
        grpc_target(host),
        "/inference.GRPCInferenceService/ModelMetadata",
        request.SerializeToString(),
    )
    reply = pb.ModelMetadataResponse.FromString(raw)
    meta = {
        "inputs": [
            {"name": t.name, "datatype": t.datatype, "shape": list(t.shape)} for t in reply.inputs
        ]
    }
    return parse_oip_metadata(meta)


def fetch_tfserving_grpc(host: str, model: ModelRef, signature_name: str) -> list[TensorSpec]:
    try:
        from google.protobuf import json_format
        from tensorflow_serving.apis import get_model_metadata_pb2
    except ImportError:
        raise MissingDependency("tensorflow-serving-api", "tensorflow") from None
    from loadtests.payloads_tf import METADATA_METHOD

    request = get_model_metadata_pb2.GetModelMetadataRequest(metadata_field=["signature_def"])
    request.model_spec.name = model.name
    if model.version is not None:
        if model.version.isdigit():
            request.model_spec.version.value = int(model.version)
        else:
            request.model_spec.version_label = model.version
    raw = _grpc_call(grpc_target(host), METADATA_METHOD, request.SerializeToString())
    reply = get_model_metadata_pb2.GetModelMetadataResponse.FromString(raw)
    defs = get_model_metadata_pb2.SignatureDefMap()
    if "signature_def" not in reply.metadata or not reply.metadata["signature_def"].Unpack(defs):
        raise InvalidArgument(
            "the TF Serving metadata has no signature_def: give --input NAME:DTYPE:SHAPE"
        )
    as_dict = json_format.MessageToDict(defs, preserving_proto_field_name=True)
    return parse_tf_signature({"metadata": {"signature_def": as_dict}}, signature_name)


def resolve_inputs(
    protocol: str,
    host: str,
    model: ModelRef,
    *,
    inputs: Sequence[str] = (),
    signature_from: str | None = None,
    signature_name: str = "serving_default",
) -> list[TensorSpec]:
    """The input specs for a load test, from the first source that is given (module doc)."""
    if inputs:
        specs = [parse_tensor_arg(text) for text in inputs]
        names = [s.name for s in specs]
        if len(set(names)) != len(names):
            raise InvalidArgument(f"--input names repeat: {', '.join(names)}")
        return specs
    if signature_from:
        return fetch_oip_rest(signature_from, model)
    if protocol in ("oip-rest", "oip-rest-binary"):
        return fetch_oip_rest(host, model)
    if protocol == "oip-grpc":
        return fetch_oip_grpc(host, model)
    if protocol == "tfserving-rest":
        return fetch_tfserving_rest(host, model, signature_name)
    if protocol == "tfserving-grpc":
        return fetch_tfserving_grpc(host, model, signature_name)
    raise InvalidArgument(
        f"{protocol} has no signature API: give --input NAME:DTYPE:SHAPE (e.g. x:FP32:1,64) "
        "or --signature-from URL of an Open Inference Protocol server"
    )
