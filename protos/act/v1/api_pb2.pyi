import datetime

from act.v1 import item_pb2 as _item_pb2
from act.v1 import review_pb2 as _review_pb2
from act.v1 import task_pb2 as _task_pb2
from act.v1 import training_pb2 as _training_pb2
from google.protobuf import timestamp_pb2 as _timestamp_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class ReviewerRole(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    REVIEWER_ROLE_UNSPECIFIED: _ClassVar[ReviewerRole]
    REVIEWER_ROLE_REVIEWER: _ClassVar[ReviewerRole]
    REVIEWER_ROLE_ADMIN: _ClassVar[ReviewerRole]
    REVIEWER_ROLE_PRODUCER: _ClassVar[ReviewerRole]

class SkipReason(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    SKIP_REASON_UNSPECIFIED: _ClassVar[SkipReason]
    SKIP_REASON_UNSURE: _ClassVar[SkipReason]
    SKIP_REASON_DISTRESSING: _ClassVar[SkipReason]
    SKIP_REASON_BROKEN_CONTENT: _ClassVar[SkipReason]
    SKIP_REASON_OTHER: _ClassVar[SkipReason]
REVIEWER_ROLE_UNSPECIFIED: ReviewerRole
REVIEWER_ROLE_REVIEWER: ReviewerRole
REVIEWER_ROLE_ADMIN: ReviewerRole
REVIEWER_ROLE_PRODUCER: ReviewerRole
SKIP_REASON_UNSPECIFIED: SkipReason
SKIP_REASON_UNSURE: SkipReason
SKIP_REASON_DISTRESSING: SkipReason
SKIP_REASON_BROKEN_CONTENT: SkipReason
SKIP_REASON_OTHER: SkipReason

class CreateTaskRequest(_message.Message):
    __slots__ = ("task",)
    TASK_FIELD_NUMBER: _ClassVar[int]
    task: _task_pb2.Task
    def __init__(self, task: _Optional[_Union[_task_pb2.Task, _Mapping]] = ...) -> None: ...

class GetTaskRequest(_message.Message):
    __slots__ = ("task_id",)
    TASK_ID_FIELD_NUMBER: _ClassVar[int]
    task_id: str
    def __init__(self, task_id: _Optional[str] = ...) -> None: ...

class ListTasksRequest(_message.Message):
    __slots__ = ("page_size", "page_token")
    PAGE_SIZE_FIELD_NUMBER: _ClassVar[int]
    PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    page_size: int
    page_token: str
    def __init__(self, page_size: _Optional[int] = ..., page_token: _Optional[str] = ...) -> None: ...

class ListTasksResponse(_message.Message):
    __slots__ = ("tasks", "next_page_token")
    TASKS_FIELD_NUMBER: _ClassVar[int]
    NEXT_PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    tasks: _containers.RepeatedCompositeFieldContainer[_task_pb2.Task]
    next_page_token: str
    def __init__(self, tasks: _Optional[_Iterable[_Union[_task_pb2.Task, _Mapping]]] = ..., next_page_token: _Optional[str] = ...) -> None: ...

class IngestError(_message.Message):
    __slots__ = ("index", "item_id", "message", "code")
    INDEX_FIELD_NUMBER: _ClassVar[int]
    ITEM_ID_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    CODE_FIELD_NUMBER: _ClassVar[int]
    index: int
    item_id: str
    message: str
    code: int
    def __init__(self, index: _Optional[int] = ..., item_id: _Optional[str] = ..., message: _Optional[str] = ..., code: _Optional[int] = ...) -> None: ...

class IngestSummary(_message.Message):
    __slots__ = ("received", "accepted", "rejected", "errors", "duplicates")
    RECEIVED_FIELD_NUMBER: _ClassVar[int]
    ACCEPTED_FIELD_NUMBER: _ClassVar[int]
    REJECTED_FIELD_NUMBER: _ClassVar[int]
    ERRORS_FIELD_NUMBER: _ClassVar[int]
    DUPLICATES_FIELD_NUMBER: _ClassVar[int]
    received: int
    accepted: int
    rejected: int
    errors: _containers.RepeatedCompositeFieldContainer[IngestError]
    duplicates: int
    def __init__(self, received: _Optional[int] = ..., accepted: _Optional[int] = ..., rejected: _Optional[int] = ..., errors: _Optional[_Iterable[_Union[IngestError, _Mapping]]] = ..., duplicates: _Optional[int] = ...) -> None: ...

class LeaseRequest(_message.Message):
    __slots__ = ("task_id", "lease_seconds", "wait_seconds")
    TASK_ID_FIELD_NUMBER: _ClassVar[int]
    LEASE_SECONDS_FIELD_NUMBER: _ClassVar[int]
    WAIT_SECONDS_FIELD_NUMBER: _ClassVar[int]
    task_id: str
    lease_seconds: int
    wait_seconds: int
    def __init__(self, task_id: _Optional[str] = ..., lease_seconds: _Optional[int] = ..., wait_seconds: _Optional[int] = ...) -> None: ...

class LeaseResponse(_message.Message):
    __slots__ = ("lease_id", "request", "deadline", "labels", "instructions")
    LEASE_ID_FIELD_NUMBER: _ClassVar[int]
    REQUEST_FIELD_NUMBER: _ClassVar[int]
    DEADLINE_FIELD_NUMBER: _ClassVar[int]
    LABELS_FIELD_NUMBER: _ClassVar[int]
    INSTRUCTIONS_FIELD_NUMBER: _ClassVar[int]
    lease_id: str
    request: _review_pb2.ReviewRequest
    deadline: _timestamp_pb2.Timestamp
    labels: _containers.RepeatedCompositeFieldContainer[_task_pb2.Label]
    instructions: str
    def __init__(self, lease_id: _Optional[str] = ..., request: _Optional[_Union[_review_pb2.ReviewRequest, _Mapping]] = ..., deadline: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., labels: _Optional[_Iterable[_Union[_task_pb2.Label, _Mapping]]] = ..., instructions: _Optional[str] = ...) -> None: ...

class SubmitRequest(_message.Message):
    __slots__ = ("lease_id", "label_index", "idempotency_key")
    LEASE_ID_FIELD_NUMBER: _ClassVar[int]
    LABEL_INDEX_FIELD_NUMBER: _ClassVar[int]
    IDEMPOTENCY_KEY_FIELD_NUMBER: _ClassVar[int]
    lease_id: str
    label_index: int
    idempotency_key: str
    def __init__(self, lease_id: _Optional[str] = ..., label_index: _Optional[int] = ..., idempotency_key: _Optional[str] = ...) -> None: ...

class SubmitResponse(_message.Message):
    __slots__ = ("review_id", "duplicate", "submitted_at")
    REVIEW_ID_FIELD_NUMBER: _ClassVar[int]
    DUPLICATE_FIELD_NUMBER: _ClassVar[int]
    SUBMITTED_AT_FIELD_NUMBER: _ClassVar[int]
    review_id: str
    duplicate: bool
    submitted_at: _timestamp_pb2.Timestamp
    def __init__(self, review_id: _Optional[str] = ..., duplicate: _Optional[bool] = ..., submitted_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class ExtendLeaseRequest(_message.Message):
    __slots__ = ("lease_id", "lease_seconds")
    LEASE_ID_FIELD_NUMBER: _ClassVar[int]
    LEASE_SECONDS_FIELD_NUMBER: _ClassVar[int]
    lease_id: str
    lease_seconds: int
    def __init__(self, lease_id: _Optional[str] = ..., lease_seconds: _Optional[int] = ...) -> None: ...

class ExtendLeaseResponse(_message.Message):
    __slots__ = ("deadline",)
    DEADLINE_FIELD_NUMBER: _ClassVar[int]
    deadline: _timestamp_pb2.Timestamp
    def __init__(self, deadline: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class ReleaseLeaseRequest(_message.Message):
    __slots__ = ("lease_id",)
    LEASE_ID_FIELD_NUMBER: _ClassVar[int]
    lease_id: str
    def __init__(self, lease_id: _Optional[str] = ...) -> None: ...

class ReleaseLeaseResponse(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class SkipRequest(_message.Message):
    __slots__ = ("lease_id", "reason", "reason_code")
    LEASE_ID_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    REASON_CODE_FIELD_NUMBER: _ClassVar[int]
    lease_id: str
    reason: str
    reason_code: SkipReason
    def __init__(self, lease_id: _Optional[str] = ..., reason: _Optional[str] = ..., reason_code: _Optional[_Union[SkipReason, str]] = ...) -> None: ...

class SkipResponse(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class GetTaskStatsRequest(_message.Message):
    __slots__ = ("task_id",)
    TASK_ID_FIELD_NUMBER: _ClassVar[int]
    task_id: str
    def __init__(self, task_id: _Optional[str] = ...) -> None: ...

class TaskStats(_message.Message):
    __slots__ = ("task_id", "pending", "leased", "completed", "skipped", "label_counts", "expired", "calibration")
    class LabelCountsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: int
        value: int
        def __init__(self, key: _Optional[int] = ..., value: _Optional[int] = ...) -> None: ...
    TASK_ID_FIELD_NUMBER: _ClassVar[int]
    PENDING_FIELD_NUMBER: _ClassVar[int]
    LEASED_FIELD_NUMBER: _ClassVar[int]
    COMPLETED_FIELD_NUMBER: _ClassVar[int]
    SKIPPED_FIELD_NUMBER: _ClassVar[int]
    LABEL_COUNTS_FIELD_NUMBER: _ClassVar[int]
    EXPIRED_FIELD_NUMBER: _ClassVar[int]
    CALIBRATION_FIELD_NUMBER: _ClassVar[int]
    task_id: str
    pending: int
    leased: int
    completed: int
    skipped: int
    label_counts: _containers.ScalarMap[int, int]
    expired: int
    calibration: CriticCalibration
    def __init__(self, task_id: _Optional[str] = ..., pending: _Optional[int] = ..., leased: _Optional[int] = ..., completed: _Optional[int] = ..., skipped: _Optional[int] = ..., label_counts: _Optional[_Mapping[int, int]] = ..., expired: _Optional[int] = ..., calibration: _Optional[_Union[CriticCalibration, _Mapping]] = ...) -> None: ...

class CriticCalibration(_message.Message):
    __slots__ = ("reviews", "machine_error_rate", "eps_mean", "expected_calibration_error", "method", "points")
    REVIEWS_FIELD_NUMBER: _ClassVar[int]
    MACHINE_ERROR_RATE_FIELD_NUMBER: _ClassVar[int]
    EPS_MEAN_FIELD_NUMBER: _ClassVar[int]
    EXPECTED_CALIBRATION_ERROR_FIELD_NUMBER: _ClassVar[int]
    METHOD_FIELD_NUMBER: _ClassVar[int]
    POINTS_FIELD_NUMBER: _ClassVar[int]
    reviews: int
    machine_error_rate: float
    eps_mean: float
    expected_calibration_error: float
    method: str
    points: _containers.RepeatedCompositeFieldContainer[CalibrationPoint]
    def __init__(self, reviews: _Optional[int] = ..., machine_error_rate: _Optional[float] = ..., eps_mean: _Optional[float] = ..., expected_calibration_error: _Optional[float] = ..., method: _Optional[str] = ..., points: _Optional[_Iterable[_Union[CalibrationPoint, _Mapping]]] = ...) -> None: ...

class CalibrationPoint(_message.Message):
    __slots__ = ("eps", "calibrated")
    EPS_FIELD_NUMBER: _ClassVar[int]
    CALIBRATED_FIELD_NUMBER: _ClassVar[int]
    eps: float
    calibrated: float
    def __init__(self, eps: _Optional[float] = ..., calibrated: _Optional[float] = ...) -> None: ...

class GetReviewerStatsRequest(_message.Message):
    __slots__ = ("reviewer_id",)
    REVIEWER_ID_FIELD_NUMBER: _ClassVar[int]
    reviewer_id: str
    def __init__(self, reviewer_id: _Optional[str] = ...) -> None: ...

class ReviewerStats(_message.Message):
    __slots__ = ("reviewer_id", "name", "role", "disabled", "completed", "skipped", "active_leases", "expired_leases", "median_seconds_per_review", "last_submitted_at", "created_at")
    REVIEWER_ID_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    ROLE_FIELD_NUMBER: _ClassVar[int]
    DISABLED_FIELD_NUMBER: _ClassVar[int]
    COMPLETED_FIELD_NUMBER: _ClassVar[int]
    SKIPPED_FIELD_NUMBER: _ClassVar[int]
    ACTIVE_LEASES_FIELD_NUMBER: _ClassVar[int]
    EXPIRED_LEASES_FIELD_NUMBER: _ClassVar[int]
    MEDIAN_SECONDS_PER_REVIEW_FIELD_NUMBER: _ClassVar[int]
    LAST_SUBMITTED_AT_FIELD_NUMBER: _ClassVar[int]
    CREATED_AT_FIELD_NUMBER: _ClassVar[int]
    reviewer_id: str
    name: str
    role: ReviewerRole
    disabled: bool
    completed: int
    skipped: int
    active_leases: int
    expired_leases: int
    median_seconds_per_review: float
    last_submitted_at: _timestamp_pb2.Timestamp
    created_at: _timestamp_pb2.Timestamp
    def __init__(self, reviewer_id: _Optional[str] = ..., name: _Optional[str] = ..., role: _Optional[_Union[ReviewerRole, str]] = ..., disabled: _Optional[bool] = ..., completed: _Optional[int] = ..., skipped: _Optional[int] = ..., active_leases: _Optional[int] = ..., expired_leases: _Optional[int] = ..., median_seconds_per_review: _Optional[float] = ..., last_submitted_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., created_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class CreateReviewerRequest(_message.Message):
    __slots__ = ("name", "role")
    NAME_FIELD_NUMBER: _ClassVar[int]
    ROLE_FIELD_NUMBER: _ClassVar[int]
    name: str
    role: ReviewerRole
    def __init__(self, name: _Optional[str] = ..., role: _Optional[_Union[ReviewerRole, str]] = ...) -> None: ...

class CreateReviewerResponse(_message.Message):
    __slots__ = ("reviewer_id", "token")
    REVIEWER_ID_FIELD_NUMBER: _ClassVar[int]
    TOKEN_FIELD_NUMBER: _ClassVar[int]
    reviewer_id: str
    token: str
    def __init__(self, reviewer_id: _Optional[str] = ..., token: _Optional[str] = ...) -> None: ...

class DisableReviewerRequest(_message.Message):
    __slots__ = ("reviewer_id", "reason")
    REVIEWER_ID_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    reviewer_id: str
    reason: str
    def __init__(self, reviewer_id: _Optional[str] = ..., reason: _Optional[str] = ...) -> None: ...

class DisableReviewerResponse(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class StartFitRequest(_message.Message):
    __slots__ = ("task_id", "config", "idempotency_key")
    TASK_ID_FIELD_NUMBER: _ClassVar[int]
    CONFIG_FIELD_NUMBER: _ClassVar[int]
    IDEMPOTENCY_KEY_FIELD_NUMBER: _ClassVar[int]
    task_id: str
    config: _training_pb2.FitConfig
    idempotency_key: str
    def __init__(self, task_id: _Optional[str] = ..., config: _Optional[_Union[_training_pb2.FitConfig, _Mapping]] = ..., idempotency_key: _Optional[str] = ...) -> None: ...

class GetFitRequest(_message.Message):
    __slots__ = ("fit_id",)
    FIT_ID_FIELD_NUMBER: _ClassVar[int]
    fit_id: str
    def __init__(self, fit_id: _Optional[str] = ...) -> None: ...

class ListFitsRequest(_message.Message):
    __slots__ = ("task_id", "page_size", "page_token")
    TASK_ID_FIELD_NUMBER: _ClassVar[int]
    PAGE_SIZE_FIELD_NUMBER: _ClassVar[int]
    PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    task_id: str
    page_size: int
    page_token: str
    def __init__(self, task_id: _Optional[str] = ..., page_size: _Optional[int] = ..., page_token: _Optional[str] = ...) -> None: ...

class ListFitsResponse(_message.Message):
    __slots__ = ("fits", "next_page_token")
    FITS_FIELD_NUMBER: _ClassVar[int]
    NEXT_PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    fits: _containers.RepeatedCompositeFieldContainer[_training_pb2.FitStatus]
    next_page_token: str
    def __init__(self, fits: _Optional[_Iterable[_Union[_training_pb2.FitStatus, _Mapping]]] = ..., next_page_token: _Optional[str] = ...) -> None: ...

class CancelFitRequest(_message.Message):
    __slots__ = ("fit_id", "reason")
    FIT_ID_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    fit_id: str
    reason: str
    def __init__(self, fit_id: _Optional[str] = ..., reason: _Optional[str] = ...) -> None: ...

class GetStatusRequest(_message.Message):
    __slots__ = ("include_partitions", "task_id")
    INCLUDE_PARTITIONS_FIELD_NUMBER: _ClassVar[int]
    TASK_ID_FIELD_NUMBER: _ClassVar[int]
    include_partitions: bool
    task_id: str
    def __init__(self, include_partitions: _Optional[bool] = ..., task_id: _Optional[str] = ...) -> None: ...

class PartitionLag(_message.Message):
    __slots__ = ("partition", "end_offset", "committed_offset", "lag")
    PARTITION_FIELD_NUMBER: _ClassVar[int]
    END_OFFSET_FIELD_NUMBER: _ClassVar[int]
    COMMITTED_OFFSET_FIELD_NUMBER: _ClassVar[int]
    LAG_FIELD_NUMBER: _ClassVar[int]
    partition: int
    end_offset: int
    committed_offset: int
    lag: int
    def __init__(self, partition: _Optional[int] = ..., end_offset: _Optional[int] = ..., committed_offset: _Optional[int] = ..., lag: _Optional[int] = ...) -> None: ...

class StageStatus(_message.Message):
    __slots__ = ("stage", "topic", "consumer_group", "records", "lag", "partitions", "members", "committed_records", "dead_letters", "in_flight", "retries", "live_replicas")
    class DeadLettersEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: int
        def __init__(self, key: _Optional[str] = ..., value: _Optional[int] = ...) -> None: ...
    STAGE_FIELD_NUMBER: _ClassVar[int]
    TOPIC_FIELD_NUMBER: _ClassVar[int]
    CONSUMER_GROUP_FIELD_NUMBER: _ClassVar[int]
    RECORDS_FIELD_NUMBER: _ClassVar[int]
    LAG_FIELD_NUMBER: _ClassVar[int]
    PARTITIONS_FIELD_NUMBER: _ClassVar[int]
    MEMBERS_FIELD_NUMBER: _ClassVar[int]
    COMMITTED_RECORDS_FIELD_NUMBER: _ClassVar[int]
    DEAD_LETTERS_FIELD_NUMBER: _ClassVar[int]
    IN_FLIGHT_FIELD_NUMBER: _ClassVar[int]
    RETRIES_FIELD_NUMBER: _ClassVar[int]
    LIVE_REPLICAS_FIELD_NUMBER: _ClassVar[int]
    stage: str
    topic: str
    consumer_group: str
    records: int
    lag: int
    partitions: _containers.RepeatedCompositeFieldContainer[PartitionLag]
    members: int
    committed_records: int
    dead_letters: _containers.ScalarMap[str, int]
    in_flight: int
    retries: int
    live_replicas: int
    def __init__(self, stage: _Optional[str] = ..., topic: _Optional[str] = ..., consumer_group: _Optional[str] = ..., records: _Optional[int] = ..., lag: _Optional[int] = ..., partitions: _Optional[_Iterable[_Union[PartitionLag, _Mapping]]] = ..., members: _Optional[int] = ..., committed_records: _Optional[int] = ..., dead_letters: _Optional[_Mapping[str, int]] = ..., in_flight: _Optional[int] = ..., retries: _Optional[int] = ..., live_replicas: _Optional[int] = ...) -> None: ...

class LatestFit(_message.Message):
    __slots__ = ("fit_id", "state", "finished_at", "metrics", "updated_at")
    class MetricsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: float
        def __init__(self, key: _Optional[str] = ..., value: _Optional[float] = ...) -> None: ...
    FIT_ID_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    FINISHED_AT_FIELD_NUMBER: _ClassVar[int]
    METRICS_FIELD_NUMBER: _ClassVar[int]
    UPDATED_AT_FIELD_NUMBER: _ClassVar[int]
    fit_id: str
    state: _training_pb2.FitState
    finished_at: _timestamp_pb2.Timestamp
    metrics: _containers.ScalarMap[str, float]
    updated_at: _timestamp_pb2.Timestamp
    def __init__(self, fit_id: _Optional[str] = ..., state: _Optional[_Union[_training_pb2.FitState, str]] = ..., finished_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., metrics: _Optional[_Mapping[str, float]] = ..., updated_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class TaskProgress(_message.Message):
    __slots__ = ("task_id", "ingested", "annotated", "critiqued", "sampled_for_review", "machine_final", "reviewed", "finalized", "budget_fraction", "budget_hard_cap", "budget", "budget_spent", "review_queue_depth", "review_pending", "review_leased", "latest_fit", "dead_letters", "task_known")
    TASK_ID_FIELD_NUMBER: _ClassVar[int]
    INGESTED_FIELD_NUMBER: _ClassVar[int]
    ANNOTATED_FIELD_NUMBER: _ClassVar[int]
    CRITIQUED_FIELD_NUMBER: _ClassVar[int]
    SAMPLED_FOR_REVIEW_FIELD_NUMBER: _ClassVar[int]
    MACHINE_FINAL_FIELD_NUMBER: _ClassVar[int]
    REVIEWED_FIELD_NUMBER: _ClassVar[int]
    FINALIZED_FIELD_NUMBER: _ClassVar[int]
    BUDGET_FRACTION_FIELD_NUMBER: _ClassVar[int]
    BUDGET_HARD_CAP_FIELD_NUMBER: _ClassVar[int]
    BUDGET_FIELD_NUMBER: _ClassVar[int]
    BUDGET_SPENT_FIELD_NUMBER: _ClassVar[int]
    REVIEW_QUEUE_DEPTH_FIELD_NUMBER: _ClassVar[int]
    REVIEW_PENDING_FIELD_NUMBER: _ClassVar[int]
    REVIEW_LEASED_FIELD_NUMBER: _ClassVar[int]
    LATEST_FIT_FIELD_NUMBER: _ClassVar[int]
    DEAD_LETTERS_FIELD_NUMBER: _ClassVar[int]
    TASK_KNOWN_FIELD_NUMBER: _ClassVar[int]
    task_id: str
    ingested: int
    annotated: int
    critiqued: int
    sampled_for_review: int
    machine_final: int
    reviewed: int
    finalized: int
    budget_fraction: float
    budget_hard_cap: int
    budget: int
    budget_spent: int
    review_queue_depth: int
    review_pending: int
    review_leased: int
    latest_fit: LatestFit
    dead_letters: int
    task_known: bool
    def __init__(self, task_id: _Optional[str] = ..., ingested: _Optional[int] = ..., annotated: _Optional[int] = ..., critiqued: _Optional[int] = ..., sampled_for_review: _Optional[int] = ..., machine_final: _Optional[int] = ..., reviewed: _Optional[int] = ..., finalized: _Optional[int] = ..., budget_fraction: _Optional[float] = ..., budget_hard_cap: _Optional[int] = ..., budget: _Optional[int] = ..., budget_spent: _Optional[int] = ..., review_queue_depth: _Optional[int] = ..., review_pending: _Optional[int] = ..., review_leased: _Optional[int] = ..., latest_fit: _Optional[_Union[LatestFit, _Mapping]] = ..., dead_letters: _Optional[int] = ..., task_known: _Optional[bool] = ...) -> None: ...

class PipelineStatus(_message.Message):
    __slots__ = ("stages", "observed_at", "tasks", "tasks_caught_up", "review_queue_known")
    STAGES_FIELD_NUMBER: _ClassVar[int]
    OBSERVED_AT_FIELD_NUMBER: _ClassVar[int]
    TASKS_FIELD_NUMBER: _ClassVar[int]
    TASKS_CAUGHT_UP_FIELD_NUMBER: _ClassVar[int]
    REVIEW_QUEUE_KNOWN_FIELD_NUMBER: _ClassVar[int]
    stages: _containers.RepeatedCompositeFieldContainer[StageStatus]
    observed_at: _timestamp_pb2.Timestamp
    tasks: _containers.RepeatedCompositeFieldContainer[TaskProgress]
    tasks_caught_up: bool
    review_queue_known: bool
    def __init__(self, stages: _Optional[_Iterable[_Union[StageStatus, _Mapping]]] = ..., observed_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., tasks: _Optional[_Iterable[_Union[TaskProgress, _Mapping]]] = ..., tasks_caught_up: _Optional[bool] = ..., review_queue_known: _Optional[bool] = ...) -> None: ...
