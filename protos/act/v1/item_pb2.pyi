import datetime

from google.protobuf import timestamp_pb2 as _timestamp_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class BatchInfo(_message.Message):
    __slots__ = ("batch_id", "batch_size")
    BATCH_ID_FIELD_NUMBER: _ClassVar[int]
    BATCH_SIZE_FIELD_NUMBER: _ClassVar[int]
    batch_id: str
    batch_size: int
    def __init__(self, batch_id: _Optional[str] = ..., batch_size: _Optional[int] = ...) -> None: ...

class Item(_message.Message):
    __slots__ = ("item_id", "task_id", "text", "image_bytes", "image_uri", "image_mime_type", "question", "metadata", "batch", "source", "created_at", "image_sha256", "reference_label")
    class MetadataEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    ITEM_ID_FIELD_NUMBER: _ClassVar[int]
    TASK_ID_FIELD_NUMBER: _ClassVar[int]
    TEXT_FIELD_NUMBER: _ClassVar[int]
    IMAGE_BYTES_FIELD_NUMBER: _ClassVar[int]
    IMAGE_URI_FIELD_NUMBER: _ClassVar[int]
    IMAGE_MIME_TYPE_FIELD_NUMBER: _ClassVar[int]
    QUESTION_FIELD_NUMBER: _ClassVar[int]
    METADATA_FIELD_NUMBER: _ClassVar[int]
    BATCH_FIELD_NUMBER: _ClassVar[int]
    SOURCE_FIELD_NUMBER: _ClassVar[int]
    CREATED_AT_FIELD_NUMBER: _ClassVar[int]
    IMAGE_SHA256_FIELD_NUMBER: _ClassVar[int]
    REFERENCE_LABEL_FIELD_NUMBER: _ClassVar[int]
    item_id: str
    task_id: str
    text: str
    image_bytes: bytes
    image_uri: str
    image_mime_type: str
    question: str
    metadata: _containers.ScalarMap[str, str]
    batch: BatchInfo
    source: str
    created_at: _timestamp_pb2.Timestamp
    image_sha256: str
    reference_label: int
    def __init__(self, item_id: _Optional[str] = ..., task_id: _Optional[str] = ..., text: _Optional[str] = ..., image_bytes: _Optional[bytes] = ..., image_uri: _Optional[str] = ..., image_mime_type: _Optional[str] = ..., question: _Optional[str] = ..., metadata: _Optional[_Mapping[str, str]] = ..., batch: _Optional[_Union[BatchInfo, _Mapping]] = ..., source: _Optional[str] = ..., created_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., image_sha256: _Optional[str] = ..., reference_label: _Optional[int] = ...) -> None: ...
