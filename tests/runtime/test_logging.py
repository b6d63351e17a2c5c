"""Logs never carry item content or secrets."""

import json

from pydantic import SecretStr

from services.runtime.config import KafkaSettings
from services.runtime.logging import configure_logging, get_logger


def test_content_and_secrets_are_redacted(capsys):
    configure_logging("test-svc", "INFO", json=True)
    log = get_logger(task_id="t1", item_id="i1")
    log.info(
        "something",
        text="buy cheap pills now",
        raw_output="[0]",
        api_key="sk-123",
        other=SecretStr("hunter2"),
        count=3,
    )
    line = capsys.readouterr().err.strip().splitlines()[-1]
    record = json.loads(line)
    assert record["service"] == "test-svc"
    assert record["task_id"] == "t1" and record["item_id"] == "i1"
    assert record["count"] == 3
    for secret in ("buy cheap pills", "sk-123", "hunter2", "[0]"):
        assert secret not in line


def test_kafka_settings_keep_password_secret(monkeypatch):
    monkeypatch.setenv("ACT_KAFKA_SASL_PASSWORD", "s3cret")
    monkeypatch.setenv("ACT_KAFKA_SASL_MECHANISM", "PLAIN")
    monkeypatch.setenv("ACT_KAFKA_SASL_USERNAME", "u")
    settings = KafkaSettings()
    assert "s3cret" not in repr(settings)
    assert settings.client_kwargs()["sasl_plain_password"] == "s3cret"
