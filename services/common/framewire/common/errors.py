"""Errors that carry the gRPC status a client can act on."""

from __future__ import annotations

import grpc

from framewire.v1 import common_pb2


class FramewireError(Exception):
    """An error with a gRPC status code and a message for people.

    Servicers turn it into the call's status (``context.abort``); per-image and
    per-frame failures turn it into an :class:`ErrorStatus` message instead.
    """

    def __init__(self, code: grpc.StatusCode, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message

    def to_status(self) -> common_pb2.ErrorStatus:
        """This error as the contract's per-item ErrorStatus."""
        return error_status(self.code, self.message)

    def __repr__(self) -> str:
        return f"FramewireError({self.code.name}, {self.message!r})"


def invalid_argument(message: str) -> FramewireError:
    """The request itself is wrong; retrying it unchanged cannot help."""
    return FramewireError(grpc.StatusCode.INVALID_ARGUMENT, message)


def resource_exhausted(message: str) -> FramewireError:
    """The request is over a limit of the server."""
    return FramewireError(grpc.StatusCode.RESOURCE_EXHAUSTED, message)


def unavailable(message: str) -> FramewireError:
    """The server cannot serve now; retrying later or elsewhere may work."""
    return FramewireError(grpc.StatusCode.UNAVAILABLE, message)


def status_code_number(code: grpc.StatusCode) -> int:
    """The canonical number of a status code (``google.rpc.Code``)."""
    number = code.value[0]
    assert isinstance(number, int)
    return number


def status_code_from_number(number: int) -> grpc.StatusCode:
    """The status code for a canonical number; UNKNOWN for numbers outside the list."""
    for code in grpc.StatusCode:
        if code.value[0] == number:
            return code
    return grpc.StatusCode.UNKNOWN


def error_status(code: grpc.StatusCode, message: str) -> common_pb2.ErrorStatus:
    """Builds the contract's ErrorStatus for a status code and message."""
    return common_pb2.ErrorStatus(code=status_code_number(code), message=message)
