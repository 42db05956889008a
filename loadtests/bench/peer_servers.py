"""TorchServe 0.12 and MLServer 1.7 serving TorchScript models, each from its peer venv.

TorchServe: the models are archived with the peer's ``torch-model-archiver`` and the handler
in ``torchserve_handler.py``; token auth is off through both switches it needs
(``--disable-token-auth`` and ``disable_token_authorization=true``); ``TMPDIR`` is private so
two instances do not share TorchServe's global PID file. MLServer: a small custom runtime
(``mlserver_runtime.py``) loads the TorchScript file; ``debug`` (per-request logging) is off.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from loadtests.bench.peers import PEERS_DIR, peer_bin, venv_dir
from loadtests.bench.procs import ServerProcess, free_port, http_ok
from truce.errors import Unavailable

HERE = Path(__file__).resolve().parent
START_TIMEOUT_S = 180.0


@dataclass(frozen=True)
class TorchServeConfig:
    """``workers`` Python workers per model; ``batch_size`` > 1 turns batching on."""

    workers: int = 1
    batch_size: int = 1
    max_batch_delay_ms: int = 5
    #: torch intra-op threads per worker (OMP_NUM_THREADS); 0 leaves torch's default
    threads: int = 0


@dataclass(frozen=True)
class MLServerConfig:
    """``parallel_workers`` inference processes (0: in the server process)."""

    parallel_workers: int = 1
    max_batch_size: int = 1
    max_batch_time_s: float = 0.005
    threads: int = 0


def _env(venv: Path, threads: int, extra: dict[str, str] | None = None) -> dict[str, str]:
    env = {**os.environ, "PATH": f"{venv / 'bin'}{os.pathsep}{os.environ.get('PATH', '')}"}
    env.pop("PYTHONPATH", None)
    env.pop("VIRTUAL_ENV", None)
    if threads:
        env["OMP_NUM_THREADS"] = str(threads)
    return {**env, **(extra or {})}


class TorchServe:
    """One TorchServe instance on loopback serving ``models`` (name -> TorchScript file)."""

    kind = "torchserve"

    def __init__(
        self,
        work: Path,
        models: dict[str, Path],
        config: TorchServeConfig,
        peers: Path = PEERS_DIR,
    ) -> None:
        self.work, self.models, self.config, self.peers = work, models, config, peers
        self.port, self.mport, self.metrics_port = free_port(), free_port(), free_port()
        self.process: ServerProcess | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def _archive(self, store: Path) -> None:
        for name, model in self.models.items():
            subprocess.run(
                [
                    str(peer_bin("torchserve", "torch-model-archiver", self.peers)),
                    "--model-name",
                    name,
                    "--version",
                    "1.0",
                    "--serialized-file",
                    str(model),
                    "--handler",
                    str(HERE / "torchserve_handler.py"),
                    "--export-path",
                    str(store),
                    "--force",
                ],
                check=True,
                capture_output=True,
                timeout=120,
            )

    def _properties(self, store: Path) -> str:
        c = self.config
        models = {
            name: {
                "1.0": {
                    "defaultVersion": True,
                    "marName": f"{name}.mar",
                    "minWorkers": c.workers,
                    "maxWorkers": c.workers,
                    "batchSize": c.batch_size,
                    "maxBatchDelay": c.max_batch_delay_ms,
                    "responseTimeout": 120,
                }
            }
            for name in self.models
        }
        lines = {
            "inference_address": self.url,
            "management_address": f"http://127.0.0.1:{self.mport}",
            "metrics_address": f"http://127.0.0.1:{self.metrics_port}",
            "model_store": str(store),
            "load_models": ",".join(f"{n}.mar" for n in self.models),
            "models": json.dumps(models),
            "disable_token_authorization": "true",
            "enable_envvars_config": "false",
            "install_py_dep_per_model": "false",
            "disable_system_metrics": "true",
            "async_logging": "true",
            "job_queue_size": "1000",
            "default_workers_per_model": str(c.workers),
            "vmargs": "-Xmx1g -XX:+UseContainerSupport",
        }
        return "".join(f"{k}={v}\n" for k, v in lines.items())

    def _ready(self) -> bool:
        if not http_ok(f"{self.url}/ping"):
            return False
        for name in self.models:
            try:
                with urllib.request.urlopen(
                    f"http://127.0.0.1:{self.mport}/models/{name}", timeout=2
                ) as resp:
                    info = json.loads(resp.read())
            except (OSError, ValueError):
                return False
            workers = info[0].get("workers", []) if info else []
            if not any(w.get("status") == "READY" for w in workers):
                return False
        return True

    def start(self) -> TorchServe:
        if not (venv_dir("torchserve", self.peers) / ".truce-peer").exists():
            raise Unavailable("the TorchServe venv is missing: python -m loadtests.bench.peers")
        shutil.rmtree(self.work, ignore_errors=True)
        store = self.work / "model-store"
        (self.work / "tmp").mkdir(parents=True)
        store.mkdir()
        self._archive(store)
        config = self.work / "config.properties"
        config.write_text(self._properties(store))
        venv = venv_dir("torchserve", self.peers)
        self.process = ServerProcess(
            "torchserve",
            [
                str(venv / "bin" / "torchserve"),
                "--start",
                "--foreground",
                "--ncs",
                "--model-store",
                str(store),
                "--ts-config",
                str(config),
                "--disable-token-auth",
            ],
            log=self.work / "torchserve.out",
            cwd=self.work,
            env=_env(venv, self.config.threads, {"TMPDIR": str(self.work / "tmp")}),
        ).start()
        try:
            self.process.wait_ready(self._ready, START_TIMEOUT_S)
        except BaseException:
            self.stop()
            raise
        return self

    def stop(self) -> None:
        if self.process is not None:
            self.process.stop()


class MLServer:
    """One MLServer instance on loopback serving ``models`` with the TorchScript runtime."""

    kind = "mlserver"

    def __init__(
        self, work: Path, models: dict[str, Path], config: MLServerConfig, peers: Path = PEERS_DIR
    ) -> None:
        self.work, self.models, self.config, self.peers = work, models, config, peers
        self.port, self.grpc_port = free_port(), free_port()
        self.process: ServerProcess | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def grpc_target(self) -> str:
        return f"127.0.0.1:{self.grpc_port}"

    def _write_repository(self, repo: Path) -> None:
        c = self.config
        settings = {
            "debug": False,
            "host": "127.0.0.1",
            "http_port": self.port,
            "grpc_port": self.grpc_port,
            "metrics_endpoint": None,
            "parallel_workers": c.parallel_workers,
            "load_models_at_startup": True,
        }
        (repo / "settings.json").write_text(json.dumps(settings, indent=2))
        shutil.copy(HERE / "mlserver_runtime.py", repo / "truce_mlserver_runtime.py")
        for name, model in self.models.items():
            folder = repo / name
            folder.mkdir()
            shutil.copy(model, folder / "model.pt")
            model_settings = {
                "name": name,
                "implementation": "truce_mlserver_runtime.TorchScriptRuntime",
                "max_batch_size": c.max_batch_size,
                "max_batch_time": c.max_batch_time_s,
                "parameters": {"uri": "./model.pt", "version": "1"},
            }
            (folder / "model-settings.json").write_text(json.dumps(model_settings, indent=2))

    def _ready(self) -> bool:
        return all(http_ok(f"{self.url}/v2/models/{name}/ready") for name in self.models)

    def start(self) -> MLServer:
        if not (venv_dir("mlserver", self.peers) / ".truce-peer").exists():
            raise Unavailable("the MLServer venv is missing: python -m loadtests.bench.peers")
        shutil.rmtree(self.work, ignore_errors=True)
        repo = self.work / "models"
        repo.mkdir(parents=True)
        self._write_repository(repo)
        venv = venv_dir("mlserver", self.peers)
        self.process = ServerProcess(
            "mlserver",
            [str(venv / "bin" / "mlserver"), "start", str(repo)],
            log=self.work / "mlserver.out",
            cwd=repo,
            env=_env(venv, self.config.threads, {"PYTHONPATH": str(repo)}),
        ).start()
        try:
            self.process.wait_ready(self._ready, START_TIMEOUT_S)
        except BaseException:
            self.stop()
            raise
        return self

    def stop(self) -> None:
        if self.process is not None:
            self.process.stop()
