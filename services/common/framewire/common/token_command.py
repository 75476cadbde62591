"""``framewire token new``: a fresh device token, and its line for the server's token file.

The token goes to stdout on the first line and the token-file line on the
second, so a script can split them; what to do with each goes to stderr.
The server keeps only the token's hash, so the token is shown this once.
"""

from __future__ import annotations

import argparse
import hashlib
import sys
from collections.abc import Sequence

from framewire.common.auth import entry_line, new_token
from framewire.common.exits import ExitCode

DESCRIPTION = (
    "Make a device token: prints a fresh high-entropy token (give it to the device, as "
    "its --token-file or $FRAMEWIRE_TOKEN) and the line to add to the servers' "
    "--auth-tokens file. See docs/security.md."
)
EXIT_CODES: Sequence[ExitCode] = (ExitCode.OK, ExitCode.USAGE)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    actions = parser.add_subparsers(dest="action", required=True, metavar="ACTION")
    new = actions.add_parser("new", help="make a new token", description=DESCRIPTION)
    new.add_argument(
        "--stream-id",
        action="append",
        required=True,
        metavar="PATTERN",
        help="stream id the token may use: exact, or with '*' (lobby-*); repeat for more",
    )
    new.add_argument(
        "--name",
        help="name of the token in the file and in logs (default: token- and 8 hex digits "
        "of its hash)",
    )


def run(args: argparse.Namespace) -> int:
    token = new_token()
    name = args.name or "token-" + hashlib.sha256(token.encode()).hexdigest()[:8]
    try:
        line = entry_line(name, token, args.stream_id)
    except ValueError as error:
        print(f"framewire token: error: {error}", file=sys.stderr)
        return ExitCode.USAGE
    print("# the device's token (shown only this once; keep it secret):", file=sys.stderr)
    print(token, flush=True)
    print("# add this line to the servers' --auth-tokens file:", file=sys.stderr, flush=True)
    print(line, flush=True)
    return ExitCode.OK
