"""Topic administration from the topic specification."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from aiokafka.admin import NewTopic
from aiokafka.errors import TopicAlreadyExistsError

from services.runtime import kafka_clients
from services.runtime.config import KafkaSettings
from services.runtime.topics import TopicCatalog, TopicSpec, default_catalog


@dataclass(frozen=True, slots=True)
class EnsureResult:
    """Topics created now and topics that already existed."""

    created: list[str]
    existing: list[str]


def new_topic(spec: TopicSpec, prefix: str, replication: int | None) -> NewTopic:
    """The NewTopic for a spec; ``replication`` overrides the production factor."""
    configs = dict(spec.config)
    rf = replication or spec.replication
    configs.setdefault("min.insync.replicas", str(min(spec.min_insync_replicas, rf)))
    return NewTopic(
        name=spec.full_name(prefix),
        num_partitions=spec.partitions,
        replication_factor=rf,
        topic_configs=configs,
    )


async def ensure_topics(
    kafka: KafkaSettings,
    *,
    replication: int | None = None,
    topic_ids: Iterable[str] | None = None,
    catalog: TopicCatalog | None = None,
    partitions: int | None = None,
) -> EnsureResult:
    """Create the specification's topics that are missing (idempotent).

    ``partitions`` overrides every topic's partition count (tests use small
    topics); ``topic_ids`` limits the set.
    """
    catalog = catalog or default_catalog()
    wanted = [catalog.get(t) for t in topic_ids] if topic_ids else list(catalog)
    admin = kafka_clients.admin_client(kafka)
    await admin.start()
    try:
        existing = set(await admin.list_topics())
        created: list[str] = []
        present: list[str] = []
        todo: list[NewTopic] = []
        for spec in wanted:
            name = spec.full_name(kafka.topic_prefix)
            if name in existing:
                present.append(name)
                continue
            topic = new_topic(spec, kafka.topic_prefix, replication)
            if partitions:
                topic.num_partitions = partitions
            todo.append(topic)
        for topic in todo:
            try:
                await admin.create_topics([topic])
                created.append(topic.name)
            except TopicAlreadyExistsError:
                present.append(topic.name)
        return EnsureResult(created=created, existing=present)
    finally:
        await admin.close()
