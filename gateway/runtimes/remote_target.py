"""Where a remote model lives: its URL, parsed into a protocol and transport, and the allowlist.

A ``format: remote`` version stores ``remote.json`` (``RemoteConfig``) as its artifact. The URL
is the one a user would call, and its path says which dialect the server speaks::

    http[s]://host:port/v2/models/{m}[/versions/{v}]          Open Inference Protocol v2 REST
    grpc[s]://host:port/v2/models/{m}[/versions/{v}]          Open Inference Protocol v2 gRPC
    http[s]://host:port/predictions/{m}[/{v}]                 TorchServe REST
    grpc[s]://host:port/predictions/{m}[/{v}]                 TorchServe gRPC
    http[s]://host:port/v1/models/{m}[/versions/{v}|/labels/{l}]   TF Serving REST
    grpc[s]://host:port/v1/models/{m}[/versions/{v}|/labels/{l}]   TF Serving gRPC

A bearer token is never stored: ``token_env`` names the environment variable that holds it in
the serving process (TorchServe's inference key, for instance).

The gateway serves a remote model only when its URL is inside ``allowed_remote_urls``
(deny by default): same scheme, host and port as an entry, and a path equal to or below the
entry's path (``url_allowed``); never a plain string prefix, so ``http://a:80`` does not
allow ``http://a:8080`` nor ``http://a:80@evil``.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Literal
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from truce.errors import FailedPrecondition, InvalidArgument

Protocol = Literal["oip", "torchserve", "tfserving"]
_SEGMENT = re.compile(r"^[A-Za-z0-9_.\-]{1,128}$")
_ENV = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,127}$")
_DEFAULT_PORTS = {"http": 80, "https": 443}


class RemoteConfig(BaseModel):
    """The content of ``remote.json``."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    url: str
    timeout_s: float = Field(default=30.0, gt=0, le=3600)
    """Longest a remote call may take; then the request fails with DEADLINE_EXCEEDED."""
    token_env: str | None = None
    """Environment variable holding a bearer token sent to the remote (never stored)."""
    body: Literal["json", "npy"] = "json"
    """TorchServe only: send inputs as a JSON tensor or as an ``.npy`` file."""
    signature_name: str = ""
    """TF Serving only: the signature to call (empty: the server's default)."""


@dataclass(frozen=True)
class Target:
    """A parsed remote URL."""

    config: RemoteConfig
    protocol: Protocol
    transport: Literal["http", "grpc"]
    tls: bool
    host: str
    port: int
    model: str
    version: str | None = None
    #: TF Serving: ``version`` is a label, not a number
    label: bool = False

    @property
    def base_url(self) -> str:
        """``scheme://host:port`` of an HTTP target."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{'https' if self.tls else 'http'}://{host}:{self.port}"

    @property
    def address(self) -> str:
        """``host:port`` of a gRPC target."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{host}:{self.port}"

    @property
    def where(self) -> str:
        """How error messages name the remote (no path, no token)."""
        return f"the remote {self.protocol} server at {self.address}"

    def token(self) -> str | None:
        """The bearer token from ``token_env``; FailedPrecondition when it is unset."""
        env = self.config.token_env
        if env is None:
            return None
        value = os.environ.get(env, "").strip()
        if not value:
            raise FailedPrecondition(
                f"the remote model needs a token in the environment variable {env}; set it "
                "for the gateway process"
            )
        return value


def parse_target(config: RemoteConfig) -> Target:
    """Parse ``config.url``; ``InvalidArgument`` saying which forms are accepted."""
    url = config.url
    if config.token_env is not None and not _ENV.match(config.token_env):
        raise InvalidArgument(f"token_env {config.token_env[:64]!r} is not a variable name")
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    if scheme not in ("http", "https", "grpc", "grpcs"):
        raise _bad(url, "the scheme must be http, https, grpc or grpcs")
    if parts.username is not None or parts.password is not None or parts.query or parts.fragment:
        raise _bad(url, "no user:password@, ?query or #fragment (pass tokens with token_env)")
    try:
        port = parts.port or _DEFAULT_PORTS.get(scheme)
    except ValueError:
        port = None
    host = parts.hostname
    if not host or port is None:
        raise _bad(url, "give a host and a port, e.g. grpc://127.0.0.1:8500/...")
    segments = parts.path.strip("/").split("/") if parts.path.strip("/") else []
    if any(not _SEGMENT.match(s) or s in (".", "..") for s in segments):
        raise _bad(url, "model names and versions use letters, digits, '_', '.' and '-'")
    protocol, model, version, label = _dialect(url, segments)
    transport: Literal["http", "grpc"] = "grpc" if scheme.startswith("grpc") else "http"
    return Target(config, protocol, transport, scheme.endswith("s"), host, port, model, version,
                  label)  # fmt: skip


def _dialect(url: str, s: list[str]) -> tuple[Protocol, str, str | None, bool]:
    if len(s) in (3, 5) and s[:2] == ["v2", "models"] and (len(s) == 3 or s[3] == "versions"):
        return "oip", s[2], s[4] if len(s) == 5 else None, False
    if len(s) in (2, 3) and s[0] == "predictions":
        return "torchserve", s[1], s[2] if len(s) == 3 else None, False
    if len(s) in (3, 5) and s[:2] == ["v1", "models"]:
        if len(s) == 3:
            return "tfserving", s[2], None, False
        if s[3] == "versions" and s[4].isdigit():
            return "tfserving", s[2], s[4], False
        if s[3] == "labels":
            return "tfserving", s[2], s[4], True
    raise _bad(
        url,
        "the path must be /v2/models/M[/versions/V] (OIP), /predictions/M[/V] (TorchServe) "
        "or /v1/models/M[/versions/N|/labels/L] (TF Serving)",
    )


def _bad(url: str, why: str) -> InvalidArgument:
    return InvalidArgument(f"bad remote URL {url[:200]!r}: {why}")


def url_allowed(url: str, allowed: list[str]) -> bool:
    """True when ``url`` is inside one of the ``allowed`` entries (see the module docstring)."""
    try:
        got = urlsplit(url)
        got_port = got.port or _DEFAULT_PORTS.get(got.scheme.lower())
    except ValueError:
        return False
    if got.username is not None or got.password is not None or got.query or got.fragment:
        return False
    path = "/" + got.path.strip("/")
    for entry in allowed:
        try:
            want = urlsplit(entry.strip())
            want_port = want.port or _DEFAULT_PORTS.get(want.scheme.lower())
        except ValueError:
            continue
        if (
            want.scheme.lower() == got.scheme.lower()
            and want.hostname is not None
            and want.hostname == got.hostname
            and want_port == got_port
            and want.username is None
            and _below(path, "/" + want.path.strip("/"))
        ):
            return True
    return False


def _below(path: str, prefix: str) -> bool:
    return prefix == "/" or path == prefix or path.startswith(prefix + "/")


def check_allowed(url: str, allowed: list[str]) -> None:
    """``FailedPrecondition`` unless ``url`` is allowed (the message never echoes the list)."""
    if not allowed:
        raise FailedPrecondition(
            "remote models are off; list the allowed URLs in allowed_remote_urls "
            "(TRUCE_ALLOWED_REMOTE_URLS, a JSON list)"
        )
    if not url_allowed(url, allowed):
        raise FailedPrecondition(
            "the remote model's URL is not in allowed_remote_urls; add its scheme://host:port "
            "(and path) there"
        )


def read_config(path: Path) -> RemoteConfig:
    """``remote.json`` of a stored version."""
    try:
        return RemoteConfig.model_validate_json(path.read_bytes())
    except (OSError, ValidationError):
        raise InvalidArgument(
            "the remote model's remote.json is unreadable or invalid; register it again"
        ) from None
