"""Helpers for the test suite: Kafka readers, service processes, stage harnesses.

The local broker and PostgreSQL live in :mod:`services.devkit.stack` (the
benchmarks use them too).
"""
