"""The framewire.v1 contract: every message survives the wire, and the oneof rules hold.

Messages are filled generically from their descriptors, so a field added to
the contract is covered without touching this file, and a field type the
filler does not know fails loudly instead of being skipped.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator

import pytest
from google.protobuf import descriptor, duration_pb2, json_format, message, timestamp_pb2
from google.protobuf.message_factory import GetMessageClass

from framewire.v1 import common_pb2, inference_service_pb2, ingest_service_pb2

FILES = (common_pb2, inference_service_pb2, ingest_service_pb2)
FieldDescriptor = descriptor.FieldDescriptor


def all_message_descriptors() -> list[descriptor.Descriptor]:
    found: list[descriptor.Descriptor] = []

    def visit(message_type: descriptor.Descriptor) -> None:
        found.append(message_type)
        for nested in message_type.nested_types:
            visit(nested)

    for module in FILES:
        for message_type in module.DESCRIPTOR.message_types_by_name.values():
            visit(message_type)
    return found


def real_oneofs(message_type: descriptor.Descriptor) -> list[descriptor.OneofDescriptor]:
    """Oneofs written in the .proto, not the synthetic ones behind proto3 `optional`."""
    return [oneof for oneof in message_type.oneofs if not _is_synthetic(oneof)]


def _is_synthetic(oneof: descriptor.OneofDescriptor) -> bool:
    return len(oneof.fields) == 1 and oneof.fields[0].has_presence and oneof.name.startswith("_")


def oneof_choices(message_type: descriptor.Descriptor) -> Iterator[dict[str, str]]:
    """Every combination of one member per oneof (a single empty choice when none)."""
    oneofs = real_oneofs(message_type)
    for members in itertools.product(*[[field.name for field in oneof.fields] for oneof in oneofs]):
        yield {oneof.name: member for oneof, member in zip(oneofs, members, strict=True)}


def sample_scalar(field: FieldDescriptor, index: int) -> object:
    """A value that is not the field's default, distinct per field and element."""
    salt = field.number * 10 + index + 1
    kind = field.type
    if kind in (FieldDescriptor.TYPE_UINT64, FieldDescriptor.TYPE_FIXED64):
        return 2**40 + salt  # needs all 64 bits on the wire
    if kind in (
        FieldDescriptor.TYPE_INT64,
        FieldDescriptor.TYPE_SINT64,
        FieldDescriptor.TYPE_SFIXED64,
    ):
        return -(2**40) - salt
    if kind in (FieldDescriptor.TYPE_UINT32, FieldDescriptor.TYPE_FIXED32):
        return 70_000 + salt
    if kind in (
        FieldDescriptor.TYPE_INT32,
        FieldDescriptor.TYPE_SINT32,
        FieldDescriptor.TYPE_SFIXED32,
    ):
        return -salt
    if kind in (FieldDescriptor.TYPE_FLOAT, FieldDescriptor.TYPE_DOUBLE):
        return salt + 0.25  # exactly representable in a float
    if kind == FieldDescriptor.TYPE_BOOL:
        return True
    if kind == FieldDescriptor.TYPE_STRING:
        return f"{field.name}-{index}-ünïcode"
    if kind == FieldDescriptor.TYPE_BYTES:
        return bytes([0, 255, salt % 256]) * 3
    if kind == FieldDescriptor.TYPE_ENUM:
        return field.enum_type.values[-1].number
    raise AssertionError(f"the filler does not know field type {kind} of {field.full_name}")


# Well-known types have value ranges (a Timestamp is a real date) that a
# generic filler would break; these samples stay inside them.
WELL_KNOWN_SAMPLES: dict[str, message.Message] = {
    "google.protobuf.Timestamp": timestamp_pb2.Timestamp(seconds=1_763_888_888, nanos=123_456_789),
    "google.protobuf.Duration": duration_pb2.Duration(seconds=2, nanos=500_000_001),
}


def populate(target: message.Message, choices: dict[str, str] | None = None) -> None:
    """Sets every field of ``target`` (the chosen member of each oneof) to a non-default value."""
    message_type = target.DESCRIPTOR
    if message_type.full_name in WELL_KNOWN_SAMPLES:
        target.CopyFrom(WELL_KNOWN_SAMPLES[message_type.full_name])
        return
    choices = choices if choices is not None else next(oneof_choices(message_type))
    for field in message_type.fields:
        oneof = field.containing_oneof
        if oneof is not None and not _is_synthetic(oneof) and choices[oneof.name] != field.name:
            continue
        if field.type == FieldDescriptor.TYPE_MESSAGE:
            if field.message_type.GetOptions().map_entry:
                raise AssertionError(f"the filler does not know map fields ({field.full_name})")
            if field.is_repeated:
                for _ in range(2):
                    populate(getattr(target, field.name).add())
            else:
                populate(getattr(target, field.name))
        elif field.is_repeated:
            getattr(target, field.name).extend(sample_scalar(field, index) for index in range(2))
        else:
            setattr(target, field.name, sample_scalar(field, 0))


def populated_variants() -> list[message.Message]:
    variants: list[message.Message] = []
    for message_type in all_message_descriptors():
        cls = GetMessageClass(message_type)
        for choices in oneof_choices(message_type):
            instance = cls()
            populate(instance, choices)
            variants.append(instance)
    return variants


VARIANTS = populated_variants()


def test_every_contract_message_is_covered() -> None:
    covered = {variant.DESCRIPTOR.full_name for variant in VARIANTS}
    assert covered == {message_type.full_name for message_type in all_message_descriptors()}
    # A sanity floor: the contract has at least the messages the services use.
    assert {
        "framewire.v1.StreamFramesRequest",
        "framewire.v1.StreamFramesResponse",
        "framewire.v1.Frame",
        "framewire.v1.FrameResult",
        "framewire.v1.DetectRequest",
        "framewire.v1.GetModelInfoResponse",
    } <= covered


@pytest.mark.parametrize("original", VARIANTS, ids=lambda variant: variant.DESCRIPTOR.name)
def test_binary_round_trip_keeps_every_field(original: message.Message) -> None:
    wire = original.SerializeToString()
    parsed = type(original).FromString(wire)
    assert parsed == original
    assert parsed.SerializeToString(deterministic=True) == original.SerializeToString(
        deterministic=True
    )
    expected_fields = {
        field.name
        for field in original.DESCRIPTOR.fields
        if field.containing_oneof is None or _is_synthetic(field.containing_oneof)
    } | {original.WhichOneof(oneof.name) for oneof in real_oneofs(original.DESCRIPTOR)}
    assert {field.name for field, _ in parsed.ListFields()} == expected_fields


@pytest.mark.parametrize("original", VARIANTS, ids=lambda variant: variant.DESCRIPTOR.name)
def test_json_round_trip_keeps_every_field(original: message.Message) -> None:
    # Clients in other languages may log or replay JSON; the mapping must be lossless.
    text = json_format.MessageToJson(original)
    assert json_format.Parse(text, type(original)()) == original


@pytest.mark.parametrize(
    "message_type",
    [ingest_service_pb2.StreamFramesRequest, ingest_service_pb2.StreamFramesResponse],
)
def test_stream_messages_are_a_single_oneof(message_type: type[message.Message]) -> None:
    # The servicer and the agent dispatch on WhichOneof("kind"): a field
    # outside the oneof would be silently ignored by both.
    oneofs = real_oneofs(message_type.DESCRIPTOR)
    assert [oneof.name for oneof in oneofs] == ["kind"]
    assert {field.name for field in oneofs[0].fields} == {
        field.name for field in message_type.DESCRIPTOR.fields
    }


def test_request_kinds_are_config_frame_and_report() -> None:
    kinds = ingest_service_pb2.StreamFramesRequest.DESCRIPTOR.oneofs_by_name["kind"]
    assert [field.name for field in kinds.fields] == ["config", "frame", "report"]


def test_empty_request_has_no_kind() -> None:
    # An empty StreamFramesRequest is legal on the wire; the server must reject it.
    assert ingest_service_pb2.StreamFramesRequest().WhichOneof("kind") is None
    assert ingest_service_pb2.StreamFramesRequest.FromString(b"").WhichOneof("kind") is None


def test_setting_another_member_clears_the_first() -> None:
    request = ingest_service_pb2.StreamFramesRequest(
        config=ingest_service_pb2.StreamConfig(stream_id="cam-1")
    )
    request.frame.seq = 7
    assert request.WhichOneof("kind") == "frame"
    assert not request.HasField("config")


def test_two_members_on_the_wire_parse_as_the_last_one() -> None:
    # A crafted message carrying both a config and a frame parses as the frame
    # alone (protobuf merge semantics), so one request is never two kinds.
    config = ingest_service_pb2.StreamFramesRequest(
        config=ingest_service_pb2.StreamConfig(stream_id="cam-1")
    ).SerializeToString()
    frame = ingest_service_pb2.StreamFramesRequest(
        frame=ingest_service_pb2.Frame(seq=3)
    ).SerializeToString()
    parsed = ingest_service_pb2.StreamFramesRequest.FromString(config + frame)
    assert parsed.WhichOneof("kind") == "frame"
    assert parsed.frame.seq == 3
    assert not parsed.HasField("config")


@pytest.mark.parametrize(
    ("message_type", "field"),
    [
        (ingest_service_pb2.StreamConfig, "score_threshold"),
        (inference_service_pb2.DetectOptions, "score_threshold"),
        (ingest_service_pb2.FlowHint, "target_fps"),
        (ingest_service_pb2.FlowHint, "jpeg_quality"),
        (ingest_service_pb2.FlowHint, "scale"),
        (common_pb2.Detection, "track_id"),
    ],
)
def test_optional_fields_tell_zero_from_absent(
    message_type: type[message.Message], field: str
) -> None:
    # "threshold 0" (keep everything) and "no threshold" (server default) must differ.
    absent = message_type()
    assert not absent.HasField(field)
    present = message_type()
    setattr(present, field, 0)
    parsed = message_type.FromString(present.SerializeToString())
    assert parsed.HasField(field)
    assert getattr(parsed, field) == 0
    assert not message_type.FromString(absent.SerializeToString()).HasField(field)


def test_unknown_enum_values_survive_so_services_must_check_them() -> None:
    # proto3 enums are open: a newer client's encoding arrives as a bare
    # number. Services validate against the known values instead of trusting it.
    frame = ingest_service_pb2.Frame(encoding=99)  # type: ignore[arg-type]
    parsed = ingest_service_pb2.Frame.FromString(frame.SerializeToString())
    assert parsed.encoding == 99
    assert 99 not in common_pb2.Encoding.values()


def test_every_enum_starts_with_an_unspecified_zero() -> None:
    for module in FILES:
        for enum in module.DESCRIPTOR.enum_types_by_name.values():
            zero = enum.values_by_number[0]
            assert zero.name.endswith("_UNSPECIFIED"), enum.full_name


def test_rpcs_have_their_own_request_and_response_and_streaming_shape() -> None:
    ingest = ingest_service_pb2.DESCRIPTOR.services_by_name["IngestService"]
    stream = ingest.methods_by_name["StreamFrames"]
    assert stream.client_streaming
    assert stream.server_streaming
    inference = inference_service_pb2.DESCRIPTOR.services_by_name["InferenceService"]
    seen: set[str] = set()
    for method in [*ingest.methods, *inference.methods]:
        assert method.input_type.name == f"{method.name}Request"
        assert method.output_type.name == f"{method.name}Response"
        seen |= {method.input_type.full_name, method.output_type.full_name}
    for name in ("Detect", "GetModelInfo"):
        method = inference.methods_by_name[name]
        assert not method.client_streaming
        assert not method.server_streaming
    assert len(seen) == 2 * (len(ingest.methods) + len(inference.methods))
