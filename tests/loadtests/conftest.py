"""Real servers on loopback for the load-test end-to-end tests."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest


@pytest.fixture(scope="session")
def mlp_torchscript(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """TinyMLP (seed 0) as TorchScript, input FP32 [N, 64]."""
    pytest.importorskip("torch", reason="the end-to-end tests serve a torch model")
    from truce import zoo

    path = tmp_path_factory.mktemp("bench-models") / "mlp.pt"
    return zoo.write_torchscript(zoo.TinyMLP(), zoo.mlp_input(1), path)


@pytest.fixture(scope="module")
def torchserve_url(
    mlp_torchscript: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[str]:
    """A real TorchServe 0.12 (its own venv under build/peers/) serving ``mlp``."""
    from loadtests.bench.peer_servers import TorchServe, TorchServeConfig
    from loadtests.bench.peers import ensure_peer
    from truce.errors import Unavailable

    if shutil.which("java") is None:
        pytest.skip("TorchServe needs Java 17: make system-deps")
    try:
        ensure_peer("torchserve")
    except Unavailable as exc:  # offline: PyPI cannot be reached to build the venv
        pytest.skip(f"cannot build the TorchServe venv: {exc}")
    server = TorchServe(
        tmp_path_factory.mktemp("torchserve"), {"mlp": mlp_torchscript}, TorchServeConfig()
    )
    server.start()
    try:
        yield server.url
    finally:
        server.stop()


@pytest.fixture(scope="module")
def truce_gateway(mlp_torchscript: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    """``truce serve`` (REST + gRPC) serving ``mlp`` from a fresh store."""
    pytest.importorskip("fastapi", reason="the gateway needs the serve extra")
    from loadtests.bench.truce_server import TruceConfig, TruceServer

    server = TruceServer(
        tmp_path_factory.mktemp("truce"),
        {"mlp": mlp_torchscript},
        TruceConfig(),
        {"mlp": "x:FP32:-1,64"},
    )
    server.start()
    try:
        yield server
    finally:
        server.stop()
