import datetime

from act.v1 import annotation_pb2 as _annotation_pb2
from act.v1 import common_pb2 as _common_pb2
from google.protobuf import timestamp_pb2 as _timestamp_pb2
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class LogitDetails(_message.Message):
    __slots__ = ("p_yes", "p_no", "answer_token")
    P_YES_FIELD_NUMBER: _ClassVar[int]
    P_NO_FIELD_NUMBER: _ClassVar[int]
    ANSWER_TOKEN_FIELD_NUMBER: _ClassVar[int]
    p_yes: float
    p_no: float
    answer_token: str
    def __init__(self, p_yes: _Optional[float] = ..., p_no: _Optional[float] = ..., answer_token: _Optional[str] = ...) -> None: ...

class PerplexityDetails(_message.Message):
    __slots__ = ("perplexity", "answer_label", "priority_score")
    PERPLEXITY_FIELD_NUMBER: _ClassVar[int]
    ANSWER_LABEL_FIELD_NUMBER: _ClassVar[int]
    PRIORITY_SCORE_FIELD_NUMBER: _ClassVar[int]
    perplexity: float
    answer_label: int
    priority_score: float
    def __init__(self, perplexity: _Optional[float] = ..., answer_label: _Optional[int] = ..., priority_score: _Optional[float] = ...) -> None: ...

class Critique(_message.Message):
    __slots__ = ("critique_id", "annotation", "eps", "strategy", "model", "rationale", "raw_output", "multiple_choice_level", "logit", "perplexity", "usage", "prompt_template_sha256", "attempts", "self_criticism", "created_at")
    CRITIQUE_ID_FIELD_NUMBER: _ClassVar[int]
    ANNOTATION_FIELD_NUMBER: _ClassVar[int]
    EPS_FIELD_NUMBER: _ClassVar[int]
    STRATEGY_FIELD_NUMBER: _ClassVar[int]
    MODEL_FIELD_NUMBER: _ClassVar[int]
    RATIONALE_FIELD_NUMBER: _ClassVar[int]
    RAW_OUTPUT_FIELD_NUMBER: _ClassVar[int]
    MULTIPLE_CHOICE_LEVEL_FIELD_NUMBER: _ClassVar[int]
    LOGIT_FIELD_NUMBER: _ClassVar[int]
    PERPLEXITY_FIELD_NUMBER: _ClassVar[int]
    USAGE_FIELD_NUMBER: _ClassVar[int]
    PROMPT_TEMPLATE_SHA256_FIELD_NUMBER: _ClassVar[int]
    ATTEMPTS_FIELD_NUMBER: _ClassVar[int]
    SELF_CRITICISM_FIELD_NUMBER: _ClassVar[int]
    CREATED_AT_FIELD_NUMBER: _ClassVar[int]
    critique_id: str
    annotation: _annotation_pb2.Annotation
    eps: float
    strategy: _common_pb2.CritiqueStrategy
    model: _common_pb2.ModelRef
    rationale: str
    raw_output: str
    multiple_choice_level: int
    logit: LogitDetails
    perplexity: PerplexityDetails
    usage: _common_pb2.Usage
    prompt_template_sha256: str
    attempts: int
    self_criticism: bool
    created_at: _timestamp_pb2.Timestamp
    def __init__(self, critique_id: _Optional[str] = ..., annotation: _Optional[_Union[_annotation_pb2.Annotation, _Mapping]] = ..., eps: _Optional[float] = ..., strategy: _Optional[_Union[_common_pb2.CritiqueStrategy, str]] = ..., model: _Optional[_Union[_common_pb2.ModelRef, _Mapping]] = ..., rationale: _Optional[str] = ..., raw_output: _Optional[str] = ..., multiple_choice_level: _Optional[int] = ..., logit: _Optional[_Union[LogitDetails, _Mapping]] = ..., perplexity: _Optional[_Union[PerplexityDetails, _Mapping]] = ..., usage: _Optional[_Union[_common_pb2.Usage, _Mapping]] = ..., prompt_template_sha256: _Optional[str] = ..., attempts: _Optional[int] = ..., self_criticism: _Optional[bool] = ..., created_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...
