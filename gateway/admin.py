"""The admin listener: the OIP model repository extension and alias changes, behind a token.

Bound to 127.0.0.1 by default, on its own port. Every request needs
``Authorization: Bearer <token>`` (compared in constant time); the token comes from
``TRUCE_ADMIN_TOKEN`` or from the token file, created at first start with a random token and
mode 0600. The token is never logged.

    POST   /v2/repository/index                          [{"name","version","state","reason"}]
    POST   /v2/repository/models/{m}/load                serve (again), retry FAILED versions
    POST   /v2/repository/models/{m}/unload              drain and unload every version
    GET    /v2/repository/models/{m}/aliases             {"alias": {"version", "weight"}}
    PUT    /v2/repository/models/{m}/aliases/{alias}     body {"version": 3, "weight": 0.1}
    DELETE /v2/repository/models/{m}/aliases/{alias}
    GET    /models[/{m}[/{version}|/all]]                TorchServe's management reads

Alias changes are written to the store (the only writes the serving process ever makes, and
only on request) and take effect before the response.
"""

from __future__ import annotations

import asyncio
import hmac
import logging
import os
import secrets
import stat
from pathlib import Path
from typing import Any

from gateway.http_app import App
from gateway.http_base import Request, Response, Router, json_response
from gateway.protocols.oip.rest_codec import parse_json
from gateway.registry import Registry
from gateway.settings import Settings
from model_store.names import check_name
from truce.errors import ErrorCode, FailedPrecondition, InvalidArgument, TruceError

log = logging.getLogger(__name__)

ADMIN_MAX_BODY = 1 << 20


def load_admin_token(settings: Settings) -> str:
    """The admin token: from the settings (env), else the token file (created if missing)."""
    if settings.admin_token is not None:
        token = settings.admin_token.get_secret_value().strip()
        if len(token) < 16:
            raise InvalidArgument("TRUCE_ADMIN_TOKEN is too short: use at least 16 characters")
        return token
    path = settings.admin_token_file
    try:
        token = path.read_text().strip()
    except FileNotFoundError:
        return _create_token_file(path)
    except OSError as exc:
        raise FailedPrecondition(
            f"cannot read the admin token file {path} ({exc.strerror}); set "
            "TRUCE_ADMIN_TOKEN or TRUCE_ADMIN_TOKEN_FILE, or run with --no-admin"
        ) from None
    mode = stat.S_IMODE(path.stat().st_mode)
    if mode & 0o077:
        log.warning(
            "the admin token file is readable by others (mode %o): chmod 600 %s", mode, path
        )
    if len(token) < 16:
        raise FailedPrecondition(
            f"the admin token file {path} holds no usable token (16+ characters); "
            "delete it to have a new one generated"
        )
    return token


def _create_token_file(path: Path) -> str:
    token = secrets.token_urlsafe(32)
    try:
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(token + "\n")
    except OSError as exc:
        raise FailedPrecondition(
            f"cannot create the admin token file {path} ({exc.strerror}); set "
            "TRUCE_ADMIN_TOKEN or TRUCE_ADMIN_TOKEN_FILE, or run with --no-admin"
        ) from None
    log.info("created the admin token file %s (mode 0600)", path)
    return token


def bearer_check(token: str) -> Any:
    """An ``authorize`` hook for ``App``: a constant-time bearer token check."""
    expected = token.encode()

    def authorize(headers: dict[str, str]) -> None:
        scheme, _, given = headers.get("authorization", "").partition(" ")
        ok = scheme.lower() == "bearer" and hmac.compare_digest(
            given.strip().encode("latin-1"), expected
        )
        if not ok:
            raise TruceError(
                "the admin API needs 'Authorization: Bearer <token>' (the token is in the "
                "admin token file, or TRUCE_ADMIN_TOKEN)",
                ErrorCode.UNAUTHENTICATED,
            )

    return authorize


class AdminApi:
    """Handlers of the admin listener (see the module docstring)."""

    def __init__(self, registry: Registry) -> None:
        self.registry = registry
        self.store = registry.store

    def add_routes(self, router: Router) -> None:
        router.add("POST", "/v2/repository/index", self.index, body=True)
        router.add("POST", "/v2/repository/models/{model}/load", self.load, body=True)
        router.add("POST", "/v2/repository/models/{model}/unload", self.unload, body=True)
        router.add("GET", "/v2/repository/models/{model}/aliases", self.aliases)
        alias = "/v2/repository/models/{model}/aliases/{alias}"
        router.add("PUT", alias, self.set_alias, body=True)
        router.add("DELETE", alias, self.remove_alias, body=True)

    async def index(self, request: Request) -> Response:
        doc = _body(request)
        rows = self.registry.index()
        if doc.get("ready") is True:
            rows = [r for r in rows if r["state"] == "READY"]
        return json_response(rows)

    async def load(self, request: Request) -> Response:
        _body(request)
        await self.registry.load_model(request.params["model"])
        return json_response({})

    async def unload(self, request: Request) -> Response:
        _body(request)
        await self.registry.unload_model(request.params["model"])
        return json_response({})

    async def aliases(self, request: Request) -> Response:
        aliases = await asyncio.to_thread(self.store.aliases, _known(request))
        return json_response({k: v.model_dump() for k, v in sorted(aliases.items())})

    async def set_alias(self, request: Request) -> Response:
        name = _known(request)
        doc = _body(request)
        version, weight = doc.get("version"), doc.get("weight")
        if type(version) is not int or version < 1:
            raise InvalidArgument('the body needs {"version": N} with N a version number')
        if weight is not None and (type(weight) not in (int, float) or not 0 <= weight < 1e9):
            raise InvalidArgument("'weight' must be a number >= 0, or null")
        alias = request.params["alias"]
        await asyncio.to_thread(self.store.set_alias, name, alias, version, weight)
        await self.registry.sync(wait=True)
        return json_response({"alias": alias, "version": version, "weight": weight})

    async def remove_alias(self, request: Request) -> Response:
        name = _known(request)
        await asyncio.to_thread(self.store.remove_alias, name, request.params["alias"])
        await self.registry.sync(wait=True)
        return json_response({})


def _known(request: Request) -> str:
    return check_name(request.params["model"])


def _body(request: Request) -> dict[str, Any]:
    if not request.body.strip():
        return {}
    doc = parse_json(request.body, 16)
    if not isinstance(doc, dict):
        raise InvalidArgument("the request body must be a JSON object")
    return doc


def build_admin_app(registry: Registry, settings: Settings, token: str) -> App:
    """The admin listener's app (bind it to ``settings.admin_host``)."""
    from gateway.protocols.torchserve.management import TorchServeManagement

    router = Router()
    AdminApi(registry).add_routes(router)
    TorchServeManagement(registry, settings.retry_after_s).add_routes(router)
    return App(
        router,
        max_body=ADMIN_MAX_BODY,
        retry_after_s=settings.retry_after_s,
        access_log=settings.access_log,
        authorize=bearer_check(token),
        listener="admin",
    )
