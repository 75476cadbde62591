"""gRPC transport settings shared by every server and client, so both ends agree.

Long-lived streams from devices on flaky networks need keepalive on both
sides: the agent pings so NATs keep the connection open and it notices a dead
server; the server pings so it releases the state of a device that vanished.
The server must also tolerate the agent's ping rate, or it answers with a
GOAWAY ("too_many_pings"). Keeping both ends' numbers here is what makes them
match. ``max_connection_age`` makes the server close connections after a
while (plus a grace period for the open stream), so agents reconnect and
spread over replicas added by a scale-out.
"""

from __future__ import annotations

from dataclasses import dataclass

from framewire.common.settings import option, parse_duration

MIB = 1024 * 1024


@dataclass(frozen=True)
class TransportConfig:
    """Message-size and connection-lifetime settings for one gRPC endpoint."""

    max_message_bytes: int = option(
        16 * MIB, "largest gRPC message accepted or sent, in bytes", metavar="BYTES"
    )
    keepalive_time: float = option(
        20.0,
        "seconds between keepalive pings on an idle connection (agent and server)",
        parse=parse_duration,
    )
    keepalive_timeout: float = option(
        10.0,
        "seconds to wait for a keepalive ping's answer before the connection is closed",
        parse=parse_duration,
    )
    max_connection_age: float = option(
        1800.0,
        "servers: seconds after which a connection is closed so agents rebalance; 0 disables",
        parse=parse_duration,
    )
    max_connection_age_grace: float = option(
        30.0,
        "servers: seconds an open stream may continue after its connection reached max age",
        parse=parse_duration,
    )

    def __post_init__(self) -> None:
        if self.max_message_bytes < 64 * 1024:
            raise ValueError("max_message_bytes must be at least 65536")
        if self.keepalive_time < 1.0:
            raise ValueError("keepalive_time must be at least 1 second")
        if self.keepalive_timeout <= 0:
            raise ValueError("keepalive_timeout must be positive")
        if self.max_connection_age < 0 or self.max_connection_age_grace < 0:
            raise ValueError("max_connection_age and its grace must not be negative")


def _ms(seconds: float) -> int:
    return round(seconds * 1000)


def _keepalive(config: TransportConfig) -> list[tuple[str, int]]:
    """The channel arguments that make keepalive_time and keepalive_timeout true, on both ends.

    ``grpc.keepalive_timeout_ms`` alone does not decide: gRPC core also times
    every outstanding ping out after ``grpc.http2.ping_timeout_ms`` (60 s by
    default), and that is what closed a frozen peer's connection, after a
    minute whatever keepalive_timeout said. Both are set to keepalive_timeout.
    Pings go out while a stream is open but quiet (a frozen device sends no
    data) as well as on idle connections, without a cap on pings between data
    frames (``max_pings_without_data`` 0; gRPC's default stops after two).
    """
    return [
        ("grpc.keepalive_time_ms", _ms(config.keepalive_time)),
        ("grpc.keepalive_timeout_ms", _ms(config.keepalive_timeout)),
        ("grpc.http2.ping_timeout_ms", _ms(config.keepalive_timeout)),
        ("grpc.keepalive_permit_without_calls", 1),
        ("grpc.http2.max_pings_without_data", 0),
    ]


def server_options(config: TransportConfig, *, reuse_port: bool = False) -> list[tuple[str, int]]:
    """Channel arguments for a gRPC server; ``reuse_port`` lets worker processes share a port."""
    options = [
        ("grpc.max_receive_message_length", config.max_message_bytes),
        ("grpc.max_send_message_length", config.max_message_bytes),
        *_keepalive(config),
        # Accept client pings as often as half the agreed interval: clients use
        # the same keepalive_time, and a ping that arrives a little early must
        # not count as abuse.
        ("grpc.http2.min_ping_interval_without_data_ms", _ms(config.keepalive_time / 2)),
        # Off unless asked: a second server on a taken port must fail, not share it.
        ("grpc.so_reuseport", int(reuse_port)),
    ]
    if config.max_connection_age > 0:
        options += [
            ("grpc.max_connection_age_ms", _ms(config.max_connection_age)),
            ("grpc.max_connection_age_grace_ms", _ms(config.max_connection_age_grace)),
        ]
    return options


def channel_options(
    config: TransportConfig, *, round_robin: bool = False
) -> list[tuple[str, int | str]]:
    """Channel arguments for a client channel.

    ``round_robin`` spreads calls over every address the name resolves to
    (``dns:///inference-headless:50051`` in Kubernetes) instead of pinning
    the first one.
    """
    options: list[tuple[str, int | str]] = [
        ("grpc.max_receive_message_length", config.max_message_bytes),
        ("grpc.max_send_message_length", config.max_message_bytes),
        *_keepalive(config),
        # Reconnect quickly after a server restart; the agent adds its own
        # jittered backoff around whole streams.
        ("grpc.initial_reconnect_backoff_ms", 200),
        ("grpc.min_reconnect_backoff_ms", 200),
        ("grpc.max_reconnect_backoff_ms", 5000),
    ]
    if round_robin:
        options.append(("grpc.lb_policy_name", "round_robin"))
    return options
