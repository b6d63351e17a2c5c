import datetime

from act.v1 import common_pb2 as _common_pb2
from google.protobuf import timestamp_pb2 as _timestamp_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class Label(_message.Message):
    __slots__ = ("index", "name", "description")
    INDEX_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    DESCRIPTION_FIELD_NUMBER: _ClassVar[int]
    index: int
    name: str
    description: str
    def __init__(self, index: _Optional[int] = ..., name: _Optional[str] = ..., description: _Optional[str] = ...) -> None: ...

class Budget(_message.Message):
    __slots__ = ("fraction", "hard_cap", "window_items")
    FRACTION_FIELD_NUMBER: _ClassVar[int]
    HARD_CAP_FIELD_NUMBER: _ClassVar[int]
    WINDOW_ITEMS_FIELD_NUMBER: _ClassVar[int]
    fraction: float
    hard_cap: int
    window_items: int
    def __init__(self, fraction: _Optional[float] = ..., hard_cap: _Optional[int] = ..., window_items: _Optional[int] = ...) -> None: ...

class SamplingConfig(_message.Message):
    __slots__ = ("rule", "mode", "beta", "alpha", "tau", "pi_min", "seed")
    RULE_FIELD_NUMBER: _ClassVar[int]
    MODE_FIELD_NUMBER: _ClassVar[int]
    BETA_FIELD_NUMBER: _ClassVar[int]
    ALPHA_FIELD_NUMBER: _ClassVar[int]
    TAU_FIELD_NUMBER: _ClassVar[int]
    PI_MIN_FIELD_NUMBER: _ClassVar[int]
    SEED_FIELD_NUMBER: _ClassVar[int]
    rule: _common_pb2.SamplingRule
    mode: _common_pb2.SamplingMode
    beta: float
    alpha: float
    tau: float
    pi_min: float
    seed: int
    def __init__(self, rule: _Optional[_Union[_common_pb2.SamplingRule, str]] = ..., mode: _Optional[_Union[_common_pb2.SamplingMode, str]] = ..., beta: _Optional[float] = ..., alpha: _Optional[float] = ..., tau: _Optional[float] = ..., pi_min: _Optional[float] = ..., seed: _Optional[int] = ...) -> None: ...

class ReviewSettings(_message.Message):
    __slots__ = ("sensitive_labels", "show_machine_label", "show_critique", "overlap_fraction", "exposure_break_after_s", "exposure_daily_cap_s")
    SENSITIVE_LABELS_FIELD_NUMBER: _ClassVar[int]
    SHOW_MACHINE_LABEL_FIELD_NUMBER: _ClassVar[int]
    SHOW_CRITIQUE_FIELD_NUMBER: _ClassVar[int]
    OVERLAP_FRACTION_FIELD_NUMBER: _ClassVar[int]
    EXPOSURE_BREAK_AFTER_S_FIELD_NUMBER: _ClassVar[int]
    EXPOSURE_DAILY_CAP_S_FIELD_NUMBER: _ClassVar[int]
    sensitive_labels: _containers.RepeatedScalarFieldContainer[int]
    show_machine_label: bool
    show_critique: bool
    overlap_fraction: float
    exposure_break_after_s: int
    exposure_daily_cap_s: int
    def __init__(self, sensitive_labels: _Optional[_Iterable[int]] = ..., show_machine_label: _Optional[bool] = ..., show_critique: _Optional[bool] = ..., overlap_fraction: _Optional[float] = ..., exposure_break_after_s: _Optional[int] = ..., exposure_daily_cap_s: _Optional[int] = ...) -> None: ...

class Task(_message.Message):
    __slots__ = ("task_id", "name", "labels", "modality", "instructions", "annotation_strategy", "critique_strategy", "annotator_model", "critic_model", "budget", "sampling", "fewshot_per_class", "created_at", "metadata", "review")
    class MetadataEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    TASK_ID_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    LABELS_FIELD_NUMBER: _ClassVar[int]
    MODALITY_FIELD_NUMBER: _ClassVar[int]
    INSTRUCTIONS_FIELD_NUMBER: _ClassVar[int]
    ANNOTATION_STRATEGY_FIELD_NUMBER: _ClassVar[int]
    CRITIQUE_STRATEGY_FIELD_NUMBER: _ClassVar[int]
    ANNOTATOR_MODEL_FIELD_NUMBER: _ClassVar[int]
    CRITIC_MODEL_FIELD_NUMBER: _ClassVar[int]
    BUDGET_FIELD_NUMBER: _ClassVar[int]
    SAMPLING_FIELD_NUMBER: _ClassVar[int]
    FEWSHOT_PER_CLASS_FIELD_NUMBER: _ClassVar[int]
    CREATED_AT_FIELD_NUMBER: _ClassVar[int]
    METADATA_FIELD_NUMBER: _ClassVar[int]
    REVIEW_FIELD_NUMBER: _ClassVar[int]
    task_id: str
    name: str
    labels: _containers.RepeatedCompositeFieldContainer[Label]
    modality: _common_pb2.Modality
    instructions: str
    annotation_strategy: _common_pb2.AnnotationStrategy
    critique_strategy: _common_pb2.CritiqueStrategy
    annotator_model: _common_pb2.ModelRef
    critic_model: _common_pb2.ModelRef
    budget: Budget
    sampling: SamplingConfig
    fewshot_per_class: int
    created_at: _timestamp_pb2.Timestamp
    metadata: _containers.ScalarMap[str, str]
    review: ReviewSettings
    def __init__(self, task_id: _Optional[str] = ..., name: _Optional[str] = ..., labels: _Optional[_Iterable[_Union[Label, _Mapping]]] = ..., modality: _Optional[_Union[_common_pb2.Modality, str]] = ..., instructions: _Optional[str] = ..., annotation_strategy: _Optional[_Union[_common_pb2.AnnotationStrategy, str]] = ..., critique_strategy: _Optional[_Union[_common_pb2.CritiqueStrategy, str]] = ..., annotator_model: _Optional[_Union[_common_pb2.ModelRef, _Mapping]] = ..., critic_model: _Optional[_Union[_common_pb2.ModelRef, _Mapping]] = ..., budget: _Optional[_Union[Budget, _Mapping]] = ..., sampling: _Optional[_Union[SamplingConfig, _Mapping]] = ..., fewshot_per_class: _Optional[int] = ..., created_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., metadata: _Optional[_Mapping[str, str]] = ..., review: _Optional[_Union[ReviewSettings, _Mapping]] = ...) -> None: ...
