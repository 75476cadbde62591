"""Per-device bearer tokens: the token file, checking a call's token, and open-stream leases.

The token file (``--auth-tokens FILE``) holds one entry per line::

    # NAME  HASH                 STREAM-IDS (comma-separated; '*' matches any run of id characters)
    lobby-cams  sha256:9f86d08...  lobby-*
    door-1      sha256:60303ae...  door-1,door-1-backup

NAME labels the token in logs (the token itself never appears anywhere but
in the device's metadata); HASH is the SHA-256 of the token, so the file
holds nothing a device could present. ``framewire token new`` prints a fresh
token and its line. A call carries the token as ``authorization: Bearer
TOKEN``; its hash is compared with every entry's in constant time.

The file is read again when it changes (checked at each new call and every
``auth_reload_interval`` seconds). Streams whose token was removed end with
UNAUTHENTICATED, and those whose token no longer covers their stream id with
PERMISSION_DENIED, within that interval.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import logging
import re
import secrets
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import grpc

from framewire.common.contract import STREAM_ID_PATTERN, STREAM_ID_RULE
from framewire.common.errors import FramewireError
from framewire.common.tls import FileSignature, file_signature

_LOGGER = logging.getLogger(__name__)

TOKEN_PREFIX = "fwt_"
HASH_PREFIX = "sha256:"
#: Random bytes in a new token: 256 bits, encoded as 43 URL-safe characters.
TOKEN_BYTES = 32
_NAME = re.compile(r"^[A-Za-z0-9._:\-]{1,64}$")
_HASH = re.compile(r"^sha256:[0-9a-f]{64}$")
_BEARER = re.compile(r"^bearer\s+(?P<token>\S+)\s*$", re.IGNORECASE)
# The methods a kubelet or load balancer may call without a token.
UNAUTHENTICATED_PREFIXES = ("/grpc.health.v1.Health/",)


def new_token() -> str:
    """A fresh high-entropy token."""
    return TOKEN_PREFIX + secrets.token_urlsafe(TOKEN_BYTES)


def hash_token(token: str) -> str:
    """``sha256:HEX`` of a token: what the token file holds."""
    return HASH_PREFIX + hashlib.sha256(token.encode()).hexdigest()


def stream_id_matcher(pattern: str) -> re.Pattern[str]:
    """A stream-id pattern as a regex: exact characters, and ``*`` for any run of id characters."""
    literal = pattern.replace("*", "")
    if "*" not in pattern and not STREAM_ID_PATTERN.match(pattern):
        raise ValueError(f"{pattern!r} is not a stream id: use {STREAM_ID_RULE}")
    if literal and not STREAM_ID_PATTERN.match(literal):
        raise ValueError(f"{pattern!r} is not a stream-id pattern: use {STREAM_ID_RULE} and '*'")
    body = "[A-Za-z0-9._:\\-]*".join(re.escape(part) for part in pattern.split("*"))
    return re.compile(f"^{body}$")


@dataclass(frozen=True)
class TokenEntry:
    """One line of the token file."""

    name: str
    digest: str  # sha256:HEX
    patterns: tuple[str, ...]
    matchers: tuple[re.Pattern[str], ...] = field(repr=False, compare=False)

    def covers(self, stream_id: str) -> bool:
        """Whether this token may open a stream with ``stream_id``."""
        return any(matcher.match(stream_id) for matcher in self.matchers)


def entry(name: str, digest: str, patterns: Sequence[str]) -> TokenEntry:
    """Builds and checks one entry; ValueError saying what is wrong."""
    if not _NAME.match(name):
        raise ValueError(f"token name {name!r}: use 1 to 64 letters, digits or any of '._:-'")
    if not _HASH.match(digest):
        raise ValueError(f"token {name!r}: the hash must be sha256: and 64 lowercase hex digits")
    if not patterns:
        raise ValueError(f"token {name!r}: give the stream ids it may use")
    return TokenEntry(name, digest, tuple(patterns), tuple(map(stream_id_matcher, patterns)))


def entry_line(name: str, token: str, patterns: Sequence[str]) -> str:
    """The token-file line for ``token``."""
    line = f"{name} {hash_token(token)} {','.join(patterns)}"
    entry(name, hash_token(token), patterns)  # the same checks as reading it back
    return line


def parse_token_file(text: str, source: str = "token file") -> tuple[TokenEntry, ...]:
    """Reads every entry; ValueError naming the line of the first problem."""
    entries: list[TokenEntry] = []
    names: set[str] = set()
    digests: set[str] = set()
    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.split("#", 1)[0].strip()
        if not line:
            continue
        parts = line.split()
        if len(parts) != 3:
            raise ValueError(
                f"{source}:{number}: expected NAME sha256:HASH STREAM-IDS, got {len(parts)} fields"
            )
        name, digest, patterns = parts
        try:
            item = entry(name, digest, [p for p in patterns.split(",") if p])
        except ValueError as error:
            raise ValueError(f"{source}:{number}: {error}") from None
        if item.name in names:
            raise ValueError(f"{source}:{number}: the name {item.name!r} is used twice")
        if item.digest in digests:
            raise ValueError(f"{source}:{number}: the same token appears twice")
        names.add(item.name)
        digests.add(item.digest)
        entries.append(item)
    return tuple(entries)


# Call metadata as gRPC hands it over: (key, value) pairs, a grpc.aio.Metadata
# (iterated as pairs, though its stubs call it a Mapping), or nothing.
CallMetadata = Iterable[tuple[str, Any]] | grpc.aio.Metadata | None


def bearer_token(metadata: CallMetadata) -> str | None:
    """The token of an ``authorization: Bearer TOKEN`` entry; None when there is none.

    ValueError when the header is there but malformed or given twice, so a
    client that sends something odd hears why.
    """
    pairs: Iterable[tuple[str, Any]] = metadata or ()
    values = [value for key, value in pairs if key.lower() == "authorization"]
    if not values:
        return None
    if len(values) > 1:
        raise ValueError("send one authorization header, not several")
    value = values[0].decode() if isinstance(values[0], bytes) else str(values[0])
    match = _BEARER.match(value)
    if match is None:
        raise ValueError("the authorization header must be 'Bearer TOKEN'")
    return match["token"]


class TokenFile:
    """A client's token, read from a file and read again when the file changes.

    The file holds the token alone (surrounding whitespace is ignored), as a
    Kubernetes Secret mounts it.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self._signature: FileSignature | None = None
        self._token = ""
        self.token()

    def token(self) -> str:
        """The token; ValueError when the file cannot be read or is empty."""
        try:
            signature = file_signature(self.path)
            if signature != self._signature:
                token = self.path.read_text(encoding="utf-8").strip()
                if not token or any(character.isspace() for character in token):
                    raise ValueError("it must hold one token and nothing else")
                self._token, self._signature = token, signature
        except (OSError, UnicodeDecodeError, ValueError) as error:
            raise ValueError(f"cannot read the token file {self.path}: {error}") from error
        return self._token

    def metadata(self) -> tuple[tuple[str, str], ...]:
        """The call metadata that carries the token."""
        return (("authorization", f"Bearer {self.token()}"),)


def unauthenticated(message: str) -> FramewireError:
    return FramewireError(grpc.StatusCode.UNAUTHENTICATED, message)


def permission_denied(message: str) -> FramewireError:
    return FramewireError(grpc.StatusCode.PERMISSION_DENIED, message)


class StreamLease:
    """One open stream counted against its token; ``close`` when the stream ends."""

    def __init__(self, owner: TokenAuthenticator, entry: TokenEntry, stream_id: str) -> None:
        self.entry = entry
        self.stream_id = stream_id
        self.on_revoked: Callable[[FramewireError], None] = lambda error: None
        self.revoked: FramewireError | None = None
        self._owner = owner
        self._closed = False

    def revoke(self, error: FramewireError) -> None:
        if self.revoked is None and not self._closed:
            self.revoked = error
            self.on_revoked(error)

    def close(self) -> None:
        if not self._closed:
            self._closed = True
            self._owner._release(self)


class TokenAuthenticator:
    """The token file of one server: who may call, which streams they may open, how many."""

    def __init__(self, path: Path, max_streams_per_token: int, reload_interval: float) -> None:
        self.path = path
        self.max_streams_per_token = max_streams_per_token
        self.reload_interval = reload_interval
        self._signature: FileSignature | None = None
        self._failed: FileSignature | None = None
        self._failure = ""
        self._entries: tuple[TokenEntry, ...] = ()
        self._leases: dict[str, set[StreamLease]] = {}
        self.reloads = 0
        self._read(initial=True)

    @property
    def entries(self) -> tuple[TokenEntry, ...]:
        return self._entries

    def _read(self, initial: bool = False) -> bool:
        """Reads the file if it changed; True when the entries were replaced.

        At start-up a bad file is a ValueError. Later, a file that cannot be
        read or parsed keeps the entries in force (logged once per version of
        the file): a typo while revoking one token must not lock out every device.
        """
        try:
            signature = file_signature(self.path)
            if signature in (self._signature, self._failed):
                return False
            text = self.path.read_text(encoding="utf-8")
            entries = parse_token_file(text, str(self.path))
        except (OSError, ValueError, UnicodeDecodeError) as error:
            if initial:
                raise ValueError(f"cannot use the token file {self.path}: {error}") from error
            try:
                self._failed = file_signature(self.path)
            except OSError:
                self._failed = None
            if str(error) != self._failure:
                self._failure = str(error)
                _LOGGER.error(
                    "token file not reloaded, the previous tokens stay in force: %s", error
                )
            return False
        self._signature = signature
        self._failed = None
        self._failure = ""
        self._entries = entries
        if not initial:
            self.reloads += 1
            _LOGGER.info("token file %s reloaded: %d tokens", self.path, len(entries))
        return True

    def reload(self) -> None:
        """Reads the file again if it changed, and ends the streams it no longer allows."""
        if not self._read():
            return
        for leases in list(self._leases.values()):
            for lease in list(leases):
                current = self._find(lease.entry.digest)
                if current is None:
                    lease.revoke(unauthenticated("the token was revoked"))
                elif not current.covers(lease.stream_id):
                    lease.revoke(
                        permission_denied(
                            f"the token no longer covers stream id {lease.stream_id!r}"
                        )
                    )

    def _find(self, digest: str) -> TokenEntry | None:
        found = None
        for item in self._entries:
            # Every entry is compared, equal or not, so the time taken says
            # nothing about which entry (or how much of a hash) matched.
            if hmac.compare_digest(item.digest, digest):
                found = item
        return found

    def authenticate(self, metadata: CallMetadata) -> TokenEntry:
        """The entry of the call's token; UNAUTHENTICATED when it is missing or unknown."""
        self.reload()
        try:
            token = bearer_token(metadata)
        except ValueError as error:
            raise unauthenticated(str(error)) from None
        if token is None:
            raise unauthenticated("this server needs a token: send 'authorization: Bearer TOKEN'")
        found = self._find(hash_token(token))
        if found is None:
            raise unauthenticated("the token is not valid (unknown or revoked)")
        return found

    def open_stream(self, entry: TokenEntry, stream_id: str) -> StreamLease:
        """Counts a new stream against its token.

        PERMISSION_DENIED when the token does not cover ``stream_id``;
        RESOURCE_EXHAUSTED when the token already has its most streams open.
        """
        if not entry.covers(stream_id):
            raise permission_denied(
                f"the token {entry.name!r} does not cover stream id {stream_id!r}"
            )
        leases = self._leases.setdefault(entry.digest, set())
        if len(leases) >= self.max_streams_per_token:
            raise FramewireError(
                grpc.StatusCode.RESOURCE_EXHAUSTED,
                f"the token {entry.name!r} already has {len(leases)} streams open, its maximum; "
                "close one first",
            )
        lease = StreamLease(self, entry, stream_id)
        leases.add(lease)
        return lease

    def open_streams(self, name: str) -> int:
        """Streams open under the token called ``name`` (for tests and status pages)."""
        return sum(
            1 for leases in self._leases.values() for lease in leases if lease.entry.name == name
        )

    def _release(self, lease: StreamLease) -> None:
        leases = self._leases.get(lease.entry.digest)
        if leases is not None:
            leases.discard(lease)
            if not leases:
                del self._leases[lease.entry.digest]

    async def watch(self) -> None:
        """Reloads the file if it changed, every ``reload_interval`` seconds, until cancelled."""
        while True:
            await asyncio.sleep(self.reload_interval)
            try:
                self.reload()
            except Exception:
                _LOGGER.exception("checking the token file %s failed", self.path)


def _refusing_handler(handler: grpc.RpcMethodHandler[Any, Any], error: FramewireError) -> Any:
    """A handler of the same shape as ``handler`` that ends the call with ``error``."""

    async def refuse(_request: Any, context: grpc.aio.ServicerContext[Any, Any]) -> None:
        await context.abort(error.code, error.message)

    if handler.request_streaming and handler.response_streaming:
        make = grpc.stream_stream_rpc_method_handler
    elif handler.request_streaming:
        make = grpc.stream_unary_rpc_method_handler
    elif handler.response_streaming:
        make = grpc.unary_stream_rpc_method_handler
    else:
        make = grpc.unary_unary_rpc_method_handler
    return make(
        refuse,
        request_deserializer=handler.request_deserializer,
        response_serializer=handler.response_serializer,
    )


if TYPE_CHECKING:
    _ServerInterceptor = grpc.aio.ServerInterceptor[Any, Any]
else:  # the class is generic only in grpc-stubs
    _ServerInterceptor = grpc.aio.ServerInterceptor


class AuthInterceptor(_ServerInterceptor):
    """Refuses every call without a valid token, except health checks.

    Servicers that need to know *which* token called (the ingest hub, for
    stream ids and the per-token cap) ask the authenticator again with the
    call's metadata.
    """

    def __init__(self, authenticator: TokenAuthenticator) -> None:
        self._authenticator = authenticator

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Any],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> Any:
        handler = await continuation(handler_call_details)
        method: str = handler_call_details.method
        if handler is None or method.startswith(UNAUTHENTICATED_PREFIXES):
            return handler
        try:
            self._authenticator.authenticate(handler_call_details.invocation_metadata)
        except FramewireError as error:
            _LOGGER.info("refused a call to %s: %s", method, error.message)
            return _refusing_handler(handler, error)
        return handler
