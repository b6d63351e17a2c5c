"""The topic specification: one source of truth for topic names and layout.

The specification lives beside the contracts (``protos/act/v1/topics.yaml``,
shipped in the ``act`` package) and is read by every service, by the local
stack (``act topics ensure``) and by the Kubernetes generator.
"""

from __future__ import annotations

import functools
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

import yaml


class TopicSpecError(ValueError):
    """The topic specification is malformed or names an unknown topic."""


@dataclass(frozen=True, slots=True)
class TopicSpec:
    """One topic of the pipeline as the specification declares it."""

    id: str
    name: str
    version: int
    partitions: int
    message: str
    key: str
    replication: int
    min_insync_replicas: int
    config: Mapping[str, str] = field(default_factory=dict)

    def full_name(self, prefix: str = "") -> str:
        """The topic's name on the broker: ``<prefix><name>.v<version>``."""
        return f"{prefix}{self.name}.v{self.version}"


@dataclass(frozen=True, slots=True)
class TopicCatalog:
    """All topics of the specification, looked up by their stable ids."""

    spec_version: int
    topics: tuple[TopicSpec, ...]

    def __iter__(self) -> Iterator[TopicSpec]:
        return iter(self.topics)

    def get(self, topic_id: str) -> TopicSpec:
        """Return the topic with this id or raise :class:`TopicSpecError`."""
        for topic in self.topics:
            if topic.id == topic_id:
                return topic
        known = ", ".join(t.id for t in self.topics)
        raise TopicSpecError(f"unknown topic id {topic_id!r}; known: {known}")

    def name(self, topic_id: str, prefix: str = "") -> str:
        """Full broker name of the topic with this id."""
        return self.get(topic_id).full_name(prefix)


def _parse(raw: Any) -> TopicCatalog:
    if not isinstance(raw, dict) or "topics" not in raw:
        raise TopicSpecError("topic specification must be a mapping with a 'topics' list")
    defaults = raw.get("defaults") or {}
    topics: list[TopicSpec] = []
    seen_ids: set[str] = set()
    seen_names: set[str] = set()
    for entry in raw["topics"]:
        try:
            spec = TopicSpec(
                id=str(entry["id"]),
                name=str(entry["name"]),
                version=int(entry["version"]),
                partitions=int(entry["partitions"]),
                message=str(entry["message"]),
                key=str(entry["key"]),
                replication=int(entry.get("replication", defaults.get("replication", 1))),
                min_insync_replicas=int(
                    entry.get("min_insync_replicas", defaults.get("min_insync_replicas", 1))
                ),
                config={str(k): str(v) for k, v in (entry.get("config") or {}).items()},
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise TopicSpecError(f"bad topic entry {entry!r}: {exc}") from exc
        if spec.partitions < 1 or spec.version < 1:
            raise TopicSpecError(f"topic {spec.id}: partitions and version must be >= 1")
        if spec.id in seen_ids or spec.full_name() in seen_names:
            raise TopicSpecError(f"duplicate topic {spec.id} / {spec.full_name()}")
        seen_ids.add(spec.id)
        seen_names.add(spec.full_name())
        topics.append(spec)
    return TopicCatalog(spec_version=int(raw.get("version", 1)), topics=tuple(topics))


def load_catalog(path: Path | None = None) -> TopicCatalog:
    """Load the specification from ``path`` or from the installed ``act`` package."""
    if path is not None:
        return _parse(yaml.safe_load(path.read_text(encoding="utf-8")))
    return default_catalog()


@functools.cache
def default_catalog() -> TopicCatalog:
    """The specification shipped with the contracts (cached)."""
    text = resources.files("act.v1").joinpath("topics.yaml").read_text(encoding="utf-8")
    return _parse(yaml.safe_load(text))
