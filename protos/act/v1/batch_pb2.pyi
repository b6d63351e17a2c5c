import datetime

from act.v1 import item_pb2 as _item_pb2
from google.protobuf import timestamp_pb2 as _timestamp_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class BatchPhase(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    BATCH_PHASE_UNSPECIFIED: _ClassVar[BatchPhase]
    BATCH_PHASE_SUBMITTING: _ClassVar[BatchPhase]
    BATCH_PHASE_SUBMITTED: _ClassVar[BatchPhase]
BATCH_PHASE_UNSPECIFIED: BatchPhase
BATCH_PHASE_SUBMITTING: BatchPhase
BATCH_PHASE_SUBMITTED: BatchPhase

class BatchRequest(_message.Message):
    __slots__ = ("custom_id", "attempt", "item", "last_error", "input")
    CUSTOM_ID_FIELD_NUMBER: _ClassVar[int]
    ATTEMPT_FIELD_NUMBER: _ClassVar[int]
    ITEM_FIELD_NUMBER: _ClassVar[int]
    LAST_ERROR_FIELD_NUMBER: _ClassVar[int]
    INPUT_FIELD_NUMBER: _ClassVar[int]
    custom_id: str
    attempt: int
    item: _item_pb2.Item
    last_error: str
    input: bytes
    def __init__(self, custom_id: _Optional[str] = ..., attempt: _Optional[int] = ..., item: _Optional[_Union[_item_pb2.Item, _Mapping]] = ..., last_error: _Optional[str] = ..., input: _Optional[bytes] = ...) -> None: ...

class BatchState(_message.Message):
    __slots__ = ("batch_id", "phase", "provider", "remote_id", "stage", "requests", "formed_at", "submitted_at")
    BATCH_ID_FIELD_NUMBER: _ClassVar[int]
    PHASE_FIELD_NUMBER: _ClassVar[int]
    PROVIDER_FIELD_NUMBER: _ClassVar[int]
    REMOTE_ID_FIELD_NUMBER: _ClassVar[int]
    STAGE_FIELD_NUMBER: _ClassVar[int]
    REQUESTS_FIELD_NUMBER: _ClassVar[int]
    FORMED_AT_FIELD_NUMBER: _ClassVar[int]
    SUBMITTED_AT_FIELD_NUMBER: _ClassVar[int]
    batch_id: str
    phase: BatchPhase
    provider: str
    remote_id: str
    stage: str
    requests: _containers.RepeatedCompositeFieldContainer[BatchRequest]
    formed_at: _timestamp_pb2.Timestamp
    submitted_at: _timestamp_pb2.Timestamp
    def __init__(self, batch_id: _Optional[str] = ..., phase: _Optional[_Union[BatchPhase, str]] = ..., provider: _Optional[str] = ..., remote_id: _Optional[str] = ..., stage: _Optional[str] = ..., requests: _Optional[_Iterable[_Union[BatchRequest, _Mapping]]] = ..., formed_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., submitted_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...
