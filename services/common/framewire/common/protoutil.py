"""Conversions between the contract's well-known types and plain Python numbers."""

from __future__ import annotations

from google.protobuf import duration_pb2, timestamp_pb2

_NANOS = 1_000_000_000


def duration(seconds: float) -> duration_pb2.Duration:
    """A Duration message for a number of seconds."""
    message = duration_pb2.Duration()
    nanos = round(seconds * _NANOS)
    message.seconds, message.nanos = divmod(nanos, _NANOS)
    if message.seconds < 0 < message.nanos:
        # Duration wants seconds and nanos of the same sign.
        message.seconds += 1
        message.nanos -= _NANOS
    return message


def seconds(message: duration_pb2.Duration) -> float:
    """The number of seconds a Duration message holds."""
    return message.seconds + message.nanos / _NANOS


def timestamp_from_ns(unix_ns: int) -> timestamp_pb2.Timestamp:
    """A Timestamp message for nanoseconds since the Unix epoch."""
    message = timestamp_pb2.Timestamp()
    message.seconds, message.nanos = divmod(unix_ns, _NANOS)
    return message


def timestamp_ns(message: timestamp_pb2.Timestamp) -> int:
    """Nanoseconds since the Unix epoch of a Timestamp message."""
    return message.seconds * _NANOS + message.nanos
