"""Contract checks for the act.v1 protobuf messages and gRPC services.

1. The committed generated code (protos/act/v1/*_pb2*.py[i]) is exactly what
   deploy/gen-protos.sh produces from the committed .proto files.
2. Every generated module imports, and every top-level message, fully
   populated, survives a binary (and JSON) round trip.
3. Every gRPC service exists with its methods and their types.

Plus the conventions in docs/contracts.md that a descriptor can show: enum
prefixes, timestamps, field presence, and that topics.yaml names real
messages whose record key is a field of that message.
"""

from __future__ import annotations

import importlib
import importlib.metadata
import os
import re
import subprocess
import sys
import tomllib
from collections.abc import Iterator
from concurrent import futures
from pathlib import Path
from types import ModuleType
from typing import Any

import grpc
import pytest
import yaml
from google.protobuf import descriptor_pb2, json_format
from google.protobuf.descriptor import (
    Descriptor,
    EnumDescriptor,
    FieldDescriptor,
    FileDescriptor,
    OneofDescriptor,
)
from google.protobuf.message import Message
from google.protobuf.timestamp_pb2 import Timestamp

REPO = Path(__file__).resolve().parent.parent
PROTO_DIR = REPO / "protos" / "act" / "v1"
GEN_SCRIPT = REPO / "deploy" / "gen-protos.sh"
GENERATED_SUFFIXES = ("_pb2.py", "_pb2.pyi", "_pb2_grpc.py")

PROTO_STEMS = sorted(p.stem for p in PROTO_DIR.glob("*.proto"))


def _generated_files(directory: Path) -> dict[str, bytes]:
    return {
        p.name: p.read_bytes()
        for p in sorted(directory.iterdir())
        if p.is_file() and p.name.endswith(GENERATED_SUFFIXES)
    }


def _module(stem: str, suffix: str = "_pb2") -> ModuleType:
    return importlib.import_module(f"act.v1.{stem}{suffix}")


def _file_descriptors() -> list[FileDescriptor]:
    return [_module(stem).DESCRIPTOR for stem in PROTO_STEMS]


def _top_level_messages() -> list[type[Message]]:
    classes = []
    for stem in PROTO_STEMS:
        module = _module(stem)
        for name in module.DESCRIPTOR.message_types_by_name:
            classes.append(getattr(module, name))
    return classes


def _all_messages(descriptor: Descriptor | None = None) -> Iterator[Descriptor]:
    """Every act.v1 message descriptor, nested ones included (map entries not)."""
    if descriptor is None:
        for fd in _file_descriptors():
            for top in fd.message_types_by_name.values():
                yield from _all_messages(top)
        return
    if descriptor.GetOptions().map_entry:
        return
    yield descriptor
    for nested in descriptor.nested_types:
        yield from _all_messages(nested)


def _all_enums() -> Iterator[EnumDescriptor]:
    for fd in _file_descriptors():
        yield from fd.enum_types_by_name.values()
    for message in _all_messages():
        yield from message.enum_types


def _is_synthetic(oneof: OneofDescriptor) -> bool:
    """The hidden oneof protoc makes for a proto3 `optional` field."""
    return len(oneof.fields) == 1 and oneof.name == "_" + oneof.fields[0].name


def _is_map(field: FieldDescriptor) -> bool:
    return bool(
        field.type == FieldDescriptor.TYPE_MESSAGE and field.message_type.GetOptions().map_entry
    )


# ---------------------------------------------------------------- 1. codegen


def test_every_proto_file_is_generated_and_nothing_else():
    assert PROTO_STEMS, f"no .proto files in {PROTO_DIR}"
    expected = {stem + suffix for stem in PROTO_STEMS for suffix in GENERATED_SUFFIXES}
    assert set(_generated_files(PROTO_DIR)) == expected, (
        "generated files do not match the .proto files; run deploy/gen-protos.sh"
    )


def test_generator_version_matches_pin():
    pyproject = tomllib.loads((REPO / "pyproject.toml").read_text())
    pins = [
        d
        for d in pyproject["project"]["optional-dependencies"]["dev"]
        if d.startswith("grpcio-tools")
    ]
    assert len(pins) == 1 and "==" in pins[0], f"grpcio-tools must be pinned exactly: {pins}"
    pinned = pins[0].split("==", 1)[1].strip()
    installed = importlib.metadata.version("grpcio-tools")
    assert installed == pinned, (
        f"grpcio-tools {installed} is installed but {pinned} is pinned; generated code "
        "would differ. Install the pinned version."
    )


def test_committed_generated_code_is_up_to_date(tmp_path: Path):
    env = {**os.environ, "PYTHON": sys.executable}
    result = subprocess.run(
        ["bash", str(GEN_SCRIPT), str(tmp_path)],
        cwd=tmp_path,  # the script must not depend on the caller's directory
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, f"gen-protos.sh failed:\n{result.stdout}\n{result.stderr}"
    fresh = _generated_files(tmp_path / "act" / "v1")
    committed = _generated_files(PROTO_DIR)
    assert fresh, "the generator produced nothing"
    assert sorted(fresh) == sorted(committed), "generated file set differs from the committed one"
    stale = [name for name in sorted(fresh) if fresh[name] != committed[name]]
    assert not stale, (
        f"stale generated code: {stale}. A .proto changed without regenerating; "
        "run `deploy/gen-protos.sh` and commit the result."
    )


# ---------------------------------------------------------------- 2. messages


@pytest.mark.parametrize("stem", PROTO_STEMS)
def test_generated_modules_import(stem: str):
    pb2 = _module(stem)
    assert pb2.DESCRIPTOR.name == f"act/v1/{stem}.proto"
    assert pb2.DESCRIPTOR.package == "act.v1"
    proto = descriptor_pb2.FileDescriptorProto.FromString(pb2.DESCRIPTOR.serialized_pb)
    assert proto.syntax == "proto3"
    grpc_module = _module(stem, "_pb2_grpc")
    assert grpc_module.GRPC_GENERATED_VERSION


_SCALARS: dict[int, object] = {
    FieldDescriptor.TYPE_DOUBLE: 0.25,
    FieldDescriptor.TYPE_FLOAT: 0.5,
    FieldDescriptor.TYPE_INT64: -(2**40) - 3,
    FieldDescriptor.TYPE_UINT64: 2**63 + 5,
    FieldDescriptor.TYPE_INT32: -7,
    FieldDescriptor.TYPE_UINT32: 2**31 + 1,
    FieldDescriptor.TYPE_SINT32: -9,
    FieldDescriptor.TYPE_SINT64: -(2**50),
    FieldDescriptor.TYPE_FIXED32: 11,
    FieldDescriptor.TYPE_FIXED64: 2**60,
    FieldDescriptor.TYPE_SFIXED32: -13,
    FieldDescriptor.TYPE_SFIXED64: -(2**45),
    FieldDescriptor.TYPE_BOOL: True,
}


def _value(field: FieldDescriptor, salt: int) -> object:
    if field.type == FieldDescriptor.TYPE_STRING:
        return f"{field.name}-{salt}-\u00e9\u4e2d"
    if field.type == FieldDescriptor.TYPE_BYTES:
        return b"\x00\xff" + field.name.encode() + bytes([salt])
    if field.type == FieldDescriptor.TYPE_ENUM:
        return field.enum_type.values[-1].number  # the last, never UNSPECIFIED
    if field.type == FieldDescriptor.TYPE_INT32:
        return -7 - salt
    return _SCALARS[field.type]


def _fill(message: Message, oneof_pick: int, stack: tuple[str, ...] = ()) -> None:
    """Sets every field of `message` to a non-default value, recursively.

    In each real oneof only one member can be set: the first when oneof_pick
    is 0, the last otherwise.
    """
    descriptor = message.DESCRIPTOR
    if descriptor.full_name in stack:
        return  # recursive type: stop
    stack = (*stack, descriptor.full_name)
    if isinstance(message, Timestamp):
        message.seconds, message.nanos = 1_760_000_000, 123_456_789
        return
    chosen = {
        oneof.name: oneof.fields[0 if oneof_pick == 0 else -1].name
        for oneof in descriptor.oneofs
        if not _is_synthetic(oneof)
    }
    for field in descriptor.fields:
        oneof = field.containing_oneof
        if oneof is not None and not _is_synthetic(oneof) and chosen[oneof.name] != field.name:
            continue
        container = getattr(message, field.name)
        if _is_map(field):
            key_field = field.message_type.fields_by_name["key"]
            value_field = field.message_type.fields_by_name["value"]
            for salt in (1, 2):
                key = _value(key_field, salt)
                if value_field.type == FieldDescriptor.TYPE_MESSAGE:
                    _fill(container[key], oneof_pick, stack)
                else:
                    container[key] = _value(value_field, salt)
        elif field.is_repeated:
            for salt in (1, 2):
                if field.type == FieldDescriptor.TYPE_MESSAGE:
                    _fill(container.add(), oneof_pick, stack)
                else:
                    container.append(_value(field, salt))
        elif field.type == FieldDescriptor.TYPE_MESSAGE:
            _fill(container, oneof_pick, stack)
            if not container.ListFields():
                container.SetInParent()
        else:
            setattr(message, field.name, _value(field, 0))


def _unset_fields(message: Message, prefix: str = "") -> list[str]:
    """Fields (recursively) that `_fill` should have set but that are unset."""
    missing = []
    descriptor = message.DESCRIPTOR
    for oneof in descriptor.oneofs:
        if not _is_synthetic(oneof) and message.WhichOneof(oneof.name) is None:
            missing.append(f"{prefix}{oneof.name}")
    present = {field.name for field, _ in message.ListFields()}
    for field in descriptor.fields:
        oneof = field.containing_oneof
        if (
            oneof is not None
            and not _is_synthetic(oneof)
            and message.WhichOneof(oneof.name) != field.name
        ):
            continue
        if field.name not in present:
            missing.append(f"{prefix}{field.name}")
        elif (
            field.type == FieldDescriptor.TYPE_MESSAGE
            and not field.is_repeated
            and field.message_type.full_name
            not in (
                "google.protobuf.Timestamp",
                descriptor.full_name,
            )
        ):
            missing += _unset_fields(getattr(message, field.name), f"{prefix}{field.name}.")
    return missing


MESSAGE_CLASSES = _top_level_messages()


@pytest.mark.parametrize(
    "cls", MESSAGE_CLASSES, ids=[c.DESCRIPTOR.full_name for c in MESSAGE_CLASSES]
)
@pytest.mark.parametrize("oneof_pick", [0, 1], ids=["first-oneof-member", "last-oneof-member"])
def test_message_round_trip(cls: type[Message], oneof_pick: int):
    original = cls()
    _fill(original, oneof_pick)
    assert _unset_fields(original) == [], "the test filler left fields unset"

    data = original.SerializeToString(deterministic=True)
    if cls.DESCRIPTOR.fields:
        assert data, f"{cls.DESCRIPTOR.full_name} serialized to nothing"
    parsed = cls.FromString(data)
    assert parsed == original
    assert _unset_fields(parsed) == []
    assert parsed.SerializeToString(deterministic=True) == data

    # The JSON form (used in logs, the CLI and the review UI) round-trips too.
    from_json = json_format.Parse(json_format.MessageToJson(original), cls())
    assert from_json == original


def test_round_trip_detects_a_different_message():
    """Guards the round-trip test itself: a changed field must compare unequal."""
    from act.v1 import review_pb2

    label = review_pb2.FinalLabel()
    _fill(label, 0)
    parsed = review_pb2.FinalLabel.FromString(label.SerializeToString())
    parsed.decision.critique.annotation.item.item_id += "x"
    assert parsed != label


def test_every_message_family_is_present():
    names = {c.DESCRIPTOR.full_name for c in MESSAGE_CLASSES}
    expected = {
        "act.v1.ModelRef", "act.v1.Usage", "act.v1.TraceContext",
        "act.v1.Label", "act.v1.Budget", "act.v1.SamplingConfig", "act.v1.Task",
        "act.v1.BatchInfo", "act.v1.Item",
        "act.v1.Annotation",
        "act.v1.LogitDetails", "act.v1.PerplexityDetails", "act.v1.Critique",
        "act.v1.SamplingDecision", "act.v1.SamplerState",
        "act.v1.ReviewRequest", "act.v1.HumanReview", "act.v1.FinalLabel",
        "act.v1.DeadLetter",
        "act.v1.FitConfig", "act.v1.FitStatus", "act.v1.TrainingEvent",
        "act.v1.PipelineStatus", "act.v1.StageStatus",
    }  # fmt: skip
    assert expected <= names, f"missing messages: {sorted(expected - names)}"


# ---------------------------------------------------------------- conventions


def _upper_snake(name: str) -> str:
    return re.sub(r"(?<!^)(?=[A-Z])", "_", name).upper()


def test_enums_follow_buf_style():
    enums = list(_all_enums())
    assert len(enums) >= 10
    for enum in enums:
        prefix = _upper_snake(enum.name) + "_"
        zero = enum.values_by_number[0]
        assert zero.name == prefix + "UNSPECIFIED", enum.full_name
        bad = [v.name for v in enum.values if not v.name.startswith(prefix)]
        assert not bad, f"{enum.full_name}: values without prefix {prefix}: {bad}"


def test_times_are_timestamps():
    checked = 0
    for message in _all_messages():
        for field in message.fields:
            if field.name.endswith("_at") or field.name in {"at", "deadline"}:
                checked += 1
                assert field.type == FieldDescriptor.TYPE_MESSAGE, field.full_name
                assert field.message_type.full_name == "google.protobuf.Timestamp", field.full_name
    assert checked >= 20


@pytest.mark.parametrize(
    "field",
    [
        "act.v1.Annotation.confidence",
        "act.v1.FinalLabel.human_label",
        "act.v1.Critique.multiple_choice_level",
        "act.v1.SamplingConfig.alpha",
        "act.v1.SamplingConfig.beta",
        "act.v1.SamplingConfig.tau",
        "act.v1.SamplingDecision.alpha",
        "act.v1.SamplingDecision.tau",
        "act.v1.FitConfig.power_lambda",
        "act.v1.Item.reference_label",
    ],
)
def test_fields_where_absence_matters_have_presence(field: str):
    message_name, field_name = field.rsplit(".", 1)
    by_name = {m.full_name: m for m in _all_messages()}
    descriptor = by_name[message_name].fields_by_name[field_name]
    assert descriptor.has_presence, f"{field} must be `optional`"


def test_absent_human_label_differs_from_label_zero():
    from act.v1 import review_pb2

    machine = review_pb2.FinalLabel(item_id="i", delta=False, machine_label=0)
    human = review_pb2.FinalLabel(item_id="i", delta=True, machine_label=0, human_label=0)
    assert not machine.HasField("human_label")
    assert review_pb2.FinalLabel.FromString(human.SerializeToString()).HasField("human_label")


def _topics() -> list[dict[str, Any]]:
    spec = yaml.safe_load((PROTO_DIR / "topics.yaml").read_text())
    topics: list[dict[str, Any]] = spec["topics"]
    return topics


def _key_path(descriptor: Descriptor, key: str) -> list[str] | None:
    """Breadth-first path of singular message fields to a string field `key`."""
    queue: list[tuple[Descriptor, list[str]]] = [(descriptor, [])]
    seen = set()
    while queue:
        current, path = queue.pop(0)
        if current.full_name in seen:
            continue
        seen.add(current.full_name)
        field = current.fields_by_name.get(key)
        if field is not None and field.type == FieldDescriptor.TYPE_STRING:
            return [*path, key]
        for f in current.fields:
            if f.type == FieldDescriptor.TYPE_MESSAGE and not f.is_repeated:
                queue.append((f.message_type, [*path, f.name]))
    return None


@pytest.mark.parametrize("topic", _topics(), ids=lambda t: t["id"])
def test_topic_message_exists_and_carries_its_key(topic: dict[str, Any]):
    by_name = {m.full_name: m for m in _all_messages()}
    assert topic["message"] in by_name, f"topics.yaml names unknown message {topic['message']}"
    path = _key_path(by_name[topic["message"]], topic["key"])
    assert path is not None, f"{topic['message']} has no string field {topic['key']} to key by"


# ---------------------------------------------------------------- 3. services

# service -> method -> (input, output, client streaming, server streaming)
SERVICES: dict[str, dict[str, tuple[str, str, bool, bool]]] = {
    "IngestService": {
        "CreateTask": ("CreateTaskRequest", "Task", False, False),
        "GetTask": ("GetTaskRequest", "Task", False, False),
        "Ingest": ("Item", "IngestSummary", True, False),
    },
    "ReviewService": {
        "Lease": ("LeaseRequest", "LeaseResponse", False, False),
        "Submit": ("SubmitRequest", "SubmitResponse", False, False),
        "ExtendLease": ("ExtendLeaseRequest", "ExtendLeaseResponse", False, False),
        "ReleaseLease": ("ReleaseLeaseRequest", "ReleaseLeaseResponse", False, False),
        "Skip": ("SkipRequest", "SkipResponse", False, False),
        "GetTaskStats": ("GetTaskStatsRequest", "TaskStats", False, False),
        "GetReviewerStats": ("GetReviewerStatsRequest", "ReviewerStats", False, False),
        "CreateReviewer": ("CreateReviewerRequest", "CreateReviewerResponse", False, False),
        "DisableReviewer": ("DisableReviewerRequest", "DisableReviewerResponse", False, False),
    },
    "TrainingService": {
        "StartFit": ("StartFitRequest", "FitStatus", False, False),
        "GetFit": ("GetFitRequest", "FitStatus", False, False),
        "ListFits": ("ListFitsRequest", "ListFitsResponse", False, False),
    },
    "PipelineStatusService": {
        "GetStatus": ("GetStatusRequest", "PipelineStatus", False, False),
    },
}


@pytest.mark.parametrize("service_name", sorted(SERVICES))
def test_service_exists_with_methods(service_name: str):
    from act.v1 import api_pb2, api_pb2_grpc

    services = api_pb2.DESCRIPTOR.services_by_name
    assert service_name in services, f"service act.v1.{service_name} missing"
    service = services[service_name]
    assert service.full_name == f"act.v1.{service_name}"
    for method_name, (request, response, client_stream, server_stream) in SERVICES[
        service_name
    ].items():
        method = service.methods_by_name.get(method_name)
        assert method is not None, f"{service_name}.{method_name} missing"
        assert method.input_type.full_name == f"act.v1.{request}"
        assert method.output_type.full_name == f"act.v1.{response}"
        assert method.client_streaming is client_stream, method.full_name
        assert method.server_streaming is server_stream, method.full_name

    servicer = getattr(api_pb2_grpc, f"{service_name}Servicer")
    assert getattr(api_pb2_grpc, f"{service_name}Stub")
    assert getattr(api_pb2_grpc, f"add_{service_name}Servicer_to_server")
    for method in service.methods:
        assert callable(getattr(servicer, method.name)), f"{service_name}.{method.name}"


def test_generated_grpc_code_serves_a_call():
    """The generated stub and servicer talk to each other over a real channel."""
    from act.v1 import api_pb2, api_pb2_grpc, item_pb2

    class Status(api_pb2_grpc.PipelineStatusServiceServicer):  # type: ignore[misc]
        def GetStatus(self, request, context):
            partitions = [api_pb2.PartitionLag(partition=0, lag=3)]
            return api_pb2.PipelineStatus(
                stages=[
                    api_pb2.StageStatus(
                        stage="annotator",
                        lag=3,
                        partitions=partitions if request.include_partitions else [],
                    )
                ]
            )

    class Ingest(api_pb2_grpc.IngestServiceServicer):  # type: ignore[misc]
        def Ingest(self, request_iterator, context):
            ids = [item.item_id for item in request_iterator]
            return api_pb2.IngestSummary(received=len(ids), accepted=len(set(ids)))

    server = grpc.server(futures.ThreadPoolExecutor(max_workers=2))
    api_pb2_grpc.add_PipelineStatusServiceServicer_to_server(Status(), server)
    api_pb2_grpc.add_IngestServiceServicer_to_server(Ingest(), server)
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    try:
        with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
            status = api_pb2_grpc.PipelineStatusServiceStub(channel).GetStatus(
                api_pb2.GetStatusRequest(include_partitions=True), timeout=10
            )
            assert [s.stage for s in status.stages] == ["annotator"]
            assert status.stages[0].partitions[0].lag == 3

            summary = api_pb2_grpc.IngestServiceStub(channel).Ingest(
                iter([item_pb2.Item(item_id=i) for i in ("a", "b", "a")]), timeout=10
            )
            assert (summary.received, summary.accepted) == (3, 2)

            with pytest.raises(grpc.RpcError) as error:
                api_pb2_grpc.ReviewServiceStub(channel).Lease(api_pb2.LeaseRequest(), timeout=10)
            assert error.value.code() == grpc.StatusCode.UNIMPLEMENTED
    finally:
        server.stop(grace=None)
