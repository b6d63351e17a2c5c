"""Local development kit: process supervision and metrics scraping shared by
the demo, the benchmarks and the tests.

:mod:`services.devkit.processes` runs services as ``python -m`` processes
(spawn, wait for gRPC health, SIGTERM, SIGKILL, reap, and a supervisor that
notices a child exiting); :mod:`services.devkit.scrape` reads their
Prometheus ``/metrics``.
"""
