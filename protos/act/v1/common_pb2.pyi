from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional

DESCRIPTOR: _descriptor.FileDescriptor

class Modality(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    MODALITY_UNSPECIFIED: _ClassVar[Modality]
    MODALITY_TEXT: _ClassVar[Modality]
    MODALITY_IMAGE: _ClassVar[Modality]
    MODALITY_VQA: _ClassVar[Modality]

class AnnotationStrategy(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    ANNOTATION_STRATEGY_UNSPECIFIED: _ClassVar[AnnotationStrategy]
    ANNOTATION_STRATEGY_NAIVE: _ClassVar[AnnotationStrategy]
    ANNOTATION_STRATEGY_CHAIN_OF_THOUGHT: _ClassVar[AnnotationStrategy]

class CritiqueStrategy(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    CRITIQUE_STRATEGY_UNSPECIFIED: _ClassVar[CritiqueStrategy]
    CRITIQUE_STRATEGY_NAIVE: _ClassVar[CritiqueStrategy]
    CRITIQUE_STRATEGY_CHAIN_OF_THOUGHT: _ClassVar[CritiqueStrategy]
    CRITIQUE_STRATEGY_MULTIPLE_CHOICE: _ClassVar[CritiqueStrategy]
    CRITIQUE_STRATEGY_DEVILS_ADVOCATE: _ClassVar[CritiqueStrategy]
    CRITIQUE_STRATEGY_NAIVE_LOGIT: _ClassVar[CritiqueStrategy]
    CRITIQUE_STRATEGY_COT_LOGIT: _ClassVar[CritiqueStrategy]
    CRITIQUE_STRATEGY_COT_PERPLEXITY: _ClassVar[CritiqueStrategy]

class SamplingRule(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    SAMPLING_RULE_UNSPECIFIED: _ClassVar[SamplingRule]
    SAMPLING_RULE_NORMALIZATION: _ClassVar[SamplingRule]
    SAMPLING_RULE_EXPONENTIAL: _ClassVar[SamplingRule]
    SAMPLING_RULE_THRESHOLD: _ClassVar[SamplingRule]

class SamplingMode(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    SAMPLING_MODE_UNSPECIFIED: _ClassVar[SamplingMode]
    SAMPLING_MODE_BATCH: _ClassVar[SamplingMode]
    SAMPLING_MODE_STREAMING: _ClassVar[SamplingMode]

class LabelSource(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    LABEL_SOURCE_UNSPECIFIED: _ClassVar[LabelSource]
    LABEL_SOURCE_MACHINE: _ClassVar[LabelSource]
    LABEL_SOURCE_HUMAN: _ClassVar[LabelSource]
MODALITY_UNSPECIFIED: Modality
MODALITY_TEXT: Modality
MODALITY_IMAGE: Modality
MODALITY_VQA: Modality
ANNOTATION_STRATEGY_UNSPECIFIED: AnnotationStrategy
ANNOTATION_STRATEGY_NAIVE: AnnotationStrategy
ANNOTATION_STRATEGY_CHAIN_OF_THOUGHT: AnnotationStrategy
CRITIQUE_STRATEGY_UNSPECIFIED: CritiqueStrategy
CRITIQUE_STRATEGY_NAIVE: CritiqueStrategy
CRITIQUE_STRATEGY_CHAIN_OF_THOUGHT: CritiqueStrategy
CRITIQUE_STRATEGY_MULTIPLE_CHOICE: CritiqueStrategy
CRITIQUE_STRATEGY_DEVILS_ADVOCATE: CritiqueStrategy
CRITIQUE_STRATEGY_NAIVE_LOGIT: CritiqueStrategy
CRITIQUE_STRATEGY_COT_LOGIT: CritiqueStrategy
CRITIQUE_STRATEGY_COT_PERPLEXITY: CritiqueStrategy
SAMPLING_RULE_UNSPECIFIED: SamplingRule
SAMPLING_RULE_NORMALIZATION: SamplingRule
SAMPLING_RULE_EXPONENTIAL: SamplingRule
SAMPLING_RULE_THRESHOLD: SamplingRule
SAMPLING_MODE_UNSPECIFIED: SamplingMode
SAMPLING_MODE_BATCH: SamplingMode
SAMPLING_MODE_STREAMING: SamplingMode
LABEL_SOURCE_UNSPECIFIED: LabelSource
LABEL_SOURCE_MACHINE: LabelSource
LABEL_SOURCE_HUMAN: LabelSource

class ModelRef(_message.Message):
    __slots__ = ("provider", "model", "base_url", "params")
    class ParamsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    PROVIDER_FIELD_NUMBER: _ClassVar[int]
    MODEL_FIELD_NUMBER: _ClassVar[int]
    BASE_URL_FIELD_NUMBER: _ClassVar[int]
    PARAMS_FIELD_NUMBER: _ClassVar[int]
    provider: str
    model: str
    base_url: str
    params: _containers.ScalarMap[str, str]
    def __init__(self, provider: _Optional[str] = ..., model: _Optional[str] = ..., base_url: _Optional[str] = ..., params: _Optional[_Mapping[str, str]] = ...) -> None: ...

class Usage(_message.Message):
    __slots__ = ("prompt_tokens", "completion_tokens", "cost_usd", "latency_ms")
    PROMPT_TOKENS_FIELD_NUMBER: _ClassVar[int]
    COMPLETION_TOKENS_FIELD_NUMBER: _ClassVar[int]
    COST_USD_FIELD_NUMBER: _ClassVar[int]
    LATENCY_MS_FIELD_NUMBER: _ClassVar[int]
    prompt_tokens: int
    completion_tokens: int
    cost_usd: float
    latency_ms: float
    def __init__(self, prompt_tokens: _Optional[int] = ..., completion_tokens: _Optional[int] = ..., cost_usd: _Optional[float] = ..., latency_ms: _Optional[float] = ...) -> None: ...

class TraceContext(_message.Message):
    __slots__ = ("trace_id", "span_id")
    TRACE_ID_FIELD_NUMBER: _ClassVar[int]
    SPAN_ID_FIELD_NUMBER: _ClassVar[int]
    trace_id: str
    span_id: str
    def __init__(self, trace_id: _Optional[str] = ..., span_id: _Optional[str] = ...) -> None: ...
