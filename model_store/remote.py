"""Register a model that another server serves (``truce models register --remote URL``).

    URL ─► parse (protocol and transport from the URL, see gateway/runtimes/remote_target.py)
        ─► signature from the remote's metadata API (OIP model metadata, TF Serving
           GetModelMetadata); TorchServe has none: --input is needed, the outputs are read
           off a test inference
        ─► one inference on a generated input, through the same runtime the gateway uses
        ─► ModelStore.add_version(format="remote"), artifact remote.json (atomic)

If any step fails nothing is written. The gateway serves the version only when its URL is in
``allowed_remote_urls``; registering does not need that (it runs with the user's rights).
"""

from __future__ import annotations

import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from pydantic import ValidationError

from gateway.runtimes.remote_target import RemoteConfig, parse_target
from model_store.manifest import Manifest, ServingConfig
from model_store.names import check_name
from model_store.signature import Signature, TensorSpec, datatype_of, example_inputs
from model_store.store import ModelStore
from truce.errors import ErrorCode, InvalidArgument, TruceError

#: a remote model gets this many parallel instances unless told otherwise: each one forwards
#: one (batched) request at a time, and the remote server runs them concurrently
DEFAULT_REMOTE_INSTANCES = 4


@dataclass
class RemoteOptions:
    """What ``truce models register --remote`` was told."""

    name: str
    url: str
    inputs: Sequence[TensorSpec] = ()
    outputs: Sequence[TensorSpec] = ()
    token_env: str | None = None
    timeout_s: float = 30.0
    body: Literal["json", "npy"] = "json"
    signature_name: str = ""
    labels: Mapping[str, str] = field(default_factory=dict)
    serving: ServingConfig | None = None


def register_remote(store: ModelStore, opts: RemoteOptions) -> Manifest:
    """Register ``opts.url`` as the next version of ``opts.name``; returns its manifest."""
    check_name(opts.name)
    try:
        config = RemoteConfig(
            url=opts.url,
            timeout_s=opts.timeout_s,
            token_env=opts.token_env,
            body=opts.body,
            signature_name=opts.signature_name,
        )
    except ValidationError as exc:
        err = exc.errors()[0]
        raise InvalidArgument(f"bad remote option {err['loc'][0]}: {err['msg']}") from None
    parse_target(config)
    signature = probe_remote(config, opts.inputs, opts.outputs)
    serving = opts.serving or ServingConfig(instances=DEFAULT_REMOTE_INSTANCES)
    with tempfile.TemporaryDirectory(prefix="truce-remote-") as tmp:
        artifact = Path(tmp) / "remote.json"
        artifact.write_text(config.model_dump_json(indent=2) + "\n")
        return store.add_version(
            opts.name,
            artifact,
            format="remote",
            signature=signature,
            serving=serving,
            labels=dict(opts.labels),
            remote=config.model_dump(mode="json"),
        )


def probe_remote(
    config: RemoteConfig, inputs: Sequence[TensorSpec] = (), outputs: Sequence[TensorSpec] = ()
) -> Signature:
    """The remote model's signature (given, else its metadata), proven by one inference."""
    from gateway.runtimes.base import RuntimeSpec
    from gateway.runtimes.remote import RemoteRuntime

    artifact = Path("remote.json")  # not read: the config is passed in
    declared_inputs: list[TensorSpec] = list(inputs)
    declared_outputs: list[TensorSpec] = list(outputs)
    if not inputs or not outputs:
        meta = RemoteRuntime(RuntimeSpec(artifact, "remote"), config)
        meta.load_blocking()
        try:
            declared = meta.declared_signature()
        finally:
            meta.unload_blocking()
        declared_inputs = declared_inputs or declared.inputs
        declared_outputs = declared_outputs or declared.outputs
    if not declared_inputs:
        raise InvalidArgument(
            "the remote server does not describe its inputs (TorchServe has no tensor "
            "metadata): pass --input NAME:DTYPE:SHAPE, e.g. --input x:FP32:-1,64"
        )
    provisional = Signature(inputs=declared_inputs, outputs=declared_outputs)
    runtime = RemoteRuntime(RuntimeSpec(artifact, "remote", signature=provisional), config)
    runtime.load_blocking()
    try:
        result = runtime.predict_blocking(example_inputs(declared_inputs, batch=1))
    except TruceError as exc:
        message = (
            f"a test inference with generated inputs failed: {exc.message}. Check the URL "
            "and --input (names, datatypes and shapes)"
        )
        if exc.code is ErrorCode.INVALID_ARGUMENT:
            raise InvalidArgument(message) from None
        raise TruceError(message, exc.code) from None
    finally:
        runtime.unload_blocking()
    if declared_outputs:
        return provisional
    dynamic = all(t.shape[:1] == [-1] for t in declared_inputs)
    return Signature(
        inputs=declared_inputs,
        outputs=[
            TensorSpec(
                name=name,
                datatype=datatype_of(arr.dtype),
                shape=[-1 if (i == 0 and dynamic) else d for i, d in enumerate(arr.shape)],
            )
            for name, arr in result.items()
        ],
    )
