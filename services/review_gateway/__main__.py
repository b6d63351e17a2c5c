"""``python -m services.review_gateway [serve|migrate]``.

``serve`` (the default) runs the review-request consumer, the gRPC
ReviewService (with health, and reflection outside production), the outbox
relay and the lease reaper in one process; SIGTERM stops taking calls,
finishes running ones, commits the consumer's progress and exits 0.
``migrate`` only upgrades the database schema (e.g. a Kubernetes init job).
Settings come from ``ACT_GATEWAY_*`` and ``ACT_KAFKA_*`` variables.
"""

from __future__ import annotations

import asyncio
import sys

from services.review_gateway.app import Gateway
from services.review_gateway.db import open_database
from services.review_gateway.settings import GatewaySettings
from services.runtime.app import run_main
from services.runtime.config import KafkaSettings
from services.runtime.logging import configure_logging


async def _migrate(settings: GatewaySettings) -> int:
    engine = await open_database(
        settings.resolved_database_url(), schema=settings.database_schema, run_migrations=True
    )
    await engine.dispose()
    return 0


def main(argv: list[str] | None = None) -> int:
    """Entry point; returns the exit code."""
    args = sys.argv[1:] if argv is None else argv
    command = args[0] if args else "serve"
    settings = GatewaySettings()
    if command == "serve":
        return run_main("review-gateway", lambda: Gateway(settings, KafkaSettings()), settings)
    configure_logging("review-gateway", settings.log_level, settings.log_json)
    if command == "migrate":
        return asyncio.run(_migrate(settings))
    print(
        f"usage: python -m services.review_gateway [serve|migrate] (got {command!r})",
        file=sys.stderr,
    )
    return 2


if __name__ == "__main__":
    sys.exit(main())
