"""Settings of the gateway: defaults, environment and production guards."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from services.review_gateway.db import normalize_url
from services.review_gateway.settings import GatewaySettings


def test_environment_variables(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.delenv("ACT_GATEWAY_DATABASE_URL", raising=False)
    monkeypatch.setenv("ACT_GATEWAY_ADMIN_TOKEN", "s3cret")
    monkeypatch.setenv("ACT_GATEWAY_LEASE_SECONDS", "120")
    monkeypatch.setenv("ACT_GATEWAY_DATA_DIR", "/var/lib/gw")
    settings = GatewaySettings()
    assert settings.admin_token is not None
    assert settings.admin_token.get_secret_value() == "s3cret"
    assert "s3cret" not in repr(settings)
    assert settings.lease_seconds == 120
    assert settings.max_request_bytes == 1024 * 1024
    assert settings.resolved_database_url() == "sqlite+aiosqlite:////var/lib/gw/review-gateway.db"


def test_reflection_and_reference_labels_stay_out_of_production():
    assert GatewaySettings(environment="dev").reflection_enabled
    assert not GatewaySettings(environment="test").reflection_enabled
    assert GatewaySettings(environment="test", grpc_reflection=True).reflection_enabled
    assert not GatewaySettings(environment="production", grpc_reflection=True).reflection_enabled
    with pytest.raises(ValidationError):
        GatewaySettings(environment="production", expose_reference_labels=True)


def test_database_urls():
    assert normalize_url("postgresql://a:b@h:5/db") == "postgresql+psycopg://a:b@h:5/db"
    assert normalize_url("sqlite:///x.db") == "sqlite+aiosqlite:///x.db"
    assert normalize_url("postgresql+psycopg://h/db") == "postgresql+psycopg://h/db"
