"""Gateway settings: one object, built once at startup and passed down.

Every field can be set from the environment with the ``TRUCE_`` prefix (``TRUCE_HTTP_PORT``,
``TRUCE_MAX_REQUEST_BYTES``...; lists and dicts as JSON) and most from ``truce serve`` options,
which win over the environment. Nothing imports a global settings object. ``effective()``
is what the server logs at startup (the admin token is never included).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from pydantic import Field, SecretStr, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from gateway.policy import parse_policy
from truce.errors import InvalidArgument

MIB = 1 << 20


def default_admin_token_file() -> Path:
    """``$XDG_CONFIG_HOME/truce/admin-token`` (``~/.config/truce/admin-token``)."""
    base = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(base) / "truce" / "admin-token"


class Settings(BaseSettings):
    """Everything the gateway can be configured with (see the module docstring)."""

    model_config = SettingsConfigDict(
        env_prefix="TRUCE_", extra="ignore", use_attribute_docstrings=True, frozen=True
    )

    # --- where and what ---------------------------------------------------------------
    store: Path | None = None
    """Model store directory; unset: ``$TRUCE_STORE``, else the per-user default store."""

    host: str = "127.0.0.1"
    """Address the inference listeners (HTTP and gRPC) bind to; ``0.0.0.0`` for all."""

    http_port: int = Field(default=8080, ge=0, le=65535)
    """Port of the REST inference listener (0: any free port)."""

    grpc_port: int = Field(default=8081, ge=0, le=65535)
    """Port of the gRPC inference listener (0: any free port)."""

    grpc_enabled: bool = True
    """Serve the Open Inference Protocol over gRPC as well."""

    admin_host: str = "127.0.0.1"
    """Address of the admin listener (repository load/unload, aliases); keep it on loopback."""

    admin_port: int = Field(default=8082, ge=0, le=65535)
    """Port of the admin listener (0: any free port)."""

    admin_enabled: bool = True
    """Run the admin listener at all."""

    admin_token: SecretStr | None = None
    """Bearer token of the admin listener; unset: read (or create) ``admin_token_file``."""

    admin_token_file: Path = Field(default_factory=default_admin_token_file)
    """File holding the admin token; created with a random token, mode 0600, when missing."""

    # --- limits -----------------------------------------------------------------------
    max_request_bytes: int = Field(default=64 * MIB, ge=1024)
    """Largest HTTP request body accepted; larger ones get 413 while still being read."""

    max_json_depth: int = Field(default=64, ge=4, le=1000)
    """Deepest JSON nesting accepted in a request body (arrays and objects)."""

    max_tensor_elements: int = Field(default=64 * MIB, ge=1)
    """Most elements one input tensor may declare (checked before anything is allocated)."""

    grpc_max_message_bytes: int = Field(default=64 * MIB, ge=1024)
    """Largest gRPC message received or sent (RESOURCE_EXHAUSTED beyond it)."""

    request_timeout_s: float = Field(default=30.0, gt=0)
    """Deadline of an inference request that gives none (504 / DEADLINE_EXCEEDED after it)."""

    max_request_timeout_s: float = Field(default=300.0, gt=0)
    """Longest deadline a client may ask for; longer ones are shortened to this."""

    model_load_timeout_s: float = Field(default=600.0, gt=0)
    """Time one model instance may take to load before it is marked FAILED."""

    retry_after_s: int = Field(default=1, ge=0)
    """``Retry-After`` seconds sent with 503 (queue full, loading, shutting down)."""

    # --- model lifecycle --------------------------------------------------------------
    reload_interval_s: float = Field(default=2.0, ge=0)
    """How often the store is polled for new, removed or re-aliased versions (0: never)."""

    version_policy: str = "latest"
    """Which versions are served by default: ``latest``, ``latest:N``, ``all`` or
    ``versions:1,3``. A model's ``truce.version_policy`` label overrides it."""

    version_policies: dict[str, str] = Field(default_factory=dict)
    """Per-model policies (model name -> policy), overriding labels and the default."""

    allowed_remote_urls: list[str] = Field(default_factory=list)
    """URL prefixes remote models may point at; empty: remote models are refused."""

    # --- process ----------------------------------------------------------------------
    shutdown_grace_s: float = Field(default=30.0, ge=0)
    """On SIGTERM, how long in-flight requests may take to finish before exiting anyway."""

    shutdown_delay_s: float = Field(default=0.0, ge=0)
    """On SIGTERM, how long to keep answering (readiness 503) after in-flight requests are
    done, so load balancers notice before the listeners close."""

    access_log: bool = True
    """Write one structured (JSON) access log line per HTTP request."""

    log_level: str = "info"
    """Log level: debug, info, warning or error."""

    @field_validator("version_policy")
    @classmethod
    def _policy(cls, v: str) -> str:
        _check_policy(v)
        return v

    @field_validator("version_policies")
    @classmethod
    def _policies(cls, v: dict[str, str]) -> dict[str, str]:
        for policy in v.values():
            _check_policy(policy)
        return v

    @field_validator("log_level")
    @classmethod
    def _level(cls, v: str) -> str:
        if v.lower() not in ("debug", "info", "warning", "error"):
            raise ValueError("use debug, info, warning or error")
        return v.lower()

    @model_validator(mode="after")
    def _timeouts(self) -> Settings:
        if self.request_timeout_s > self.max_request_timeout_s:
            raise ValueError(
                f"request_timeout_s ({self.request_timeout_s}) exceeds max_request_timeout_s "
                f"({self.max_request_timeout_s})"
            )
        return self

    def effective(self) -> dict[str, Any]:
        """The settings as plain values, for the startup log; the token is left out."""
        data = self.model_dump(mode="json", exclude={"admin_token"})
        data["admin_token"] = "<from env>" if self.admin_token is not None else None
        return data


def _check_policy(text: str) -> None:
    try:
        parse_policy(text)
    except InvalidArgument as exc:  # pydantic reports ValueErrors as validation errors
        raise ValueError(exc.message) from None


def build_settings(**overrides: Any) -> Settings:
    """Settings from the environment plus ``overrides`` (``None`` values are ignored).

    Invalid values raise ``InvalidArgument`` naming the setting, for the CLI to print.
    """
    given = {k: v for k, v in overrides.items() if v is not None}
    try:
        return Settings(**given)
    except ValidationError as exc:
        err = exc.errors()[0]
        where = ".".join(str(p) for p in err["loc"]) or "settings"
        raise InvalidArgument(
            f"bad setting {where}: {err['msg']} (set it with TRUCE_{where.upper()} or its "
            "'truce serve' option)"
        ) from None
