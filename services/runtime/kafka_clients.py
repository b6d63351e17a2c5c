"""The one place that constructs aiokafka clients.

Every client gets the connection settings of :class:`KafkaSettings`
(bootstrap servers, client id, TLS, SASL with the password as a secret) from
:meth:`KafkaSettings.client_kwargs`, so a security setting added there reaches
every producer, consumer and admin client of every service, tool and test.
Callers pass only what is specific to their use; the helpers below name the
few recurring kinds.
"""

from __future__ import annotations

import contextlib
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient

from services.runtime.config import KafkaSettings


def producer(kafka: KafkaSettings, **options: Any) -> AIOKafkaProducer:
    """A producer with the connection settings and ``options``."""
    return AIOKafkaProducer(**{**kafka.client_kwargs(), **options})


def idempotent_producer(kafka: KafkaSettings, **options: Any) -> AIOKafkaProducer:
    """A producer that never duplicates or reorders on retry (acks=all)."""
    defaults: dict[str, Any] = {
        "enable_idempotence": True,
        "acks": "all",
        "linger_ms": 10,
        "max_batch_size": 262_144,
    }
    return producer(kafka, **{**defaults, **options})


def transactional_producer(
    kafka: KafkaSettings, transactional_id: str, **options: Any
) -> AIOKafkaProducer:
    """A transactional producer (idempotent, acks=all) for ``transactional_id``."""
    return idempotent_producer(kafka, transactional_id=transactional_id, **options)


async def fenced_transactional_producer(
    kafka: KafkaSettings, transactional_id: str, **options: Any
) -> AIOKafkaProducer:
    """A started transactional producer for ``transactional_id`` that has fenced
    every earlier producer of that id.

    Its first transaction waits for ``InitProducerId``, which bumps the id's
    epoch (fencing earlier incarnations) and completes or aborts the
    transaction an earlier incarnation left open; so once this returns, every
    earlier transaction of the id is final, and offsets committed through it
    can be read. The producer is stopped again if any of this fails.
    Defaults: ``linger_ms=5``, ``max_batch_size=256 KiB``.
    """
    producer = transactional_producer(
        kafka, transactional_id, **{"linger_ms": 5, "max_batch_size": 256 * 1024, **options}
    )
    try:
        await producer.start()
        await producer.begin_transaction()
        await producer.abort_transaction()
    except BaseException:
        with contextlib.suppress(Exception):
            await producer.stop()
        raise
    return producer


def consumer(kafka: KafkaSettings, *topics: str, **options: Any) -> AIOKafkaConsumer:
    """A consumer with the connection settings and ``options`` (no auto-commit)."""
    return AIOKafkaConsumer(
        *topics, **{"enable_auto_commit": False, **kafka.client_kwargs(), **options}
    )


def snapshot_consumer(
    kafka: KafkaSettings, isolation_level: str = "read_committed", **options: Any
) -> AIOKafkaConsumer:
    """A group-less consumer from the earliest offset (read_committed by default),
    for reading topics to their end, offsets and metadata."""
    return consumer(kafka, isolation_level=isolation_level, auto_offset_reset="earliest", **options)


def admin_client(kafka: KafkaSettings, **options: Any) -> AIOKafkaAdminClient:
    """An admin client with the connection settings."""
    return AIOKafkaAdminClient(**{**kafka.client_kwargs(), **options})
