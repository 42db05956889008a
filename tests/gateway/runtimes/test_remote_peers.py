"""Remote models on real peers, served through Truce's OIP v2 endpoint:

- TorchServe 0.12 (its own venv under build/peers/, Java 17) started here on loopback, token
  authorization ON, serving the zoo's TorchScript MLP; reached over REST and gRPC with its
  inference key; Truce's outputs must equal TorchServe's own, bit for bit;
- TF Serving: no binary exists for this machine, so a gRPC server built from
  ``tensorflow-serving-api``'s own ``PredictionServiceServicer`` runs the zoo's real SavedModel
  (Predict and GetModelMetadata as TF Serving answers them).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from collections.abc import Iterator
from concurrent import futures
from pathlib import Path
from typing import Any

import grpc
import httpx
import numpy as np
import pytest

from loadtests.bench.procs import ServerProcess, free_port
from model_store.remote import RemoteOptions, register_remote
from model_store.signature import TensorSpec
from model_store.store import ModelStore
from tests.gateway.runtimes.test_remote import FrontGateway
from truce import zoo
from truce.errors import TruceError

pytestmark = pytest.mark.slow
REPO = Path(__file__).resolve().parents[3]
HANDLER = REPO / "loadtests" / "bench" / "torchserve_handler.py"
MLP_IN = TensorSpec(name="input", datatype="FP32", shape=[-1, 64])
KEY_ENV, BAD_KEY_ENV = "TRUCE_TEST_TS_KEY", "TRUCE_TEST_TS_BAD_KEY"


def oip_infer(gw: FrontGateway, model: str, name: str, x: np.ndarray) -> np.ndarray:
    body = {"inputs": [{"name": name, "datatype": "FP32", "shape": list(x.shape),
                        "data": x.ravel().tolist()}]}  # fmt: skip
    r = httpx.post(f"{gw.http_url}/v2/models/{model}/infer", json=body, timeout=60)
    assert r.status_code == 200, r.text
    out = r.json()["outputs"][0]
    assert out["datatype"] == "FP32"
    return np.array(out["data"], dtype=np.float32).reshape(out["shape"])


# --- TorchServe ------------------------------------------------------------------------------
class TorchServe:
    """TorchServe 0.12 with token authorization on (its default), on free loopback ports."""

    def __init__(self, work: Path, model: Path) -> None:
        from loadtests.bench.peers import ensure_peer

        if shutil.which("java") is None:
            pytest.skip("TorchServe needs Java 17 (make system-deps installs it)")
        try:
            self.venv = ensure_peer("torchserve")
        except Exception as exc:  # no PyPI access: say why
            pytest.skip(f"the TorchServe 0.12 venv could not be built: {exc}")
        self.work, self.model = work, model
        self.port, self.grpc_port = free_port(), free_port()
        self.process: ServerProcess | None = None
        self.key = ""

    def start(self) -> TorchServe:
        store, tmp = self.work / "model-store", self.work / "tmp"
        store.mkdir(parents=True)
        tmp.mkdir()
        subprocess.run(
            [str(self.venv / "bin" / "torch-model-archiver"), "--model-name", "mlp",
             "--version", "1.0", "--serialized-file", str(self.model), "--handler",
             str(HANDLER), "--export-path", str(store)],
            check=True, capture_output=True, timeout=120,
        )  # fmt: skip
        props = {
            "inference_address": f"http://127.0.0.1:{self.port}",
            "management_address": f"http://127.0.0.1:{free_port()}",
            "metrics_address": f"http://127.0.0.1:{free_port()}",
            "grpc_inference_address": "127.0.0.1",
            "grpc_inference_port": self.grpc_port,
            "grpc_management_port": free_port(),
            "model_store": store,
            "load_models": "mlp.mar",
            "enable_envvars_config": "false",
            "install_py_dep_per_model": "false",
            "disable_system_metrics": "true",
            "default_workers_per_model": 1,
            "vmargs": "-Xmx512m",
        }
        config = self.work / "config.properties"
        config.write_text("".join(f"{k}={v}\n" for k, v in props.items()))
        env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
        env.update(TMPDIR=str(tmp), OMP_NUM_THREADS="1",
                   PATH=f"{self.venv / 'bin'}{os.pathsep}{env.get('PATH', '')}")  # fmt: skip
        self.process = ServerProcess(
            "torchserve",
            [str(self.venv / "bin" / "torchserve"), "--start", "--foreground", "--ncs",
             "--model-store", str(store), "--ts-config", str(config)],
            log=self.work / "torchserve.log", cwd=self.work, env=env,
        ).start()  # fmt: skip
        self.process.wait_ready(self._ready, 180)
        return self

    def _ready(self) -> bool:
        keys = self.work / "key_file.json"
        if not keys.exists():
            return False
        try:
            self.key = json.loads(keys.read_text())["inference"]["key"]
        except (ValueError, KeyError):
            return False
        return self.predict(zoo.mlp_input(1)).status_code == 200

    def predict(self, x: np.ndarray, key: str | None = None) -> httpx.Response:
        headers = {"authorization": f"Bearer {key if key is not None else self.key}"}
        url = f"http://127.0.0.1:{self.port}/predictions/mlp"
        try:
            return httpx.post(url, json=x.tolist(), headers=headers, timeout=30)
        except httpx.TransportError:
            return httpx.Response(599)

    def stop(self) -> None:
        if self.process is not None:
            self.process.stop()


@pytest.fixture(scope="module")
def torchserve(
    model_files: dict[str, Path], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[TorchServe]:
    ts = TorchServe(tmp_path_factory.mktemp("torchserve"), model_files["torchscript_mlp"])
    try:
        yield ts.start()
    finally:
        ts.stop()


@pytest.fixture(scope="module")
def ts_front(
    torchserve: TorchServe, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[FrontGateway]:
    os.environ[KEY_ENV], os.environ[BAD_KEY_ENV] = torchserve.key, "not-the-key"
    try:
        root = tmp_path_factory.mktemp("ts-front") / "store"
        store = ModelStore(root)
        base = f"127.0.0.1:{torchserve.port}"
        for name, url, env in [
            ("ts_rest", f"http://{base}/predictions/mlp", KEY_ENV),
            ("ts_grpc", f"grpc://127.0.0.1:{torchserve.grpc_port}/predictions/mlp", KEY_ENV),
        ]:
            register_remote(
                store, RemoteOptions(name=name, url=url, inputs=[MLP_IN], token_env=env)
            )
        from tests.gateway.runtimes.test_remote import _write_remote

        _write_remote(store, "ts_badkey", f"http://{base}/predictions/mlp", token_env=BAD_KEY_ENV)
        allowed = [f"http://{base}", f"grpc://127.0.0.1:{torchserve.grpc_port}"]
        with FrontGateway(root, allowed_remote_urls=allowed) as gw:
            yield gw
    finally:
        os.environ.pop(KEY_ENV, None)
        os.environ.pop(BAD_KEY_ENV, None)


def test_torchserve_requires_its_key(torchserve: TorchServe) -> None:
    r = torchserve.predict(zoo.mlp_input(1), key="wrong")
    assert r.status_code in (400, 401) and "Token" in r.text


@pytest.mark.parametrize("model", ["ts_rest", "ts_grpc"])
def test_truce_serves_torchserve_outputs_unchanged(
    ts_front: FrontGateway, torchserve: TorchServe, model: str
) -> None:
    manifest = ModelStore(ts_front.settings.store).manifest(model, 1)  # type: ignore[arg-type]
    assert manifest.signature.outputs[0].shape == [-1, 10]
    assert manifest.remote is not None and manifest.remote["token_env"] == KEY_ENV
    assert torchserve.key not in json.dumps(manifest.model_dump(mode="json"))  # never stored
    x = zoo.mlp_input(3, seed=5)
    theirs = np.array(torchserve.predict(x).json(), dtype=np.float32)
    ours = oip_infer(ts_front, model, "input", x)
    np.testing.assert_array_equal(ours, theirs)


def test_a_wrong_key_is_a_503_not_a_client_error(ts_front: FrontGateway) -> None:
    body = {"inputs": [{"name": "x", "datatype": "FP32", "shape": [1, 4], "data": [0] * 4}]}
    r = httpx.post(f"{ts_front.http_url}/v2/models/ts_badkey/infer", json=body, timeout=60)
    # the front's signature (x, [-1, 4]) is checked first: it is the remote that refuses
    assert r.status_code == 503 and "Token Authorization failed" in r.json()["error"]
    assert "not-the-key" not in r.text


# --- TF Serving ------------------------------------------------------------------------------
tf_apis = pytest.importorskip("tensorflow_serving.apis.prediction_service_pb2_grpc")


def _savedmodel_servicer(path: Path) -> Any:
    import tensorflow as tf
    from tensorflow_serving.apis import (
        get_model_metadata_pb2,
        predict_pb2,
        prediction_service_pb2_grpc,
    )

    class SavedModelServicer(prediction_service_pb2_grpc.PredictionServiceServicer):  # type: ignore[misc]
        """What TF Serving does for one SavedModel named ``mlp``, version 1."""

        def __init__(self) -> None:
            self.loaded = tf.saved_model.load(str(path))
            self.fn = self.loaded.signatures["serving_default"]

        def _check(self, spec: Any, context: Any) -> None:
            if spec.name != "mlp":
                context.abort(grpc.StatusCode.NOT_FOUND, f"Servable not found: {spec.name}")

        def Predict(self, request: Any, context: Any) -> Any:
            self._check(request.model_spec, context)
            try:
                feed = {k: tf.constant(tf.make_ndarray(v)) for k, v in request.inputs.items()}
                out = self.fn(**feed)
            except (TypeError, ValueError, tf.errors.InvalidArgumentError) as exc:
                context.abort(grpc.StatusCode.INVALID_ARGUMENT, str(exc).splitlines()[0][:200])
            resp = predict_pb2.PredictResponse()
            resp.model_spec.name = "mlp"
            resp.model_spec.version.value = 1
            for k, v in out.items():
                resp.outputs[k].CopyFrom(tf.make_tensor_proto(v.numpy()))
            return resp

        def GetModelMetadata(self, request: Any, context: Any) -> Any:
            self._check(request.model_spec, context)
            sigs = get_model_metadata_pb2.SignatureDefMap()
            sig = sigs.signature_def["serving_default"]
            sig.method_name = "tensorflow/serving/predict"
            for where, specs in (
                (sig.inputs, self.fn.structured_input_signature[1]),
                (sig.outputs, self.fn.structured_outputs),
            ):
                for name, spec in specs.items():
                    where[name].name = f"serving_default_{name}:0"
                    where[name].dtype = spec.dtype.as_datatype_enum
                    where[name].tensor_shape.CopyFrom(spec.shape.as_proto())
            resp = get_model_metadata_pb2.GetModelMetadataResponse()
            resp.model_spec.name = "mlp"
            resp.metadata["signature_def"].Pack(sigs)
            return resp

    return SavedModelServicer()


@pytest.fixture(scope="module")
def tfserving(model_files: dict[str, Path]) -> Iterator[tuple[int, Any]]:
    servicer = _savedmodel_servicer(model_files["savedmodel_mlp"])
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=2))
    tf_apis.add_PredictionServiceServicer_to_server(servicer, server)
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    try:
        yield port, servicer
    finally:
        server.stop(grace=1).wait(10)


def test_tf_serving_remote_through_oip(tfserving: tuple[int, Any], tmp_path: Path) -> None:
    import tensorflow as tf

    port, servicer = tfserving
    store = ModelStore(tmp_path / "store")
    url = f"grpc://127.0.0.1:{port}/v1/models/mlp/versions/1"
    manifest = register_remote(store, RemoteOptions(name="tfs", url=url))
    sig = manifest.signature
    assert [(t.name, t.datatype, t.shape) for t in sig.inputs] == [("x", "FP32", [-1, 64])]
    assert [(t.name, t.shape) for t in sig.outputs] == [("output_0", [-1, 10])]
    ghost = RemoteOptions(name="ghost", url=url.replace("/mlp/", "/ghost/"))
    with pytest.raises(TruceError, match="Servable not found"):
        register_remote(store, ghost)
    assert store.versions("ghost") == []
    with FrontGateway(store.root, allowed_remote_urls=[f"grpc://127.0.0.1:{port}"]) as gw:
        x = zoo.mlp_input(4, seed=3)
        ours = oip_infer(gw, "tfs", "x", x)
        want = servicer.fn(x=tf.constant(x))["output_0"].numpy()
        np.testing.assert_array_equal(ours, want)
