import datetime

from google.protobuf import timestamp_pb2 as _timestamp_pb2
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class StageHeartbeat(_message.Message):
    __slots__ = ("stage", "replica", "in_flight", "retries", "committed_records", "assigned_partitions", "started_at", "sent_at", "interval_s", "stopped")
    STAGE_FIELD_NUMBER: _ClassVar[int]
    REPLICA_FIELD_NUMBER: _ClassVar[int]
    IN_FLIGHT_FIELD_NUMBER: _ClassVar[int]
    RETRIES_FIELD_NUMBER: _ClassVar[int]
    COMMITTED_RECORDS_FIELD_NUMBER: _ClassVar[int]
    ASSIGNED_PARTITIONS_FIELD_NUMBER: _ClassVar[int]
    STARTED_AT_FIELD_NUMBER: _ClassVar[int]
    SENT_AT_FIELD_NUMBER: _ClassVar[int]
    INTERVAL_S_FIELD_NUMBER: _ClassVar[int]
    STOPPED_FIELD_NUMBER: _ClassVar[int]
    stage: str
    replica: str
    in_flight: int
    retries: int
    committed_records: int
    assigned_partitions: int
    started_at: _timestamp_pb2.Timestamp
    sent_at: _timestamp_pb2.Timestamp
    interval_s: float
    stopped: bool
    def __init__(self, stage: _Optional[str] = ..., replica: _Optional[str] = ..., in_flight: _Optional[int] = ..., retries: _Optional[int] = ..., committed_records: _Optional[int] = ..., assigned_partitions: _Optional[int] = ..., started_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., sent_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., interval_s: _Optional[float] = ..., stopped: _Optional[bool] = ...) -> None: ...
