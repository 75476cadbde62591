"""Well-known type conversions and the transport settings both ends share."""

from __future__ import annotations

import grpc
import pytest

from framewire.common import errors, protoutil
from framewire.common.transport import TransportConfig, channel_options, server_options


@pytest.mark.parametrize("seconds", [0.0, 0.001, 1.5, 12.000000001, -0.25, -3.75])
def test_duration_round_trip(seconds: float) -> None:
    message = protoutil.duration(seconds)
    assert protoutil.seconds(message) == pytest.approx(seconds, abs=1e-9)
    # Well-formed: seconds and nanos share a sign and nanos stays below one second.
    assert abs(message.nanos) < 1_000_000_000
    assert message.seconds * message.nanos >= 0


def test_timestamp_round_trip() -> None:
    unix_ns = 1_763_888_888_123_456_789
    assert protoutil.timestamp_ns(protoutil.timestamp_from_ns(unix_ns)) == unix_ns


def test_status_numbers_are_canonical() -> None:
    assert errors.status_code_number(grpc.StatusCode.INVALID_ARGUMENT) == 3
    assert errors.status_code_number(grpc.StatusCode.UNAVAILABLE) == 14
    for code in grpc.StatusCode:
        assert errors.status_code_from_number(errors.status_code_number(code)) is code
    assert errors.status_code_from_number(999) is grpc.StatusCode.UNKNOWN
    status = errors.invalid_argument("bad frame").to_status()
    assert (status.code, status.message) == (3, "bad frame")


def test_server_tolerates_the_client_ping_rate() -> None:
    # If the server demanded more time between pings than clients use, it
    # would close every idle agent connection with GOAWAY too_many_pings.
    config = TransportConfig()
    server = dict(server_options(config))
    client = dict(channel_options(config))
    assert (
        server["grpc.http2.min_ping_interval_without_data_ms"] <= client["grpc.keepalive_time_ms"]
    )
    assert server["grpc.max_receive_message_length"] == client["grpc.max_send_message_length"]
    assert server["grpc.max_connection_age_ms"] == 1_800_000


def test_connection_age_can_be_disabled_and_round_robin_chosen() -> None:
    config = TransportConfig(max_connection_age=0)
    assert "grpc.max_connection_age_ms" not in dict(server_options(config))
    assert dict(channel_options(config, round_robin=True))["grpc.lb_policy_name"] == "round_robin"


@pytest.mark.parametrize(
    "kwargs", [{"max_message_bytes": 10}, {"keepalive_time": 0.1}, {"max_connection_age": -1}]
)
def test_transport_rejects_nonsense(kwargs: dict[str, float]) -> None:
    with pytest.raises(ValueError, match="must"):
        TransportConfig(**kwargs)  # type: ignore[arg-type]
