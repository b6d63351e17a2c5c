"""The stages of the pipeline as Kubernetes sees them.

This table is where the generated ``KafkaUser`` ACLs come from, and the tests
check the manifests (consumer groups, KEDA triggers) against it. When a stage
starts reading or writing another topic, add it here and run
``python -m services.k8sgen generate``.
"""

from __future__ import annotations

from dataclasses import dataclass

KAFKA_CLUSTER = "act"
"""Name of the Strimzi ``Kafka`` resource (k8s/base/kafka/kafka.yaml)."""

NAMESPACE = "act"


@dataclass(frozen=True, slots=True)
class KafkaPrincipal:
    """A Kafka user and what it may do; topics are ids of the topic specification."""

    user: str
    consumes: tuple[str, ...] = ()
    """Topics read with the consumer group (offsets committed)."""
    reads: tuple[str, ...] = ()
    """Topics read by assignment, without a group (task registry, state restore)."""
    produces: tuple[str, ...] = ()
    group: str | None = None
    transactional: bool = False
    """Produces with transactional ids ``<group>.*`` (the exactly-once runner)."""
    describe_prefixes: bool = False
    """Describe every ``act.`` topic and ``act-`` group (lag readers such as KEDA)."""


@dataclass(frozen=True, slots=True)
class Stage:
    """A service that consumes one input topic with its own consumer group."""

    name: str
    """Service and Deployment name (``python -m services.<module>``)."""
    input: str
    outputs: tuple[str, ...]
    reads: tuple[str, ...] = ("tasks",)
    autoscaled: bool = True
    """Scaled by a KEDA ScaledObject on the group's lag."""

    @property
    def group(self) -> str:
        """The consumer group: ``act-<stage>``."""
        return f"act-{self.name}"

    @property
    def principal(self) -> KafkaPrincipal:
        """The stage's Kafka user (its name is the group's)."""
        return KafkaPrincipal(
            user=self.group,
            consumes=(self.input,),
            reads=self.reads,
            # Heartbeats: each replica's in-flight and retries, for GetStatus.
            produces=(*self.outputs, "dlq", "stage_heartbeats"),
            group=self.group,
            transactional=True,
        )


#: The topics GetStatus's read model follows (services.pipeline_status.progress.MESSAGES).
STATUS_TOPICS: tuple[str, ...] = (
    "items",
    "annotations",
    "critiques",
    "review_requests",
    "labels",
    "dlq",
    "training_events",
    "stage_heartbeats",
)

STAGES: tuple[Stage, ...] = (
    Stage("annotator", input="items", outputs=("annotations",)),
    Stage("criticizer", input="annotations", outputs=("critiques",)),
    Stage(
        "sampler",
        input="critiques",
        outputs=("review_requests", "labels", "sampler_state"),
        # act.models: the trainer's latest model of each task, the second critic.
        reads=("tasks", "sampler_state", "models"),
    ),
    Stage("review-gateway", input="review_requests", outputs=("labels",), autoscaled=False),
    Stage("trainer", input="labels", outputs=("training_events", "models"), autoscaled=False),
)

EXTRA_PRINCIPALS: tuple[KafkaPrincipal, ...] = (
    # KEDA's kafka scaler: reads committed offsets and end offsets, nothing else.
    KafkaPrincipal(user="act-keda", describe_prefixes=True),
    # Producers of work: `act ingest` and `act task create` run as this user
    # (a Job in the namespace labelled act-stream.io/kafka-client=true).
    KafkaPrincipal(user="act-ingest", reads=("tasks",), produces=("items", "tasks")),
    # The ingest service: the same writes, and PipelineStatusService's reads
    # (its read model follows STATUS_TOPICS; stage lag needs the groups'
    # committed offsets, hence Describe on every act- group).
    KafkaPrincipal(
        user="act-ingest-service",
        reads=("tasks", *STATUS_TOPICS),
        produces=("items", "tasks"),
        describe_prefixes=True,
    ),
)


def stage(name: str) -> Stage:
    """The stage with this name."""
    for s in STAGES:
        if s.name == name:
            return s
    raise KeyError(name)


def principals() -> tuple[KafkaPrincipal, ...]:
    """Every Kafka user of the deployment, stages first."""
    return (*(s.principal for s in STAGES), *EXTRA_PRINCIPALS)
