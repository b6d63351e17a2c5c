import datetime

from act.v1 import common_pb2 as _common_pb2
from act.v1 import critique_pb2 as _critique_pb2
from google.protobuf import timestamp_pb2 as _timestamp_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class SamplingDecision(_message.Message):
    __slots__ = ("critique", "delta", "pi", "eps", "rule", "mode", "alpha", "beta", "tau", "budget_fraction", "pi_min", "seed", "draw", "window_id", "decided_at", "second_critic_fit_id", "second_critic_eps", "calibration_fit_id")
    CRITIQUE_FIELD_NUMBER: _ClassVar[int]
    DELTA_FIELD_NUMBER: _ClassVar[int]
    PI_FIELD_NUMBER: _ClassVar[int]
    EPS_FIELD_NUMBER: _ClassVar[int]
    RULE_FIELD_NUMBER: _ClassVar[int]
    MODE_FIELD_NUMBER: _ClassVar[int]
    ALPHA_FIELD_NUMBER: _ClassVar[int]
    BETA_FIELD_NUMBER: _ClassVar[int]
    TAU_FIELD_NUMBER: _ClassVar[int]
    BUDGET_FRACTION_FIELD_NUMBER: _ClassVar[int]
    PI_MIN_FIELD_NUMBER: _ClassVar[int]
    SEED_FIELD_NUMBER: _ClassVar[int]
    DRAW_FIELD_NUMBER: _ClassVar[int]
    WINDOW_ID_FIELD_NUMBER: _ClassVar[int]
    DECIDED_AT_FIELD_NUMBER: _ClassVar[int]
    SECOND_CRITIC_FIT_ID_FIELD_NUMBER: _ClassVar[int]
    SECOND_CRITIC_EPS_FIELD_NUMBER: _ClassVar[int]
    CALIBRATION_FIT_ID_FIELD_NUMBER: _ClassVar[int]
    critique: _critique_pb2.Critique
    delta: bool
    pi: float
    eps: float
    rule: _common_pb2.SamplingRule
    mode: _common_pb2.SamplingMode
    alpha: float
    beta: float
    tau: float
    budget_fraction: float
    pi_min: float
    seed: int
    draw: float
    window_id: str
    decided_at: _timestamp_pb2.Timestamp
    second_critic_fit_id: str
    second_critic_eps: float
    calibration_fit_id: str
    def __init__(self, critique: _Optional[_Union[_critique_pb2.Critique, _Mapping]] = ..., delta: _Optional[bool] = ..., pi: _Optional[float] = ..., eps: _Optional[float] = ..., rule: _Optional[_Union[_common_pb2.SamplingRule, str]] = ..., mode: _Optional[_Union[_common_pb2.SamplingMode, str]] = ..., alpha: _Optional[float] = ..., beta: _Optional[float] = ..., tau: _Optional[float] = ..., budget_fraction: _Optional[float] = ..., pi_min: _Optional[float] = ..., seed: _Optional[int] = ..., draw: _Optional[float] = ..., window_id: _Optional[str] = ..., decided_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., second_critic_fit_id: _Optional[str] = ..., second_critic_eps: _Optional[float] = ..., calibration_fit_id: _Optional[str] = ...) -> None: ...

class SamplerState(_message.Message):
    __slots__ = ("task_id", "partition", "quantile_sketch", "seen", "selected", "window_seen", "window_selected", "window_id", "batch_counts", "updated_at", "committed_offset", "batch_member")
    class BatchCountsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: int
        def __init__(self, key: _Optional[str] = ..., value: _Optional[int] = ...) -> None: ...
    TASK_ID_FIELD_NUMBER: _ClassVar[int]
    PARTITION_FIELD_NUMBER: _ClassVar[int]
    QUANTILE_SKETCH_FIELD_NUMBER: _ClassVar[int]
    SEEN_FIELD_NUMBER: _ClassVar[int]
    SELECTED_FIELD_NUMBER: _ClassVar[int]
    WINDOW_SEEN_FIELD_NUMBER: _ClassVar[int]
    WINDOW_SELECTED_FIELD_NUMBER: _ClassVar[int]
    WINDOW_ID_FIELD_NUMBER: _ClassVar[int]
    BATCH_COUNTS_FIELD_NUMBER: _ClassVar[int]
    UPDATED_AT_FIELD_NUMBER: _ClassVar[int]
    COMMITTED_OFFSET_FIELD_NUMBER: _ClassVar[int]
    BATCH_MEMBER_FIELD_NUMBER: _ClassVar[int]
    task_id: str
    partition: int
    quantile_sketch: bytes
    seen: int
    selected: int
    window_seen: int
    window_selected: int
    window_id: str
    batch_counts: _containers.ScalarMap[str, int]
    updated_at: _timestamp_pb2.Timestamp
    committed_offset: int
    batch_member: BatchMember
    def __init__(self, task_id: _Optional[str] = ..., partition: _Optional[int] = ..., quantile_sketch: _Optional[bytes] = ..., seen: _Optional[int] = ..., selected: _Optional[int] = ..., window_seen: _Optional[int] = ..., window_selected: _Optional[int] = ..., window_id: _Optional[str] = ..., batch_counts: _Optional[_Mapping[str, int]] = ..., updated_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., committed_offset: _Optional[int] = ..., batch_member: _Optional[_Union[BatchMember, _Mapping]] = ...) -> None: ...

class BatchMember(_message.Message):
    __slots__ = ("critique", "topic", "partition", "offset", "accepted_at")
    CRITIQUE_FIELD_NUMBER: _ClassVar[int]
    TOPIC_FIELD_NUMBER: _ClassVar[int]
    PARTITION_FIELD_NUMBER: _ClassVar[int]
    OFFSET_FIELD_NUMBER: _ClassVar[int]
    ACCEPTED_AT_FIELD_NUMBER: _ClassVar[int]
    critique: _critique_pb2.Critique
    topic: str
    partition: int
    offset: int
    accepted_at: _timestamp_pb2.Timestamp
    def __init__(self, critique: _Optional[_Union[_critique_pb2.Critique, _Mapping]] = ..., topic: _Optional[str] = ..., partition: _Optional[int] = ..., offset: _Optional[int] = ..., accepted_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...
