"""``python -m services.ingest``: the IngestService process.

Serves ``act.v1.IngestService`` and ``act.v1.PipelineStatusService`` (with
gRPC health, and reflection when asked outside production) under the
lifecycle of every service (``services.runtime.app``): SIGTERM stops taking
calls, lets running streams finish and exits 0; a SIGTERM during start-up
exits 0; a bad gRPC TLS file exits 2. Settings come from ``ACT_INGEST_*``,
``ACT_STATUS_*`` and ``ACT_KAFKA_*`` variables.
"""

from __future__ import annotations

import sys

from services.ingest.app import IngestService
from services.ingest.settings import IngestSettings
from services.runtime.app import run_main
from services.runtime.config import KafkaSettings


def main() -> int:
    """Entry point; returns the exit code."""
    settings = IngestSettings()
    return run_main("ingest", lambda: IngestService(settings, KafkaSettings()), settings)


if __name__ == "__main__":
    sys.exit(main())
