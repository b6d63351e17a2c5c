import datetime

from act.v1 import common_pb2 as _common_pb2
from google.protobuf import timestamp_pb2 as _timestamp_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class FitState(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    FIT_STATE_UNSPECIFIED: _ClassVar[FitState]
    FIT_STATE_QUEUED: _ClassVar[FitState]
    FIT_STATE_RUNNING: _ClassVar[FitState]
    FIT_STATE_SUCCEEDED: _ClassVar[FitState]
    FIT_STATE_FAILED: _ClassVar[FitState]
    FIT_STATE_CANCELLED: _ClassVar[FitState]

class LossKind(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    LOSS_KIND_UNSPECIFIED: _ClassVar[LossKind]
    LOSS_KIND_HUMAN_ONLY: _ClassVar[LossKind]
    LOSS_KIND_MACHINE_ONLY: _ClassVar[LossKind]
    LOSS_KIND_ACT_DATA_CE: _ClassVar[LossKind]
    LOSS_KIND_ACT: _ClassVar[LossKind]
    LOSS_KIND_ACT_NONNEG: _ClassVar[LossKind]

class LabelCleaning(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    LABEL_CLEANING_UNSPECIFIED: _ClassVar[LabelCleaning]
    LABEL_CLEANING_AGREEMENT: _ClassVar[LabelCleaning]
    LABEL_CLEANING_AUTO: _ClassVar[LabelCleaning]

class MachineLabelWeighting(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    MACHINE_LABEL_WEIGHTING_UNSPECIFIED: _ClassVar[MachineLabelWeighting]
    MACHINE_LABEL_WEIGHTING_CALIBRATED_EPS: _ClassVar[MachineLabelWeighting]
FIT_STATE_UNSPECIFIED: FitState
FIT_STATE_QUEUED: FitState
FIT_STATE_RUNNING: FitState
FIT_STATE_SUCCEEDED: FitState
FIT_STATE_FAILED: FitState
FIT_STATE_CANCELLED: FitState
LOSS_KIND_UNSPECIFIED: LossKind
LOSS_KIND_HUMAN_ONLY: LossKind
LOSS_KIND_MACHINE_ONLY: LossKind
LOSS_KIND_ACT_DATA_CE: LossKind
LOSS_KIND_ACT: LossKind
LOSS_KIND_ACT_NONNEG: LossKind
LABEL_CLEANING_UNSPECIFIED: LabelCleaning
LABEL_CLEANING_AGREEMENT: LabelCleaning
LABEL_CLEANING_AUTO: LabelCleaning
MACHINE_LABEL_WEIGHTING_UNSPECIFIED: MachineLabelWeighting
MACHINE_LABEL_WEIGHTING_CALIBRATED_EPS: MachineLabelWeighting

class FitConfig(_message.Message):
    __slots__ = ("loss", "rule", "power_lambda", "learning_rate", "epochs", "batch_size", "seed", "model", "power_lambda_grid", "validation_fraction", "params", "cleaning", "machine_label_weighting")
    class ParamsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    LOSS_FIELD_NUMBER: _ClassVar[int]
    RULE_FIELD_NUMBER: _ClassVar[int]
    POWER_LAMBDA_FIELD_NUMBER: _ClassVar[int]
    LEARNING_RATE_FIELD_NUMBER: _ClassVar[int]
    EPOCHS_FIELD_NUMBER: _ClassVar[int]
    BATCH_SIZE_FIELD_NUMBER: _ClassVar[int]
    SEED_FIELD_NUMBER: _ClassVar[int]
    MODEL_FIELD_NUMBER: _ClassVar[int]
    POWER_LAMBDA_GRID_FIELD_NUMBER: _ClassVar[int]
    VALIDATION_FRACTION_FIELD_NUMBER: _ClassVar[int]
    PARAMS_FIELD_NUMBER: _ClassVar[int]
    CLEANING_FIELD_NUMBER: _ClassVar[int]
    MACHINE_LABEL_WEIGHTING_FIELD_NUMBER: _ClassVar[int]
    loss: LossKind
    rule: _common_pb2.SamplingRule
    power_lambda: float
    learning_rate: float
    epochs: int
    batch_size: int
    seed: int
    model: str
    power_lambda_grid: _containers.RepeatedScalarFieldContainer[float]
    validation_fraction: float
    params: _containers.ScalarMap[str, str]
    cleaning: LabelCleaning
    machine_label_weighting: MachineLabelWeighting
    def __init__(self, loss: _Optional[_Union[LossKind, str]] = ..., rule: _Optional[_Union[_common_pb2.SamplingRule, str]] = ..., power_lambda: _Optional[float] = ..., learning_rate: _Optional[float] = ..., epochs: _Optional[int] = ..., batch_size: _Optional[int] = ..., seed: _Optional[int] = ..., model: _Optional[str] = ..., power_lambda_grid: _Optional[_Iterable[float]] = ..., validation_fraction: _Optional[float] = ..., params: _Optional[_Mapping[str, str]] = ..., cleaning: _Optional[_Union[LabelCleaning, str]] = ..., machine_label_weighting: _Optional[_Union[MachineLabelWeighting, str]] = ...) -> None: ...

class FitStatus(_message.Message):
    __slots__ = ("fit_id", "task_id", "state", "config", "epoch", "labels_used", "metrics", "checkpoint_uri", "error", "created_at", "started_at", "finished_at", "updated_at", "human_labels_used", "power_lambda_used")
    class MetricsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: float
        def __init__(self, key: _Optional[str] = ..., value: _Optional[float] = ...) -> None: ...
    FIT_ID_FIELD_NUMBER: _ClassVar[int]
    TASK_ID_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    CONFIG_FIELD_NUMBER: _ClassVar[int]
    EPOCH_FIELD_NUMBER: _ClassVar[int]
    LABELS_USED_FIELD_NUMBER: _ClassVar[int]
    METRICS_FIELD_NUMBER: _ClassVar[int]
    CHECKPOINT_URI_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    CREATED_AT_FIELD_NUMBER: _ClassVar[int]
    STARTED_AT_FIELD_NUMBER: _ClassVar[int]
    FINISHED_AT_FIELD_NUMBER: _ClassVar[int]
    UPDATED_AT_FIELD_NUMBER: _ClassVar[int]
    HUMAN_LABELS_USED_FIELD_NUMBER: _ClassVar[int]
    POWER_LAMBDA_USED_FIELD_NUMBER: _ClassVar[int]
    fit_id: str
    task_id: str
    state: FitState
    config: FitConfig
    epoch: int
    labels_used: int
    metrics: _containers.ScalarMap[str, float]
    checkpoint_uri: str
    error: str
    created_at: _timestamp_pb2.Timestamp
    started_at: _timestamp_pb2.Timestamp
    finished_at: _timestamp_pb2.Timestamp
    updated_at: _timestamp_pb2.Timestamp
    human_labels_used: int
    power_lambda_used: float
    def __init__(self, fit_id: _Optional[str] = ..., task_id: _Optional[str] = ..., state: _Optional[_Union[FitState, str]] = ..., config: _Optional[_Union[FitConfig, _Mapping]] = ..., epoch: _Optional[int] = ..., labels_used: _Optional[int] = ..., metrics: _Optional[_Mapping[str, float]] = ..., checkpoint_uri: _Optional[str] = ..., error: _Optional[str] = ..., created_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., started_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., finished_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., updated_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., human_labels_used: _Optional[int] = ..., power_lambda_used: _Optional[float] = ...) -> None: ...

class FitStarted(_message.Message):
    __slots__ = ("config", "labels_used", "human_labels_used")
    CONFIG_FIELD_NUMBER: _ClassVar[int]
    LABELS_USED_FIELD_NUMBER: _ClassVar[int]
    HUMAN_LABELS_USED_FIELD_NUMBER: _ClassVar[int]
    config: FitConfig
    labels_used: int
    human_labels_used: int
    def __init__(self, config: _Optional[_Union[FitConfig, _Mapping]] = ..., labels_used: _Optional[int] = ..., human_labels_used: _Optional[int] = ...) -> None: ...

class EpochCompleted(_message.Message):
    __slots__ = ("epoch", "train_loss", "metrics")
    class MetricsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: float
        def __init__(self, key: _Optional[str] = ..., value: _Optional[float] = ...) -> None: ...
    EPOCH_FIELD_NUMBER: _ClassVar[int]
    TRAIN_LOSS_FIELD_NUMBER: _ClassVar[int]
    METRICS_FIELD_NUMBER: _ClassVar[int]
    epoch: int
    train_loss: float
    metrics: _containers.ScalarMap[str, float]
    def __init__(self, epoch: _Optional[int] = ..., train_loss: _Optional[float] = ..., metrics: _Optional[_Mapping[str, float]] = ...) -> None: ...

class CheckpointWritten(_message.Message):
    __slots__ = ("checkpoint_uri", "epoch", "sha256")
    CHECKPOINT_URI_FIELD_NUMBER: _ClassVar[int]
    EPOCH_FIELD_NUMBER: _ClassVar[int]
    SHA256_FIELD_NUMBER: _ClassVar[int]
    checkpoint_uri: str
    epoch: int
    sha256: str
    def __init__(self, checkpoint_uri: _Optional[str] = ..., epoch: _Optional[int] = ..., sha256: _Optional[str] = ...) -> None: ...

class FitCompleted(_message.Message):
    __slots__ = ("metrics", "checkpoint_uri", "epochs", "power_lambda_used")
    class MetricsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: float
        def __init__(self, key: _Optional[str] = ..., value: _Optional[float] = ...) -> None: ...
    METRICS_FIELD_NUMBER: _ClassVar[int]
    CHECKPOINT_URI_FIELD_NUMBER: _ClassVar[int]
    EPOCHS_FIELD_NUMBER: _ClassVar[int]
    POWER_LAMBDA_USED_FIELD_NUMBER: _ClassVar[int]
    metrics: _containers.ScalarMap[str, float]
    checkpoint_uri: str
    epochs: int
    power_lambda_used: float
    def __init__(self, metrics: _Optional[_Mapping[str, float]] = ..., checkpoint_uri: _Optional[str] = ..., epochs: _Optional[int] = ..., power_lambda_used: _Optional[float] = ...) -> None: ...

class FitFailed(_message.Message):
    __slots__ = ("error_type", "error_message")
    ERROR_TYPE_FIELD_NUMBER: _ClassVar[int]
    ERROR_MESSAGE_FIELD_NUMBER: _ClassVar[int]
    error_type: str
    error_message: str
    def __init__(self, error_type: _Optional[str] = ..., error_message: _Optional[str] = ...) -> None: ...

class FitCancelled(_message.Message):
    __slots__ = ("reason",)
    REASON_FIELD_NUMBER: _ClassVar[int]
    reason: str
    def __init__(self, reason: _Optional[str] = ...) -> None: ...

class TrainingEvent(_message.Message):
    __slots__ = ("event_id", "task_id", "fit_id", "at", "started", "epoch", "checkpoint", "completed", "failed", "cancelled")
    EVENT_ID_FIELD_NUMBER: _ClassVar[int]
    TASK_ID_FIELD_NUMBER: _ClassVar[int]
    FIT_ID_FIELD_NUMBER: _ClassVar[int]
    AT_FIELD_NUMBER: _ClassVar[int]
    STARTED_FIELD_NUMBER: _ClassVar[int]
    EPOCH_FIELD_NUMBER: _ClassVar[int]
    CHECKPOINT_FIELD_NUMBER: _ClassVar[int]
    COMPLETED_FIELD_NUMBER: _ClassVar[int]
    FAILED_FIELD_NUMBER: _ClassVar[int]
    CANCELLED_FIELD_NUMBER: _ClassVar[int]
    event_id: str
    task_id: str
    fit_id: str
    at: _timestamp_pb2.Timestamp
    started: FitStarted
    epoch: EpochCompleted
    checkpoint: CheckpointWritten
    completed: FitCompleted
    failed: FitFailed
    cancelled: FitCancelled
    def __init__(self, event_id: _Optional[str] = ..., task_id: _Optional[str] = ..., fit_id: _Optional[str] = ..., at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., started: _Optional[_Union[FitStarted, _Mapping]] = ..., epoch: _Optional[_Union[EpochCompleted, _Mapping]] = ..., checkpoint: _Optional[_Union[CheckpointWritten, _Mapping]] = ..., completed: _Optional[_Union[FitCompleted, _Mapping]] = ..., failed: _Optional[_Union[FitFailed, _Mapping]] = ..., cancelled: _Optional[_Union[FitCancelled, _Mapping]] = ...) -> None: ...

class EpsFusionMap(_message.Message):
    __slots__ = ("method", "coef", "intercept", "n_reviews")
    METHOD_FIELD_NUMBER: _ClassVar[int]
    COEF_FIELD_NUMBER: _ClassVar[int]
    INTERCEPT_FIELD_NUMBER: _ClassVar[int]
    N_REVIEWS_FIELD_NUMBER: _ClassVar[int]
    method: str
    coef: _containers.RepeatedScalarFieldContainer[float]
    intercept: float
    n_reviews: int
    def __init__(self, method: _Optional[str] = ..., coef: _Optional[_Iterable[float]] = ..., intercept: _Optional[float] = ..., n_reviews: _Optional[int] = ...) -> None: ...

class PublishedModel(_message.Message):
    __slots__ = ("task_id", "fit_id", "model", "params", "num_classes", "weights", "weights_sha256", "fusion", "use_as_critic", "reason", "metrics", "published_at", "critic_calibration", "calibrate_critic")
    class ParamsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    class MetricsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: float
        def __init__(self, key: _Optional[str] = ..., value: _Optional[float] = ...) -> None: ...
    TASK_ID_FIELD_NUMBER: _ClassVar[int]
    FIT_ID_FIELD_NUMBER: _ClassVar[int]
    MODEL_FIELD_NUMBER: _ClassVar[int]
    PARAMS_FIELD_NUMBER: _ClassVar[int]
    NUM_CLASSES_FIELD_NUMBER: _ClassVar[int]
    WEIGHTS_FIELD_NUMBER: _ClassVar[int]
    WEIGHTS_SHA256_FIELD_NUMBER: _ClassVar[int]
    FUSION_FIELD_NUMBER: _ClassVar[int]
    USE_AS_CRITIC_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    METRICS_FIELD_NUMBER: _ClassVar[int]
    PUBLISHED_AT_FIELD_NUMBER: _ClassVar[int]
    CRITIC_CALIBRATION_FIELD_NUMBER: _ClassVar[int]
    CALIBRATE_CRITIC_FIELD_NUMBER: _ClassVar[int]
    task_id: str
    fit_id: str
    model: str
    params: _containers.ScalarMap[str, str]
    num_classes: int
    weights: bytes
    weights_sha256: str
    fusion: EpsFusionMap
    use_as_critic: bool
    reason: str
    metrics: _containers.ScalarMap[str, float]
    published_at: _timestamp_pb2.Timestamp
    critic_calibration: EpsFusionMap
    calibrate_critic: bool
    def __init__(self, task_id: _Optional[str] = ..., fit_id: _Optional[str] = ..., model: _Optional[str] = ..., params: _Optional[_Mapping[str, str]] = ..., num_classes: _Optional[int] = ..., weights: _Optional[bytes] = ..., weights_sha256: _Optional[str] = ..., fusion: _Optional[_Union[EpsFusionMap, _Mapping]] = ..., use_as_critic: _Optional[bool] = ..., reason: _Optional[str] = ..., metrics: _Optional[_Mapping[str, float]] = ..., published_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., critic_calibration: _Optional[_Union[EpsFusionMap, _Mapping]] = ..., calibrate_critic: _Optional[bool] = ...) -> None: ...
