import datetime

from act.v1 import common_pb2 as _common_pb2
from act.v1 import item_pb2 as _item_pb2
from act.v1 import sampling_pb2 as _sampling_pb2
from act.v1 import task_pb2 as _task_pb2
from google.protobuf import timestamp_pb2 as _timestamp_pb2
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class ReviewRequest(_message.Message):
    __slots__ = ("request_id", "decision", "priority", "requested_at", "task")
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    DECISION_FIELD_NUMBER: _ClassVar[int]
    PRIORITY_FIELD_NUMBER: _ClassVar[int]
    REQUESTED_AT_FIELD_NUMBER: _ClassVar[int]
    TASK_FIELD_NUMBER: _ClassVar[int]
    request_id: str
    decision: _sampling_pb2.SamplingDecision
    priority: int
    requested_at: _timestamp_pb2.Timestamp
    task: _task_pb2.Task
    def __init__(self, request_id: _Optional[str] = ..., decision: _Optional[_Union[_sampling_pb2.SamplingDecision, _Mapping]] = ..., priority: _Optional[int] = ..., requested_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., task: _Optional[_Union[_task_pb2.Task, _Mapping]] = ...) -> None: ...

class HumanReview(_message.Message):
    __slots__ = ("review_id", "request_id", "item_id", "task_id", "reviewer_id", "lease_id", "label_index", "leased_at", "submitted_at", "idempotency_key")
    REVIEW_ID_FIELD_NUMBER: _ClassVar[int]
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    ITEM_ID_FIELD_NUMBER: _ClassVar[int]
    TASK_ID_FIELD_NUMBER: _ClassVar[int]
    REVIEWER_ID_FIELD_NUMBER: _ClassVar[int]
    LEASE_ID_FIELD_NUMBER: _ClassVar[int]
    LABEL_INDEX_FIELD_NUMBER: _ClassVar[int]
    LEASED_AT_FIELD_NUMBER: _ClassVar[int]
    SUBMITTED_AT_FIELD_NUMBER: _ClassVar[int]
    IDEMPOTENCY_KEY_FIELD_NUMBER: _ClassVar[int]
    review_id: str
    request_id: str
    item_id: str
    task_id: str
    reviewer_id: str
    lease_id: str
    label_index: int
    leased_at: _timestamp_pb2.Timestamp
    submitted_at: _timestamp_pb2.Timestamp
    idempotency_key: str
    def __init__(self, review_id: _Optional[str] = ..., request_id: _Optional[str] = ..., item_id: _Optional[str] = ..., task_id: _Optional[str] = ..., reviewer_id: _Optional[str] = ..., lease_id: _Optional[str] = ..., label_index: _Optional[int] = ..., leased_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., submitted_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., idempotency_key: _Optional[str] = ...) -> None: ...

class FinalLabel(_message.Message):
    __slots__ = ("item_id", "task_id", "label_index", "source", "machine_label", "human_label", "delta", "pi", "eps", "reviewer_id", "leased_at", "submitted_at", "decision", "item", "finalized_at", "label_name", "review_id")
    ITEM_ID_FIELD_NUMBER: _ClassVar[int]
    TASK_ID_FIELD_NUMBER: _ClassVar[int]
    LABEL_INDEX_FIELD_NUMBER: _ClassVar[int]
    SOURCE_FIELD_NUMBER: _ClassVar[int]
    MACHINE_LABEL_FIELD_NUMBER: _ClassVar[int]
    HUMAN_LABEL_FIELD_NUMBER: _ClassVar[int]
    DELTA_FIELD_NUMBER: _ClassVar[int]
    PI_FIELD_NUMBER: _ClassVar[int]
    EPS_FIELD_NUMBER: _ClassVar[int]
    REVIEWER_ID_FIELD_NUMBER: _ClassVar[int]
    LEASED_AT_FIELD_NUMBER: _ClassVar[int]
    SUBMITTED_AT_FIELD_NUMBER: _ClassVar[int]
    DECISION_FIELD_NUMBER: _ClassVar[int]
    ITEM_FIELD_NUMBER: _ClassVar[int]
    FINALIZED_AT_FIELD_NUMBER: _ClassVar[int]
    LABEL_NAME_FIELD_NUMBER: _ClassVar[int]
    REVIEW_ID_FIELD_NUMBER: _ClassVar[int]
    item_id: str
    task_id: str
    label_index: int
    source: _common_pb2.LabelSource
    machine_label: int
    human_label: int
    delta: bool
    pi: float
    eps: float
    reviewer_id: str
    leased_at: _timestamp_pb2.Timestamp
    submitted_at: _timestamp_pb2.Timestamp
    decision: _sampling_pb2.SamplingDecision
    item: _item_pb2.Item
    finalized_at: _timestamp_pb2.Timestamp
    label_name: str
    review_id: str
    def __init__(self, item_id: _Optional[str] = ..., task_id: _Optional[str] = ..., label_index: _Optional[int] = ..., source: _Optional[_Union[_common_pb2.LabelSource, str]] = ..., machine_label: _Optional[int] = ..., human_label: _Optional[int] = ..., delta: _Optional[bool] = ..., pi: _Optional[float] = ..., eps: _Optional[float] = ..., reviewer_id: _Optional[str] = ..., leased_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., submitted_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., decision: _Optional[_Union[_sampling_pb2.SamplingDecision, _Mapping]] = ..., item: _Optional[_Union[_item_pb2.Item, _Mapping]] = ..., finalized_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., label_name: _Optional[str] = ..., review_id: _Optional[str] = ...) -> None: ...
