"""Task definitions: parsing files and flags, validation (no broker)."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest
from act.v1 import common_pb2, task_pb2
from google.protobuf import json_format

from services.cli import tasks
from services.cli.kafkaio import Record
from services.cli.taskio import latest_tasks
from tests.cli.helpers import invoke

GOOD_FLAGS = {
    "name": "spam demo",
    "labels": "ham,spam",
    "modality": "text",
    "budget": 0.2,
    "rule": "threshold",
}


def problems_of(**overrides: object) -> list[str]:
    with pytest.raises(tasks.TaskError) as info:
        tasks.build_task(None, {**GOOD_FLAGS, **overrides})
    return info.value.problems


@pytest.mark.parametrize(
    ("enum", "prefix", "value", "expected"),
    [
        (
            common_pb2.SamplingRule,
            "SAMPLING_RULE_",
            "threshold",
            common_pb2.SAMPLING_RULE_THRESHOLD,
        ),
        (
            common_pb2.SamplingRule,
            "SAMPLING_RULE_",
            "Exponential",
            common_pb2.SAMPLING_RULE_EXPONENTIAL,
        ),
        (
            common_pb2.SamplingRule,
            "SAMPLING_RULE_",
            "SAMPLING_RULE_NORMALIZATION",
            common_pb2.SAMPLING_RULE_NORMALIZATION,
        ),
        (
            common_pb2.SamplingRule,
            "SAMPLING_RULE_",
            " sampling_rule_threshold ",
            common_pb2.SAMPLING_RULE_THRESHOLD,
        ),
        (common_pb2.SamplingRule, "SAMPLING_RULE_", 2, common_pb2.SAMPLING_RULE_EXPONENTIAL),
        (
            common_pb2.AnnotationStrategy,
            "ANNOTATION_STRATEGY_",
            "cot",
            common_pb2.ANNOTATION_STRATEGY_CHAIN_OF_THOUGHT,
        ),
        (
            common_pb2.AnnotationStrategy,
            "ANNOTATION_STRATEGY_",
            "chain-of-thought",
            common_pb2.ANNOTATION_STRATEGY_CHAIN_OF_THOUGHT,
        ),
        (
            common_pb2.CritiqueStrategy,
            "CRITIQUE_STRATEGY_",
            "devils-advocate",
            common_pb2.CRITIQUE_STRATEGY_DEVILS_ADVOCATE,
        ),
        (
            common_pb2.CritiqueStrategy,
            "CRITIQUE_STRATEGY_",
            "cot logit",
            common_pb2.CRITIQUE_STRATEGY_COT_LOGIT,
        ),
        (
            common_pb2.CritiqueStrategy,
            "CRITIQUE_STRATEGY_",
            "cot",
            common_pb2.CRITIQUE_STRATEGY_CHAIN_OF_THOUGHT,
        ),
        (
            common_pb2.CritiqueStrategy,
            "CRITIQUE_STRATEGY_",
            "mc",
            common_pb2.CRITIQUE_STRATEGY_MULTIPLE_CHOICE,
        ),
        (common_pb2.Modality, "MODALITY_", "VQA", common_pb2.MODALITY_VQA),
    ],
)
def test_enum_names_are_loose(enum, prefix, value, expected):
    assert tasks.parse_enum(enum, prefix, value, "field") == expected


@pytest.mark.parametrize(
    "value", ["thresh", "unspecified", "SAMPLING_RULE_UNSPECIFIED", 0, 99, True, 1.5, ""]
)
def test_unknown_enum_values_are_rejected_with_the_choices(value):
    with pytest.raises(tasks.TaskError) as info:
        tasks.parse_enum(common_pb2.SamplingRule, "SAMPLING_RULE_", value, "sampling.rule")
    message = str(info.value)
    assert "sampling.rule" in message
    if isinstance(value, str):
        assert "normalization, exponential, threshold" in message


def test_flags_build_a_complete_task():
    now = datetime(2025, 1, 2, 3, 4, 5, tzinfo=UTC)
    task = tasks.build_task(
        None, {**GOOD_FLAGS, "annotation_strategy": "cot", "critic_model": "openai:gpt-4o"}, now=now
    )
    assert len(task.task_id) == 32 and int(task.task_id, 16) >= 0  # uuid4 hex
    assert task.name == "spam demo"
    assert [(label.index, label.name) for label in task.labels] == [(0, "ham"), (1, "spam")]
    assert task.modality == common_pb2.MODALITY_TEXT
    assert task.budget.fraction == pytest.approx(0.2)
    assert task.sampling.rule == common_pb2.SAMPLING_RULE_THRESHOLD
    assert task.annotation_strategy == common_pb2.ANNOTATION_STRATEGY_CHAIN_OF_THOUGHT
    assert task.critique_strategy == common_pb2.CRITIQUE_STRATEGY_NAIVE  # default
    assert (task.critic_model.provider, task.critic_model.model) == ("openai", "gpt-4o")
    assert not task.HasField("annotator_model")
    assert task.created_at.ToDatetime(tzinfo=UTC) == now


def test_each_task_gets_a_fresh_id_unless_given():
    a = tasks.build_task(None, GOOD_FLAGS)
    b = tasks.build_task(None, GOOD_FLAGS)
    assert a.task_id != b.task_id
    assert tasks.build_task(None, {**GOOD_FLAGS, "task_id": "spam-v1"}).task_id == "spam-v1"


YAML_TASK = """
task_id: fashion.v2
name: Fashion
modality: Image
labels:
  - name: shirt
    description: tops with sleeves
  - {name: shoe}
  - bag
instructions: Classify the product photo.
annotationStrategy: COT
critique_strategy: CRITIQUE_STRATEGY_COT_LOGIT
annotator_model:
  provider: openai-compatible
  model: Qwen/Qwen2-VL
  base_url: "http://vllm:8000/v1"
  params: {temperature: "0"}
critic_model: "anthropic:claude-3-5-sonnet"
budget: {fraction: 0.3, hard_cap: 500, window_items: 1000}
rule: exponential
sampling: {mode: streaming, beta: 12, pi_min: 0.01, seed: 7}
fewshot_per_class: 2
metadata: {owner: ml-team, version: 2}
"""


def test_yaml_file_with_every_convenience(tmp_path):
    path = tmp_path / "task.yaml"
    path.write_text(YAML_TASK)
    task = tasks.build_task(tasks.load_task_file(path), {})
    assert task.task_id == "fashion.v2"
    assert task.modality == common_pb2.MODALITY_IMAGE
    assert [label.name for label in task.labels] == ["shirt", "shoe", "bag"]
    assert [label.index for label in task.labels] == [0, 1, 2]
    assert task.labels[0].description == "tops with sleeves"
    assert task.annotation_strategy == common_pb2.ANNOTATION_STRATEGY_CHAIN_OF_THOUGHT
    assert task.critique_strategy == common_pb2.CRITIQUE_STRATEGY_COT_LOGIT
    assert task.annotator_model.model == "Qwen/Qwen2-VL"
    assert task.annotator_model.params["temperature"] == "0"
    assert task.critic_model.provider == "anthropic"
    assert (task.budget.fraction, task.budget.hard_cap, task.budget.window_items) == (
        0.3,
        500,
        1000,
    )
    assert task.sampling.rule == common_pb2.SAMPLING_RULE_EXPONENTIAL
    assert task.sampling.mode == common_pb2.SAMPLING_MODE_STREAMING
    assert task.sampling.HasField("beta") and task.sampling.beta == 12
    assert not task.sampling.HasField("alpha")
    assert task.sampling.seed == 7
    assert task.fewshot_per_class == 2
    assert dict(task.metadata) == {"owner": "ml-team", "version": "2"}


def test_flags_override_the_file(tmp_path):
    path = tmp_path / "task.yaml"
    path.write_text(YAML_TASK)
    task = tasks.build_task(
        tasks.load_task_file(path),
        {"budget": 0.5, "rule": "threshold", "name": "Renamed", "labels": None},
    )
    assert task.name == "Renamed"
    assert task.budget.fraction == 0.5
    assert task.budget.hard_cap == 500  # the rest of the file's budget stays
    assert task.sampling.rule == common_pb2.SAMPLING_RULE_THRESHOLD
    assert task.sampling.mode == common_pb2.SAMPLING_MODE_STREAMING
    assert [label.name for label in task.labels] == ["shirt", "shoe", "bag"]  # None = not given


def test_json_file(tmp_path):
    path = tmp_path / "task.json"
    path.write_text(
        json.dumps(
            {
                "name": "j",
                "labels": ["no", "yes"],
                "modality": "vqa",
                "budget": 1,
                "rule": "normalization",
            }
        )
    )
    task = tasks.build_task(tasks.load_task_file(path), {})
    assert task.modality == common_pb2.MODALITY_VQA
    assert task.budget.fraction == 1.0


@pytest.mark.parametrize(
    ("content", "fragment"),
    [
        ("name: [unclosed", "not valid"),
        ("- a\n- b\n", "mapping"),
        ("name: x\nbogus_field: 1\n", "bogus_field"),
    ],
)
def test_bad_files_are_reported(tmp_path, content, fragment):
    path = tmp_path / "task.yaml"
    path.write_text(content)
    with pytest.raises(tasks.TaskError) as info:
        tasks.build_task(tasks.load_task_file(path), GOOD_FLAGS)
    assert fragment in str(info.value)


def test_missing_file_is_a_task_error(tmp_path):
    with pytest.raises(tasks.TaskError, match="cannot read"):
        tasks.load_task_file(tmp_path / "absent.yaml")


@pytest.mark.parametrize(
    ("overrides", "fragment"),
    [
        ({"labels": "spam"}, "at least 2 labels"),
        ({"labels": None}, "at least 2 labels"),
        ({"labels": "spam,Spam"}, "unique"),
        ({"labels": "spam,,ham"}, "empty name"),
        ({"budget": 0.0}, "budget fraction must be in (0, 1]"),
        ({"budget": 1.01}, "budget fraction must be in (0, 1]"),
        ({"budget": -0.1}, "budget fraction"),
        ({"budget": float("nan")}, "budget fraction"),
        ({"rule": None}, "sampling rule is required"),
        ({"modality": None}, "modality is required"),
        ({"name": "  "}, "name is required"),
        ({"task_id": "has space"}, "task_id"),
        ({"task_id": "-leading-dash"}, "task_id"),
        ({"modality": "vqa"}, "[no, yes]"),
        ({"critique_strategy": "cot-perplexity", "rule": "exponential"}, "threshold rule"),
        ({"annotator_model": "gpt-4o"}, "provider:model"),
    ],
)
def test_invalid_tasks_are_explained(overrides, fragment):
    problems = problems_of(**overrides)
    assert any(fragment in p for p in problems), problems


def test_sampling_parameters_are_checked():
    base = tasks.task_from_mapping({**GOOD_FLAGS, "sampling": {"rule": "exponential"}})
    assert tasks.validate_task(base) == []
    cases: list[tuple[dict[str, float], str]] = [
        ({"beta": 0}, "beta"),
        ({"tau": 1.5}, "tau"),
        ({"pi_min": 1.0}, "pi_min"),
        ({"pi_min": 0.5}, "cannot exceed the budget"),
    ]
    for sampling, fragment in cases:
        task = tasks.task_from_mapping(
            {**GOOD_FLAGS, "sampling": {"rule": "exponential", **sampling}}
        )
        assert any(fragment in p for p in tasks.validate_task(task)), sampling


def test_all_problems_are_reported_together():
    problems = problems_of(labels="only", budget=2.0, rule="sometimes")
    assert len(problems) == 3, problems
    assert any("sampling.rule: unknown value 'sometimes'" in p for p in problems)
    # the bad rule is reported once, not also as missing
    assert not any("rule is required" in p for p in problems)
    message = str(tasks.TaskError(problems))
    assert message.startswith("invalid task:\n") and message.count("\n  - ") == 3


def test_label_index_must_match_position():
    with pytest.raises(tasks.TaskError, match="differs from its position"):
        tasks.task_from_mapping({"labels": [{"index": 1, "name": "a"}, {"index": 0, "name": "b"}]})


def test_json_round_trip_and_same_definition():
    task = tasks.build_task(None, GOOD_FLAGS)
    text = tasks.task_to_json(task)
    back = json_format.Parse(text, task_pb2.Task())
    assert back == task
    assert json.loads(text)["sampling"]["rule"] == "SAMPLING_RULE_THRESHOLD"
    later = task_pb2.Task()
    later.CopyFrom(task)
    later.created_at.seconds += 60
    assert tasks.same_definition(task, later)
    later.budget.fraction = 0.3
    assert not tasks.same_definition(task, later)


def _record(offset: int, key: str, value: bytes | None) -> Record:
    return Record("tasks", 0, offset, 0, key.encode(), value)


def test_latest_version_of_each_task_wins_and_tombstones_delete():
    v1 = tasks.build_task(None, {**GOOD_FLAGS, "task_id": "a"})
    v2 = task_pb2.Task()
    v2.CopyFrom(v1)
    v2.name = "second version"
    other = tasks.build_task(None, {**GOOD_FLAGS, "task_id": "b"})
    gone = tasks.build_task(None, {**GOOD_FLAGS, "task_id": "c"})
    records = [
        _record(0, "a", v1.SerializeToString()),
        _record(1, "b", other.SerializeToString()),
        _record(2, "c", gone.SerializeToString()),
        _record(3, "a", v2.SerializeToString()),
        _record(4, "c", None),
        _record(5, "x", b"\xff\xff not a task"),
    ]
    found, bad = latest_tasks(list(reversed(records)))
    assert sorted(found) == ["a", "b"]
    assert found["a"].name == "second version"
    assert bad == 1


def test_cli_dry_run_prints_the_task_without_a_broker():
    result = invoke(
        [
            "task",
            "create",
            "--dry-run",
            "--name",
            "n",
            "--labels",
            "ham,spam",
            "--modality",
            "text",
            "--budget",
            "0.25",
            "--rule",
            "normalization",
            "--critique-strategy",
            "devils-advocate",
        ]
    )
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert data["sampling"]["rule"] == "SAMPLING_RULE_NORMALIZATION"
    assert data["critique_strategy"] == "CRITIQUE_STRATEGY_DEVILS_ADVOCATE"
    assert data["budget"]["fraction"] == 0.25


def test_cli_invalid_task_exits_2_with_a_clear_message(tmp_path):
    result = invoke(
        [
            "task",
            "create",
            "--name",
            "n",
            "--labels",
            "spam",
            "--modality",
            "text",
            "--budget",
            "0.2",
            "--rule",
            "threshold",
            "--bootstrap",
            "127.0.0.1:1",
        ]
    )
    assert result.exit_code == 2
    assert "at least 2 labels are required, got 1" in result.stderr
    assert result.stdout == ""


REVIEW_FLAGS = {**GOOD_FLAGS, "labels": "ok,Gore,nudity"}


def test_review_settings_default_to_absent():
    task = tasks.build_task(None, REVIEW_FLAGS)
    assert not task.HasField("review")
    # explicit defaults are the same definition as no settings at all
    hidden = tasks.build_task(
        None, {**REVIEW_FLAGS, "show_machine_label": False, "overlap_fraction": 0.0}
    )
    assert not hidden.HasField("review")


def test_review_flags_fill_task_review():
    task = tasks.build_task(
        None,
        {
            **REVIEW_FLAGS,
            "sensitive_labels": ["nudity", "gore", "GORE"],
            "show_machine_label": True,
            "show_critique": True,
            "overlap_fraction": 0.1,
            "exposure_break_after_s": 900,
            "exposure_daily_cap_s": 3600,
        },
    )
    review = task.review
    assert list(review.sensitive_labels) == [1, 2]  # by name, case-insensitive, sorted, unique
    assert review.show_machine_label and review.show_critique
    assert review.overlap_fraction == pytest.approx(0.1)
    assert (review.exposure_break_after_s, review.exposure_daily_cap_s) == (900, 3600)


def test_review_in_a_file_by_name_or_index_and_flags_override(tmp_path):
    path = tmp_path / "task.yaml"
    path.write_text(
        "name: f\nlabels: [ok, gore, nudity]\nmodality: image\nbudget: 0.2\nrule: threshold\n"
        "review:\n  sensitiveLabels: [gore, 2]\n  show_critique: true\n  overlap_fraction: 0.3\n"
    )
    task = tasks.build_task(tasks.load_task_file(path), {})
    assert list(task.review.sensitive_labels) == [1, 2]
    assert task.review.show_critique
    task = tasks.build_task(
        tasks.load_task_file(path), {"sensitive_labels": ["nudity"], "show_critique": False}
    )
    assert list(task.review.sensitive_labels) == [2]
    assert not task.review.show_critique
    assert task.review.overlap_fraction == pytest.approx(0.3)  # the rest of the file stays


@pytest.mark.parametrize(
    ("overrides", "fragment"),
    [
        (
            {"sensitive_labels": ["blood"]},
            "review.sensitive_labels: unknown label 'blood'; the labels are ok, Gore, nudity",
        ),
        ({"overlap_fraction": 1.5}, "review overlap_fraction must be in [0, 1], got 1.5"),
        ({"overlap_fraction": -0.1}, "review overlap_fraction must be in [0, 1]"),
        ({"exposure_break_after_s": -1}, "review exposure_break_after_s must be in [0, 86400]"),
        ({"exposure_daily_cap_s": 90_000}, "review exposure_daily_cap_s must be in [0, 86400]"),
    ],
)
def test_invalid_review_settings_are_explained(overrides, fragment):
    with pytest.raises(tasks.TaskError) as info:
        tasks.build_task(None, {**REVIEW_FLAGS, **overrides})
    assert any(fragment in p for p in info.value.problems), info.value.problems


def test_sensitive_label_index_outside_the_label_set_in_a_file():
    problems = tasks.validate_task(
        tasks.task_from_mapping({**REVIEW_FLAGS, "review": {"sensitive_labels": [3]}})
    )
    assert problems == [
        "review sensitive label index 3 is not a label of the task (expected 0 to 2)"
    ]


def test_review_must_be_a_mapping():
    with pytest.raises(tasks.TaskError, match="review: expected a mapping"):
        tasks.build_task({"review": "strict"}, REVIEW_FLAGS)


CLI_BASE = [
    "task",
    "create",
    "--dry-run",
    "--name",
    "n",
    "--labels",
    "ok,gore,nudity",
    "--modality",
    "image",
    "--budget",
    "0.2",
    "--rule",
    "threshold",
]


def test_cli_review_flags():
    result = invoke(
        [
            *CLI_BASE,
            "--sensitive-label",
            "gore",
            "--sensitive-label",
            "nudity",
            "--show-machine-label",
            "--hide-critique",
            "--overlap-fraction",
            "0.05",
            "--exposure-break-after",
            "600",
            "--exposure-daily-cap",
            "1800",
        ]
    )
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["review"] == {
        "sensitive_labels": [1, 2],
        "show_machine_label": True,
        "overlap_fraction": 0.05,
        "exposure_break_after_s": 600,
        "exposure_daily_cap_s": 1800,
    }


def test_cli_review_defaults_hide_everything():
    result = invoke(CLI_BASE)
    assert result.exit_code == 0, result.output
    assert "review" not in json.loads(result.stdout)
    result = invoke([*CLI_BASE, "--show-critique"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["review"] == {"show_critique": True}


def test_cli_unknown_sensitive_label_exits_2_with_the_label_names():
    result = invoke([*CLI_BASE, "--sensitive-label", "gore", "--sensitive-label", "blood"])
    assert result.exit_code == 2
    assert (
        "review.sensitive_labels: unknown label 'blood'; the labels are ok, gore, nudity"
        in result.stderr
    )
    assert result.stdout == ""
