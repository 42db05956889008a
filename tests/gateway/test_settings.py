"""Settings, the status table and version policies."""

from __future__ import annotations

from pathlib import Path

import grpc
import pytest

from gateway.policy import VersionPolicy, parse_policy, policy_for
from gateway.settings import Settings, build_settings
from gateway.status import RETRYABLE, STATUS, grpc_status, http_status
from truce.errors import ErrorCode, FailedPrecondition, InvalidArgument


def test_every_error_code_has_one_http_and_one_grpc_status() -> None:
    assert set(STATUS) == set(ErrorCode)
    assert http_status(ErrorCode.PAYLOAD_TOO_LARGE) == 413
    assert grpc_status(ErrorCode.PAYLOAD_TOO_LARGE) is grpc.StatusCode.RESOURCE_EXHAUSTED
    assert (http_status(ErrorCode.UNAVAILABLE), grpc_status(ErrorCode.UNAVAILABLE)) == (
        503,
        grpc.StatusCode.UNAVAILABLE,
    )
    assert http_status(ErrorCode.DEADLINE_EXCEEDED) == 504
    assert (http_status(ErrorCode.NOT_FOUND), http_status(ErrorCode.INVALID_ARGUMENT)) == (404, 400)
    assert ErrorCode.UNAVAILABLE in RETRYABLE
    assert all(s is not grpc.StatusCode.UNKNOWN for _, s in STATUS.values())


def test_environment_and_overrides(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TRUCE_HTTP_PORT", "9000")
    monkeypatch.setenv("TRUCE_MAX_REQUEST_BYTES", "2048")
    monkeypatch.setenv("TRUCE_VERSION_POLICIES", '{"m": "all"}')
    monkeypatch.setenv("TRUCE_ADMIN_TOKEN", "secret-secret-secret")
    s = build_settings(http_port=None, grpc_port=9001)
    assert (s.http_port, s.grpc_port, s.max_request_bytes) == (9000, 9001, 2048)
    assert s.version_policies == {"m": "all"}
    shown = s.effective()
    assert "secret-secret-secret" not in str(shown) and shown["admin_token"] == "<from env>"
    assert Settings.model_fields["max_json_depth"].description  # a description per field


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"http_port": 70000}, "http_port"),
        ({"version_policy": "newest"}, "bad version policy"),
        ({"request_timeout_s": 50, "max_request_timeout_s": 10}, "exceeds"),
        ({"log_level": "loud"}, "log_level"),
    ],
)
def test_bad_settings_name_the_setting(overrides: dict[str, object], message: str) -> None:
    with pytest.raises(InvalidArgument, match=message):
        build_settings(**overrides)


def test_policies() -> None:
    assert parse_policy("latest").select([3, 1, 2]) == [3]
    assert parse_policy("latest:2").select([1, 2, 3]) == [2, 3]
    assert parse_policy("all").select([2, 1]) == [1, 2]
    assert parse_policy("versions:1,3,9").select([1, 2, 3]) == [1, 3]
    assert str(parse_policy("versions:3,1")) == "versions:1,3"
    for bad in ("latest:0", "versions:", "versions:a", "all:2", "newest", "latest:-1"):
        with pytest.raises(InvalidArgument):
            parse_policy(bad)
    assert policy_for("m", {"truce.version_policy": "all"}, {}, "latest") == VersionPolicy("all")
    assert policy_for("m", {"truce.version_policy": "all"}, {"m": "latest:2"}, "latest").count == 2


def test_every_setting_is_documented() -> None:
    doc = (Path(__file__).resolve().parents[2] / "docs" / "gateway.md").read_text()
    missing = [name for name in Settings.model_fields if f"`{name}`" not in doc]
    assert not missing, f"docs/gateway.md does not describe {missing}"


def test_admin_token_file_is_created_private(tmp_path: Path) -> None:
    from gateway.admin import load_admin_token

    path = tmp_path / "cfg" / "admin-token"
    s = Settings(admin_token_file=path)
    token = load_admin_token(s)
    assert len(token) >= 32 and (path.stat().st_mode & 0o777) == 0o600
    assert load_admin_token(s) == token  # read back, not regenerated
    blocked = tmp_path / "file"
    blocked.write_text("")
    with pytest.raises(FailedPrecondition, match="admin token file"):
        load_admin_token(Settings(admin_token_file=blocked / "token"))
    with pytest.raises(InvalidArgument, match="too short"):
        load_admin_token(Settings(admin_token="short"))
