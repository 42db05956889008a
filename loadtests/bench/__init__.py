"""The benchmark: Truce vs the raw in-process forward loop, TorchServe and MLServer.

``make bench`` (Truce vs raw) and ``make bench-compare`` (plus TorchServe and MLServer, each in
its own virtualenv under ``build/peers/``) run ``python -m loadtests.bench``; see ``run.py``.
Load comes from Debian's ``wrk`` (HTTP, ``post.lua``) and ``grpc_load`` (gRPC, asyncio), each
in its own process with its CPU use measured and reported. Never run as a timed test.
"""
