"""Task definitions from YAML/JSON files and command-line flags (pure).

A task file is a mapping in the shape of ``act.v1.Task`` (field names as in
``task.proto``, snake_case or camelCase) with a few conveniences:

- ``labels`` may be a list of names, a comma-separated string or a list of
  ``{name, description}`` mappings; ``index`` is the position.
- enum values are accepted case-insensitively and without their prefix, with
  ``-`` or spaces for ``_``: ``threshold`` = ``SAMPLING_RULE_THRESHOLD``,
  ``cot`` = ``..._CHAIN_OF_THOUGHT``, ``devils-advocate``, ``cot-logit``, ...
- ``budget`` may be a bare number (the fraction);
- ``rule`` and ``mode`` at the top level are shortcuts for ``sampling.rule``
  and ``sampling.mode``;
- ``annotator_model`` / ``critic_model`` may be a ``"provider:model"`` string;
- ``review.sensitive_labels`` may name labels instead of giving their index.

Example::

    name: spam-demo
    labels: [ham, spam]
    modality: text
    instructions: Is the message unsolicited bulk mail?
    annotation_strategy: cot
    critique_strategy: cot
    annotator_model: openai:gpt-4o
    budget: 0.2
    rule: threshold
    review:
      sensitive_labels: [spam]
      overlap_fraction: 0.1
"""

from __future__ import annotations

import json
import math
import re
import uuid
from collections.abc import Collection, Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import yaml
from act.v1 import common_pb2, task_pb2
from google.protobuf import json_format
from google.protobuf.internal.enum_type_wrapper import EnumTypeWrapper

from services.review_gateway.policy import validate_review_settings

TASK_ID_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:-]{0,127}$")
MAX_LABELS = 1000

#: Enum fields of a task mapping (dotted path) -> (enum type, value prefix).
ENUM_FIELDS: dict[str, tuple[EnumTypeWrapper, str]] = {
    "modality": (common_pb2.Modality, "MODALITY_"),
    "annotation_strategy": (common_pb2.AnnotationStrategy, "ANNOTATION_STRATEGY_"),
    "critique_strategy": (common_pb2.CritiqueStrategy, "CRITIQUE_STRATEGY_"),
    "sampling.rule": (common_pb2.SamplingRule, "SAMPLING_RULE_"),
    "sampling.mode": (common_pb2.SamplingMode, "SAMPLING_MODE_"),
}

#: Short spellings accepted for enum values (after upper-casing).
ENUM_ALIASES = {"COT": "CHAIN_OF_THOUGHT", "MC": "MULTIPLE_CHOICE", "STREAM": "STREAMING"}

#: Defaults applied to a task mapping when a field is absent.
DEFAULTS: dict[str, str] = {
    "annotation_strategy": "naive",
    "critique_strategy": "naive",
}

#: Flags that set a field of ``review`` (``act.v1.ReviewSettings``).
REVIEW_FLAGS = frozenset(
    {
        "sensitive_labels",
        "show_machine_label",
        "show_critique",
        "overlap_fraction",
        "exposure_break_after_s",
        "exposure_daily_cap_s",
    }
)


class TaskError(ValueError):
    """A task definition that cannot be parsed or is invalid.

    ``problems`` lists every problem found, one readable sentence each.
    """

    def __init__(self, problems: Sequence[str]) -> None:
        self.problems = list(problems)
        super().__init__("; ".join(self.problems))

    def __str__(self) -> str:
        if len(self.problems) == 1:
            return f"invalid task: {self.problems[0]}"
        return "invalid task:\n" + "\n".join(f"  - {p}" for p in self.problems)


def enum_choices(enum: EnumTypeWrapper, prefix: str) -> list[str]:
    """The accepted short names of an enum, lower-case, without UNSPECIFIED."""
    return [
        name[len(prefix) :].lower()
        for name in enum.keys()  # noqa: SIM118 (EnumTypeWrapper is not a dict)
        if name.startswith(prefix) and not name.endswith("_UNSPECIFIED")
    ]


def parse_enum(enum: EnumTypeWrapper, prefix: str, value: object, field: str) -> int:
    """An enum number from a loose spelling (``"threshold"``, ``"cot"``, 3, ...)."""
    if isinstance(value, bool):
        raise TaskError([f"{field}: expected a name, got {value!r}"])
    if isinstance(value, int):
        if value in enum.values() and value != 0:
            return value
        raise TaskError([f"{field}: unknown value {value!r}"])
    if not isinstance(value, str):
        raise TaskError([f"{field}: expected a name, got {type(value).__name__}"])
    key = re.sub(r"[\s-]+", "_", value.strip()).upper()
    if key.startswith(prefix):
        key = key[len(prefix) :]
    key = ENUM_ALIASES.get(key, key)
    full = prefix + key
    if key and not key.endswith("UNSPECIFIED") and full in enum.keys():  # noqa: SIM118
        return int(enum.Value(full))
    choices = ", ".join(enum_choices(enum, prefix))
    raise TaskError([f"{field}: unknown value {value!r}; expected one of {choices}"])


def split_labels(value: str) -> list[str]:
    """``"spam, ham"`` -> ``["spam", "ham"]`` (empty parts kept for validation)."""
    return [part.strip() for part in value.split(",")]


def _model_ref(value: object, field: str) -> object:
    if isinstance(value, str):
        provider, sep, model = value.partition(":")
        if not sep or not provider.strip() or not model.strip():
            raise TaskError([f"{field}: expected 'provider:model' or a mapping, got {value!r}"])
        return {"provider": provider.strip(), "model": model.strip()}
    return value


def _labels(value: object) -> list[dict[str, Any]]:
    if isinstance(value, str):
        value = split_labels(value)
    if not isinstance(value, list):
        raise TaskError(["labels: expected a list of names or mappings"])
    out: list[dict[str, Any]] = []
    for position, entry in enumerate(value):
        if isinstance(entry, str | int | float) and not isinstance(entry, bool):
            out.append({"index": position, "name": str(entry).strip()})
        elif isinstance(entry, Mapping):
            label = dict(entry)
            index = label.pop("index", position)
            if index != position:
                raise TaskError(
                    [f"labels[{position}]: index {index!r} differs from its position {position}"]
                )
            label["index"] = position
            if isinstance(label.get("name"), str):
                label["name"] = label["name"].strip()
            out.append(label)
        else:
            raise TaskError([f"labels[{position}]: expected a name or a mapping"])
    return out


def _camel_to_snake(name: str) -> str:
    return re.sub(r"(?<!^)(?=[A-Z])", "_", name).lower()


def _review(value: object, labels: object) -> tuple[dict[str, Any], list[str]]:
    """``review`` with label names in ``sensitive_labels`` resolved to indices.

    Names match case-insensitively (label names are unique that way); integers
    are indices and pass through (validation checks their range). Returns the
    mapping without the unknown names, and one problem per unknown name.
    """
    if not isinstance(value, Mapping):
        raise TaskError(["review: expected a mapping"])
    review = {_camel_to_snake(str(k)): v for k, v in value.items()}
    sensitive = review.get("sensitive_labels")
    if sensitive is None:
        return review, []
    if isinstance(sensitive, str | int) and not isinstance(sensitive, bool):
        sensitive = [sensitive]
    if not isinstance(sensitive, list):
        raise TaskError(["review.sensitive_labels: expected a list of label names or indices"])
    by_name: dict[str, int] = {}
    names: list[str] = []
    if isinstance(labels, list):
        for label in labels:
            name, index = label.get("name"), label.get("index")
            if isinstance(name, str) and isinstance(index, int):
                by_name.setdefault(name.strip().lower(), index)
                names.append(name.strip())
    known = ", ".join(names) or "none"
    indices: list[Any] = []
    problems: list[str] = []
    for entry in sensitive:
        if isinstance(entry, str):
            index = by_name.get(entry.strip().lower())
            if index is None:
                problems.append(
                    f"review.sensitive_labels: unknown label {entry!r}; the labels are {known}"
                )
            elif index not in indices:
                indices.append(index)
        elif entry not in indices:
            indices.append(entry)  # an index (or a bad value ParseDict reports)
    review["sensitive_labels"] = indices
    return review, problems


def normalize_mapping(
    raw: Mapping[str, Any], bad_enums: list[tuple[str, str]] | None = None
) -> dict[str, Any]:
    """Turn a loose task mapping into one :func:`json_format.ParseDict` accepts.

    Unknown enum values raise :class:`TaskError`, unless ``bad_enums`` is given:
    then they are dropped and reported there as ``(path, problem)``.
    """
    data: dict[str, Any] = {_camel_to_snake(str(k)): v for k, v in raw.items()}
    sampling_raw = data.get("sampling") or {}
    if not isinstance(sampling_raw, Mapping):
        raise TaskError(["sampling: expected a mapping"])
    sampling = {_camel_to_snake(str(k)): v for k, v in sampling_raw.items()}
    for shortcut in ("rule", "mode"):
        if shortcut in data:
            value = data.pop(shortcut)
            if value is not None:
                sampling[shortcut] = value
    if sampling:
        data["sampling"] = sampling
    elif "sampling" in data:
        del data["sampling"]
    for key, default in DEFAULTS.items():
        if data.get(key) in (None, ""):
            data[key] = default
    problems: list[str] = []
    for path, (enum, prefix) in ENUM_FIELDS.items():
        holder: dict[str, Any] = data
        *parents, leaf = path.split(".")
        for parent in parents:
            holder = holder.get(parent) or {}
        if leaf in holder and holder[leaf] is not None:
            try:
                holder[leaf] = enum.Name(parse_enum(enum, prefix, holder[leaf], path))
            except TaskError as exc:
                del holder[leaf]
                problems.extend(exc.problems)
                if bad_enums is not None:
                    bad_enums.extend((path, p) for p in exc.problems)
    if problems and bad_enums is None:
        raise TaskError(problems)
    if "labels" in data:
        data["labels"] = _labels(data["labels"])
    if data.get("review") is not None:
        data["review"], unknown = _review(data["review"], data.get("labels"))
        if unknown and bad_enums is None:
            raise TaskError(unknown)
        if bad_enums is not None:
            bad_enums.extend(("review.sensitive_labels", p) for p in unknown)
    budget = data.get("budget")
    if isinstance(budget, int | float) and not isinstance(budget, bool):
        data["budget"] = {"fraction": float(budget)}
    for key in ("annotator_model", "critic_model"):
        if key in data and data[key] is not None:
            data[key] = _model_ref(data[key], key)
    if isinstance(data.get("metadata"), Mapping):
        data["metadata"] = {str(k): str(v) for k, v in data["metadata"].items()}
    return {k: _json_floats(v) for k, v in data.items() if v is not None}


def _json_floats(value: Any) -> Any:
    """Non-finite floats as the strings ParseDict accepts (validation rejects them)."""
    if isinstance(value, float) and not math.isfinite(value):
        return "NaN" if math.isnan(value) else ("Infinity" if value > 0 else "-Infinity")
    if isinstance(value, dict):
        return {k: _json_floats(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_json_floats(v) for v in value]
    return value


def task_from_mapping(
    raw: Mapping[str, Any], bad_enums: list[tuple[str, str]] | None = None
) -> task_pb2.Task:
    """Parse (but do not validate) a task mapping (``bad_enums``: see
    :func:`normalize_mapping`)."""
    if not isinstance(raw, Mapping):
        raise TaskError(["a task definition must be a mapping"])
    data = normalize_mapping(raw, bad_enums)
    task = task_pb2.Task()
    try:
        json_format.ParseDict(data, task)
    except json_format.ParseError as exc:
        raise TaskError([str(exc)]) from exc
    return task


def load_task_file(path: Path) -> dict[str, Any]:
    """Read a YAML or JSON task file into a mapping."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise TaskError([f"cannot read {path}: {exc.strerror or exc}"]) from exc
    try:
        raw = json.loads(text) if path.suffix.lower() == ".json" else yaml.safe_load(text)
    except (json.JSONDecodeError, yaml.YAMLError) as exc:
        raise TaskError([f"{path}: not valid {path.suffix.lstrip('.') or 'YAML'}: {exc}"]) from exc
    if not isinstance(raw, dict):
        raise TaskError([f"{path}: expected a mapping at the top level"])
    return raw


def merge_flags(base: Mapping[str, Any], flags: Mapping[str, Any]) -> dict[str, Any]:
    """Overlay command-line flags (``None`` = not given) on a file's mapping."""
    merged = {_camel_to_snake(str(k)): v for k, v in base.items()}
    for key, value in flags.items():
        if value is None:
            continue
        if key in ("rule", "mode"):
            merged.pop(key, None)
            sampling = dict(merged.get("sampling") or {})
            sampling[key] = value
            merged["sampling"] = sampling
        elif key == "budget" and isinstance(merged.get("budget"), Mapping):
            merged["budget"] = {**merged["budget"], "fraction": value}
        elif key in REVIEW_FLAGS:
            review = merged.get("review") or {}
            if isinstance(review, Mapping):  # otherwise normalize_mapping reports it
                merged["review"] = {
                    **{_camel_to_snake(str(k)): v for k, v in review.items()},
                    key: value,
                }
        else:
            merged[key] = value
    return merged


def validate_task(task: task_pb2.Task, *, unparsed: Collection[str] = ()) -> list[str]:
    """Every problem of a parsed task (empty = valid).

    ``unparsed``: enum paths (``"modality"``, ``"sampling.rule"``, ...) whose
    value could not be parsed and was reported already; not called missing.
    """
    problems: list[str] = []
    if task.task_id and not TASK_ID_RE.match(task.task_id):
        problems.append(
            f"task_id {task.task_id!r} must be 1-128 characters of letters, digits, '.', '_', "
            "':' or '-', starting with a letter or digit"
        )
    if not task.name.strip():
        problems.append("name is required")
    if len(task.labels) < 2:
        problems.append(f"at least 2 labels are required, got {len(task.labels)}")
    if len(task.labels) > MAX_LABELS:
        problems.append(f"at most {MAX_LABELS} labels are allowed, got {len(task.labels)}")
    seen: dict[str, int] = {}
    for position, label in enumerate(task.labels):
        if label.index != position:
            problems.append(f"label {label.name!r}: index {label.index} != position {position}")
        if not label.name.strip():
            problems.append(f"label {position} has an empty name")
            continue
        key = label.name.strip().lower()
        if key in seen:
            problems.append(
                f"label names must be unique (case-insensitive): {label.name!r} "
                f"repeats label {seen[key]}"
            )
        seen.setdefault(key, position)
    if task.modality == common_pb2.MODALITY_UNSPECIFIED and "modality" not in unparsed:
        choices = ", ".join(enum_choices(common_pb2.Modality, "MODALITY_"))
        problems.append(f"modality is required ({choices})")
    elif task.modality == common_pb2.MODALITY_VQA and [
        label.name.strip().lower() for label in task.labels
    ] != ["no", "yes"]:
        problems.append("a vqa task must have exactly the labels [no, yes], in this order")
    if (
        task.annotation_strategy == common_pb2.ANNOTATION_STRATEGY_UNSPECIFIED
        and "annotation_strategy" not in unparsed
    ):
        problems.append("annotation_strategy is required")
    if (
        task.critique_strategy == common_pb2.CRITIQUE_STRATEGY_UNSPECIFIED
        and "critique_strategy" not in unparsed
    ):
        problems.append("critique_strategy is required")
    fraction = task.budget.fraction
    if not (math.isfinite(fraction) and 0.0 < fraction <= 1.0):
        problems.append(f"budget fraction must be in (0, 1], got {fraction:g}")
    if task.budget.hard_cap < 0:
        problems.append("budget hard_cap must be >= 0")
    if task.budget.window_items < 0:
        problems.append("budget window_items must be >= 0")
    sampling = task.sampling
    if sampling.rule == common_pb2.SAMPLING_RULE_UNSPECIFIED and "sampling.rule" not in unparsed:
        choices = ", ".join(enum_choices(common_pb2.SamplingRule, "SAMPLING_RULE_"))
        problems.append(f"sampling rule is required ({choices})")
    if sampling.HasField("beta") and not (math.isfinite(sampling.beta) and sampling.beta > 0):
        problems.append(f"sampling beta must be > 0, got {sampling.beta:g}")
    if sampling.HasField("alpha") and not math.isfinite(sampling.alpha):
        problems.append("sampling alpha must be finite")
    if sampling.HasField("tau") and not (0.0 <= sampling.tau <= 1.0):
        problems.append(f"sampling tau must be in [0, 1], got {sampling.tau:g}")
    if not (0.0 <= sampling.pi_min < 1.0):
        problems.append(f"sampling pi_min must be in [0, 1), got {sampling.pi_min:g}")
    elif sampling.pi_min > fraction > 0:
        problems.append(
            f"sampling pi_min ({sampling.pi_min:g}) cannot exceed the budget fraction "
            f"({fraction:g}): every item would be reviewed more often than the budget allows"
        )
    if (
        task.critique_strategy == common_pb2.CRITIQUE_STRATEGY_COT_PERPLEXITY
        and sampling.rule != common_pb2.SAMPLING_RULE_UNSPECIFIED
        and sampling.rule != common_pb2.SAMPLING_RULE_THRESHOLD
    ):
        problems.append("critique strategy cot_perplexity only supports the threshold rule")
    if task.fewshot_per_class < 0:
        problems.append("fewshot_per_class must be >= 0")
    for field in ("annotator_model", "critic_model"):
        if task.HasField(field):
            ref = getattr(task, field)
            if not ref.provider.strip() or not ref.model.strip():
                problems.append(f"{field} needs both provider and model")
    problems += validate_review_settings(task)
    return problems


def finalize_task(task: task_pb2.Task, *, now: datetime | None = None) -> task_pb2.Task:
    """Validate, assign ``task_id`` (uuid4 hex) and ``created_at`` when absent.

    Raises :class:`TaskError` listing every problem.
    """
    problems = validate_task(task)
    if problems:
        raise TaskError(problems)
    out = task_pb2.Task()
    out.CopyFrom(task)
    # One spelling per definition: sorted unique sensitive labels, no empty review.
    sensitive = sorted(set(out.review.sensitive_labels))
    out.review.ClearField("sensitive_labels")
    out.review.sensitive_labels.extend(sensitive)
    if out.review == task_pb2.ReviewSettings():
        out.ClearField("review")
    if not out.task_id:
        out.task_id = uuid.uuid4().hex
    if not out.HasField("created_at"):
        out.created_at.FromDatetime(now or datetime.now(UTC))
    return out


def build_task(
    file_data: Mapping[str, Any] | None, flags: Mapping[str, Any], *, now: datetime | None = None
) -> task_pb2.Task:
    """File mapping + flags -> a validated task with id and creation time.

    Raises :class:`TaskError` listing every problem (parsing and validation).
    """
    bad_enums: list[tuple[str, str]] = []
    task = task_from_mapping(merge_flags(file_data or {}, flags), bad_enums)
    problems = [p for _, p in bad_enums]
    problems += validate_task(task, unparsed={path for path, _ in bad_enums})
    if problems:
        raise TaskError(problems)
    return finalize_task(task, now=now)


def same_definition(a: task_pb2.Task, b: task_pb2.Task) -> bool:
    """Whether two tasks are equal apart from ``created_at``."""
    a2, b2 = task_pb2.Task(), task_pb2.Task()
    a2.CopyFrom(a)
    b2.CopyFrom(b)
    a2.ClearField("created_at")
    b2.ClearField("created_at")
    return bool(a2 == b2)


def task_to_dict(task: task_pb2.Task) -> dict[str, Any]:
    """JSON-ready form (proto field names, enum names)."""
    return json_format.MessageToDict(task, preserving_proto_field_name=True)


def task_to_json(task: task_pb2.Task, *, indent: int | None = 2) -> str:
    """The task as JSON (proto field names)."""
    return json.dumps(task_to_dict(task), indent=indent, ensure_ascii=False)
