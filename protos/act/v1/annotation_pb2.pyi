import datetime

from act.v1 import common_pb2 as _common_pb2
from act.v1 import item_pb2 as _item_pb2
from google.protobuf import timestamp_pb2 as _timestamp_pb2
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class Annotation(_message.Message):
    __slots__ = ("annotation_id", "item", "label_index", "label_name", "rationale", "raw_output", "model", "strategy", "prompt_template_sha256", "usage", "confidence", "attempts", "created_at")
    ANNOTATION_ID_FIELD_NUMBER: _ClassVar[int]
    ITEM_FIELD_NUMBER: _ClassVar[int]
    LABEL_INDEX_FIELD_NUMBER: _ClassVar[int]
    LABEL_NAME_FIELD_NUMBER: _ClassVar[int]
    RATIONALE_FIELD_NUMBER: _ClassVar[int]
    RAW_OUTPUT_FIELD_NUMBER: _ClassVar[int]
    MODEL_FIELD_NUMBER: _ClassVar[int]
    STRATEGY_FIELD_NUMBER: _ClassVar[int]
    PROMPT_TEMPLATE_SHA256_FIELD_NUMBER: _ClassVar[int]
    USAGE_FIELD_NUMBER: _ClassVar[int]
    CONFIDENCE_FIELD_NUMBER: _ClassVar[int]
    ATTEMPTS_FIELD_NUMBER: _ClassVar[int]
    CREATED_AT_FIELD_NUMBER: _ClassVar[int]
    annotation_id: str
    item: _item_pb2.Item
    label_index: int
    label_name: str
    rationale: str
    raw_output: str
    model: _common_pb2.ModelRef
    strategy: _common_pb2.AnnotationStrategy
    prompt_template_sha256: str
    usage: _common_pb2.Usage
    confidence: float
    attempts: int
    created_at: _timestamp_pb2.Timestamp
    def __init__(self, annotation_id: _Optional[str] = ..., item: _Optional[_Union[_item_pb2.Item, _Mapping]] = ..., label_index: _Optional[int] = ..., label_name: _Optional[str] = ..., rationale: _Optional[str] = ..., raw_output: _Optional[str] = ..., model: _Optional[_Union[_common_pb2.ModelRef, _Mapping]] = ..., strategy: _Optional[_Union[_common_pb2.AnnotationStrategy, str]] = ..., prompt_template_sha256: _Optional[str] = ..., usage: _Optional[_Union[_common_pb2.Usage, _Mapping]] = ..., confidence: _Optional[float] = ..., attempts: _Optional[int] = ..., created_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...
