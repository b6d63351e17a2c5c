"""``python -m services.batchapi``: run the batch driver (settings from ``ACT_BATCH_*``).

See :mod:`services.batchapi.settings` for the variables and
:mod:`services.batchapi.driver` for what the driver guarantees.
"""

from __future__ import annotations

import sys

from services.batchapi.app import BatchProcess
from services.batchapi.settings import BatchSettings
from services.runtime.app import run_main
from services.runtime.config import KafkaSettings


def main() -> None:
    """Build the driver from the environment and run it until SIGTERM."""
    settings = BatchSettings()
    kafka = KafkaSettings()
    sys.exit(run_main("batchapi", lambda: BatchProcess(settings, kafka), settings.service))


if __name__ == "__main__":
    main()
