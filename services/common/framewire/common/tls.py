"""TLS for every framewire hop: server credentials that follow their files, client credentials.

Servers read their certificate, key and (for mTLS) client CA through
``grpc.dynamic_ssl_server_credentials``: gRPC asks :class:`CertificateFiles`
for the current configuration at every new handshake, and it answers with a
new one only when a file changed on disk (cert-manager replacing a Secret's
files). New connections then see the new certificate; open streams keep the
connection they have.
"""

from __future__ import annotations

import logging
import os
import socket
import ssl
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc

from framewire.common.settings import option

_LOGGER = logging.getLogger(__name__)

# What identifies one version of a file on disk. Kubernetes updates a mounted
# Secret by swapping a symlink, so the inode changes even when the size and
# the second of the change do not.
FileSignature = tuple[int, int, int, int]


def file_signature(path: Path) -> FileSignature:
    """Device, inode, modification time (ns) and size of ``path`` (following symlinks)."""
    status = os.stat(path)
    return (status.st_dev, status.st_ino, status.st_mtime_ns, status.st_size)


def _no_password() -> str:
    raise ValueError("the private key is encrypted; give an unencrypted key (PEM)")


def read_pem(path: Path, what: str) -> bytes:
    """The bytes of a PEM file; ValueError naming ``what`` when it cannot be read."""
    try:
        return path.read_bytes()
    except OSError as error:
        raise ValueError(f"cannot read the {what} {path}: {error.strerror or error}") from error


@dataclass(frozen=True)
class _Loaded:
    signature: tuple[FileSignature, ...]
    configuration: Any  # grpc.ServerCertificateConfiguration, untyped in grpc-stubs


class CertificateFiles:
    """A server's certificate chain, key and optional client CA, read again when they change.

    :meth:`fetch` is the ``cert_config_fetcher`` of
    ``grpc.dynamic_ssl_server_credentials``; gRPC calls it from its own
    threads at each handshake, so it is cheap (three ``stat`` calls) while
    nothing changed, and locked.
    """

    def __init__(self, cert: Path, key: Path, client_ca: Path | None) -> None:
        self.cert = cert
        self.key = key
        self.client_ca = client_ca
        self._lock = threading.Lock()
        self._current = self._load()
        self._failed_signature: tuple[FileSignature, ...] | None = None
        self.reloads = 0

    def _paths(self) -> tuple[Path, ...]:
        return (
            (self.cert, self.key)
            if self.client_ca is None
            else (self.cert, self.key, self.client_ca)
        )

    def _signature(self) -> tuple[FileSignature, ...]:
        return tuple(file_signature(path) for path in self._paths())

    def _load(self) -> _Loaded:
        """Reads and checks the files; ValueError when they are unusable or changed meanwhile."""
        try:
            before = self._signature()
        except OSError as error:
            raise ValueError(f"cannot read the TLS files: {error}") from error
        cert = read_pem(self.cert, "certificate (--tls-cert)")
        key = read_pem(self.key, "private key (--tls-key)")
        client_ca = (
            read_pem(self.client_ca, "client CA (--tls-client-ca)") if self.client_ca else None
        )
        # Let OpenSSL check what gRPC would otherwise only refuse at the next
        # handshake: that the files are PEM, and that the key belongs to the certificate.
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        try:
            context.load_cert_chain(self.cert, self.key, password=_no_password)
        except (ssl.SSLError, OSError) as error:
            raise ValueError(
                f"the certificate {self.cert} and key {self.key} are not a usable pair: {error}"
            ) from error
        if self.client_ca is not None:
            try:
                context.load_verify_locations(cafile=self.client_ca)
            except (ssl.SSLError, OSError) as error:
                raise ValueError(
                    f"the client CA {self.client_ca} is not usable: {error}"
                ) from error
        try:
            after = self._signature()
        except OSError as error:
            raise ValueError(f"the TLS files changed while being read: {error}") from error
        if after != before:
            raise ValueError("the TLS files changed while being read")
        configuration = grpc.ssl_server_certificate_configuration(
            [(key, cert)], root_certificates=client_ca
        )
        return _Loaded(after, configuration)

    def initial(self) -> Any:
        """The configuration read at start-up."""
        return self._current.configuration

    def fetch(self) -> Any:
        """A new configuration when the files changed since the last one, else None.

        A half-written or mismatched set of files keeps the previous
        configuration (logged once per version of the files), so a rotation in
        progress never breaks new handshakes.
        """
        with self._lock:
            try:
                signature = self._signature()
            except OSError as error:
                _LOGGER.error("TLS files unreadable, keeping the current certificate: %s", error)
                return None
            if signature in (self._current.signature, self._failed_signature):
                return None
            try:
                loaded = self._load()
            except ValueError as error:
                self._failed_signature = signature
                _LOGGER.error(
                    "new TLS files not usable, keeping the current certificate: %s", error
                )
                return None
            self._current = loaded
            self._failed_signature = None
            self.reloads += 1
            _LOGGER.info("TLS certificate reloaded from %s", self.cert)
            return loaded.configuration


def server_credentials(
    cert: Path, key: Path, client_ca: Path | None
) -> tuple[grpc.ServerCredentials, CertificateFiles]:
    """TLS server credentials that follow the files; mTLS when ``client_ca`` is given."""
    files = CertificateFiles(cert, key, client_ca)
    credentials = grpc.dynamic_ssl_server_credentials(
        files.initial(), files.fetch, require_client_authentication=client_ca is not None
    )
    return credentials, files


def system_roots() -> bytes | None:
    """The operating system's CA bundle, or None to let gRPC use the roots it ships with."""
    paths = ssl.get_default_verify_paths()
    for candidate in (os.environ.get("SSL_CERT_FILE"), paths.cafile, paths.openssl_cafile):
        if candidate and os.path.isfile(candidate):
            return Path(candidate).read_bytes()
    return None


@dataclass(frozen=True)
class ClientTls:
    """How a client checks its server and proves itself.

    ``ca`` None trusts the system roots; ``cert`` and ``key`` together are the
    client certificate for mTLS; ``server_name`` replaces the name checked
    against the server's certificate (for addresses that are not in it).
    """

    ca: Path | None = None
    cert: Path | None = None
    key: Path | None = None
    server_name: str | None = None

    def __post_init__(self) -> None:
        if (self.cert is None) != (self.key is None):
            raise ValueError("a client certificate needs both its certificate and its key")

    def credentials(self) -> grpc.ChannelCredentials:
        """Channel credentials read from the files now; ValueError when one cannot be read."""
        roots = read_pem(self.ca, "CA certificate") if self.ca is not None else system_roots()
        cert = read_pem(self.cert, "client certificate") if self.cert is not None else None
        key = read_pem(self.key, "client key") if self.key is not None else None
        return grpc.ssl_channel_credentials(
            root_certificates=roots, private_key=key, certificate_chain=cert
        )

    def channel_options(self) -> list[tuple[str, int | str]]:
        """Channel arguments TLS needs besides the credentials."""
        if self.server_name is None:
            return []
        return [("grpc.ssl_target_name_override", self.server_name)]


def aio_channel(
    target: str, options: list[tuple[str, int | str]], tls: ClientTls | None
) -> grpc.aio.Channel:
    """A grpc.aio channel to ``target``: TLS when ``tls`` is given, plaintext otherwise."""
    if tls is None:
        return grpc.aio.insecure_channel(target, options=options)
    return grpc.aio.secure_channel(
        target, tls.credentials(), options=[*options, *tls.channel_options()]
    )


#: Where a client finds its token when no token file is given.
TOKEN_ENV = "FRAMEWIRE_TOKEN"


@dataclass(frozen=True)
class ClientSecurityConfig:
    """How a device's agent reaches its server: TLS, a client certificate, a token."""

    tls: bool = option(
        False, "connect with TLS, trusting the system's CA roots (or --tls-ca; implied by it)"
    )
    tls_ca: Path | None = option(
        None,
        "PEM CA certificates to trust instead of the system roots (implies --tls)",
        metavar="FILE",
    )
    tls_cert: Path | None = option(
        None, "PEM client certificate to present (mTLS; implies --tls)", metavar="FILE"
    )
    tls_key: Path | None = option(None, "PEM private key of --tls-cert", metavar="FILE")
    tls_server_name: str | None = option(
        None,
        "name to check the server's certificate against instead of the --server host",
        metavar="NAME",
    )
    token_file: Path | None = option(
        None,
        f"file holding this device's token, sent as 'authorization: Bearer'; without it the "
        f"token is read from ${TOKEN_ENV} if set",
        metavar="FILE",
    )

    def __post_init__(self) -> None:
        if (self.tls_cert is None) != (self.tls_key is None):
            raise ValueError("--tls-cert and --tls-key go together: give both or neither")

    def client_tls(self) -> ClientTls | None:
        """The TLS settings, or None for a plaintext connection."""
        if not (self.tls or self.tls_ca is not None or self.tls_cert is not None):
            return None
        return ClientTls(
            ca=self.tls_ca, cert=self.tls_cert, key=self.tls_key, server_name=self.tls_server_name
        )


def _host_and_port(target: str) -> tuple[str, int]:
    """``host:port``, ``[v6]:port`` or ``dns:///host:port`` -> ``(host, port)``."""
    address = target.removeprefix("dns:///")
    host, _, port = address.rpartition(":")
    return host.strip("[]"), int(port)


def describe_handshake_failure(details: str | None) -> str | None:
    """The reason in a gRPC error's details when they tell of a failed TLS handshake, else None.

    gRPC reports a certificate the client does not trust, a name that does not
    match, or TLS against a plaintext server as UNAVAILABLE with the
    handshake's reason in the details.
    """
    text = details or ""
    for marker in ("Tls handshake failed", "Ssl handshake failed", "verification check failed"):
        start = text.find(marker)
        if start >= 0:
            reason = text[start:].removesuffix(": OK")
            if "WRONG_VERSION_NUMBER" in reason:
                reason += " (the server does not speak TLS: drop --tls)"
            return reason
    return None


def probe_handshake(target: str, tls: ClientTls | None, timeout: float) -> str | None:
    """Finds out why a connection that closed at once failed, when TLS is why; else None.

    A server that requires TLS closes a plaintext connection without a word,
    and one that refuses a client certificate closes the connection after
    the handshake: both reach a gRPC client only as "Socket closed", like a
    network failure. One TLS connection made here with Python's ``ssl``
    hears the server's alert and names the cause.
    """
    host, port = _host_and_port(target)
    if tls is None:
        context = ssl.create_default_context()
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    else:
        context = ssl.create_default_context(cafile=tls.ca)
        if tls.cert is not None and tls.key is not None:
            context.load_cert_chain(tls.cert, tls.key)
    context.set_alpn_protocols(["h2"])
    server_name = tls.server_name if tls is not None and tls.server_name else host
    try:
        with (
            socket.create_connection((host, port), timeout=timeout) as raw,
            context.wrap_socket(raw, server_hostname=server_name) as connection,
        ):
            if tls is None:
                return "the server speaks TLS: connect with --tls (or --tls-ca FILE)"
            # TLS 1.3 finishes the client's side of the handshake before the
            # server has checked the client's certificate. A gRPC server that
            # accepts the connection speaks first (its HTTP/2 SETTINGS); one
            # that refused the certificate closes the connection instead.
            if connection.recv(1):
                return None
            if tls.cert is None:
                return (
                    "the server closed the connection after the TLS handshake: it requires a "
                    "client certificate (give --tls-cert and --tls-key)"
                )
            return (
                "the server closed the connection after the TLS handshake: it refused this "
                f"client's certificate {tls.cert} (not signed by a CA it trusts, or expired)"
            )
    except ssl.SSLCertVerificationError as error:
        return f"the server's certificate is not trusted: {error.verify_message}"
    except ssl.SSLError as error:
        reason = error.reason or str(error)
        if "ALERT" in reason.upper():
            return f"the server refused this client's certificate ({reason})"
        if tls is None:
            return None
        return f"TLS handshake failed: {reason}"
    except OSError:
        return None  # a network failure: the caller's retries deal with it
