"""Structured JSON logs that never carry item content or secrets.

Bind ``service``, ``task_id`` and ``item_id`` with :func:`bind_message`; the
:func:`redact_sensitive` processor replaces any field whose name marks content
or a secret, so a careless ``log.info("x", text=item.text)`` cannot leak.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import MutableMapping
from typing import Any

import structlog
from pydantic import SecretStr

# Field names that may hold item content, model output or credentials.
SENSITIVE_KEYS = frozenset(
    {
        "text",
        "content",
        "prompt",
        "messages",
        "image",
        "image_bytes",
        "question",
        "raw_output",
        "completion",
        "rationale",
        "value",
        "payload",
        "password",
        "token",
        "api_key",
        "authorization",
        "secret",
        "sasl_password",
    }
)
REDACTED = "[redacted]"


def redact_sensitive(
    _logger: Any, _method: str, event_dict: MutableMapping[str, Any]
) -> MutableMapping[str, Any]:
    """structlog processor: blank content and secret fields, unwrap nothing."""
    for key in list(event_dict):
        value = event_dict[key]
        if key.lower() in SENSITIVE_KEYS or isinstance(value, SecretStr | bytes):
            event_dict[key] = REDACTED
    return event_dict


class _CurrentStderr:
    """Writes to whatever ``sys.stderr`` is at the time of the write.

    Loggers are cached on first use; binding the stream object at configuration
    time would keep a replaced (or closed) stream alive in them.
    """

    def write(self, text: str) -> int:
        return sys.stderr.write(text)

    def flush(self) -> None:
        sys.stderr.flush()


def configure_logging(service: str, level: str = "INFO", json: bool = True) -> None:
    """Configure structlog (and stdlib logging of libraries) for one service."""
    structlog.contextvars.clear_contextvars()
    structlog.contextvars.bind_contextvars(service=service)
    renderer: Any = structlog.processors.JSONRenderer() if json else structlog.dev.ConsoleRenderer()
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            redact_sensitive,
            structlog.processors.format_exc_info,
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(logging.getLevelName(level)),
        logger_factory=structlog.PrintLoggerFactory(file=_CurrentStderr()),  # type: ignore[arg-type]
        cache_logger_on_first_use=True,
    )
    # Library loggers (aiokafka, grpc) go to stderr at WARNING; they never see
    # message values, only metadata.
    logging.basicConfig(stream=sys.stderr, level=max(logging.WARNING, logging.getLevelName(level)))


def get_logger(**bound: Any) -> Any:
    """A structlog logger with extra bound fields."""
    return structlog.get_logger().bind(**bound)
