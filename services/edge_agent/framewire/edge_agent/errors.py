"""How the edge agent fails: each error with its exit code, and the table ``--help`` prints.

The codes and their meanings are framewire's one scheme
(:class:`framewire.common.exits.ExitCode`); this module says which error of
the agent ends with which code.
"""

from __future__ import annotations

from typing import ClassVar, Final

from framewire.common.exits import ExitCode


class AgentError(Exception):
    """A failure that ends the agent, with the exit code the command line uses."""

    exit_code: ClassVar[ExitCode] = ExitCode.FAILURE


class SourceFailed(AgentError):
    """The source could not be opened or broke while reading."""

    exit_code = ExitCode.SOURCE_FAILED


class ServerUnreachable(AgentError):
    """No stream could be kept up for ``--connect-timeout``."""

    exit_code = ExitCode.SERVER_UNREACHABLE


class StreamRefused(AgentError):
    """The server refused the stream for a reason retrying cannot fix."""

    exit_code = ExitCode.STREAM_REFUSED


class AuthRefused(AgentError):
    """The server refused the token or the certificate, or the TLS handshake failed."""

    exit_code = ExitCode.AUTH_REFUSED


class OutputFailed(AgentError):
    """An output (--record) could not be written."""

    exit_code = ExitCode.OUTPUT_FAILED


#: Every way ``edge-agent`` ends, in code order: a normal end, the two that
#: every command shares (a bug, a bad flag), then one per error above.
EXIT_CODES: Final[dict[ExitCode, str]] = {
    code: code.meaning
    for code in (
        ExitCode.OK,
        AgentError.exit_code,
        ExitCode.USAGE,
        SourceFailed.exit_code,
        ServerUnreachable.exit_code,
        StreamRefused.exit_code,
        OutputFailed.exit_code,
        AuthRefused.exit_code,
    )
}

__all__ = [
    "EXIT_CODES",
    "AgentError",
    "AuthRefused",
    "OutputFailed",
    "ServerUnreachable",
    "SourceFailed",
    "StreamRefused",
]
