"""How every framewire command ends: one table of exit codes, each with its meaning.

``edge-agent`` and ``framewire serve | ingest | inference | demo`` all return
these codes and nothing else; each command's ``--help`` lists the ones it can
return (:func:`describe`), and ``docs/exit-codes.md`` is this table for people.
A script can therefore tell "fix the flags" (2) from "the camera is gone" (3)
from "the server is down" (4) whichever command it ran.
"""

from __future__ import annotations

import enum
import textwrap
from collections.abc import Iterable, Mapping
from typing import Final


class ExitCode(enum.IntEnum):
    """An exit status of a framewire command; :attr:`meaning` says what it tells the caller."""

    OK = 0
    FAILURE = 1
    USAGE = 2
    SOURCE_FAILED = 3
    SERVER_UNREACHABLE = 4
    STREAM_REFUSED = 5
    OUTPUT_FAILED = 6
    AUTH_REFUSED = 7

    @property
    def meaning(self) -> str:
        """What this code tells the caller, in one line."""
        return MEANINGS[self]


MEANINGS: Final[Mapping[ExitCode, str]] = {
    ExitCode.OK: (
        "finished: the source ended, --frames/--duration was reached, or SIGINT/SIGTERM "
        "stopped it (a server drains its streams first)"
    ),
    ExitCode.FAILURE: (
        "failed for a reason the message gives: a server that cannot start (port taken, "
        "model cannot be loaded), a missing extra, a demo run that processed nothing or "
        "whose books do not balance, or a bug (please report it)"
    ),
    ExitCode.USAGE: "a bad flag or environment value",
    ExitCode.SOURCE_FAILED: "the video source cannot be opened or broke while reading",
    ExitCode.SERVER_UNREACHABLE: "the ingest server could not be reached for --connect-timeout",
    ExitCode.STREAM_REFUSED: (
        "the server refused the stream (bad stream id, unknown model or label, frames over "
        "its size limit)"
    ),
    ExitCode.OUTPUT_FAILED: "an output (--record) cannot be written",
    ExitCode.AUTH_REFUSED: (
        "the server refused the token or the certificate, or the TLS handshake failed "
        "(untrusted or expired certificate, wrong name, TLS on one side only)"
    ),
}

#: What a server command (``framewire serve``, ``ingest``, ``inference``) can return.
SERVER_EXIT_CODES: Final[tuple[ExitCode, ...]] = (ExitCode.OK, ExitCode.FAILURE, ExitCode.USAGE)


def describe(codes: Iterable[ExitCode]) -> str:
    """The ``exit codes:`` block of a command's ``--help`` epilog."""
    lines = ["exit codes:"]
    for code in codes:
        lines += textwrap.wrap(
            code.meaning, width=88, initial_indent=f"  {code:d}  ", subsequent_indent="     "
        )
    return "\n".join(lines)
